-- dropper: the same slow consumer without any shedding: its mailbox
-- fills and the engine drops (policy drop_oldest), counting every loss.
local work = require "work"

local M = { subscribe = { "events" } }

function M.on_message(ctx)
  work(ctx, ctx.opts.work_us)
end

return M
