-- mycelium.net.redis_cache -- a read-through cache in front of a slow source
-- (an eth_call, a file), shared by instances through Redis: the service's
-- own memory first, then Redis, then the loader, and what the loader
-- learns is written back to Redis for every other instance.
--
--   local cache = redis_cache.new(ctx, { redis = r, prefix = "bandit:token:",
--                                        ttl = 86400 })
--   cache:get(addr, function(key, done) ... done(meta) end,
--             function(meta, err, source) end)
--
-- Redis is an optimisation, never a dependency: when it is down, slow or
-- holds garbage, get() goes on to the loader (and counts it).
local type, tostring, error, pcall, select, pairs = type, tostring, error, pcall, select, pairs
local format, setmetatable, floor = string.format, setmetatable, math.floor
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume

local M = {}

local Cache = {}
Cache.__index = Cache

local function codec_of(c, name)
  if type(c) == "table" then
    if type(c.encode) ~= "function" or type(c.decode) ~= "function" then
      error(format("service '%s': redis_cache.new: codec needs encode and decode functions",
                   name), 4)
    end
    return c
  elseif c == nil or c == "json" then
    local cjson = require("cjson").new()
    cjson.encode_sparse_array(true)
    return { encode = cjson.encode, decode = cjson.decode }
  elseif c == "msgpack" then
    local core = require "mycelium.core"
    return { encode = core.pack, decode = core.unpack }
  elseif c == "string" then
    local function same(v)
      if type(v) ~= "string" then error("the string codec stores strings, got " .. type(v)) end
      return v
    end
    return { encode = same, decode = same }
  end
  error(format("service '%s': redis_cache.new: unknown codec '%s' (json, msgpack, string, "
               .. "or {encode, decode})", name, tostring(c)), 4)
end

-- Creates a cache for the service of 'ctx'.  opts: redis (a client from
-- mycelium.net.redis, or nil for a cache in memory only), prefix (of the Redis
-- keys, default "mycelium:cache:"), ttl (seconds the written-back values
-- live in Redis; nil: forever), codec ("json" default, "msgpack",
-- "string", or { encode, decode }), max_local (entries kept in memory,
-- default 10000).
function M.new(ctx, opts)
  if type(ctx) ~= "table" or type(ctx.name) ~= "string" then
    error("redis_cache.new: the first argument must be the service's ctx", 2)
  end
  local name = ctx.name
  local function bad(fmt, ...)
    error(format("service '%s': redis_cache.new: " .. fmt, name, ...), 3)
  end
  opts = opts or {}
  if type(opts) ~= "table" then bad("opts must be a table, got %s", type(opts)) end
  local r, prefix, ttl, max_local = opts.redis, opts.prefix, opts.ttl, opts.max_local
  if r ~= nil and (type(r) ~= "table" or type(r.command) ~= "function") then
    bad("redis must be a client made with mycelium.net.redis, got %s", type(r))
  end
  if prefix ~= nil and type(prefix) ~= "string" then
    bad("prefix must be a string, got %s", type(prefix))
  end
  if ttl ~= nil and (type(ttl) ~= "number" or ttl < 1 or floor(ttl) ~= ttl) then
    bad("ttl must be a positive whole number of seconds, got %s", tostring(ttl))
  end
  if max_local ~= nil and (type(max_local) ~= "number" or max_local < 2) then
    bad("max_local must be a number >= 2, got %s", tostring(max_local))
  end
  return setmetatable({
    name = name, log = ctx.log, redis = r, prefix = prefix or "mycelium:cache:",
    ttl = ttl, codec = codec_of(opts.codec, name),
    half = floor((max_local or 10000) / 2), young = {}, old = {}, n_young = 0,
    waiting = {}, -- key -> callbacks of the gets in progress
    stats = { local_hits = 0, redis_hits = 0, loads = 0, load_failures = 0,
              redis_errors = 0, decode_errors = 0, writes = 0, write_errors = 0 },
  }, Cache)
end

local CACHE_KEYS = { prefix = true, ttl = true, codec = true, max_local = true }

-- The usual way from a service's options: 'spec' is nil (a cache in
-- memory only), a URL, or a table with 'url', the cache's options
-- (prefix, ttl, codec, max_local) and the client's (see
-- mycelium.net.redis); 'defaults' fills what 'spec' leaves out.  Connects
-- when there is a URL.  Returns the cache (its client in cache.redis), or
-- nil, message, code for a bad URL.
--
--   cache = assert(redis_cache.open(ctx, opts.redis, { prefix = "bandit:token:" }))
function M.open(ctx, spec, defaults)
  if type(ctx) ~= "table" or type(ctx.name) ~= "string" then
    error("redis_cache.open: the first argument must be the service's ctx", 2)
  end
  if spec ~= nil and type(spec) ~= "string" and type(spec) ~= "table" then
    error(format("service '%s': redis_cache.open: the Redis option must be a URL or a "
                 .. "table, got %s", ctx.name, type(spec)), 2)
  end
  if type(spec) == "string" then spec = { url = spec } end
  local copts, ropts = {}, {}
  for k, v in pairs(defaults or {}) do copts[k] = v end
  for k, v in pairs(spec or {}) do
    if CACHE_KEYS[k] then copts[k] = v elseif k ~= "url" then ropts[k] = v end
  end
  if spec ~= nil then
    if type(spec.url) ~= "string" then
      error(format("service '%s': redis_cache.open: url must be a string, got %s",
                   ctx.name, type(spec.url)), 2)
    end
    local r, err, code = require("mycelium.net.redis").connect(ctx, spec.url, ropts)
    if r == nil then return nil, err, code end
    copts.redis = r
  end
  local cache = M.new(ctx, copts)
  cache.owns_redis = spec ~= nil
  return cache
end

-- ---- memory: two generations, so the bound costs no bookkeeping per hit.

local function remember(self, key, value)
  if self.young[key] == nil then
    self.n_young = self.n_young + 1
    if self.n_young > self.half then
      -- The older half goes: what was used since the last turn survives.
      self.old, self.young, self.n_young = self.young, {}, 1
    end
  end
  self.young[key] = value
end

local function recall(self, key)
  local v = self.young[key]
  if v == nil then
    v = self.old[key]
    if v ~= nil then remember(self, key, v) end
  end
  return v
end

-- ---- completion

local function finish(self, key, value, err, source)
  local cbs = self.waiting[key]
  self.waiting[key] = nil
  local first_err
  -- Every waiter gets its answer even if one of them raises.
  for i = 1, #cbs do
    local ok, e = pcall(cbs[i], value, err, source)
    if not ok and first_err == nil then first_err = e end
  end
  if first_err ~= nil then error(first_err, 0) end
end

local function write_back(self, key, value)
  local r = self.redis
  if r == nil then return end
  local ok, data = pcall(self.codec.encode, value)
  if not ok then
    self.stats.write_errors = self.stats.write_errors + 1
    self.log:warn("redis_cache: cannot encode the value of " .. key, { error = tostring(data) })
    return
  end
  local args = { "SET", self.prefix .. key, data }
  if self.ttl then args[4], args[5] = "EX", self.ttl end
  local stats = self.stats
  local sent, err = r:command(args, function(_, e)
    if e then stats.write_errors = stats.write_errors + 1 else stats.writes = stats.writes + 1 end
  end)
  if not sent then
    stats.write_errors = stats.write_errors + 1
    self.log:debug("redis_cache: write-back skipped", { key = key, error = err })
  end
end

local function load(self, key, loader)
  self.stats.loads = self.stats.loads + 1
  local called = false
  local function done(value, err)
    if called then return end -- a loader that answers twice: the first wins
    called = true
    if value == nil then
      self.stats.load_failures = self.stats.load_failures + 1
      return finish(self, key, nil, err or "not found", "loader")
    end
    remember(self, key, value)
    write_back(self, key, value)
    return finish(self, key, value, nil, "loader")
  end
  local ok, e = pcall(loader, key, done)
  if not ok and not called then
    return done(nil, format("loader failed: %s", tostring(e)))
  end
end

local function from_redis(self, key, loader)
  local stats = self.stats
  local sent, err = self.redis:command({ "GET", self.prefix .. key }, function(data, e)
    if e ~= nil then
      stats.redis_errors = stats.redis_errors + 1
      return load(self, key, loader)
    end
    if data == nil then return load(self, key, loader) end
    local ok, value = pcall(self.codec.decode, data)
    if not ok or value == nil then
      -- Garbage under our key: the loader's answer will overwrite it.
      stats.decode_errors = stats.decode_errors + 1
      self.log:warn("redis_cache: undecodable value in Redis", { key = self.prefix .. key })
      return load(self, key, loader)
    end
    stats.redis_hits = stats.redis_hits + 1
    remember(self, key, value)
    return finish(self, key, value, nil, "redis")
  end)
  if not sent then
    stats.redis_errors = stats.redis_errors + 1
    self.log:debug("redis_cache: Redis skipped", { key = key, error = err })
    return load(self, key, loader)
  end
end

local function fail(self, fmt, ...)
  error(format("service '%s': redis_cache: " .. fmt, self.name, ...), 3)
end

-- Looks 'key' up: memory, then Redis, then loader(key, done), which calls
-- done(value) or done(nil, err) once, at once or later.  cb(value, err,
-- source) follows, source being "local", "redis" or "loader"; a memory hit
-- calls cb before get returns.  Concurrent gets of a key share one lookup.
-- A nil from the loader is a miss ("not found"), not cached.  Without cb,
-- inside a coroutine, get waits and returns value, err, source.
function Cache:get(key, loader, cb)
  if type(key) ~= "string" then fail(self, "get: key must be a string, got %s", type(key)) end
  if type(loader) ~= "function" then
    fail(self, "get: loader must be a function, got %s", type(loader))
  end
  if cb ~= nil and type(cb) ~= "function" then
    fail(self, "get: the callback must be a function, got %s", type(cb))
  end
  local co, result, suspended
  if cb == nil then
    co = co_running()
    if co == nil then fail(self, "get: pass a callback, or call it from a coroutine") end
    cb = function(...)
      if suspended then
        local ok, e = co_resume(co, ...)
        if not ok then error(debug.traceback(co, e), 0) end
      else
        result = { n = select("#", ...), ... }
      end
    end
  end
  local v = recall(self, key)
  if v ~= nil then
    self.stats.local_hits = self.stats.local_hits + 1
    cb(v, nil, "local")
  else
    local w = self.waiting[key]
    if w ~= nil then
      w[#w + 1] = cb
    else
      self.waiting[key] = { cb }
      if self.redis ~= nil then from_redis(self, key, loader) else load(self, key, loader) end
    end
  end
  if co == nil then return true end
  if result then return result[1], result[2], result[3] end
  suspended = true
  return co_yield()
end

-- The value in memory, or nil (never waits).
function Cache:peek(key)
  return recall(self, key)
end

-- Stores what the service learned some other way, and writes it back.
function Cache:put(key, value)
  if type(key) ~= "string" then fail(self, "put: key must be a string, got %s", type(key)) end
  if value == nil then fail(self, "put: value is nil") end
  remember(self, key, value)
  write_back(self, key, value)
end

-- Closes the Redis client if redis_cache.open() made it (gracefully:
-- write-backs already sent complete).
function Cache:close()
  if self.owns_redis then self.redis:close() end
end

-- Forgets 'key' here and in Redis.
function Cache:forget(key)
  if type(key) ~= "string" then fail(self, "forget: key must be a string, got %s", type(key)) end
  self.young[key], self.old[key] = nil, nil
  if self.redis ~= nil then
    self.redis:command({ "DEL", self.prefix .. key }, function() end)
  end
end

return M
