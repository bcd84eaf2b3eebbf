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
local client = require "mycelium.net.client"

local C = cdefs.library()
local type, tonumber, error = type, tonumber, error
local ipairs = ipairs
local ffi_string = ffi.string
local co_yield, setmetatable = coroutine.yield, setmetatable
local fail, complete = client.fail, client.complete

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

local Client = client.methods({})
Client.__index = Client

local function on_result(self, ev)
  local waiter = client.take(self, tonumber(ev.id))
  if waiter == nil then return end
  if ev.status ~= 0 then
    local state = ffi_string(ev.sqlstate)
    -- A server error's code is its SQLSTATE ("42P01": no such table).
    return complete(waiter, nil, ffi_string(ev.error),
                    state ~= "" and state or cdefs.err_name(ev.status))
  end
  return complete(waiter, convert(ev.result), nil, nil)
end

-- Connects to 'url' (postgresql://[user[:password]@]host[:port][/db][?k=v],
-- or "host=... dbname=..." as libpq takes it) for the service of 'ctx'.
-- opts: connect_timeout_ms, query_timeout_ms, reconnect_min_ms,
-- reconnect_max_ms, max_pending, on_state(state, err) ("up", "down",
-- "closed"), log (default true).  Returns the client at once (it connects
-- in the background and keeps reconnecting), or nil, message, code for a
-- bad URL or option value.
local DRIVER = {
  kind = "postgres", options = OPTIONS, event = "const myc_pg_event *",
  on_outcome = on_result, free = C.myc_ffi_pg_free, close = C.myc_ffi_pg_close,
  state = C.myc_ffi_pg_state, pending = C.myc_ffi_pg_pending, server = C.myc_ffi_pg_server,
}

function DRIVER.open(svc, source, url, opts)
  local o = ffi.new("myc_pg_options")
  for _, k in ipairs { "connect_timeout_ms", "query_timeout_ms", "reconnect_min_ms",
                       "reconnect_max_ms", "max_pending" } do
    o[k] = opts[k] or 0
  end
  local out, err = ffi.new("myc_pg *[1]"), ffi.new("char[512]")
  local rc = C.myc_ffi_pg_open(svc, source, url, o, out, err, 512)
  return rc, out[0], rc ~= 0 and ffi_string(err) or nil
end

function M.connect(ctx, url, opts)
  local db, err, code = client.connect(DRIVER, Client, ctx, url, opts)
  return db, err, code
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
  local waiter = client.waiter(self, cb, 2, "query")
  local c = self.c
  if c == nil then return client.closed(self) end
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
      a = client.number_text(a)
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

return M
