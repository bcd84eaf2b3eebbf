-- spec/hostile/topics_spec.lua -- a service making topic names in a loop.
-- Topics are never removed and the engine's table holds about a million:
-- one service emitting on ever-new names used to fill it, and every
-- service's next new topic then failed with "limit exceeded".  Each
-- service may now make max_topics_per_service topics (docs/CONFIG.md).
local testing = require "mycelium.testing"

-- Emits on "loop.1", "loop.2", ... until the engine refuses one, then
-- reports "n|message|code" on "out" (a topic it made in init, so the
-- report itself needs no new topic).  "again" emits on "loop.1" and
-- "fresh" tries a new topic again.
local LOOPER = [[
return {
  init = function(ctx)
    ctx:subscribe("go")
    ctx:subscribe("again")
    ctx:subscribe("fresh")
    ctx:emit("out", "ready")
  end,
  on_message = function(ctx, msg)
    if msg.topic == "go" then
      local n = 0
      while true do
        n = n + 1
        local ok, why, code = ctx:emit("loop." .. n, "x")
        if not ok then
          ctx:emit("out", n .. "|" .. why .. "|" .. code)
          return
        end
      end
    elseif msg.topic == "again" then
      ctx:emit("out", "again|" .. tostring(ctx:emit("loop.1", "x")))
    else
      local ok, err = pcall(ctx.publisher, ctx, "brand.new")
      ctx:emit("out", "publisher|" .. tostring(ok) .. "|" .. tostring(err))
    end
  end,
}]]

-- Makes one new topic on request and says it could.
local OTHER = [[
return {
  init = function(ctx) ctx:subscribe("make") end,
  on_message = function(ctx, msg)
    ctx:emit("made", tostring(ctx:emit("other." .. msg.data, "x")))
  end,
}]]

local function datas(c)
  local t = {}
  for _, m in ipairs(c:messages()) do t[#t + 1] = m.data end
  return t
end

-- An engine with 'key' set to 'bound', the looping service 'name' and
-- OTHER, once "go" is handled: it and its "out" and "made" collectors.
local function looped(key, bound, name, module)
  local eng = testing.engine { [key] = bound, services = {
    { name = name, module = testing.module(module) },
    { name = "other", module = testing.module(OTHER) } } }
  local out, made = eng:collect("out"), eng:collect("made")
  eng:run()
  eng:publish("go", "")
  eng:run()
  return eng, out, made
end

-- An engine whose config sets 'key' to each bad value is refused, and
-- the error names the key.
local function refused_in_config(key)
  for _, bad in ipairs { 0, -1, 1.5, "many" } do
    local ok, err = pcall(testing.engine, { [key] = bad,
      services = { { name = "a", module = testing.module(OTHER) } } })
    assert.is_false(ok)
    assert.matches(key, err, 1, true)
  end
end

describe("max_topics_per_service", function()
  after_each(testing.cleanup)

  it("refuses the looping service's new topics with ELIMIT, naming the "
     .. "table, the service and the key; others go on", function()
    local eng, out, made = looped("max_topics_per_service", 50, "looper", LOOPER)
    local r = datas(out)
    -- "out" (its init's "ready" came before the collector) was its first
    -- topic: 49 loop topics, the 50th refused
    assert.same("50|topic 'loop.50' not created: service 'looper' has made "
                .. "50 topics of the engine's topic table, its "
                .. "max_topics_per_service (raise max_topics_per_service in "
                .. "the config, or myc_engine_config.max_topics_per_service)"
                .. "|ELIMIT", r[1])
    -- the service is not crashed, its topics still work
    assert.equal("running", eng:stats("looper").state)
    assert.equal(0, eng:stats("looper").errors)
    eng:publish("again", "")
    eng:run()
    assert.same("again|true", datas(out)[1])
    -- a raising call names the limit too
    eng:publish("fresh", "")
    eng:run()
    assert.matches("^publisher|false|.*topic 'brand.new' not created: service "
                   .. "'looper' has made 50 topics", datas(out)[1])
    -- another service still makes topics: the quota is the looper's
    for i = 1, 3 do
      eng:publish("make", tostring(i))
      eng:run()
    end
    assert.same({ "true", "true", "true" }, datas(made))
    eng:close()
  end)

  it("defaults to 100000 topics a service", function()
    local eng = testing.engine { services = {
      { name = "looper", module = testing.module(LOOPER) } } }
    local out = eng:collect("out")
    eng:run()
    eng:publish("go", "")
    eng:run()
    assert.matches("^100000|topic 'loop.100000' not created: service "
                   .. "'looper' has made 100000 topics", datas(out)[1])
    eng:close()
  end)

  it("is checked in the config", function()
    refused_in_config("max_topics_per_service")
  end)
end)

-- Subscribes to "sub.1", "sub.2", ... until the engine refuses one, then
-- reports "n|message" on "out"; "again" subscribes to "sub.1" (held
-- already) and "drop" lets one go and takes a new one.
local SUBSCRIBER = [[
return {
  init = function(ctx)
    ctx:subscribe("go")
    ctx:subscribe("again")
    ctx:subscribe("drop")
  end,
  on_message = function(ctx, msg)
    if msg.topic == "go" then
      local n = 0
      while true do
        n = n + 1
        local ok, err = pcall(ctx.subscribe, ctx, "sub." .. n)
        if not ok then
          ctx:emit("out", n .. "|" .. err)
          return
        end
      end
    elseif msg.topic == "again" then
      ctx:emit("out", "again|" .. tostring(pcall(ctx.subscribe, ctx, "sub.1")))
    else
      ctx:unsubscribe("sub.2")
      ctx:emit("out", "drop|" .. tostring(pcall(ctx.subscribe, ctx, "new.1")))
    end
  end,
}]]

describe("max_subscriptions_per_service", function()
  after_each(testing.cleanup)

  it("refuses a looping service's new patterns, naming the key; what it "
     .. "holds and other services go on", function()
    local eng, out, made = looped("max_subscriptions_per_service", 40,
                                  "subscriber", SUBSCRIBER)
    -- go, again and drop are 3 of its 40: sub.1 to sub.37 are taken
    local r = datas(out)
    assert.matches("^38|.*service 'subscriber': subscribe 'sub.38': it holds "
                   .. "max_subscriptions_per_service patterns already "
                   .. "%(unsubscribe some, or raise "
                   .. "max_subscriptions_per_service in the config%)$", r[1])
    assert.equal("running", eng:stats("subscriber").state)
    assert.equal(0, eng:stats("subscriber").errors)
    eng:publish("again", "")
    eng:publish("drop", "")
    eng:run()
    assert.same({ "again|true", "drop|true" }, datas(out))
    eng:publish("make", "1")
    eng:run()
    assert.same({ "true" }, datas(made))
    eng:close()
  end)

  it("cuts a module's longer subscribe list, saying so", function()
    local eng = testing.engine { max_subscriptions_per_service = 2, services = {
      { name = "lister", module = testing.module [[
return { subscribe = { "l.a", "l.b", "l.c" },
  on_message = function(ctx, msg) ctx:emit("heard", msg.topic) end }]] } } }
    local heard = eng:collect("heard")
    eng:run()
    for _, t in ipairs { "l.a", "l.b", "l.c" } do eng:publish(t, "") end
    eng:run()
    assert.same({ "l.a", "l.b" }, datas(heard))
    local said
    for _, l in ipairs(eng:logs()) do
      said = said or l:find("3 patterns, over max_subscriptions_per_service "
                            .. "(2): the first 2 are subscribed", 1, true)
    end
    assert.is_truthy(said)
    eng:close()
  end)

  it("is checked in the config", function()
    refused_in_config("max_subscriptions_per_service")
  end)
end)
