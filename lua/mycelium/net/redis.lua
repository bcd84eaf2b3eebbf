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
local events = require "mycelium.events"

local C = cdefs.library()
local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local pairs, ipairs = pairs, ipairs
local format, ffi_string = string.format, ffi.string
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume
local floor, setmetatable = math.floor, setmetatable

local EV_REPLY, EV_UP, EV_DOWN, EV_CLOSED = 1, 2, 3, 4
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

local Client = {}
Client.__index = Client

local function fail(self, level, fmt, ...)
  error(format("service '%s': redis %s: " .. fmt, self.service, self.server, ...), level + 1)
end

-- Scratch argument arrays, grown on demand (one Lua state, one thread).
local argv_cap, argv, lens = 0, nil, nil
local function scratch(n)
  if n > argv_cap then
    argv_cap = n < 16 and 16 or n
    argv = ffi.new("const char *[?]", argv_cap)
    lens = ffi.new("size_t[?]", argv_cap)
  end
end

-- Hands an outcome to whoever waits for it: a callback or a coroutine.
local function complete(waiter, value, err, code)
  if type(waiter) == "function" then
    return waiter(value, err, code)
  end
  local ok, e = co_resume(waiter, value, err, code)
  if not ok then
    error(debug.traceback(waiter, e), 0)
  end
end

local function on_reply(self, ev)
  local id = tonumber(ev.id)
  local waiter = self.waiting[id]
  self.waiting[id] = nil
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

local function on_event(self, code, addr)
  local ev = ffi.cast("const myc_redis_event *", addr)
  if code == EV_REPLY then
    return on_reply(self, ev)
  end
  local log, on_state = self.log, self.on_state
  if code == EV_UP then
    if log then
      log:info("redis: connected", { server = self.server, after_failures = self.failures })
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
    C.myc_ffi_redis_free(ffi.gc(self.c, nil))
    self.c = nil
    if on_state then on_state("closed") end
  end
end

-- Connects to 'url' (redis://[[user]:password@]host[:port][/db]) for the
-- service of 'ctx'.  opts: password, connect_timeout_ms,
-- command_timeout_ms, reconnect_min_ms, reconnect_max_ms, max_pending,
-- on_state(state, err) ("up", "down", "closed"), log (default true).
-- Returns the client at once (it connects in the background and keeps
-- reconnecting), or nil, message, code for a bad URL or option value.
function M.connect(ctx, url, opts)
  if type(ctx) ~= "table" or type(ctx.name) ~= "string" then
    error("redis.connect: the first argument must be the service's ctx", 2)
  end
  local name = ctx.name
  local function bad(fmt, ...)
    error(format("service '%s': redis.connect: " .. fmt, name, ...), 3)
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

  local o = ffi.new("myc_redis_options")
  o.password = opts.password
  for _, k in ipairs { "connect_timeout_ms", "command_timeout_ms", "reconnect_min_ms",
                       "reconnect_max_ms", "max_pending" } do
    o[k] = opts[k] or 0
  end
  local out, err = ffi.new("myc_redis *[1]"), ffi.new("char[512]")
  local rc = C.myc_ffi_redis_open(svc, self.source, url, o, out, err, 512)
  if rc ~= 0 then
    events.unregister(self.source)
    return nil, ffi_string(err), cdefs.err_name(rc)
  end
  -- Without a close, the client goes with the service's Lua state.
  self.c = ffi.gc(out[0], C.myc_ffi_redis_free)
  self.server = ffi_string(C.myc_ffi_redis_server(out[0]))
  return self
end

local function closed(self)
  return nil, format("redis %s: client closed", self.server), "ESTATE"
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
  if cb ~= nil and type(cb) ~= "function" then
    fail(self, level, "command: the callback must be a function, got %s", type(cb))
  end
  local waiter = cb
  if waiter == nil then
    waiter = co_running()
    if waiter == nil then
      fail(self, level, "command: pass a callback, or call it from a coroutine")
    end
  end
  local c = self.c
  if c == nil then return closed(self) end
  local n = #args
  if n == 0 then fail(self, level, "command: args is empty") end
  scratch(n)
  local keep = nil -- strings made from numbers must outlive the call
  for i = 1, n do
    local a = args[i]
    local ta = type(a)
    if ta == "number" then
      a = (a == floor(a) and a >= -MAX_EXACT and a <= MAX_EXACT) and format("%d", a)
          or format("%.17g", a)
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

-- Closes gracefully: commands already sent still get their replies, new
-- ones fail, then on_state("closed").  Idempotent.
function Client:close()
  if self.c ~= nil and not self.closing then
    self.closing = true
    C.myc_ffi_redis_close(self.c)
  end
  return true
end

-- "connecting", "up", "down", "closing" or "closed".
function Client:state()
  if self.c == nil then return "closed" end
  return ffi_string(C.myc_ffi_redis_state(self.c))
end

-- Commands issued whose outcome has not come yet.
function Client:pending()
  if self.c == nil then return 0 end
  return C.myc_ffi_redis_pending(self.c)
end

return M
