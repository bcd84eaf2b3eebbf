-- bench consumer: counts messages (opts.read: also reads each payload as a
-- Lua string; opts.work: spins that many iterations per message, a slow
-- consumer) and reports its rate from its first message to its last.
local M = { subscribe = { "bench.data" } }

local n, total, read, work, t0 = 0, 0, false, 0, 0

function M.init(ctx, opts)
  total, read, work = opts.total, opts.read, opts.work or 0
end

function M.on_message(ctx, msg)
  n = n + 1
  if read and #msg.data ~= 64 then error("short payload") end
  for _ = 1, work do end
  if n == 1 then t0 = ctx:now() end
  if n == total then
    ctx:emit("bench.result.consumer", string.format("%d %.9f", n, ctx:now() - t0))
  end
end

return M
