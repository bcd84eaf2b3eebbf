-- bench consumer: counts messages (opts.read: also reads each payload as
-- a Lua string) and reports the rate from its first message to its last.
local M = { subscribe = { "bench.data" } }

local n, total, read, t0 = 0, 0, false, 0

function M.init(ctx, opts)
  total, read = opts.total, opts.read
end

function M.on_message(ctx, msg)
  n = n + 1
  if read and #msg.data ~= 64 then error("short payload") end
  if n == 1 then t0 = ctx:now() end
  if n == total then
    ctx:emit("bench.result.consumer", string.format("%d %.9f", n, ctx:now() - t0))
  end
end

return M
