-- sampler: a slow consumer that, while its mailbox is over the
-- backpressure threshold, handles only 1 message in opts.keep_one_in and
-- skips the rest cheaply: it sheds load itself, so nothing is dropped.
local work = require "work"

local M = { subscribe = { "events" } }

local n = 0

function M.on_message(ctx, msg)
  n = n + 1
  if ctx:backpressure_threshold_exceeded() and n % ctx.opts.keep_one_in ~= 0 then
    return
  end
  work(ctx, ctx.opts.work_us) -- the expensive part
end

return M
