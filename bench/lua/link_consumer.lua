-- link_consumer: says hello every 20 ms until the first message comes,
-- acknowledges every 4096 messages, counts opts.n messages on bench.link,
-- writes "count seconds" (first to last message) to opts.out and stops.
-- With opts.read it reads each payload (msg.data, checked against
-- opts.size), as the ZeroMQ and raw socket readers it is compared with do.
local M = { subscribe = { "bench.link" } }
local count, t0, hello = 0, nil, nil

function M.init(ctx)
  hello = ctx:every(20, function() ctx:emit("bench.hello", "") end)
end

function M.on_message(ctx, msg)
  if ctx.opts.read and #msg.data ~= (ctx.opts.size or 64) then
    error("short payload")
  end
  count = count + 1
  if count == 1 then
    t0 = ctx:now()
    hello.cancel()
  end
  if count % 4096 == 0 then
    ctx:emit("bench.ack", tostring(count))
  end
  if count == ctx.opts.n then
    local f = io.open(ctx.opts.out, "w")
    f:write(string.format("%d %.9f\n", count, ctx:now() - t0))
    f:close()
    ctx:shutdown(0)
  end
end

return M
