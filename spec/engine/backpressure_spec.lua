-- spec/engine/backpressure_spec.lua -- bounded mailboxes, overflow policies,
-- the threshold and producer-side pressure (docs/API.md, ctx and
-- Mailboxes; docs/CONFIG.md).
local testing = require "mycelium.testing"

local sink_src = [[
return { subscribe = { "in" }, on_message = function(ctx, msg)
  ctx:emit("seen", msg.data)
end }]]

local function engine(policy, capacity)
  return testing.engine { services = { {
    name = "sink", module = testing.module(sink_src),
    mailbox = { capacity = capacity, policy = policy, threshold = 0.5 } } } }
end

local function flood(eng, n)
  local refused = 0
  for i = 1, n do
    if not eng:publish("in", tostring(i)) then refused = refused + 1 end
  end
  return refused
end

local function seen(c)
  local out = {}
  for _, m in ipairs(c:messages()) do out[#out + 1] = tonumber(m.data) end
  return out
end

describe("mailbox policies", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("drop_oldest keeps the newest, counts the rest", function()
    eng = engine("drop_oldest", 10)
    local c = eng:collect("seen")
    assert.are.equal(0, flood(eng, 25))
    eng:run()
    assert.are.same({ 16, 17, 18, 19, 20, 21, 22, 23, 24, 25 }, seen(c))
    local st = eng:stats("sink")
    assert.are.equal(15, st.dropped_oldest)
    assert.are.equal(10, st["in"])
    assert.are.equal(25, st["in"] + st.dropped)
    assert.are.same({ dropped_oldest = 15, dropped_newest = 0, rejected = 0, shutdown = 0,
                      too_large = 0 },
                    eng:drops("sink")["in"])
  end)

  it("drop_newest keeps the oldest, counts the rest", function()
    eng = engine("drop_newest", 10)
    local c = eng:collect("seen")
    assert.are.equal(15, flood(eng, 25)) -- the only subscriber refused them
    eng:run()
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, seen(c))
    local st = eng:stats("sink")
    assert.are.equal(15, st.dropped_newest)
    assert.are.equal(25, st["in"] + st.dropped)
  end)

  it("reject refuses at the emitter with 'full'", function()
    eng = engine("reject", 10)
    local c = eng:collect("seen")
    for i = 1, 10 do assert.is_true(eng:publish("in", tostring(i))) end
    local ok, why, code = eng:publish("in", "11")
    assert.is_nil(ok)
    assert.are.equal("full", why)
    assert.are.equal("EFULL", code)
    eng:run()
    assert.are.equal(10, #seen(c))
    assert.are.equal(1, eng:stats("sink").rejected)
    assert.is_true(eng:publish("in", "12")) -- room again once handled
  end)

  it("never drops below capacity", function()
    for _, policy in ipairs { "drop_oldest", "drop_newest", "reject" } do
      eng = engine(policy, 64)
      local c = eng:collect("seen")
      assert.are.equal(0, flood(eng, 64))
      eng:run()
      assert.are.equal(64, #seen(c))
      assert.are.equal(0, eng:stats("sink").dropped)
      eng:close()
      eng = nil
    end
  end)

  it("a subscriber that refuses does not hide one that accepts", function()
    eng = testing.engine { services = {
      { name = "small", module = testing.module(sink_src), mailbox = { capacity = 1, policy = "reject" } },
      { name = "big", module = testing.module(sink_src) } } }
    assert.is_true(eng:publish("in", "1"))
    assert.is_true(eng:publish("in", "2")) -- 'small' refuses, 'big' takes it
    assert.are.equal(1, eng:stats("small").rejected)
    assert.are.equal(2, eng:stats("big").queue_depth)
  end)
end)

describe("backpressure signals", function()
  after_each(testing.cleanup)

  it("pressure rises with the fill of the fullest subscriber", function()
    local probe = testing.module [[
      return { subscribe = { "go" }, on_message = function(ctx)
        local levels = {}
        for i = 1, 12 do
          ctx:emit("in", tostring(i))
          levels[#levels + 1] = string.format("%.1f", ctx:pressure("in"))
        end
        ctx:emit("levels", table.concat(levels, " "))
      end }]]
    local eng = testing.engine { services = {
      { name = "small", module = testing.module(sink_src),
        mailbox = { capacity = 10, policy = "drop_newest" } },
      { name = "big", module = testing.module(sink_src) },
      { name = "probe", module = probe } } }
    local l = eng:collect("levels")
    eng:publish("go", "")
    eng:run()
    -- 'small' is the fullest; it stays at 1.0 once full (the rest dropped)
    assert.are.equal("0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0 1.0 1.0", l:messages()[1].data)
    assert.are.equal(2, eng:stats("small").dropped_newest)
    assert.are.equal(0, eng:stats("big").dropped)
    eng:close()
  end)

  it("a producer that watches pressure loses nothing to a slow consumer", function()
    local producer = testing.module [[
      local sent, total = 0, 5000
      return { subscribe = { "tick" }, on_message = function(ctx)
        while sent < total and ctx:pressure("in") < 0.5 do
          sent = sent + 1
          ctx:emit("in", tostring(sent))
        end
        if sent < total then ctx:emit("tick", "") end
      end }]]
    local eng = testing.engine { services = {
      { name = "sink", module = testing.module(sink_src),
        mailbox = { capacity = 100, policy = "drop_oldest" } },
      { name = "producer", module = producer } } }
    local c = eng:collect("seen")
    eng:publish("tick", "")
    eng:run()
    local got = seen(c)
    assert.are.equal(5000, #got)
    for i = 1, 5000 do assert.are.equal(i, got[i]) end
    assert.are.equal(0, eng:stats("sink").dropped)
    eng:close()
  end)
end)
