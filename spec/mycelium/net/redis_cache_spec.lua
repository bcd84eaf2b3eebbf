-- spec/mycelium/net/redis_cache_spec.lua -- mycelium.net.redis_cache in a service:
-- memory, then a real redis-server, then the loader, and the write-back.
local testing = require "mycelium.testing"
local redis_server = require "support.redis_server"
local cjson = require "cjson"

-- Answers "get" ({tag, key, mode}) through the cache and emits {tag, v,
-- err, source, calls} on "out".  The loader's modes: "ok" (at once),
-- "hold" (until a "release" for the key), "fail", "nil", "raise".
local SERVICE = [[
local redis = require "mycelium.net.redis"
local redis_cache = require "mycelium.net.redis_cache"
local M = { subscribe = { "get", "co", "release", "raw", "stats", "bad" } }
local r, cache
local calls, held = {}, {}

function M.init(ctx, opts)
  if opts.open then
    local err, code
    cache, err, code = redis_cache.open(ctx, opts.spec, { prefix = opts.prefix, ttl = 99 })
    if not cache then return ctx:emit("out", { tag = "open", err = err, code = code }) end
    r = cache.redis
    return
  end
  if opts.url then r = assert(redis.connect(ctx, opts.url, { reconnect_min_ms = 20 })) end
  cache = redis_cache.new(ctx, { redis = r, prefix = opts.prefix, ttl = opts.ttl,
                                 codec = opts.codec, max_local = opts.max_local })
end

local function loader(mode)
  return function(key, done)
    calls[key] = (calls[key] or 0) + 1
    if mode == "hold" then
      held[key] = held[key] or {}
      held[key][#held[key] + 1] = done
    elseif mode == "fail" then done(nil, "no such token")
    elseif mode == "nil" then done(nil)
    elseif mode == "raise" then error("loader bug")
    else done({ symbol = "SYM-" .. key, decimals = 18 }) end
  end
end

local function answer(ctx, req)
  return function(v, err, source)
    ctx:emit("out", { tag = req.tag, v = v, err = err, source = source,
                      calls = calls[req.key] or 0 })
  end
end

M.handlers = {
  get = function(ctx, msg)
    local req = msg.data
    cache:get(req.key, loader(req.mode), answer(ctx, req))
  end,
  co = function(ctx, msg)
    local req = msg.data
    coroutine.wrap(function()
      local v, err, source = cache:get(req.key, loader(req.mode))
      answer(ctx, req)(v, err, source)
    end)()
  end,
  release = function(ctx, msg)
    for _, done in ipairs(held[msg.data.key] or {}) do done({ symbol = "HELD", decimals = 6 }) end
    held[msg.data.key] = nil
  end,
  raw = function(ctx, msg)
    local req = msg.data
    r:command(req.args, function(v, err) ctx:emit("out", { tag = req.tag, v = v, err = err }) end)
  end,
  stats = function(ctx, msg)
    ctx:emit("out", { tag = "stats", v = cache.stats })
  end,
  bad = function(ctx, msg)
    if msg.data.what == "key" then cache:get(42, loader("ok"), print) end
    if msg.data.what == "nocb" then cache:get("k", loader("ok")) end
  end,
}
return M]]

local prefix_n = 0

describe("mycelium.net.redis_cache", function()
  local server, eng, out, prefix

  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)
  before_each(function()
    prefix_n = prefix_n + 1
    prefix = "spec" .. prefix_n .. ":"
  end)
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  local function start(opts)
    if eng then eng:close() end
    opts.prefix = opts.prefix or prefix
    eng = testing.engine {
      services = { { name = "meta", module = testing.module(SERVICE), opts = opts } },
      collect = { "out" },
      -- a handler that raises restarts the service: at once, here
      supervisor = { backoff_initial_ms = 0, max_restarts = 100 },
    }
    out = eng:collect("out")
    return eng
  end

  -- Sends 'req' on 'topic' and returns the next message on "out".
  local function ask(topic, req)
    local before = #out.all
    eng:publish(topic, req)
    eng:run_for(5, function()
      out:messages()
      return #out.all > before
    end)
    return out.all[before + 1] and out.all[before + 1].data
  end

  local function get(key, mode) return ask("get", { tag = key, key = key, mode = mode or "ok" }) end
  local function raw(...) return ask("raw", { tag = "raw", args = { ... } }).v end
  local function stats() return ask("stats", {}).v end

  it("loads a miss, writes it back with the ttl, then answers from memory", function()
    start { url = server.url, ttl = 60 }
    local a = get("0xabc")
    assert.are.same({ symbol = "SYM-0xabc", decimals = 18 }, a.v)
    assert.are.equal("loader", a.source)
    assert.are.equal(1, a.calls)
    assert.are.same({ symbol = "SYM-0xabc", decimals = 18 }, cjson.decode(raw("GET", prefix .. "0xabc")))
    local ttl = raw("TTL", prefix .. "0xabc")
    assert.is_true(ttl > 55 and ttl <= 60)
    local b = get("0xabc")
    assert.are.equal("local", b.source)
    assert.are.equal(1, b.calls)
    local st = stats()
    assert.are.equal(1, st.local_hits)
    assert.are.equal(1, st.loads)
    assert.are.equal(1, st.writes)
  end)

  it("answers from Redis what another instance learned", function()
    start { url = server.url }
    get("0xdef")
    eng:run_for(0.2, function() return stats().writes == 1 end)
    start { url = server.url } -- a fresh instance: empty memory
    local a = get("0xdef")
    assert.are.equal("redis", a.source)
    assert.are.equal(0, a.calls)
    assert.are.same({ symbol = "SYM-0xdef", decimals = 18 }, a.v)
    assert.are.equal(-1, raw("TTL", prefix .. "0xdef")) -- no ttl: kept
  end)

  it("shares one lookup between concurrent gets of a key", function()
    start { url = server.url }
    for _, tag in ipairs { "a", "b", "c" } do
      eng:publish("get", { tag = tag, key = "0x1", mode = "hold" })
    end
    local function answers()
      local list = {}
      for _, m in ipairs(out.all) do
        if m.data.tag ~= "stats" then list[#list + 1] = m.data end
      end
      return list
    end
    eng:run_for(5, function() return stats().loads == 1 end)
    assert.are.equal(0, #answers()) -- all three wait for the one load
    eng:publish("release", { key = "0x1" })
    eng:run_for(5, function()
      out:messages()
      return #answers() >= 3
    end)
    local tags = {}
    for _, a in ipairs(answers()) do
      tags[#tags + 1] = a.tag
      assert.are.equal("HELD", a.v.symbol)
      assert.are.equal(1, a.calls)
    end
    assert.are.same({ "a", "b", "c" }, tags)
  end)

  it("goes to the loader when Redis is down, and counts it", function()
    local port, release = redis_server.refusing_port()
    finally(release)
    start { url = "redis://127.0.0.1:" .. port }
    eng:run_for(0.05)
    local a = get("0x2")
    assert.are.equal("loader", a.source)
    assert.are.same({ symbol = "SYM-0x2", decimals = 18 }, a.v)
    local st = stats()
    assert.is_true(st.redis_errors >= 1)
    assert.is_true(st.write_errors >= 1)
    assert.are.equal("local", get("0x2").source)
  end)

  it("does not cache failures", function()
    start { url = server.url }
    local a = get("0x3", "fail")
    assert.is_nil(a.v)
    assert.are.equal("no such token", a.err)
    assert.are.equal("loader", a.source)
    assert.are.equal(2, get("0x3", "fail").calls)
    assert.are.equal("not found", get("0x4", "nil").err)
    assert.matches("^loader failed: .*loader bug", get("0x5", "raise").err)
    assert.is_nil(raw("GET", prefix .. "0x3"))
    assert.are.equal(4, stats().load_failures)
  end)

  it("replaces an undecodable value in Redis with the loader's", function()
    start { url = server.url }
    raw("SET", prefix .. "0x6", "{not json")
    local a = get("0x6")
    assert.are.equal("loader", a.source)
    assert.are.equal(1, stats().decode_errors)
    eng:run_for(5, function() return stats().writes == 1 end)
    assert.are.equal("SYM-0x6", cjson.decode(raw("GET", prefix .. "0x6")).symbol)
  end)

  it("lets a coroutine wait, with the string and msgpack codecs too", function()
    start { url = server.url }
    local a = ask("co", { tag = "co", key = "0x7", mode = "ok" })
    assert.are.equal("loader", a.source)
    assert.are.equal("local", ask("co", { tag = "co", key = "0x7", mode = "ok" }).source)
    start { url = server.url, codec = "msgpack", prefix = prefix .. "mp:" }
    get("0x8")
    eng:run_for(5, function() return stats().writes == 1 end)
    start { url = server.url, codec = "msgpack", prefix = prefix .. "mp:" }
    assert.are.equal("redis", get("0x8").source)
    assert.are.equal(18, get("0x8").v.decimals)
  end)

  it("works in memory only, within its bound", function()
    start { max_local = 4 }
    for i = 1, 10 do assert.are.equal("loader", get("k" .. i).source) end
    assert.are.equal("local", get("k10").source)
    assert.are.equal("loader", get("k1").source) -- evicted
    assert.are.equal(2, get("k1").calls)
  end)

  describe("open", function()
    it("connects from a URL, with the defaults given", function()
      start { open = true, spec = server.url }
      assert.are.equal("loader", get("0xa1").source)
      eng:run_for(5, function() return stats().writes == 1 end)
      local ttl = raw("TTL", prefix .. "0xa1")
      assert.is_true(ttl > 90 and ttl <= 99)
    end)

    it("takes cache and client options from one table", function()
      start { open = true, spec = { url = server.url, ttl = 30, prefix = prefix .. "t:",
                                    command_timeout_ms = 500, log = false } }
      get("0xa2")
      eng:run_for(5, function() return stats().writes == 1 end)
      local ttl = raw("TTL", prefix .. "t:0xa2")
      assert.is_true(ttl > 25 and ttl <= 30)
    end)

    it("keeps to memory without a Redis option", function()
      start { open = true }
      assert.are.equal("loader", get("0xa3").source)
      assert.are.equal("local", get("0xa3").source)
      assert.are.equal(0, stats().redis_errors)
    end)

    it("returns nil and a message for a bad URL", function()
      start { open = true, spec = "redis://h:0" }
      eng:run_for(5, function()
        out:messages()
        return #out.all >= 1
      end)
      assert.are.equal("redis: bad URL 'redis://h:0': the port must be 1 to 65535",
                       out.all[1].data.err)
      assert.are.equal("EINVAL", out.all[1].data.code)
    end)
  end)

  it("raises for programmer mistakes, naming the service", function()
    local ok, err = pcall(start, { codec = "xml" })
    assert.is_false(ok)
    assert.matches("service 'meta': redis_cache.new: unknown codec 'xml'", err, 1, true)
    ok, err = pcall(start, { ttl = 1.5 })
    assert.is_false(ok)
    assert.matches("ttl must be a positive whole number", err, 1, true)
    eng = nil
    start {}
    local dead = eng:collect("$dead")
    eng:publish("bad", { what = "key" })
    eng:publish("bad", { what = "nocb" })
    eng:advance(0) -- each error restarts the service
    local errs = dead:messages()
    assert.are.equal(2, #errs)
    assert.matches("service 'meta': redis_cache: get: key must be a string, got number",
                   errs[1].data.error, 1, true)
    assert.matches("service 'meta': redis_cache: get: pass a callback, or call it from a coroutine",
                   errs[2].data.error, 1, true)
  end)
end)
