-- client: asks the pricer for a few quotes, one round every
-- opts.interval_ms, each quote from a coroutine (ctx:fork) that waits
-- for its reply; prints every outcome, then stops the engine after
-- opts.rounds rounds.  Until the pricer answers (across a link, its
-- subscription takes a moment to arrive) a round is not counted.
local M = {}
local SYMBOLS = { "AAPL", "MSFT", "BOOM" }
local rounds = 0

local function ask(ctx, symbol)
  local t0 = ctx:now()
  local r, why, detail = ctx:request("quote.get", { symbol = symbol, qty = 10 },
                                     { timeout_ms = 500 })
  if r ~= nil then
    print(string.format("[client] %s x 10 = %.2f from %s in %.0f us", symbol,
                        r.data.total, r.source, (ctx:now() - t0) * 1e6))
  else
    print(string.format("[client] %s: %s%s", symbol, why,
                        detail and (" (" .. detail .. ")") or ""))
  end
  return r ~= nil or why == "failed"
end

local function round(ctx)
  local answered = 0
  for _, s in ipairs(SYMBOLS) do
    ctx:fork(function()
      if ask(ctx, s) then answered = answered + 1 end
      if answered == #SYMBOLS then
        rounds = rounds + 1
        if rounds == ctx.opts.rounds then ctx:shutdown(0) end
      end
    end)
  end
end

function M.init(ctx, opts)
  ctx:every(opts.interval_ms or 200, round)
end

return M
