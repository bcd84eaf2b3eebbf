-- mycelium.events -- how engine facilities written in C (WebSocket, HTTP,
-- Redis clients, ...) call back into the service that owns them.
--
-- A facility gets a source id from its Lua side, and the engine later
-- calls the function registered for that id with (code, address, len),
-- on the service's worker, as a new activation (a fresh trace).  Errors
-- raised by the function are logged and counted like handler errors.
-- One registry per Lua state, that is per service instance.
local M = {}

local handlers = {}
local next_id = 0
local service -- myc_service* of this state, set by the host

-- Registers 'fn' and returns the new source id.
function M.register(fn)
  next_id = next_id + 1
  handlers[next_id] = fn
  return next_id
end

function M.unregister(id)
  handlers[id] = nil
end

-- Called by the host for an event; returns false for an unknown source.
function M.dispatch(id, code, addr, len)
  local fn = handlers[id]
  if fn == nil then
    return false
  end
  fn(code, addr, len)
  return true
end

function M.set_service(svc)
  service = svc
end

-- The myc_service* facilities pass to their C functions.
function M.service()
  return service
end

return M
