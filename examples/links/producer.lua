-- producer: emits a numbered swap on "swaps.v2" every interval, and logs
-- each one (the log line carries the trace id the message travels with).
local M = {}

function M.init(ctx, opts)
  local n = 0
  ctx:every(opts.interval_ms or 100, function()
    n = n + 1
    ctx:emit("swaps.v2", { n = n, pool = "0xabc", amount = n * 10 })
    ctx.log:info("sent", { n = n })
  end)
end

return M
