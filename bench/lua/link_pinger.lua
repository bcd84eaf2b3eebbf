-- link_pinger: once the ponger in the other process answers a probe (its
-- subscription has crossed the link), sends one bench.ping at a time and
-- waits for its bench.pong; after opts.warmup round trips, times opts.n
-- of them and writes "p50_us p99_us" to opts.out, then stops its engine.
local M = { subscribe = { "bench.pong" } }
local rtts, seq, t0, started, probe = {}, 0, 0, false, nil

function M.init(ctx)
  probe = ctx:every(20, function() ctx:emit("bench.ping", "probe") end)
end

-- opts.size pads each ping to that many bytes (default: the number alone).
local pad

local function ping(ctx)
  seq = seq + 1
  pad = pad or string.rep("p", math.max(0, (ctx.opts.size or 0) - 12))
  t0 = ctx:now()
  ctx:emit("bench.ping", string.format("%012d", seq) .. pad)
end

function M.on_message(ctx, msg)
  if msg.data == "probe" then
    if not started then
      started = true
      probe.cancel()
      ping(ctx)
    end
    return
  end
  if msg.data:sub(1, 12) ~= string.format("%012d", seq) then return end
  local rtt = ctx:now() - t0
  if seq > ctx.opts.warmup then rtts[#rtts + 1] = rtt end
  if #rtts == ctx.opts.n then
    table.sort(rtts)
    local f = io.open(ctx.opts.out, "w")
    f:write(string.format("%.3f %.3f\n", rtts[math.ceil(#rtts * 0.5)] * 1e6,
                          rtts[math.ceil(#rtts * 0.99)] * 1e6))
    f:close()
    return ctx:shutdown(0)
  end
  ping(ctx)
end

return M
