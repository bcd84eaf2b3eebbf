-- spec/hostile/dead_letters_spec.lua -- '$' topics are the engine's (issue
-- 11, item 9): a service could emit on '$dead' and forge dead letters.
-- ctx:emit and ctx:publisher now raise for any '$' topic, naming it;
-- subscribing to them is unchanged, and the engine still publishes a
-- crashed handler's message on '$dead'.
local testing = require "mycelium.testing"

describe("engine topics", function()
  after_each(function() testing.cleanup() end)

  it("refuse a service's emit and publisher, naming the topic", function()
    local eng = testing.engine { collect = { "$dead", "report" }, services = { {
      name = "forger", module = testing.module [[
        return { subscribe = { "go" }, on_message = function(ctx)
          local r = {}
          r[1] = select(2, pcall(ctx.emit, ctx, "$dead", { topic = "x", error = "forged" }))
          r[2] = select(2, pcall(ctx.publisher, ctx, "$dead"))
          r[3] = select(2, pcall(ctx.emit, ctx, "$other", "x"))
          r[4] = ctx:pressure("$dead") -- reading is fine
          r[5] = select(2, pcall(ctx.emit, ctx, "$dead", "again")) -- not cached by pressure
          ctx:emit("report", r)
        end }]] } } }
    eng:publish("go", "")
    eng:run()
    local r = eng.collect_before_start.report:messages()[1].data
    for _, i in ipairs { 1, 2, 5 } do
      assert.matches("service 'forger': emit to '$dead': topics starting with '$' "
                     .. "are the engine's (a service may subscribe to them, not "
                     .. "emit on them)", r[i], 1, true)
    end
    assert.matches("emit to '$other': topics starting with '$'", r[3], 1, true)
    assert.are.equal(0, r[4])
    assert.are.same({}, eng.collect_before_start["$dead"]:messages())
    eng:close()
  end)

  it("still carry the engine's dead letters", function()
    local eng = testing.engine { supervisor = { backoff_initial_ms = 0 },
      collect = { "$dead" }, services = { { name = "crash", module = testing.module [[
        return { subscribe = { "in" }, on_message = function() error("boom") end }]] } } }
    eng:publish("in", "poison")
    eng:run()
    local dead = eng.collect_before_start["$dead"]:messages()
    assert.are.equal(1, #dead)
    assert.are.equal("crash", dead[1].source)
    assert.are.equal("in", dead[1].data.topic)
    assert.are.equal("poison", dead[1].data.payload)
    eng:close()
  end)

  it("that a service fails on are not sent to '$dead' again", function()
    -- The listener fails on everything, its own dead letters included:
    -- each crash on a dead letter would make the next one.
    local eng = testing.engine {
      supervisor = { backoff_initial_ms = 0, max_restarts = 1000 },
      collect = { "$dead" }, services = { { name = "listener", module = testing.module [[
        return { subscribe = { "$dead", "in" },
                 on_message = function(ctx, msg) error("fails on " .. msg.topic) end }]] } } }
    eng:publish("in", "poison")
    for _ = 1, 20 do
      eng:run()
      eng:advance(0.01)
    end
    eng:run()
    local dead = eng.collect_before_start["$dead"]:messages()
    assert.are.equal(1, #dead)
    assert.are.equal("in", dead[1].data.topic)
    assert.are.equal(2, eng:stats("listener").errors)
    local said = false
    for _, l in ipairs(eng:logs(true)) do
      if l.msg:find("a dead letter this service failed on is not sent to $dead again", 1, true) then
        said = true
      end
    end
    assert.is_true(said)
    eng:close()
  end)
end)
