-- mycelium.net.postgres -- the PostgreSQL client of services
-- (docs/POSTGRES.md): the engine's asynchronous client
-- (engine/src/net/pg_client.c, libpq's non-blocking API) on the service's
-- worker loop.  Results come back as Lua tables, to a callback or to the
-- coroutine that issued the query.
--
--   local postgres = require "mycelium.net.postgres"
--   local db = assert(postgres.connect(ctx, "postgresql://u@127.0.0.1:5432/db"))
--   db:query("SELECT symbol FROM t WHERE address = $1", { addr },
--            function(rows, err, code) end)
--   coroutine.wrap(function() local rows, err = db:query("SELECT 1") end)()
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.need("net")
local events = require "mycelium.events"

local C = cdefs.library()
local type, tostring, tonumber, error = type, tostring, tonumber, error
local pairs, ipairs = pairs, ipairs
local format, ffi_string = string.format, ffi.string
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume
local floor, setmetatable = math.floor, setmetatable

local EV_RESULT, EV_UP, EV_DOWN, EV_CLOSED = 1, 2, 3, 4
local EINVAL = cdefs.E.EINVAL
local MAX_EXACT = 2 ^ 53

local M = {}

-- Stands for SQL NULL in a row (a Lua nil would make the column vanish),
-- and may be passed as a parameter.
M.null = setmetatable({}, { __tostring = function() return "postgres.null" end,
                            __newindex = function() error("postgres.null is read-only", 2) end })

local OPTIONS = { connect_timeout_ms = "number", query_timeout_ms = "number",
                  reconnect_min_ms = "number", reconnect_max_ms = "number",
                  max_pending = "number", on_state = "function", log = "boolean" }

-- Type OIDs (pg_type) turned into Lua values; all others stay text
-- (numeric too: a double would round it).
local BOOL, INT8, INT2, INT4, OID, FLOAT4, FLOAT8 = 16, 20, 21, 23, 26, 700, 701

local info = ffi.new("myc_pg_result_info")
local len = ffi.new("size_t[1]")

local function convert_value(p, n, oid)
  local s = ffi_string(p, n)
  if oid == INT4 or oid == INT2 or oid == OID or oid == FLOAT4 or oid == FLOAT8 then
    return tonumber(s) or s
  elseif oid == INT8 then
    local v = tonumber(s)
    if v and v < MAX_EXACT and v > -MAX_EXACT then return v end
    return s -- beyond 2^53: the exact text
  elseif oid == BOOL then
    return s == "t"
  end
  return s
end

-- A result as { { col = value, ... }, ..., affected = n, columns = {...} }.
local function convert(r)
  C.myc_ffi_pg_result_info(r, info)
  local rows, cols = info.rows, info.cols
  local names, oids = {}, {}
  for j = 0, cols - 1 do
    names[j + 1] = ffi_string(C.myc_ffi_pg_result_name(r, j))
    oids[j + 1] = C.myc_ffi_pg_result_type(r, j)
  end
  local out = { columns = names }
  if info.affected >= 0 then out.affected = tonumber(info.affected) end
  for i = 0, rows - 1 do
    local row = {}
    for j = 0, cols - 1 do
      local p = C.myc_ffi_pg_result_value(r, i, j, len)
      if p == nil then
        row[names[j + 1]] = M.null
      else
        row[names[j + 1]] = convert_value(p, len[0], oids[j + 1])
      end
    end
    out[i + 1] = row
  end
  return out
end

local Client = {}
Client.__index = Client

local function fail(self, level, fmt, ...)
  error(format("service '%s': postgres %s: " .. fmt, self.service, self.server, ...), level + 1)
end

local function complete(waiter, value, err, code)
  if type(waiter) == "function" then
    return waiter(value, err, code)
  end
  local ok, e = co_resume(waiter, value, err, code)
  if not ok then
    error(debug.traceback(waiter, e), 0)
  end
end

local function on_result(self, ev)
  local id = tonumber(ev.id)
  local waiter = self.waiting[id]
  self.waiting[id] = nil
  if waiter == nil then return end
  if ev.status ~= 0 then
    local state = ffi_string(ev.sqlstate)
    -- A server error's code is its SQLSTATE ("42P01": no such table).
    return complete(waiter, nil, ffi_string(ev.error),
                    state ~= "" and state or cdefs.err_name(ev.status))
  end
  return complete(waiter, convert(ev.result), nil, nil)
end

local function on_event(self, code, addr)
  local ev = ffi.cast("const myc_pg_event *", addr)
  if code == EV_RESULT then
    return on_result(self, ev)
  end
  local log, on_state = self.log, self.on_state
  if code == EV_UP then
    if log then
      log:info("postgres: connected", { server = self.server, after_failures = self.failures })
    end
    self.failures = 0
    if on_state then on_state("up") end
  elseif code == EV_DOWN then
    local msg = ffi_string(ev.error)
    self.failures = self.failures + 1
    if log then
      local level = self.failures == 1 and "warn" or "debug"
      log[level](log, msg, { server = self.server, retry_ms = ev.retry_ms,
                             failures = self.failures })
    end
    if on_state then on_state("down", msg) end
  elseif code == EV_CLOSED then
    events.unregister(self.source)
    C.myc_ffi_pg_free(ffi.gc(self.c, nil))
    self.c = nil
    if on_state then on_state("closed") end
  end
end

-- Connects to 'url' (postgresql://[user[:password]@]host[:port][/db][?k=v],
-- or "host=... dbname=..." as libpq takes it) for the service of 'ctx'.
-- opts: connect_timeout_ms, query_timeout_ms, reconnect_min_ms,
-- reconnect_max_ms, max_pending, on_state(state, err) ("up", "down",
-- "closed"), log (default true).  Returns the client at once (it connects
-- in the background and keeps reconnecting), or nil, message, code for a
-- bad URL or option value.
function M.connect(ctx, url, opts)
  if type(ctx) ~= "table" or type(ctx.name) ~= "string" then
    error("postgres.connect: the first argument must be the service's ctx", 2)
  end
  local name = ctx.name
  local function bad(fmt, ...)
    error(format("service '%s': postgres.connect: " .. fmt, name, ...), 3)
  end
  if type(url) ~= "string" then bad("url must be a string, got %s", type(url)) end
  if opts ~= nil and type(opts) ~= "table" then
    bad("opts must be a table, got %s", type(opts))
  end
  opts = opts or {}
  for k, v in pairs(opts) do
    if OPTIONS[k] == nil then bad("unknown option '%s'", tostring(k)) end
    if type(v) ~= OPTIONS[k] then
      bad("option '%s' must be a %s, got %s", k, OPTIONS[k], type(v))
    end
    if OPTIONS[k] == "number" and (v < 1 or v > 0xffffffff or floor(v) ~= v) then
      bad("option '%s' must be a positive integer, got %s", k, tostring(v))
    end
  end
  local svc = events.service()
  if svc == nil then bad("only a running service can connect") end

  local self = setmetatable({ service = name, waiting = {}, failures = 0,
                              on_state = opts.on_state }, Client)
  if opts.log ~= false then self.log = ctx.log end
  self.source = events.register(function(code, addr) return on_event(self, code, addr) end)

  local o = ffi.new("myc_pg_options")
  for _, k in ipairs { "connect_timeout_ms", "query_timeout_ms", "reconnect_min_ms",
                       "reconnect_max_ms", "max_pending" } do
    o[k] = opts[k] or 0
  end
  local out, err = ffi.new("myc_pg *[1]"), ffi.new("char[512]")
  local rc = C.myc_ffi_pg_open(svc, self.source, url, o, out, err, 512)
  if rc ~= 0 then
    events.unregister(self.source)
    return nil, ffi_string(err), cdefs.err_name(rc)
  end
  self.c = ffi.gc(out[0], C.myc_ffi_pg_free)
  self.server = ffi_string(C.myc_ffi_pg_server(out[0]))
  return self
end

-- Scratch parameter arrays, grown on demand (one Lua state, one thread).
local cap, values, lens = 0, nil, nil

-- Runs 'sql' ($1, $2... placeholders) with 'params' (strings, numbers,
-- booleans or postgres.null; may be omitted).  Each distinct SQL text is
-- prepared once per connection.  With 'cb', returns true and later calls
-- cb(rows, err, code); without, inside a coroutine, waits and returns
-- rows, err, code.  rows: an array of { column = value } (int2/4/8 up to
-- 2^53, float4/8 and oid as numbers, bool as booleans, SQL NULL as
-- postgres.null, all else text), with rows.columns (names in order) and
-- rows.affected (rows a command changed).  Failures: nil, message naming
-- the server, code (the SQLSTATE such as "42P01" for a server error;
-- "ETIMEDOUT", "ECONNREFUSED", "ENOTCONN", ... otherwise).
function Client:query(sql, params, cb)
  if type(params) == "function" and cb == nil then params, cb = nil, params end
  if type(sql) ~= "string" then fail(self, 2, "query: sql must be a string, got %s", type(sql)) end
  if params ~= nil and type(params) ~= "table" then
    fail(self, 2, "query: params must be a table, got %s", type(params))
  end
  if cb ~= nil and type(cb) ~= "function" then
    fail(self, 2, "query: the callback must be a function, got %s", type(cb))
  end
  local waiter = cb
  if waiter == nil then
    waiter = co_running()
    if waiter == nil then fail(self, 2, "query: pass a callback, or call it from a coroutine") end
  end
  local c = self.c
  if c == nil then return nil, format("postgres %s: client closed", self.server), "ESTATE" end
  local n = params and (params.n or #params) or 0
  if n > cap then
    cap = n < 16 and 16 or n
    values = ffi.new("const char *[?]", cap)
    lens = ffi.new("size_t[?]", cap)
  end
  local keep = {} -- strings made here must outlive the call
  for i = 1, n do
    local a = params[i]
    local ta = type(a)
    if a == M.null then
      a = nil
    elseif ta == "number" then
      a = (a == floor(a) and a >= -MAX_EXACT and a <= MAX_EXACT) and format("%d", a)
          or format("%.17g", a)
    elseif ta == "boolean" then
      a = a and "t" or "f"
    elseif ta ~= "string" then
      fail(self, 2, "query: parameter %d must be a string, number, boolean or postgres.null, got %s",
           i, ta)
    end
    keep[i] = a
    values[i - 1], lens[i - 1] = a, a and #a or 0
  end
  local id = C.myc_ffi_pg_query(c, sql, n, values, lens)
  if id < 0 then
    local rc = tonumber(id)
    local msg = ffi_string(C.myc_ffi_pg_error(c))
    if rc == EINVAL then fail(self, 2, "query: %s", (msg:gsub("^postgres [^ ]+ ", ""))) end
    return nil, msg, cdefs.err_name(rc)
  end
  self.waiting[tonumber(id)] = waiter
  if cb ~= nil then return true end
  return co_yield()
end

-- Closes gracefully: queries accepted still run, new ones fail, then
-- on_state("closed").  Idempotent.
function Client:close()
  if self.c ~= nil and not self.closing then
    self.closing = true
    C.myc_ffi_pg_close(self.c)
  end
  return true
end

-- "connecting", "up", "down", "closing" or "closed".
function Client:state()
  if self.c == nil then return "closed" end
  return ffi_string(C.myc_ffi_pg_state(self.c))
end

-- Queries issued whose outcome has not come yet.
function Client:pending()
  if self.c == nil then return 0 end
  return C.myc_ffi_pg_pending(self.c)
end

return M
