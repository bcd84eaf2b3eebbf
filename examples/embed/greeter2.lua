-- greeter2.lua -- the version of greeter.lua the host reloads: another
-- greeting, and the count carried over from the previous version.
local M = {}

local greetings

function M.init(ctx, opts, state)
  greetings = state and state.greetings or 0
end

function M.snapshot(ctx)
  return { greetings = greetings }
end

M.handlers = {
  names = function(ctx, msg)
    greetings = greetings + 1
    ctx:emit("out.greeting", ("hi %s (greeting %d)"):format(msg.data, greetings))
  end,
}

return M
