-- mycelium.net.redis -- the Redis client of services (docs/REDIS.md): the
-- engine's asynchronous client (engine/src/net/redis_client.c) on the
-- service's worker loop.  Replies come back as Lua values, to a callback
-- or to the coroutine that issued the command.
--
--   local redis = require "mycelium.net.redis"
--   local r = assert(redis.connect(ctx, "redis://127.0.0.1:6379/0"))
--   r:set("k", "v", function(ok, err) end)
--   coroutine.wrap(function() local v, err = r:get("k") end)()
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.need("net")
local client = require "mycelium.net.client"

local C = cdefs.library()
local type, tonumber, error, select = type, tonumber, error, select
local ipairs = ipairs
local format, ffi_string = string.format, ffi.string
local co_yield, setmetatable = coroutine.yield, setmetatable
local fail, complete = client.fail, client.complete

local T_STRING, T_ARRAY, T_INTEGER, T_NIL, T_STATUS, T_ERROR = 1, 2, 3, 4, 5, 6
local EINVAL = cdefs.E.EINVAL
local MAX_EXACT = 2 ^ 53

local M = {}

-- Stands for a nil inside an array reply (MGET of a missing key), where a
-- Lua nil would cut the array short.
M.null = setmetatable({}, { __tostring = function() return "redis.null" end,
                            __newindex = function() error("redis.null is read-only", 2) end })

local OPTIONS = { password = "string", connect_timeout_ms = "number",
                  command_timeout_ms = "number", reconnect_min_ms = "number",
                  reconnect_max_ms = "number", max_pending = "number",
                  on_state = "function", log = "boolean" }

local view = ffi.new("myc_redis_value")

-- Converts reply node 'r'.  A top-level error reply gives nil, message.
local function convert(r, nested)
  C.myc_ffi_redis_reply_view(r, view)
  local t = view.type
  if t == T_STRING or t == T_STATUS then
    return ffi_string(view.str, view.len)
  elseif t == T_INTEGER then
    local i = view.integer
    -- Exact as a Lua number up to 2^53; beyond, an int64_t cdata.
    if i <= MAX_EXACT and i >= -MAX_EXACT then return tonumber(i) end
    return i
  elseif t == T_NIL then
    if nested then return M.null end
    return nil
  elseif t == T_ERROR then
    local msg = ffi_string(view.str, view.len)
    if nested then return { err = msg } end
    return nil, msg
  end
  local n, out = tonumber(view.elements), {}
  for i = 1, n do
    out[i] = convert(C.myc_ffi_redis_reply_element(r, i - 1), true)
  end
  return out
end

local Client = client.methods({})
Client.__index = Client

-- Scratch argument arrays, grown on demand (one Lua state, one thread).
local argv_cap, argv, lens = 0, nil, nil
local function scratch(n)
  if n > argv_cap then
    argv_cap = n < 16 and 16 or n
    argv = ffi.new("const char *[?]", argv_cap)
    lens = ffi.new("size_t[?]", argv_cap)
  end
end

local function on_reply(self, ev)
  local waiter = client.take(self, tonumber(ev.id))
  if waiter == nil then return end
  if ev.status ~= 0 then
    return complete(waiter, nil, ffi_string(ev.error),
                    cdefs.err_name(ev.status))
  end
  local value, err = convert(ev.reply, false)
  if err ~= nil then
    -- The error's first word is its kind (ERR, WRONGTYPE, NOSCRIPT...).
    return complete(waiter, nil, format("redis %s: %s", self.server, err),
                    err:match("^(%S+)"))
  end
  return complete(waiter, value, nil, nil)
end

-- Connects to 'url' (redis://[[user]:password@]host[:port][/db]) for the
-- service of 'ctx'.  opts: password, connect_timeout_ms,
-- command_timeout_ms, reconnect_min_ms, reconnect_max_ms, max_pending,
-- on_state(state, err) ("up", "down", "closed"), log (default true).
-- Returns the client at once (it connects in the background and keeps
-- reconnecting), or nil, message, code for a bad URL or option value.
local DRIVER = {
  kind = "redis", options = OPTIONS, event = "const myc_redis_event *",
  on_outcome = on_reply, free = C.myc_ffi_redis_free, close = C.myc_ffi_redis_close,
  state = C.myc_ffi_redis_state, pending = C.myc_ffi_redis_pending,
  server = C.myc_ffi_redis_server,
}

function DRIVER.open(svc, source, url, opts)
  local o = ffi.new("myc_redis_options")
  o.password = opts.password
  for _, k in ipairs { "connect_timeout_ms", "command_timeout_ms", "reconnect_min_ms",
                       "reconnect_max_ms", "max_pending" } do
    o[k] = opts[k] or 0
  end
  local out, err = ffi.new("myc_redis *[1]"), ffi.new("char[512]")
  local rc = C.myc_ffi_redis_open(svc, source, url, o, out, err, 512)
  return rc, out[0], rc ~= 0 and ffi_string(err) or nil
end

function M.connect(ctx, url, opts)
  local r, err, code = client.connect(DRIVER, Client, ctx, url, opts)
  return r, err, code
end


-- Issues command 'args' ({ "SET", key, value, ... }: strings, binary-safe,
-- or numbers).  With 'cb', returns true and later calls cb(reply, err,
-- code); without, inside a coroutine, waits and returns reply, err, code.
-- A reply is a string, a number (int64_t cdata beyond 2^53), nil, or an
-- array (redis.null for nil elements, { err = msg } for error elements);
-- status replies are strings ("OK").  Failures are nil, message naming the
-- server, code ("ECONNREFUSED", "ETIMEDOUT", "ENOTCONN", ... or the
-- server's error kind such as "ERR", "WRONGTYPE").
local function command(self, args, cb, level)
  if type(args) ~= "table" then
    fail(self, level, "command: args must be a table, got %s", type(args))
  end
  local waiter = client.waiter(self, cb, level, "command")
  local c = self.c
  if c == nil then return client.closed(self) end
  local n = #args
  if n == 0 then fail(self, level, "command: args is empty") end
  scratch(n)
  local keep = nil -- strings made from numbers must outlive the call
  for i = 1, n do
    local a = args[i]
    local ta = type(a)
    if ta == "number" then
      a = client.number_text(a)
      keep = keep or {}
      keep[i] = a
    elseif ta ~= "string" then
      fail(self, level, "command: argument %d must be a string or a number, got %s", i, ta)
    end
    argv[i - 1], lens[i - 1] = a, #a
  end
  local id = C.myc_ffi_redis_command(c, n, argv, lens)
  if id < 0 then
    local rc = tonumber(id)
    local msg = ffi_string(C.myc_ffi_redis_error(c))
    if rc == EINVAL then fail(self, level, "%s", (msg:gsub("^redis [^ ]+ ", ""))) end
    return nil, msg, cdefs.err_name(rc)
  end
  self.waiting[tonumber(id)] = waiter
  if cb ~= nil then return true end
  return co_yield()
end

function Client:command(args, cb)
  return command(self, args, cb, 2)
end

-- r:NAME(arg..., [cb]) is r:command({ "NAME", arg... }, cb).
local function call(self, name, ...)
  local n = select("#", ...)
  local cb = n > 0 and select(n, ...) or nil
  if type(cb) == "function" then n = n - 1 else cb = nil end
  local args = { name }
  for i = 1, n do
    local a = select(i, ...)
    if a == nil then
      fail(self, 3, "%s: argument %d is nil", name:lower(), i)
    end
    args[i + 1] = a
  end
  return command(self, args, cb, 3)
end

for _, name in ipairs { "get", "set", "del", "exists", "expire", "ttl", "incr",
                        "incrby", "decr", "mget", "mset", "setnx", "hget", "hset",
                        "hdel", "hmget", "hincrby", "hexists", "hkeys", "lpush",
                        "rpush", "lrange", "sadd", "srem", "smembers",
                        "sismember", "publish", "ping" } do
  local upper = name:upper()
  Client[name] = function(self, ...) return call(self, upper, ...) end
end

local function to_map(list)
  if type(list) ~= "table" then return list end
  local map = {}
  for i = 1, #list, 2 do map[list[i]] = list[i + 1] end
  return map
end

-- r:hgetall(key, [cb]): the hash as a table field -> value.
function Client:hgetall(key, cb)
  if cb ~= nil and type(cb) ~= "function" then
    fail(self, 2, "hgetall: the callback must be a function, got %s", type(cb))
  end
  if key == nil then fail(self, 2, "hgetall: argument 1 is nil") end
  if cb ~= nil then
    return command(self, { "HGETALL", key }, function(v, err, code)
      return cb(to_map(v), err, code)
    end, 2)
  end
  local v, err, code = command(self, { "HGETALL", key }, nil, 2)
  return to_map(v), err, code
end

return M
