-- spec/mycelium/net/redis_spec.lua -- mycelium.net.redis in a service, against a real
-- redis-server (spec/support/redis_server.lua), through mycelium.testing
-- (manual engine, real time for the I/O) and through the `mycelium` binary
-- (threaded engine).
local testing = require "mycelium.testing"
local redis_server = require "support.redis_server"

-- A service that runs what the spec sends on "cmd" and emits the outcome
-- on "reply" ({tag, v = description, err, code}, 'now' when the call
-- itself failed) and every state change on "state".
local SERVICE = [[
local redis = require "mycelium.net.redis"
local M = { subscribe = { "cmd" } }
local r

local function describe(v)
  local t = type(v)
  if v == nil then return "nil" end
  if v == redis.null then return "null" end
  if t == "string" then return "s:" .. v end
  if t == "number" then return string.format("n:%.17g", v) end
  if t == "cdata" then return "i64:" .. tostring(v) end
  if t == "table" then
    if v.err then return "E:" .. v.err end
    local parts, keys = {}, {}
    if #v == 0 and next(v) ~= nil then
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys)
      for i, k in ipairs(keys) do parts[i] = k .. "=" .. describe(v[k]) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    for i = 1, #v do parts[i] = describe(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return t
end

local function reply(ctx, tag)
  return function(v, err, code)
    ctx:emit("reply", { tag = tag, v = describe(v), err = err, code = code })
  end
end

local function run(ctx, req)
  local ok, err, code = r:command(req.args, reply(ctx, req.tag))
  if not ok then
    ctx:emit("reply", { tag = req.tag, now = true, err = err, code = code })
  end
end

function M.init(ctx, opts)
  local o = opts.redis or {}
  o.on_state = function(state, err) ctx:emit("state", { state = state, err = err }) end
  local err, code
  r, err, code = redis.connect(ctx, opts.url, o)
  if not r then
    ctx:emit("reply", { tag = "connect", err = err, code = code })
    return
  end
  for i, args in ipairs(opts.at_init or {}) do run(ctx, { tag = "init" .. i, args = args }) end
end

function M.on_message(ctx, msg)
  local req = msg.data
  if req.op == "pipeline" then
    local n, got, ordered = req.n, 0, true
    for i = 1, n do
      r:command({ "INCR", "pipe" }, function(v, err)
        got = got + 1
        ordered = ordered and v == i
        if got == n then
          ctx:emit("reply", { tag = "pipeline", got = got, ordered = ordered, last = v })
        end
      end)
    end
    ctx:emit("reply", { tag = "issued", pending = r:pending() })
  elseif req.op == "co" then
    coroutine.wrap(function()
      local out = {}
      out[1] = describe(r:set("co:k", "v\0x"))
      out[2] = describe(r:get("co:k"))
      out[3] = describe(r:hset("co:h", "f1", "a", "f2", "b"))
      out[4] = describe(r:hgetall("co:h"))
      out[5] = describe(r:mget("co:k", "co:missing"))
      local v, err, code = r:command({ "LPUSH", "co:k", "x" })
      out[6] = describe(v) .. "|" .. tostring(err) .. "|" .. tostring(code)
      ctx:emit("reply", { tag = "co", out = out })
    end)()
  elseif req.op == "close" then
    for i, args in ipairs(req.before or {}) do run(ctx, { tag = "before" .. i, args = args }) end
    r:close()
    ctx:emit("reply", { tag = "closing", state = r:state() })
  elseif req.op == "bad" then
    if req.what == "arg" then r:command({ "SET", "k", {} }, function() end) end
    if req.what == "nil" then r:get(nil, function() end) end
    if req.what == "subscribe" then r:command({ "SUBSCRIBE", "ch" }, function() end) end
    if req.what == "nocb" then r:get("k") end
  else
    run(ctx, req)
  end
end
return M]]

local function engine(opts)
  return testing.engine {
    services = { { name = "svc", module = testing.module(SERVICE), opts = opts } },
    collect = { "reply", "state", "$dead" },
    -- a handler that raises restarts the service: at once, here
    supervisor = { backoff_initial_ms = 0, max_restarts = 100 },
  }
end

-- Runs until 'n' messages were collected on 'c' (or 5 s passed).
local function wait(eng, c, n)
  eng:run_for(5, function()
    c:messages()
    return #c.all >= n
  end)
  return c.all
end

local function by_tag(list)
  local t = {}
  for _, m in ipairs(list) do t[m.data.tag] = m.data end
  return t
end

describe("mycelium.net.redis", function()
  local server, eng

  setup(function()
    server = redis_server.start()
  end)
  teardown(function()
    server:stop()
  end)
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("runs commands and converts the replies to Lua values", function()
    eng = engine { url = server.url }
    local replies = eng:collect("reply")
    local cmds = {
      { "SET", "k", "v1" }, { "GET", "k" }, { "GET", "missing" }, { "INCR", "n" },
      { "INCRBY", "n", 41 }, { "RPUSH", "l", "a", "b" }, { "LRANGE", "l", 0, -1 },
      { "MGET", "k", "missing" }, { "NOSUCH" }, { "INCRBY", "big", "9007199254740993" },
      { "EVAL", "return {1, 'x', redis.error_reply('boom')}", 0 },
      { "SET", "f", 1.5 }, { "GET", "f" },
    }
    for i, args in ipairs(cmds) do eng:publish("cmd", { tag = i, args = args }) end
    local got = by_tag(wait(eng, replies, #cmds))
    assert.are.equal("s:OK", got[1].v)
    assert.are.equal("s:v1", got[2].v)
    assert.are.equal("nil", got[3].v)
    assert.is_nil(got[3].err)
    assert.are.equal("n:1", got[4].v)
    assert.are.equal("n:42", got[5].v)
    assert.are.equal("n:2", got[6].v)
    assert.are.equal("[s:a,s:b]", got[7].v)
    assert.are.equal("[s:v1,null]", got[8].v)
    assert.are.equal("nil", got[9].v)
    assert.matches("^redis 127%.0%.0%.1:%d+: ERR unknown command", got[9].err)
    assert.are.equal("ERR", got[9].code)
    assert.are.equal("i64:9007199254740993LL", got[10].v) -- beyond 2^53: exact
    assert.are.equal("[n:1,s:x,E:ERR boom]", got[11].v)
    assert.are.equal("s:1.5", got[13].v)
  end)

  it("keeps binary keys and values intact", function()
    eng = engine { url = server.url }
    local replies = eng:collect("reply")
    local key, value = "b\0k", "\0\1\255\r\n$-1\r\nend\0"
    eng:publish("cmd", { tag = "set", args = { "SET", key, value } })
    eng:publish("cmd", { tag = "get", args = { "GET", key } })
    eng:publish("cmd", { tag = "other", args = { "GET", "b" } })
    eng:publish("cmd", { tag = "len", args = { "STRLEN", key } })
    local got = by_tag(wait(eng, replies, 4))
    assert.are.equal("s:" .. value, got.get.v)
    assert.are.equal("nil", got.other.v)
    assert.are.equal("n:" .. #value, got.len.v)
  end)

  it("pipelines 10 000 commands and answers them in order", function()
    eng = engine { url = server.url }
    local replies = eng:collect("reply")
    eng:publish("cmd", { tag = "del", args = { "DEL", "pipe" } })
    wait(eng, replies, 1)
    eng:publish("cmd", { op = "pipeline", n = 10000 })
    local got = by_tag(wait(eng, replies, 3))
    assert.are.equal(10000, got.issued.pending)
    assert.are.equal(10000, got.pipeline.got)
    assert.is_true(got.pipeline.ordered)
    assert.are.equal(10000, got.pipeline.last)
  end)

  it("lets a coroutine wait for its replies", function()
    eng = engine { url = server.url }
    local replies = eng:collect("reply")
    eng:publish("cmd", { op = "co" })
    local out = by_tag(wait(eng, replies, 1)).co.out
    assert.are.same({ "s:OK", "s:v\0x", "n:2", "{f1=s:a,f2=s:b}", "[s:v\0x,null]",
                      "nil|redis 127.0.0.1:" .. server.port .. ": WRONGTYPE Operation "
                        .. "against a key holding the wrong kind of value|WRONGTYPE" }, out)
  end)

  it("closes gracefully: replies already due arrive, then the state is closed", function()
    eng = engine { url = server.url }
    local replies, states = eng:collect("reply"), eng:collect("state")
    wait(eng, states, 1)
    eng:publish("cmd", { op = "close", before = { { "SET", "c", "1" }, { "GET", "c" } } })
    eng:run_for(5, function()
      states:messages()
      return states.all[#states.all].data.state == "closed"
    end)
    eng:publish("cmd", { tag = "after", args = { "PING" } })
    local got = by_tag(wait(eng, replies, 4))
    assert.are.equal("closing", got.closing.state)
    assert.are.equal("s:OK", got.before1.v)
    assert.are.equal("s:1", got.before2.v)
    assert.is_true(got.after.now)
    assert.are.equal("redis 127.0.0.1:" .. server.port .. ": client closed", got.after.err)
    assert.are.equal("ESTATE", got.after.code)
    assert.are.same({ "up", "closed" }, { states.all[1].data.state, states.all[2].data.state })
  end)

  it("authenticates and selects the database given in the URL", function()
    local secure = redis_server.start { password = "p@ss" }
    finally(function() secure:stop() end)
    eng = engine { url = "redis://:p%40ss@127.0.0.1:" .. secure.port .. "/3" }
    local replies = eng:collect("reply")
    eng:publish("cmd", { tag = "set", args = { "SET", "x", "in3" } })
    eng:publish("cmd", { tag = "db", args = { "CLIENT", "INFO" } })
    local got = by_tag(wait(eng, replies, 2))
    assert.are.equal("s:OK", got.set.v)
    assert.matches(" db=3 ", got.db.v)
    eng:close()
    -- The next attempt is 8 s or more away: the second command comes
    -- while the client is down, not during an attempt, however slow
    -- the machine.
    eng = engine { url = "redis://:wrong@127.0.0.1:" .. secure.port,
                   redis = { reconnect_min_ms = 10000, reconnect_max_ms = 10000 } }
    replies = eng:collect("reply")
    eng:publish("cmd", { tag = "get", args = { "GET", "x" } })
    wait(eng, replies, 1)
    eng:publish("cmd", { tag = "get2", args = { "GET", "x" } })
    local failed = by_tag(wait(eng, replies, 2))
    assert.matches("AUTH failed: WRONGPASS", failed.get.err)
    assert.are.equal("EACCES", failed.get.code)
    assert.is_nil(failed.get.err:find("wrong", 1, true)) -- the password stays secret
    assert.matches("not connected %(AUTH failed", failed.get2.err)
  end)

  describe("when the server goes away", function()
    it("fails commands in flight, fails fast while down, and reconnects", function()
      local s = redis_server.start()
      finally(function() s:stop() end)
      eng = engine { url = s.url, redis = { reconnect_min_ms = 20, reconnect_max_ms = 100 } }
      local replies, states = eng:collect("reply"), eng:collect("state")
      wait(eng, states, 1)
      assert.are.equal("up", states.all[1].data.state)
      -- Frozen, the server leaves these commands unanswered; killed, it
      -- resets the connection under them.
      os.execute("kill -STOP " .. s.pid)
      for i = 1, 5 do eng:publish("cmd", { tag = "inflight" .. i, args = { "INCR", "x" } }) end
      eng:run_for(0.05)
      s:kill()
      local got = by_tag(wait(eng, replies, 5))
      for i = 1, 5 do
        assert.are.equal("redis 127.0.0.1:" .. s.port .. ": connection lost: Connection reset by peer",
                         got["inflight" .. i].err)
        assert.are.equal("ECONNRESET", got["inflight" .. i].code)
      end
      wait(eng, states, 2)
      assert.are.equal("down", states.all[2].data.state)
      eng:publish("cmd", { tag = "down", args = { "PING" } })
      got = by_tag(wait(eng, replies, 6))
      assert.is_true(got.down.now)
      assert.matches("^redis 127%.0%.0%.1:" .. s.port .. ": not connected %(", got.down.err)
      assert.are.equal("ENOTCONN", got.down.code)

      s:restart()
      eng:run_for(5, function()
        states:messages()
        return states.all[#states.all].data.state == "up"
      end)
      assert.are.equal("up", states.all[#states.all].data.state)
      eng:publish("cmd", { tag = "back", args = { "PING" } })
      got = by_tag(wait(eng, replies, 7))
      assert.are.equal("s:PONG", got.back.v)
      -- One warning for the outage, the retries at debug level.
      local warns, infos = 0, 0
      for _, l in ipairs(eng:logs(true)) do
        if l.level == "warn" and l.msg:find("redis 127.0.0.1:" .. s.port, 1, true) then
          warns = warns + 1
        end
        if l.level == "info" and l.msg == "redis: connected" then infos = infos + 1 end
      end
      assert.are.equal(1, warns)
      assert.are.equal(2, infos)
    end)

    it("reports a refused connection naming the server", function()
      local port, release = redis_server.refusing_port()
      finally(release)
      eng = engine { url = "redis://127.0.0.1:" .. port, at_init = { { "PING" } } }
      local replies = eng:collect("reply")
      local got = by_tag(wait(eng, replies, 1))
      assert.are.equal("redis 127.0.0.1:" .. port .. ": cannot connect: connection refused",
                       got.init1.err)
      assert.are.equal("ECONNREFUSED", got.init1.code)
    end)
  end)

  describe("in a threaded engine", function()
    local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

    -- Runs 'source' as a service with `mycelium run`; returns the exit
    -- code and stderr.
    local function run(source)
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir) == 0)
      local f = assert(io.open(dir .. "/svc.lua", "w"))
      f:write(source)
      f:close()
      local p = io.popen(string.format("timeout 20 %s run %s/svc.lua 2>%s/err; echo $?",
                                       bin, dir, dir))
      local rc = tonumber(p:read("*a"))
      p:close()
      local e = io.open(dir .. "/err")
      local err = e:read("*a")
      e:close()
      os.execute("rm -rf " .. dir)
      return rc, err
    end

    it("works on a worker thread and never holds up the shutdown", function()
      -- A BLPOP is left waiting: the engine stops anyway, and the client
      -- goes with the service's Lua state.
      local rc, err = run(string.format([[
        local redis = require "mycelium.net.redis"
        return { init = function(ctx)
          local r = assert(redis.connect(ctx, "redis://localhost:%d"))
          coroutine.wrap(function()
            assert(r:set("threaded", "yes") == "OK")
            ctx.log:info("got " .. r:get("threaded"))
            r:command({ "BLPOP", "never", "0" }, function() end)
            ctx:shutdown(0)
          end)()
        end }]], server.port))
      assert.are.equal(0, rc)
      assert.matches("got yes", err, 1, true)
    end)
  end)

  describe("errors", function()
    it("returns nil and a message for a bad URL", function()
      eng = engine { url = "http://127.0.0.1:6379" }
      local replies = eng:collect("reply")
      local got = by_tag(wait(eng, replies, 1))
      assert.are.equal("redis: bad URL 'http://127.0.0.1:6379': expected redis://host[:port][/db]",
                       got.connect.err)
      assert.are.equal("EINVAL", got.connect.code)
    end)

    it("raises for programmer mistakes, naming the service", function()
      local ok, err = pcall(engine, { url = 6379 })
      assert.is_false(ok)
      assert.matches("service 'svc': redis.connect: url must be a string, got number", err, 1, true)
      ok, err = pcall(engine, { url = server.url, redis = { timeout = 5 } })
      assert.is_false(ok)
      assert.matches("service 'svc': redis.connect: unknown option 'timeout'", err, 1, true)
      ok, err = pcall(engine, { url = server.url, redis = { max_pending = 0 } })
      assert.is_false(ok)
      assert.matches("option 'max_pending' must be a positive integer, got 0", err, 1, true)

      eng = engine { url = server.url }
      local dead = eng:collect("$dead")
      for _, what in ipairs { "arg", "nil", "subscribe", "nocb" } do
        eng:publish("cmd", { op = "bad", what = what })
      end
      eng:advance(0) -- each error restarts the service
      local errs = {}
      for _, d in ipairs(dead:messages()) do errs[#errs + 1] = d.data.error end
      local prefix = "service 'svc': redis 127.0.0.1:" .. server.port .. ": "
      assert.are.equal(4, #errs)
      assert.matches(prefix .. "command: argument 3 must be a string or a number, got table",
                     errs[1], 1, true)
      assert.matches(prefix .. "get: argument 1 is nil", errs[2], 1, true)
      assert.matches(prefix .. "SUBSCRIBE is not supported", errs[3], 1, true)
      assert.matches(prefix .. "command: pass a callback, or call it from a coroutine",
                     errs[4], 1, true)
    end)
  end)
end)
