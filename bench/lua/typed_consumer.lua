-- bench typed consumer: reads one field of every message (msg.data.block
-- of a SwapEvent view or of a decoded table; the length of a raw string)
-- and reports the rate from its first message to its last.
local M = { subscribe = { "bench.data" } }

local n, total, t0, sum = 0, 0, 0, 0

function M.init(ctx, opts)
  total = opts.total
end

function M.on_message(ctx, msg)
  n = n + 1
  local d = msg.data
  if type(d) == "string" then sum = sum + #d else sum = sum + tonumber(d.block) end
  if n == 1 then t0 = ctx:now() end
  if n == total then
    if sum == 0 then error("nothing read") end
    ctx:emit("bench.result.consumer", string.format("%d %.9f", n, ctx:now() - t0))
  end
end

return M
