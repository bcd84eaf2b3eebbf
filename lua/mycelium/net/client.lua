-- mycelium.net.client -- what the service clients of the engine's
-- connection-keeping C clients (mycelium.net.redis, mycelium.net.postgres)
-- share: checking connect's arguments, the connection's life (state
-- events logged once per outage, close, state, pending) and handing each
-- outcome to the callback or the coroutine that waits for it.
--
-- A client module describes its C side once as a driver:
--   { kind = "redis", options = { name = "type", ... },
--     event = "const myc_redis_event *",      -- the C event's type
--     open = function(svc, source, url, opts) -- rc, handle, error text
--     on_outcome = function(self, ev),        -- event 1: an outcome
--     free, close, state, pending, server }   -- the C functions
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
local events = require "mycelium.events"

local type, tostring, error, pairs, setmetatable = type, tostring, error, pairs, setmetatable
local format, ffi_string, floor = string.format, ffi.string, math.floor
local co_running, co_resume = coroutine.running, coroutine.resume

-- The C clients number their events alike.
local EV_OUTCOME, EV_UP, EV_DOWN, EV_CLOSED = 1, 2, 3, 4
local MAX_EXACT = 2 ^ 53

local M = {}

-- Raises "service 'S': KIND SERVER: message" at the caller 'level' up.
function M.fail(self, level, fmt, ...)
  error(format("service '%s': %s %s: " .. fmt, self.service, self.driver.kind,
               self.server, ...), level + 1)
end

-- The callback 'cb', or the running coroutine that will wait; raises for
-- a bad callback or outside a coroutine.
function M.waiter(self, cb, level, op)
  if cb ~= nil then
    if type(cb) ~= "function" then
      M.fail(self, level + 1, "%s: the callback must be a function, got %s", op, type(cb))
    end
    return cb
  end
  local co = co_running()
  if co == nil then
    M.fail(self, level + 1, "%s: pass a callback, or call it from a coroutine", op)
  end
  return co
end

function M.complete(waiter, value, err, code)
  if type(waiter) == "function" then
    return waiter(value, err, code)
  end
  local ok, e = co_resume(waiter, value, err, code)
  if not ok then
    error(debug.traceback(waiter, e), 0)
  end
end

-- The outcome waiting under request id 'id' (nil when none is).
function M.take(self, id)
  local waiter = self.waiting[id]
  self.waiting[id] = nil
  return waiter
end

-- A number as the text a server parses back to the same value: integers
-- exactly up to 2^53, others with 17 significant digits.
function M.number_text(a)
  if a == floor(a) and a >= -MAX_EXACT and a <= MAX_EXACT then
    return format("%d", a)
  end
  return format("%.17g", a)
end

local function on_event(self, code, addr)
  local driver = self.driver
  local ev = ffi.cast(driver.event, addr)
  if code == EV_OUTCOME then
    return driver.on_outcome(self, ev)
  end
  local log, on_state = self.log, self.on_state
  if code == EV_UP then
    if log then
      log:info(driver.kind .. ": connected", { server = self.server,
                                               after_failures = self.failures })
    end
    self.failures = 0
    if on_state then on_state("up") end
  elseif code == EV_DOWN then
    local msg = ffi_string(ev.error)
    self.failures = self.failures + 1
    -- The first failure is news; a server that stays away would
    -- otherwise log a warning every few seconds.
    if log then
      local level = self.failures == 1 and "warn" or "debug"
      log[level](log, msg, { server = self.server, retry_ms = ev.retry_ms,
                             failures = self.failures })
    end
    if on_state then on_state("down", msg) end
  elseif code == EV_CLOSED then
    events.unregister(self.source)
    driver.free(ffi.gc(self.c, nil))
    self.c = nil
    if on_state then on_state("closed") end
  end
end

-- connect(ctx, url, opts) of 'driver', returning an instance of 'class'
-- (whose methods come from the client module and from M.methods) or nil,
-- message, code for a bad URL or option value.  Misuse raises at the
-- caller of connect, naming the service.
function M.connect(driver, class, ctx, url, opts)
  local kind = driver.kind
  if type(ctx) ~= "table" or type(ctx.name) ~= "string" then
    error(kind .. ".connect: the first argument must be the service's ctx", 3)
  end
  local name = ctx.name
  local function bad(fmt, ...)
    error(format("service '%s': %s.connect: " .. fmt, name, kind, ...), 4)
  end
  if type(url) ~= "string" then bad("url must be a string, got %s", type(url)) end
  if opts ~= nil and type(opts) ~= "table" then
    bad("opts must be a table, got %s", type(opts))
  end
  opts = opts or {}
  local options = driver.options
  for k, v in pairs(opts) do
    if options[k] == nil then bad("unknown option '%s'", tostring(k)) end
    if type(v) ~= options[k] then
      bad("option '%s' must be a %s, got %s", k, options[k], type(v))
    end
    if options[k] == "number" and (v < 1 or v > 0xffffffff or floor(v) ~= v) then
      bad("option '%s' must be a positive integer, got %s", k, tostring(v))
    end
  end
  local svc = events.service()
  if svc == nil then bad("only a running service can connect") end

  local self = setmetatable({ driver = driver, service = name, waiting = {},
                              failures = 0, on_state = opts.on_state }, class)
  if opts.log ~= false then self.log = ctx.log end
  self.source = events.register(function(code, addr) return on_event(self, code, addr) end)
  local rc, handle, err = driver.open(svc, self.source, url, opts)
  if rc ~= 0 then
    events.unregister(self.source)
    return nil, err, cdefs.err_name(rc)
  end
  -- Without a close, the client goes with the service's Lua state.
  self.c = ffi.gc(handle, driver.free)
  self.server = ffi_string(driver.server(handle))
  return self
end

-- Adds close, state and pending to 'class'.
function M.methods(class)
  -- Closes gracefully: what was accepted still gets its outcome, new
  -- requests fail, then on_state("closed").  Idempotent.
  function class:close()
    if self.c ~= nil and not self.closing then
      self.closing = true
      self.driver.close(self.c)
    end
    return true
  end

  -- "connecting", "up", "down", "closing" or "closed".
  function class:state()
    if self.c == nil then return "closed" end
    return ffi_string(self.driver.state(self.c))
  end

  -- Requests issued whose outcome has not come yet.
  function class:pending()
    if self.c == nil then return 0 end
    return self.driver.pending(self.c)
  end
  return class
end

-- The "client closed" failure of a request made after close.
function M.closed(self)
  return nil, format("%s %s: client closed", self.driver.kind, self.server), "ESTATE"
end

return M
