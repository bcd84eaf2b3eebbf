-- link_producer: once the consumer in the other process says hello (so
-- its subscription has crossed the link), emits opts.n messages of
-- opts.size bytes (64 by default) on
-- bench.link, keeping at most 'window' not yet acknowledged: a link has
-- no backpressure of its own, a message past its queues is dropped.
local M = { subscribe = { "bench.hello", "bench.ack" } }
local payload -- opts.size bytes (64 by default)
local started, sent, acked = false, 0, 0
local WINDOW = 32768

local function pump(ctx)
  payload = payload or string.rep("x", ctx.opts.size or 64)
  local stop = math.min(ctx.opts.n, acked + WINDOW)
  for _ = sent + 1, stop do
    ctx:emit("bench.link", payload)
  end
  sent = math.max(sent, stop)
end

M.handlers = {
  ["bench.hello"] = function(ctx)
    if started then return end
    started = true
    pump(ctx)
  end,
  ["bench.ack"] = function(ctx, msg)
    acked = tonumber(msg.data)
    pump(ctx)
  end,
}

return M
