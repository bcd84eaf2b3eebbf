-- link_ponger: answers every bench.ping with a bench.pong of the same data.
local M = { subscribe = { "bench.ping" } }

function M.on_message(ctx, msg)
  ctx:emit("bench.pong", msg.data)
end

return M
