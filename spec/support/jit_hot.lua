-- spec/support/jit_hot.lua -- a service whose handler runs a hot loop
-- that LuaJIT compiles, and one that cannot compile (a closure made per
-- iteration: NYI), so that its trace log shows both a trace and aborts.
local M = { subscribe = { "jit.go" } }

function M.on_message(ctx)
  local s = 0
  for i = 1, 2000 do s = s + i % 7 end
  local fs = {}
  for i = 1, 2000 do fs[i % 8 + 1] = function() return i end end
  ctx:emit("jit.done", { s = s, n = #fs })
end

return M
