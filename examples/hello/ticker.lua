-- ticker: emits a numbered tick as a table every interval, 'count' times.
local M = {}

function M.init(ctx, opts)
  local n, count = 0, opts.count or 10
  local tick = ctx:publisher("hello.ticks")
  local timer
  timer = ctx:every(opts.interval_ms or 50, function()
    n = n + 1
    tick { n = n, at = ctx:now() }
    if n == count then
      timer.cancel()
    end
  end)
  ctx.log:info("ticking", { count = count })
end

return M
