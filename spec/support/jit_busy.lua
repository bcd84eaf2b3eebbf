-- spec/support/jit_busy.lua -- a service whose handler spends some 300 ms
-- of CPU in one function (busy_loop), for MYC_JIT_PROFILE's spec.
local M = { subscribe = { "prof.go" } }

local function busy_loop(n)
  local s = 0
  for i = 1, n do s = (s + i * 7) % 1000003 end
  return s
end

function M.on_message(ctx)
  local s, t0 = 0, os.clock()
  while os.clock() - t0 < 0.3 do s = s + busy_loop(200000) end
  ctx:emit("prof.done", { s = s })
end

return M
