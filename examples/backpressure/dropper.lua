-- dropper: the same slow consumer without any shedding: its mailbox
-- fills and the engine drops (policy drop_oldest), counting every loss.
local M = { subscribe = { "events" } }

function M.on_message(ctx)
  for _ = 1, ctx.opts.work do end
end

return M
