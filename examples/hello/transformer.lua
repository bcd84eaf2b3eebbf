-- transformer: turns each tick (a table) into a greeting (a raw string),
-- keeping the trace of the tick it came from.
local M = { subscribe = { "hello.ticks" } }

function M.on_message(ctx, msg)
  local tick = msg.data
  ctx:emit("hello.greetings", string.format("hello #%d from %s", tick.n, msg.source))
end

return M
