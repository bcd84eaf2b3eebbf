-- pricer: answers "quote.get" requests with a price.  It reads how long
-- the asker still waits and skips work that would come too late; a quote
-- for "BOOM" raises, and the asker gets "failed" at once.
local PRICES = { AAPL = 189.5, MSFT = 411.25, ETH = 3012.0 }

local M = { subscribe = { "quote.get" } }

function M.on_message(ctx, msg)
  local left = ctx:remaining_ms(msg)
  if left ~= nil and left <= 0 then return end -- the asker gave up already
  local q = msg.data
  if q.symbol == "BOOM" then error("no price for BOOM") end
  local price = PRICES[q.symbol]
  ctx:reply(msg, { symbol = q.symbol, qty = q.qty,
                   total = price and price * q.qty or nil,
                   known = price ~= nil })
end

return M
