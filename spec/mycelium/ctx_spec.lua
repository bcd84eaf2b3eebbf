-- spec/mycelium/ctx_spec.lua -- the ctx API of docs/API.md, through the real
-- engine.
local testing = require "mycelium.testing"
local MessagePack = require "MessagePack"

local function service(src, extra)
  local s = { name = "svc", module = testing.module(src) }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function engine(src, extra, spec)
  spec = spec or {}
  spec.services = { service(src, extra) }
  return testing.engine(spec)
end

describe("ctx", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  describe("emit", function()
    it("publishes raw strings unchanged and returns true", function()
      eng = engine [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          assert(ctx:emit("out", "bytes\0with\255nul") == true)
        end }]]
      local out = eng:collect("out")
      eng:publish("in", "go")
      eng:run()
      local got = out:messages()
      assert.are.equal(1, #got)
      assert.are.equal("raw", got[1].type)
      assert.are.equal("bytes\0with\255nul", got[1].data)
      assert.are.equal("svc", got[1].source)
    end)

    it("to a topic nobody subscribes to returns true and counts it as unrouted", function()
      eng = engine [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          local ok = ctx:emit("nowhere", "x")
          local pub = ctx:publisher("nowhere.either")
          pub({ a = 1 })
          ctx:emit("out", "y")
          local st = ctx:service_stats()
          ctx:emit("out", string.format("%s %d %d", tostring(ok), st.out, st.unrouted))
        end }]]
      local out = eng:collect("out")
      eng:publish("in", "go")
      eng:run()
      assert.are.equal("true 3 2", out:messages()[2].data)
      local st = eng:stats("svc")
      assert.are.equal(2, st.unrouted)
      assert.are.equal(4, st.out)
    end)

    it("encodes tables as standard MessagePack", function()
      eng = engine [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          ctx:emit("out", { pool = "0xabc", amount = 12345678901, price = 0.5,
                            neg = -7, ok = true, list = { 1, 2, 3 },
                            nested = { a = { b = "c" } } })
        end }]]
      local out = eng:collect("out")
      eng:publish("in", "go")
      eng:run()
      local m = out:messages()[1]
      assert.are.equal("table", m.type)
      local expected = { pool = "0xabc", amount = 12345678901, price = 0.5,
                         neg = -7, ok = true, list = { 1, 2, 3 },
                         nested = { a = { b = "c" } } }
      assert.are.same(expected, m.data)
      -- an independent decoder reads the same bytes
      assert.are.same(expected, MessagePack.unpack(m.raw))
    end)

    it("names the service, topic and field of an unsupported value", function()
      eng = engine [[
        local M = { subscribe = { "in" } }
        function M.on_message(ctx, msg)
          if msg.data == "fn" then ctx:emit("out", print) end
          if msg.data == "field" then ctx:emit("out", { a = { cb = print } }) end
          if msg.data == "ud" then ctx:emit("out", io.stdout) end
        end
        return M]]
      local dead = eng:collect("$dead")
      for _, what in ipairs { "fn", "field", "ud" } do eng:publish("in", what) end
      eng:advance(1) -- each error restarts the service after a backoff
      local errs = {}
      for _, d in ipairs(dead:messages()) do errs[#errs + 1] = d.data.error end
      assert.are.equal(3, #errs)
      assert.matches("service 'svc': emit to 'out': cannot emit a function", errs[1], 1, true)
      assert.matches("service 'svc': emit to 'out': cannot encode field 'a.cb': unsupported type function",
                     errs[2], 1, true)
      assert.matches("cannot emit a userdata", errs[3], 1, true)
    end)

    it("rejects invalid topics with the reason", function()
      eng = engine [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          ctx:emit(msg.data, "x")
        end }]]
      local dead = eng:collect("$dead")
      for _, t in ipairs { "a..b", "a.*", "", "sp ace", ("x"):rep(300) } do
        eng:publish("in", t)
      end
      eng:advance(1)
      local d = dead:messages()
      assert.are.equal(5, #d)
      assert.matches("invalid topic 'a..b': empty segment", d[1].data.error, 1, true)
      assert.matches("'*' is only valid in subscriptions", d[2].data.error, 1, true)
      assert.matches("invalid topic '': empty name", d[3].data.error, 1, true)
      assert.matches("invalid character", d[4].data.error, 1, true)
      assert.matches("longer than 255 bytes", d[5].data.error, 1, true)
    end)

    it("returns nil, 'full', 'EFULL' when every subscriber refused", function()
      local sink = service([[return { subscribe = { "out" }, on_message = function() end }]],
                           { name = "sink", mailbox = { capacity = 2, policy = "reject" } })
      local src = service [[
        local M = { results = {} }
        function M.init(ctx)
          for i = 1, 3 do
            local ok, why, code = ctx:emit("out", "m" .. i)
            ctx.log:info("emit", { ok = tostring(ok), why = why or "",
                                   code = code or "" })
            if not ctx:emit("out", "again") then
              ctx.log:info("refused")
            end
          end
        end
        return M]]
      src.name = "src"
      eng = testing.engine { services = { sink, src } }
      local logs = eng:logs(true)
      local results, refused = {}, 0
      for _, l in ipairs(logs) do
        if l.msg == "emit" then
          results[#results + 1] = l.ok .. ":" .. l.why .. ":" .. l.code
        end
        if l.msg == "refused" then refused = refused + 1 end
      end
      -- "if not ctx:emit(...)" still reads a refusal.
      assert.are.same({ "true::", "nil:full:EFULL", "nil:full:EFULL" }, results)
      assert.are.equal(2, refused)
      assert.are.equal(4, eng:stats("sink").rejected)
      eng:run()
      assert.are.equal(2, eng:stats("sink")["in"])
    end)

    it("returns true when nobody subscribes", function()
      eng = engine [[
        return { init = function(ctx)
          ctx.log:info("r", { r = ctx:emit("nobody.listens", "x") })
        end }]]
      assert.is_true(eng:logs(true)[1].r)
    end)
  end)

  describe("publisher", function()
    it("emits on its topic without a lookup per call", function()
      eng = engine [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          local pub = ctx:publisher("out")
          for i = 1, 3 do assert(pub("p" .. i)) end
          assert(pub({ i = 4 }))
        end }]]
      local out = eng:collect("out")
      eng:publish("in", "go")
      eng:run()
      local got = out:messages()
      assert.are.equal(4, #got)
      assert.are.same({ "p1", "p2", "p3" }, { got[1].data, got[2].data, got[3].data })
      assert.are.same({ i = 4 }, got[4].data)
      assert.are.same({ 1, 2, 3, 4 }, { got[1].seq, got[2].seq, got[3].seq, got[4].seq })
    end)

    it("refuses an invalid topic when created", function()
      local ok, err = pcall(engine, [[return { init = function(ctx) ctx:publisher("bad topic") end }]])
      assert.is_false(ok)
      -- the position is the service's own line; no traceback in the message
      assert.matches("^/[^:]+%.lua:1: service 'svc': invalid topic 'bad topic': invalid character", err)
      assert.is_nil(err:find("traceback", 1, true))
    end)
  end)

  describe("subscribe and unsubscribe", function()
    it("change what the service receives at run time", function()
      eng = engine [[
        local M = { subscribe = { "ctl" } }
        function M.on_message(ctx, msg)
          if msg.topic == "ctl" then
            if msg.data == "sub" then ctx:subscribe("data.*") end
            if msg.data == "unsub" then ctx:unsubscribe("data.*") end
          else
            ctx:emit("seen", msg.topic)
          end
        end
        return M]]
      local seen = eng:collect("seen")
      eng:publish("data.a", "1")           -- not subscribed yet
      eng:publish("ctl", "sub")
      eng:run()
      eng:publish("data.a", "2")
      eng:publish("data.b.c", "3")
      eng:publish("ctl", "unsub")
      eng:run()
      eng:publish("data.a", "4")
      eng:run()
      local got = {}
      for _, m in ipairs(seen:messages()) do got[#got + 1] = m.data end
      assert.are.same({ "data.a", "data.b.c" }, got)
    end)

    it("refuses invalid patterns and topics without a handler", function()
      eng = engine [[
        local M = { handlers = { ["ctl"] = function(ctx, msg)
          local ok, err = pcall(ctx.subscribe, ctx, msg.data)
          ctx:emit("result", tostring(err))
        end } }
        return M]]
      local res = eng:collect("result")
      eng:publish("ctl", "a.*.b")
      eng:publish("ctl", "other")
      eng:publish("ctl", 42 and "x..y")
      eng:run()
      local r = res:messages()
      assert.matches("subscribe: invalid topic 'a.*.b'", r[1].data, 1, true)
      assert.matches("subscribe 'other': no handler for it", r[2].data, 1, true)
      assert.matches("empty segment", r[3].data, 1, true)
    end)

    it("routes handlers by exact topic, then the longest pattern, then on_message", function()
      eng = engine [[
        local M = { subscribe = { "misc" } }
        M.handlers = {
          ["a.b"] = function(ctx, m) ctx:emit("r", "exact " .. m.topic) end,
          ["a.*"] = function(ctx, m) ctx:emit("r", "a.* " .. m.topic) end,
          ["a.b.*"] = function(ctx, m) ctx:emit("r", "a.b.* " .. m.topic) end,
        }
        function M.on_message(ctx, m) ctx:emit("r", "default " .. m.topic) end
        return M]]
      local r = eng:collect("r")
      for _, t in ipairs { "a.b", "a.x", "a.b.c", "misc" } do eng:publish(t, "") end
      eng:run()
      local got = {}
      for _, m in ipairs(r:messages()) do got[#got + 1] = m.data end
      assert.are.same({ "exact a.b", "a.* a.x", "a.b.* a.b.c", "default misc" }, got)
    end)
  end)

  describe("timers", function()
    it("due at the same instant fire in the order they were set", function()
      eng = engine [[
        return { init = function(ctx)
          local function fire(name) return function(c) c:emit("t", name) end end
          ctx:after(10, fire("a"))
          ctx:after(10, fire("b"))
          ctx:every(5, fire("every"))  -- set again at 5 ms, after a, b and d
          ctx:after(10, fire("d"))
          ctx:after(0, function(c) c:after(10, fire("late")) end) -- set at 0 ms
        end }]]
      local t = eng:collect("t")
      eng:advance(0.010)
      local got = {}
      for _, m in ipairs(t:messages()) do got[#got + 1] = m.data end
      -- at 10 ms: set at init (a, b, d), at 0 ms (late), at 5 ms (every)
      assert.are.same({ "every", "a", "b", "d", "late", "every" }, got)
    end)

    it("after fires once and every repeats, on the virtual clock", function()
      eng = engine [[
        return { init = function(ctx)
          local t0 = ctx:now()
          ctx:after(100, function(c) c:emit("t", string.format("after %.3f", c:now() - t0)) end)
          local n = 0
          local h
          h = ctx:every(50, function(c)
            n = n + 1
            c:emit("t", string.format("every %d %.3f", n, c:now() - t0))
            if n == 3 then h.cancel() end
          end)
        end }]]
      local t = eng:collect("t")
      eng:advance(0.049)
      assert.are.equal(0, #t:messages())
      eng:advance(1)
      local got = {}
      for _, m in ipairs(t:messages()) do got[#got + 1] = m.data end
      assert.are.same({ "every 1 0.050", "after 0.100", "every 2 0.100", "every 3 0.150" }, got)
    end)

    it("a handler that re-arms timers compiles (no closure made per timer)", function()
      -- Counts the JIT's aborts inside ctx.lua while a handler sets 300
      -- timers: a closure made per ctx:after (FNEW) aborted every trace
      -- through it.  The handle's cancel() must still work.
      eng = engine [[
        local jit, util = require "jit", require "jit.util"
        local function noop() end
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local aborts = 0
          local function on_trace(what, tr, func, pc)
            if what == "abort" and util.funcinfo(func, pc).source:match("ctx%.lua$") then
              aborts = aborts + 1
            end
          end
          jit.attach(on_trace, "trace")
          for _ = 1, 300 do ctx:after(60000, noop) end
          jit.attach(on_trace)
          local h = ctx:after(5, function(c) c:emit("t", "not cancelled") end)
          local cancel = h.cancel
          assert(cancel == h.cancel, "cancel is made once")
          cancel()
          ctx:after(10, function(c) c:emit("t", "fired") end)
          ctx:emit("t", "aborts " .. aborts)
        end }]]
      local t = eng:collect("t")
      eng:publish("go", "x")
      eng:advance(0.05)
      local got = {}
      for _, m in ipairs(t:messages()) do got[#got + 1] = m.data end
      assert.are.same({ "aborts 0", "fired" }, got)
    end)

    it("refuses bad intervals and callbacks", function()
      for _, body in ipairs {
        "ctx:after(-1, function() end)", "ctx:every(0, function() end)",
        "ctx:after('x', function() end)", "ctx:every(10, 'nope')",
      } do
        local ok, err = pcall(engine, "return { init = function(ctx) " .. body .. " end }")
        assert.is_false(ok)
        assert.matches("service 'svc': ", err, 1, true)
        testing.cleanup()
      end
    end)

    it("a timer error is logged and the service goes on", function()
      eng = engine [[
        return { init = function(ctx)
          ctx:after(10, function() error("boom in timer") end)
          ctx:after(20, function(c) c:emit("t", "still here") end)
        end }]]
      local t = eng:collect("t")
      eng:advance(0.1)
      assert.are.equal("still here", t:messages()[1].data)
      local found = false
      for _, l in ipairs(eng:logs(true)) do
        if l.level == "error" and l.msg:match("timer failed: .*boom in timer") then found = true end
      end
      assert.is_true(found)
    end)
  end)

  describe("log and trace context", function()
    it("writes JSON lines with service, trace and fields", function()
      eng = engine([[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          ctx.log:info("handled", { topic = msg.topic, n = 3, nested = { x = 1 }, msg = "user" })
          ctx.log:debug("hidden")
          ctx:emit("out", ctx:trace_id() .. " " .. ctx:span_id())
        end }]], nil, { log = { level = "info", format = "json" } })
      local out = eng:collect("out")
      eng:publish("in", "x")
      eng:run()
      local m = out:messages()[1]
      local logs = eng:logs(true)
      assert.are.equal(1, #logs)
      local l = logs[1]
      assert.are.equal("info", l.level)
      assert.are.equal("svc", l.service)
      assert.are.equal("handled", l.msg)
      assert.are.equal("user", l._msg)
      assert.are.equal(3, l.n)
      assert.are.same({ x = 1 }, l.nested)
      assert.are.equal("test", l.node)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT", l.ts)
      -- the handler's context is the message's: same trace, its span
      assert.are.equal(m.trace_id, l.trace_id)
      assert.are.equal(m.trace_id .. " " .. m.parent_span_id, m.data)
      assert.are.equal(l.span_id, m.parent_span_id)
    end)

    it("writes text lines when asked", function()
      eng = engine([[return { init = function(ctx) ctx.log:warn("careful", { k = "v" }) end }]],
                   nil, { log = { format = "text" } })
      local line = eng:logs()[1]
      assert.matches("Z WARN  %[svc%] careful k=v trace_id=%x+ span_id=%x+$", line)
    end)

    it("keeps the trace across hops with a new span per emit", function()
      local a = service([[return { subscribe = { "in" }, on_message = function(ctx, m)
        ctx:emit("mid", "1"); ctx:emit("mid", "2") end }]], { name = "a" })
      local b = service([[return { subscribe = { "mid" }, on_message = function(ctx, m)
        ctx:emit("out", m.data) end }]], { name = "b" })
      eng = testing.engine { services = { a, b } }
      local mid, out = eng:collect("mid"), eng:collect("out")
      eng:publish("in", "x")
      eng:publish("in", "y")
      eng:run()
      local m, o = mid:messages(), out:messages()
      assert.are.equal(4, #m)
      assert.are.equal(4, #o)
      assert.are.equal(m[1].trace_id, m[2].trace_id)
      assert.are_not.equal(m[1].trace_id, m[3].trace_id)
      assert.are_not.equal(m[1].span_id, m[2].span_id)
      for i = 1, 4 do
        assert.are.equal(m[i].trace_id, o[i].trace_id)
        assert.are.equal(m[i].span_id, o[i].parent_span_id)
        assert.matches("^%x+$", o[i].trace_id)
        assert.are.equal(32, #o[i].trace_id)
        assert.are.equal(16, #o[i].span_id)
      end
    end)

    it("gives each timer firing a fresh root trace", function()
      eng = engine [[
        return { init = function(ctx)
          ctx:every(10, function(c) c:emit("t", c:trace_id()) end)
        end }]]
      local t = eng:collect("t")
      eng:advance(0.03)
      local got = t:messages()
      assert.are.equal(3, #got)
      assert.are_not.equal(got[1].data, got[2].data)
      assert.are.equal(got[1].data, got[1].trace_id)
    end)
  end)

  describe("identity, clock and shutdown", function()
    it("exposes name, opts and now", function()
      eng = engine([[
        return { init = function(ctx, opts)
          ctx:emit("i", { name = ctx.name, url = ctx.opts.url, same = opts == ctx.opts,
                          now = ctx:now() })
        end }]], { opts = { url = "ws://127.0.0.1:1" } })
      -- the collector subscribes after init: use a fresh engine instead
      eng:close()
      eng = testing.engine { services = { service([[
        return { subscribe = { "q" }, on_message = function(ctx, m)
          ctx:emit("i", { name = ctx.name, url = ctx.opts.url, now = ctx:now() })
        end }]], { opts = { url = "ws://127.0.0.1:1" } }) } }
      local i = eng:collect("i")
      eng:advance(2.5)
      eng:publish("q", "")
      eng:run()
      local d = i:messages()[1].data
      assert.are.equal("svc", d.name)
      assert.are.equal("ws://127.0.0.1:1", d.url)
      assert.is_true(math.abs(d.now - os.time()) < 60)
    end)

    it("shutdown(code) stops the engine with that code and calls stop", function()
      eng = engine [[
        return { subscribe = { "in" },
          on_message = function(ctx) ctx:shutdown(3) end,
          stop = function(ctx) ctx.log:info("stopping") end }]]
      assert.is_false((eng:stopping()))
      eng:publish("in", "x")
      eng:run()
      local stopping, code = eng:stopping()
      assert.is_true(stopping)
      assert.are.equal(3, code)
      assert.are.equal(3, eng:shutdown())
      local found
      for _, l in ipairs(eng:logs(true)) do found = found or l.msg == "stopping" end
      assert.is_true(found)
    end)

    it("shutdown refuses a non-integer code", function()
      eng = engine [[return { subscribe = { "in" }, on_message = function(ctx) ctx:shutdown("x") end }]]
      local dead = eng:collect("$dead")
      eng:publish("in", "x")
      eng:run()
      assert.matches("shutdown: exit code must be an integer", dead:messages()[1].data.error, 1, true)
    end)
  end)

  describe("queue introspection", function()
    it("reports depth, capacity and the backpressure threshold", function()
      eng = engine([[
        return { subscribe = { "in" }, on_message = function(ctx, m)
          ctx:emit("q", { depth = ctx:queue_depth(), cap = ctx:queue_capacity(),
                          over = ctx:backpressure_threshold_exceeded() })
        end }]], { mailbox = { capacity = 10, threshold = 0.5 } })
      local q = eng:collect("q")
      for i = 1, 8 do eng:publish("in", tostring(i)) end
      assert.are.equal(8, eng:stats("svc").queue_depth)
      eng:run()
      local got = q:messages()
      assert.are.equal(8, #got)
      for i, m in ipairs(got) do
        assert.are.equal(10, m.data.cap)
        assert.are.equal(8 - i, m.data.depth)
        assert.are.equal(8 - i > 5, m.data.over)
      end
    end)
  end)
end)
