-- spec/mycelium/testing_api_spec.lua -- mycelium.testing itself, which every
-- other spec relies on: modules written and removed, collectors that see
-- what init emits, delivery in order until every mailbox is empty, a
-- virtual clock that moves only when told, captured logs, counters, and
-- a stop requested by a service.
local testing = require "mycelium.testing"

local echo = [[
return { subscribe = { "in" }, on_message = function(ctx, msg)
  ctx:emit("out", msg.data)
end }]]

describe("mycelium.testing", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("writes inline modules to files that cleanup removes", function()
    local path = testing.module("return {}")
    assert.matches("%.lua$", path)
    local f = assert(io.open(path))
    assert.equal("return {}", f:read("*a"))
    f:close()
    testing.cleanup()
    assert.is_nil(io.open(path))
  end)

  it("collects what init emits when collecting before the start", function()
    eng = testing.engine { start = false, services = { { name = "s", module = testing.module [[
      return { init = function(ctx) ctx:emit("hello", "from init") end }]] } } }
    local c = eng:collect("hello")
    eng:start()
    eng:run()
    local m = c:messages()
    assert.equal(1, #m)
    assert.equal("from init", m[1].data)
    assert.equal("hello", m[1].topic)
    -- messages() drains: a second call has only what came since
    assert.same({}, c:messages())
  end)

  it("delivers everything, in order, across services, in one run", function()
    eng = testing.engine { services = {
      { name = "a", module = testing.module(echo) },
      { name = "b", module = testing.module [[
        return { subscribe = { "out" }, on_message = function(ctx, msg)
          ctx:emit("final", msg.data .. "!")
        end }]] } } }
    local c = eng:collect("final")
    for i = 1, 100 do assert.is_true(eng:publish("in", tostring(i))) end
    assert.is_true(eng:run() >= 200)
    local got = {}
    for i, m in ipairs(c:messages()) do got[i] = m.data end
    assert.equal(100, #got)
    for i = 1, 100 do assert.equal(i .. "!", got[i]) end
    assert.equal(0, eng:run()) -- nothing left
    local st = eng:stats("a")
    assert.equal(100, st["in"])
    assert.equal(100, st.out)
    assert.equal(0, st.errors)
  end)

  it("moves time only when told, firing timers in order", function()
    eng = testing.engine { services = { { name = "t", module = testing.module [[
      return { init = function(ctx)
        ctx:after(100, function(c) c:emit("tick", "after 100") end)
        ctx:after(50, function(c) c:emit("tick", "after 50") end)
        ctx:every(40, function(c) c:emit("tick", "every 40") end)
      end }]] } } }
    local c = eng:collect("tick")
    eng:run()
    assert.same({}, c:messages())
    local function datas()
      local t = {}
      for i, m in ipairs(c:messages()) do t[i] = m.data end
      return t
    end
    eng:advance(0.039)
    eng:run()
    assert.same({}, datas())
    eng:advance(0.001)
    eng:run()
    assert.same({ "every 40" }, datas())
    eng:advance(0.06) -- t = 100 ms: due at 50, 80 and 100
    eng:run()
    assert.same({ "after 50", "every 40", "after 100" }, datas())
    assert.has_error(function() eng:advance(-1) end,
                     "mycelium.testing: advance: seconds must be a number from 0 to 1e9, got -1")
  end)

  it("captures log lines, as text or decoded", function()
    eng = testing.engine { services = { { name = "l", module = testing.module [[
      return { init = function(ctx) ctx.log:info("one", { k = 1 }) ctx.log:warn("two") end }]] } } }
    local logs = eng:logs(true)
    assert.equal(2, #logs)
    assert.same({ "one", "two" }, { logs[1].msg, logs[2].msg })
    assert.equal(1, logs[1].k)
    assert.same({}, eng:logs()) -- drained
  end)

  it("reports a service's stop request and its code", function()
    eng = testing.engine { services = { { name = "q", module = testing.module [[
      return { subscribe = { "in" }, on_message = function(ctx) ctx:shutdown(3) end }]] } } }
    assert.is_false(eng:stopping())
    eng:publish("in", "x")
    eng:run()
    local stopping, code = eng:stopping()
    assert.is_true(stopping)
    assert.equal(3, code)
  end)

  it("refuses a bad spec, naming the key", function()
    local ok, err = pcall(testing.engine, { mailbox = { policy = "sometimes" },
      services = { { name = "x", module = testing.module(echo) } } })
    assert.is_false(ok)
    assert.matches("'mailbox.policy' must be one of", tostring(err), 1, true)
    ok, err = pcall(testing.engine, { services = { { name = "x", module = "/nonexistent.lua" } } })
    assert.is_false(ok)
    assert.matches("'services[1].module': cannot read '/nonexistent.lua'", tostring(err), 1, true)
  end)

  it("closes twice without harm", function()
    eng = testing.engine { services = { { name = "e", module = testing.module(echo) } } }
    eng:close()
    eng:close()
    assert.is_true(eng.closed)
  end)
end)
