-- consumer: the same code as in one process: it subscribes to "swaps.*"
-- and logs what it gets, with the producer's trace id.
local M = { subscribe = { "swaps.*" } }

function M.on_message(ctx, msg)
  ctx.log:info("got", { n = msg.data.n, topic = msg.topic, from = msg.source })
end

return M
