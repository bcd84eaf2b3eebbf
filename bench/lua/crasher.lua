-- bench crasher: raises on every message, so every message costs a
-- restart (the scenario sets the supervisor's backoff to 0).
local M = { subscribe = { "bench.crash" } }

function M.init() end

function M.on_message(_, msg)
  error("crash " .. msg.data)
end

return M
