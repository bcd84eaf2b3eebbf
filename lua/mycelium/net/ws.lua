-- mycelium.net.ws -- WebSocket client connections for services (docs/WEBSOCKET.md).
--
--   local ws = require "mycelium.net.ws"
--   local conn = ws.connect(ctx, "wss://node.example/ws", {
--     on_open = function(conn) conn:send('{"hello":1}') end,
--     on_message = function(conn, data, binary) ... end,
--     on_close = function(conn, info) ... end,   -- info.error names the URL
--   })
--
-- The connection lives on the service's worker loop (engine/src/net/ws.c) and
-- reconnects with backoff until conn:close().  Callbacks run as new
-- activations of the service; an error they raise is logged and counted
-- like a handler error.
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.need("net")
local events = require "mycelium.events"

local C = cdefs.library()
local type, error, format, tostring, pairs = type, error, string.format, tostring, pairs
local setmetatable, tonumber = setmetatable, tonumber
local ffi_string, ffi_cast = ffi.string, ffi.cast
local concat = table.concat

local EV_OPEN, EV_PONG, EV_CLOSE, EV_MESSAGES = 1, 4, 5, 6
local STATES = { [0] = "connecting", "open", "closing", "reconnecting", "closed" }

local M = {}

local Conn = {}
Conn.__index = Conn

local function who(ctx)
  return type(ctx) == "table" and ctx.name or "?"
end

local function fail(ctx, level, fmt, ...)
  error(format("service '%s': " .. fmt, who(ctx), ...), level + 1)
end

-- Numeric options: name -> field of myc_ws_options.
local NUMBERS = {
  open_timeout_ms = "open_timeout_ms", ping_interval_ms = "ping_interval_ms",
  pong_timeout_ms = "pong_timeout_ms", close_timeout_ms = "close_timeout_ms",
  max_message = "max_message", max_buffered = "max_buffered",
}
local BACKOFF = {
  initial_ms = "backoff_initial_ms", max_ms = "backoff_max_ms",
  multiplier = "backoff_multiplier", jitter = "backoff_jitter",
}
local CALLBACKS = { "on_open", "on_message", "on_close", "on_pong" }
local KNOWN = { ca_file = true, insecure = true, reconnect = true,
                protocol = true, headers = true }
for k in pairs(NUMBERS) do KNOWN[k] = true end
for _, k in ipairs(CALLBACKS) do KNOWN[k] = true end

local function number_opt(ctx, name, v)
  if type(v) ~= "number" or v ~= v then
    fail(ctx, 4, "ws.connect: option %s must be a number, got %s", name,
         tostring(v))
  end
  return v
end

local function header_lines(ctx, h)
  if type(h) ~= "table" then
    fail(ctx, 4, "ws.connect: headers must be a table of name = value")
  end
  local lines = {}
  for k, v in pairs(h) do
    if type(k) ~= "string" or type(v) ~= "string" or k:find("[\r\n:]")
        or v:find("[\r\n]") then
      fail(ctx, 4, "ws.connect: header %s must be a string name and value "
           .. "without CR, LF (or ':' in the name)", tostring(k))
    end
    lines[#lines + 1] = k .. ": " .. v .. "\r\n"
  end
  return concat(lines)
end

-- Fills a myc_ws_options from the Lua table; 'keep' holds the strings
-- the struct points to until myc_ffi_ws_open has copied them.
local function options(ctx, opts, keep)
  local o = ffi.new("myc_ws_options")
  C.myc_ffi_ws_options_init(o)
  for k in pairs(opts) do
    if not KNOWN[k] then
      fail(ctx, 3, "ws.connect: unknown option '%s'", tostring(k))
    end
  end
  for k, field in pairs(NUMBERS) do
    if opts[k] ~= nil then o[field] = number_opt(ctx, k, opts[k]) end
  end
  if opts.ca_file ~= nil then
    if type(opts.ca_file) ~= "string" then
      fail(ctx, 3, "ws.connect: ca_file must be a path string")
    end
    keep[#keep + 1] = opts.ca_file
    o.ca_file = opts.ca_file
  end
  if opts.insecure ~= nil then o.insecure = opts.insecure and 1 or 0 end
  local r = opts.reconnect
  if r == false then
    o.reconnect = 0
  elseif type(r) == "table" then
    for k, v in pairs(r) do
      if BACKOFF[k] then
        o[BACKOFF[k]] = number_opt(ctx, "reconnect." .. k, v)
      elseif k == "max_attempts" then
        o.max_attempts = number_opt(ctx, "reconnect.max_attempts", v)
      else
        fail(ctx, 3, "ws.connect: unknown reconnect option '%s'", tostring(k))
      end
    end
  elseif r ~= nil and r ~= true then
    fail(ctx, 3, "ws.connect: reconnect must be true, false or a table")
  end
  if opts.protocol ~= nil then
    keep[#keep + 1] = tostring(opts.protocol)
    o.protocol = keep[#keep]
  end
  if opts.headers ~= nil then
    keep[#keep + 1] = header_lines(ctx, opts.headers)
    o.headers = keep[#keep]
  end
  return o
end

local function close_info(addr)
  local i = ffi_cast("const myc_ws_close_info *", addr)
  local err = tonumber(i.err)
  local t = {
    code = tonumber(i.code),
    reason = ffi_string(i.reason, i.reason_len),
    attempt = tonumber(i.attempt),
    clean = err == 0,
  }
  if err ~= 0 then
    t.error = ffi_string(i.error)
    t.err_name = cdefs.err_name(err)
  end
  if i.reconnect_ms >= 0 then t.reconnect_ms = i.reconnect_ms end
  return t
end

-- Delivers messages from the batch's cursor on; the cursor moves past
-- each message before its handler runs, so that after a handler raised,
-- delivery resumes with the next one.
local function deliver(self, fn, h, b)
  local parts, n = b.parts, b.count
  local cur = self._cur
  while cur.i < n do
    if C.myc_ffi_ws_taking(h) == 0 then cur.i = n return end
    local part = parts[cur.i]
    cur.i = cur.i + 1
    if fn then
      fn(self, ffi_string(part.p, tonumber(part.len)), part.binary ~= 0)
    end
  end
end

-- The messages of one socket read, in order: one call from C for all of
-- them. self.arrival_ns is when that read returned (CLOCK_MONOTONIC ns),
-- for latencies that start when the bytes arrived. A handler that closes
-- the connection (or a stop) ends the delivery, as it would have ended a
-- read delivered message by message. A handler that raises loses no
-- other message: the rest are delivered, then the first error is raised
-- (logged and counted as a handler error), later ones are logged.
function Conn:_messages(addr)
  local b = ffi_cast("const myc_ws_batch *", addr)
  self._cur.i = 0
  self.arrival_ns = tonumber(b.arrival_ns)
  self.batches = self.batches + 1
  local first
  while true do
    local ok, err = pcall(deliver, self, self.on_message, self._h, b)
    if ok then break end
    if first == nil then
      first = err
    else
      self.ctx.log:error("websocket on_message: " .. tostring(err),
                         { url = self.url })
    end
  end
  if first ~= nil then error(first, 0) end
end

function Conn:_event(code, addr, len)
  if code == EV_MESSAGES then
    self:_messages(addr)
  elseif code == EV_OPEN then
    self.opened = (self.opened or 0) + 1
    if self.on_open then self.on_open(self) end
  elseif code == EV_PONG then
    if self.on_pong then
      self.on_pong(self, ffi_string(ffi_cast("const char *", addr), len))
    end
  elseif code == EV_CLOSE then
    local info = close_info(addr)
    if info.reconnect_ms == nil then
      -- Final: no event comes any more, the connection may be collected.
      events.unregister(self._source)
      self._final = true
    end
    if self.on_close then
      self.on_close(self, info)
    elseif info.error then
      self.ctx.log:warn("websocket: " .. info.error, {
        url = self.url, attempt = info.attempt,
        reconnect_ms = info.reconnect_ms })
    end
  end
end

-- Opens a connection; see docs/WEBSOCKET.md for the options.  Raises on
-- a bad URL or option (a mistake in the service or its configuration);
-- everything that goes wrong later comes to on_close with info.error.
function M.connect(ctx, url, opts)
  if type(ctx) ~= "table" then
    error("ws.connect: the first argument must be the service's ctx", 2)
  end
  if type(url) ~= "string" then
    fail(ctx, 2, "ws.connect: url must be a string, got %s", type(url))
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    fail(ctx, 2, "ws.connect: options must be a table")
  end
  for _, k in ipairs(CALLBACKS) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      fail(ctx, 2, "ws.connect: %s must be a function", k)
    end
  end
  local keep = {}
  local o = options(ctx, opts, keep)
  local conn = setmetatable({ ctx = ctx, url = url, batches = 0,
                              _cur = { i = 0 } }, Conn)
  for _, k in ipairs(CALLBACKS) do conn[k] = opts[k] end
  conn._source = events.register(function(code, addr, len)
    conn:_event(code, addr, len)
  end)
  local err = ffi.new("char[600]")
  local h = C.myc_ffi_ws_open(events.service(), conn._source, url, o, err, 600)
  if h == nil then
    events.unregister(conn._source)
    fail(ctx, 2, "ws.connect: %s", ffi_string(err))
  end
  conn._h = ffi.gc(h, C.myc_ffi_ws_release)
  return conn
end

local function result(rc)
  if rc == 0 then return true end
  return nil, cdefs.strerror(rc), cdefs.err_name(rc)
end

local function check_data(self, what, data)
  if type(data) ~= "string" then
    fail(self.ctx, 3, "websocket %s: %s takes a string, got %s", self.url,
         what, type(data))
  end
end

-- Sends a text message.  Returns true, or nil, message, code ("ESTATE"
-- when not open, "ELIMIT" when too much is queued).
function Conn:send(data)
  check_data(self, "send", data)
  return result(C.myc_ffi_ws_send(self._h, 0, data, #data))
end

function Conn:send_binary(data)
  check_data(self, "send_binary", data)
  return result(C.myc_ffi_ws_send(self._h, 1, data, #data))
end

function Conn:ping(data)
  data = data or ""
  check_data(self, "ping", data)
  return result(C.myc_ffi_ws_ping(self._h, data, #data))
end

-- Starts the close handshake (code 1000 or 3000-4999) and stops
-- reconnecting; on_close follows with info.reconnect_ms == nil.
function Conn:close(code, reason)
  reason = reason or ""
  return result(C.myc_ffi_ws_close(self._h, code or 1000, reason, #reason))
end

function Conn:pause() C.myc_ffi_ws_pause(self._h) end
function Conn:resume() C.myc_ffi_ws_resume(self._h) end
function Conn:state() return STATES[C.myc_ffi_ws_state(self._h)] end
function Conn:buffered() return C.myc_ffi_ws_buffered(self._h) end

M.Conn = Conn
return M
