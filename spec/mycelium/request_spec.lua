-- spec/mycelium/request_spec.lua -- ctx:request and ctx:reply: every
-- outcome (a reply, timeout at the deadline, no_responder, full, failed
-- when the responder crashes on the request), the callback form, one
-- reply per request, the remaining deadline, and pending requests dropped
-- and counted when the requester restarts or is reloaded.
local testing = require "mycelium.testing"

-- Doubles a number; "slow.*" requests are kept and answered on "release";
-- "crash.*" raises.
local server = [[
local held = {}
local M = { subscribe = { "release" } }
M.handlers = {
  ["math.double"] = function(ctx, msg)
    assert(ctx:reply(msg, tostring(tonumber(msg.data) * 2)))
  end,
  ["slow.*"] = function(ctx, msg) held[#held + 1] = msg:copy() end,
  ["crash.*"] = function(ctx, msg) error("boom on " .. msg.data) end,
  ["table.echo"] = function(ctx, msg) ctx:reply(msg, { got = msg.data.x }) end,
}
function M.on_message(ctx, msg)
  for _, m in ipairs(held) do ctx:emit("answered", tostring(ctx:reply(m, "late"))) end
  held = {}
end
return M]]

-- Sends what "go" says: { topic, value, timeout_ms, cb = true for the
-- callback form }, and emits the outcome on "result".
local client = [[
local M = { subscribe = { "go", "crash" } }
local function show(ctx, r, why, detail)
  if r then ctx:emit("result", { ok = r.data, topic = r.topic, source = r.source,
                                 trace = r.trace_id })
  else ctx:emit("result", { why = why, detail = detail }) end
end
function M.on_message(ctx, msg)
  if msg.topic == "crash" then error("requester crashed") end
  local d = msg.data
  if d.cb then
    ctx:request(d.topic, d.value, { timeout_ms = d.timeout_ms }, function(r, why, detail)
      show(ctx, r, why, detail)
    end)
  else
    ctx:fork(function()
      local r, why, detail = ctx:request(d.topic, d.value, { timeout_ms = d.timeout_ms })
      show(ctx, r, why, detail)
    end)
  end
end
return M]]

local function results(c)
  local out = {}
  for _, m in ipairs(c:messages()) do out[#out + 1] = m.data end
  return out
end

local function engine(workers, extra)
  local services = {
    { name = "server", module = testing.module(server), worker = 0 },
    { name = "client", module = testing.module(client), worker = workers - 1 } }
  for _, s in ipairs(extra or {}) do services[#services + 1] = s end
  return testing.engine { workers = workers, services = services,
                          log = { level = "error" } }
end

describe("ctx:request", function()
  after_each(testing.cleanup)

  for _, workers in ipairs { 1, 2 } do
    it("returns the reply from a coroutine (" .. workers .. " worker(s))", function()
      local eng = engine(workers)
      local res = eng:collect("result")
      eng:publish("go", { topic = "math.double", value = "21" })
      eng:run()
      local r = results(res)
      assert.are.equal(1, #r)
      assert.are.equal("42", r[1].ok)
      assert.are.equal("$reply", r[1].topic)
      assert.are.equal("server", r[1].source)
      assert.are.equal(0, eng:stats("client").requests_dropped)
    end)
  end

  it("calls the callback with the reply, tables both ways", function()
    local eng = engine(1)
    local res = eng:collect("result")
    eng:publish("go", { topic = "table.echo", value = { x = 7 }, cb = true })
    eng:run()
    assert.are.same({ got = 7 }, results(res)[1].ok)
  end)

  it("answers many concurrent requests, each with its own reply", function()
    local eng = engine(2)
    local res = eng:collect("result")
    for i = 1, 100 do eng:publish("go", { topic = "math.double", value = tostring(i) }) end
    eng:run()
    local got = {}
    for _, r in ipairs(results(res)) do got[tonumber(r.ok)] = true end
    for i = 1, 100 do assert.is_true(got[2 * i], "missing " .. 2 * i) end
  end)

  it("keeps the trace: the reply is in the request's trace", function()
    local eng = engine(1)
    local res = eng:collect("result")
    local req = eng:collect("math.double")
    eng:publish("go", { topic = "math.double", value = "1" })
    eng:run()
    assert.are.equal(req:messages()[1].trace_id, results(res)[1].trace)
  end)

  for _, form in ipairs { "coroutine", "callback" } do
    it("times out at exactly the deadline on the virtual clock (" .. form .. ")", function()
      local eng = engine(1)
      local res = eng:collect("result")
      eng:publish("go", { topic = "slow.a", value = "x", timeout_ms = 100, cb = form == "callback" })
      eng:run()
      eng:advance(0.099)
      eng:run()
      assert.are.same({}, results(res))
      eng:advance(0.001)
      eng:run()
      assert.are.same({ { why = "timeout" } }, results(res))
      -- The late reply finds nobody waiting: dropped without an error,
      -- and counted.
      assert.are.equal(0, eng:stats("client").replies_late)
      eng:publish("release", "now")
      eng:run()
      assert.are.same({}, results(res))
      assert.are.equal(0, eng:stats("client").errors)
      assert.are.equal(1, eng:stats("client").replies_late)
    end)
  end

  it("expires requests with different timeouts each at its own deadline", function()
    local eng = engine(1)
    local res = eng:collect("result")
    eng:publish("go", { topic = "slow.a", value = "a", timeout_ms = 300 })
    eng:publish("go", { topic = "slow.b", value = "b", timeout_ms = 100 })
    eng:publish("go", { topic = "slow.c", value = "c", timeout_ms = 200 })
    eng:run()
    local seen = {}
    for _, step in ipairs { 0.1, 0.1, 0.1 } do
      eng:advance(step)
      eng:run()
      seen[#seen + 1] = #results(res)
    end
    assert.are.same({ 1, 1, 1 }, seen)
  end)

  it("returns no_responder at once when nobody subscribes", function()
    local eng = engine(1)
    local res = eng:collect("result")
    eng:publish("go", { topic = "nobody.home", value = "x" })
    eng:publish("go", { topic = "nobody.home", value = "x", cb = true })
    eng:run()
    assert.are.same({ { why = "no_responder" }, { why = "no_responder" } }, results(res))
  end)

  it("returns full at once when the responder's mailbox refuses it", function()
    local tiny = [[
return { subscribe = { "tiny.q" }, on_message = function(ctx, msg) end }]]
    local eng = testing.engine { workers = 1, log = { level = "error" }, services = {
      { name = "client", module = testing.module(client) },
      { name = "tiny", module = testing.module(tiny),
        mailbox = { capacity = 1, policy = "reject" } } } }
    local res = eng:collect("result")
    eng:publish("go", { topic = "tiny.q", value = "1" }) -- fills the mailbox
    eng:publish("go", { topic = "tiny.q", value = "2", timeout_ms = 50 })
    eng:run(1) -- only the client's batch: tiny's mailbox stays full
    eng:run()
    local r = results(res)
    assert.are.same({ why = "full" }, r[#r])
  end)

  it("returns failed at once when the responder crashes on the request", function()
    local eng = engine(2)
    local res = eng:collect("result")
    eng:publish("go", { topic = "crash.now", value = "req-7", timeout_ms = 60000 })
    eng:run()
    local r = results(res)
    assert.are.equal(1, #r)
    assert.are.equal("failed", r[1].why)
    assert.matches("boom on req%-7", r[1].detail)
  end)

  it("returns failed at once for requests queued at a responder that stops for good", function()
    local eng = testing.engine { workers = 1, log = { level = "error" }, services = {
      { name = "server", module = testing.module(server), restart = "temporary" },
      { name = "client", module = testing.module(client) } } }
    local res = eng:collect("result")
    eng:publish("go", { topic = "crash.now", value = "first", timeout_ms = 60000 })
    eng:publish("go", { topic = "slow.a", value = "queued", timeout_ms = 60000, cb = true })
    eng:run()
    local r = results(res)
    assert.are.equal(2, #r)
    assert.are.equal("failed", r[1].why)
    assert.matches("boom on first", r[1].detail)
    assert.are.equal("failed", r[2].why)
    assert.matches("service 'server' failed: [^\n]*boom on first", r[2].detail)
    -- It left its topics: a new request has nobody to go to.
    eng:publish("go", { topic = "slow.a", value = "late" })
    eng:run()
    assert.are.same({ { why = "no_responder" } }, results(res))
  end)

  it("raises when asked to wait outside ctx:fork without a callback", function()
    local bad = [[
return { subscribe = { "x" }, on_message = function(ctx, msg)
  local ok, err = pcall(ctx.request, ctx, "math.double", "1")
  ctx:emit("err", err)
end }]]
    local eng = engine(1, { { name = "bad", module = testing.module(bad) } })
    local errs = eng:collect("err")
    eng:publish("x", "")
    eng:run()
    assert.matches("service 'bad': request to 'math.double' without a callback outside ctx:fork",
                   errs:messages()[1].data, 1, true)
  end)

  it("checks its options", function()
    local bad = [[
return { subscribe = { "x" }, on_message = function(ctx, msg)
  for _, o in ipairs { "5", { timeout_ms = -1 }, { timeout_ms = "1" } } do
    local ok, err = pcall(ctx.request, ctx, "math.double", "1", o, function() end)
    ctx:emit("err", err)
  end
end }]]
    local eng = engine(1, { { name = "bad", module = testing.module(bad) } })
    local errs = eng:collect("err")
    eng:publish("x", "")
    eng:run()
    local m = errs:messages()
    assert.matches("options must be a table", m[1].data, 1, true)
    assert.matches("timeout_ms must be a number of milliseconds from 0", m[2].data, 1, true)
    assert.matches("timeout_ms must be a number of milliseconds from 0", m[3].data, 1, true)
  end)

  it("drops the pending requests of a requester that restarts, counted", function()
    local eng = engine(1)
    local res = eng:collect("result")
    eng:publish("go", { topic = "slow.a", value = "1", timeout_ms = 60000 })
    eng:publish("go", { topic = "slow.b", value = "2", timeout_ms = 60000 })
    eng:run()
    eng:publish("crash", "")
    eng:run()
    assert.are.equal(2, eng:stats("client").requests_dropped)
    eng:advance(1) -- past the restart's backoff
    eng:run()
    assert.are.equal(1, eng:stats("client").restarts)
    -- Their late replies reach the new instance, which counts them.
    assert.are.equal(0, eng:stats("client").replies_late)
    local answered = eng:collect("answered")
    eng:publish("release", "")
    eng:run()
    assert.are.same({ "true", "true" }, (function()
      local o = {}
      for _, m in ipairs(answered:messages()) do o[#o + 1] = m.data end
      return o
    end)())
    assert.are.same({}, results(res))
    assert.are.equal(1, eng:stats("client").errors)
    assert.are.equal(2, eng:stats("client").replies_late)
  end)

  it("drops the pending requests of a requester that is reloaded, counted", function()
    local eng = engine(1)
    local res = eng:collect("result")
    eng:publish("go", { topic = "slow.a", value = "1", timeout_ms = 60000 })
    eng:run()
    assert(eng:reload("client"))
    eng:run()
    assert.are.equal(1, eng:stats("client").requests_dropped)
    -- Its reply comes to the new instance: late, counted.
    eng:publish("release", "")
    eng:run()
    assert.are.equal(1, eng:stats("client").replies_late)
    -- The new instance sends and waits as the old one did.
    eng:publish("go", { topic = "math.double", value = "4" })
    eng:run()
    local r = results(res)
    assert.are.equal(1, #r)
    assert.are.equal("8", r[1].ok)
  end)
end)

describe("ctx:reply", function()
  after_each(testing.cleanup)

  local replier = [[
return { subscribe = { "plain", "req.*" }, on_message = function(ctx, msg)
  if msg.topic == "plain" then
    ctx:emit("left", tostring(ctx:remaining_ms(msg)))
    local ok, err = pcall(ctx.reply, ctx, msg, "x")
    ctx:emit("err", err)
  else
    ctx:emit("left", tostring(ctx:remaining_ms(msg)))
    ctx:reply(msg, "first")
    local c = msg:copy()
    local ok, err = pcall(ctx.reply, ctx, c, "second")
    ctx:emit("err", err)
  end
end }]]

  local function eng_with_replier()
    return testing.engine { workers = 1, log = { level = "error" }, services = {
      { name = "replier", module = testing.module(replier) },
      { name = "client", module = testing.module(client) } } }
  end

  it("raises on a message that is not a request (whose remaining_ms is nil)", function()
    local eng = eng_with_replier()
    local errs, left = eng:collect("err"), eng:collect("left")
    eng:publish("plain", "x")
    eng:run()
    assert.are.equal("nil", left:messages()[1].data)
    assert.matches("service 'replier': reply: the message on 'plain' from 'host' is not a request",
                   errs:messages()[1].data)
  end)

  it("answers once: a second reply, also through a copy, raises", function()
    local eng = eng_with_replier()
    local errs, res = eng:collect("err"), eng:collect("result")
    eng:publish("go", { topic = "req.a", value = "x", timeout_ms = 250 })
    eng:run()
    local r = results(res)
    assert.are.equal(1, #r)
    assert.are.equal("first", r[1].ok)
    assert.matches("reply: the request on 'req.a' from 'client' was already answered",
                   errs:messages()[1].data, 1, true)
  end)

  it("lets the responder read the remaining deadline", function()
    local eng = eng_with_replier()
    local left = eng:collect("left")
    eng:publish("go", { topic = "req.a", value = "x", timeout_ms = 250 })
    eng:run()
    assert.are.equal(250, tonumber(left:messages()[1].data))
  end)

  it("sees the deadline pass on the virtual clock", function()
    local late = [[
local held
return { subscribe = { "req.*", "tick" }, on_message = function(ctx, msg)
  if msg.topic == "tick" then ctx:emit("left", tostring(ctx:remaining_ms(held)))
  else held = msg:copy() end
end }]]
    local eng = testing.engine { workers = 1, log = { level = "error" }, services = {
      { name = "late", module = testing.module(late) },
      { name = "client", module = testing.module(client) } } }
    local left = eng:collect("left")
    eng:publish("go", { topic = "req.a", value = "x", timeout_ms = 250 })
    eng:run()
    eng:advance(0.1)
    eng:publish("tick", "")
    eng:run()
    eng:advance(0.2)
    eng:publish("tick", "")
    eng:run()
    local m = left:messages()
    assert.are.equal(150, tonumber(m[1].data))
    assert.are.equal(-50, tonumber(m[2].data))
  end)
end)
