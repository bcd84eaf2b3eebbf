-- greeter.lua -- the Lua service of examples/embed: answers each kind of
-- payload the host publishes, on "out.*" topics the host's C service reads.
local M = {}

local greetings = 0

function M.init(ctx, opts, state)
  greetings = state and state.greetings or 0
end

-- What a hot reload hands to the next version's init.
function M.snapshot(ctx)
  return { greetings = greetings }
end

M.handlers = {
  names = function(ctx, msg) -- raw bytes: msg.data is a string
    greetings = greetings + 1
    ctx:emit("out.greeting", "hello " .. msg.data)
  end,
  readings = function(ctx, msg) -- typed: msg.data is a read-only Reading
    local r = msg.data
    ctx:emit("out.alert", { sensor = r.sensor, fahrenheit = r.celsius * 9 / 5 + 32 })
  end,
  orders = function(ctx, msg) -- a table: msg.data is the decoded map
    ctx:emit("out.greeting", ("%d x %s"):format(msg.data.qty, msg.data.item))
  end,
}

return M
