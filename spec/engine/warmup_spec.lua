-- spec/engine/warmup_spec.lua -- a service's warmup(ctx, warm): run once
-- after init, with the JIT on, driving the service's own handlers with
-- messages it makes; what it emits goes nowhere, its time is bounded, and
-- a warm-up that fails leaves the service running (docs/API.md, Warm-up).
local testing = require "mycelium.testing"

-- A counter service: its real state is `count`; its warm-up swaps in a
-- scratch state, drives the handler, and puts the real one back.
local COUNTER = [[
local jutil = require "jit.util"
local count, seen = 0, {}
local M = { subscribe = { "in" } }
function M.on_message(ctx, msg)
  count = count + 1
  seen[#seen + 1] = msg.data.v
  ctx:emit("out", { v = msg.data.v, count = count, source = msg.source,
                    compiled = jutil.traceinfo(1) ~= nil })
  ctx.log:info("handled", { v = msg.data.v })
  ctx.metrics_c = ctx.metrics_c or ctx.metrics:counter("handled_total", "handled")
  ctx.metrics_c:inc()
end
function M.warmup(ctx, warm)
  local real_count, real_seen = count, seen
  count, seen = 0, {}
  for i = 1, %d do warm:deliver("in", { v = -i }) end
  local emits, logs = warm:dropped()
  count, seen = real_count, real_seen
  ctx.log:info("never logged")
  _G.warm_dropped = { emits, logs }
end
return M]]

local function datas(c)
  local t = {}
  for _, m in ipairs(c:messages()) do t[#t + 1] = m.data end
  return t
end

local function logs_with(eng, text)
  local out = {}
  for _, l in ipairs(eng:logs(true)) do
    if type(l) == "table" and tostring(l.msg):find(text, 1, true) then
      out[#out + 1] = l
    end
  end
  return out
end

describe("warm-up", function()
  after_each(testing.cleanup)

  it("runs at the engine's start only: a reload, a restart and a spawn start cold", function()
    local module = testing.module(COUNTER:format(50))
    local eng = testing.engine { supervisor = { backoff_initial_ms = 0 },
      services = { { name = "ctr", module = module } } }
    eng:run()
    assert.are.equal(1, #logs_with(eng, "warm-up: 50 messages handled"))
    eng:fault("ctr")
    eng:publish("in", { v = 1 })
    eng:run()
    for _ = 1, 100 do
      if eng:stats("ctr").restarts > 0 then break end
      eng:advance(0.01)
      eng:run()
    end
    assert.is_true(eng:reload("ctr"))
    eng:advance(0.01)
    eng:run()
    assert.truthy(eng:spawn("ctr2", module))
    eng:run()
    assert.are.equal(1, eng:stats("ctr").restarts)
    assert.are.equal(1, eng:stats("ctr").reloads)
    assert.are.equal("running", eng:stats("ctr2").state)
    local w = logs_with(eng, "warm-up:")
    assert.are.equal(0, #w, w[1] and (tostring(w[1].service) .. ": " .. w[1].msg))
    eng:close()
  end)

  it("drives the handlers before traffic; what they emit is not delivered and state is untouched", function()
    local eng = testing.engine { services = {
      { name = "ctr", module = testing.module(COUNTER:format(500)) } } }
    local out = eng:collect("out")
    eng:run()
    assert.are.same({}, datas(out)) -- nothing of the warm-up's 500
    local st = eng:stats("ctr")
    assert.are.equal(0, st.out)
    assert.are.equal(0, st.unrouted)
    local done = logs_with(eng, "warm-up: 500 messages handled")
    assert.are.equal(1, #done, "one warm-up line")
    assert.matches("500 emits and 501 log records dropped", done[1].msg, 1, true)
    assert.are.equal(0, #logs_with(eng, "handled"))
    assert.are.equal(0, #logs_with(eng, "never logged"))
    eng:publish("in", { v = 7 })
    eng:run()
    local got = datas(out)
    assert.are.equal(1, #got)
    -- the real state: the first real message counts as the first
    assert.are.equal(1, got[1].count)
    assert.are.equal(7, got[1].v)
    -- compiled during the warm-up: the handler meets traces at once
    assert.is_true(got[1].compiled)
    assert.are.equal(1, eng:stats("ctr").out)
    local m = eng:metrics()
    assert.matches('handled_total{service="ctr"} 1\n', m, 1, true)
    eng:close()
  end)

  it("what the warm-up left as garbage is collected before the first message", function()
    local eng = testing.engine { services = { { name = "g", module = testing.module [[
local M = { subscribe = { "in" } }
local peak
function M.on_message(ctx)
  ctx:emit("out", { peak = peak, now = collectgarbage("count") })
end
function M.warmup()
  local garbage = {}
  for i = 1, 100000 do garbage[i] = { i } end
  peak = collectgarbage("count")
end
return M]] } } }
    local out = eng:collect("out")
    eng:run()
    eng:publish("in", "go")
    eng:run()
    local got = datas(out)[1]
    -- 100 000 tables are several MiB; what is left is the service's own.
    assert.is_true(got.peak > 4096, "the warm-up made its garbage: " .. got.peak)
    assert.is_true(got.now < got.peak / 2, got.now .. " KiB of " .. got.peak)
    eng:close()
  end)

  it("a service without warmup starts as before (no trace before its first message)", function()
    local eng = testing.engine { services = {
      { name = "ctr", module = testing.module(
          (COUNTER:format(1)):gsub("function M.warmup", "local function unused")) } } }
    local out = eng:collect("out")
    eng:publish("in", { v = 1 })
    eng:run()
    assert.is_false(datas(out)[1].compiled)
    assert.are.equal(0, #logs_with(eng, "warm-up"))
    eng:close()
  end)

  it("a warm-up that raises is logged and the service runs, cold", function()
    local mod = [[
      local count = 0
      return { subscribe = { "in" },
        on_message = function(ctx, msg) count = count + 1 ctx:emit("out", tostring(count)) end,
        warmup = function(ctx, warm)
          local real = count
          local ok, err = pcall(function()
            warm:deliver("in", "x")
            error("bad synthetic input")
          end)
          count = real
          error(err, 0)
        end }]]
    local eng = testing.engine { services = {
      { name = "w", module = testing.module(mod) } } }
    local out = eng:collect("out")
    local failed = logs_with(eng, "warm-up (the service starts without it) failed")
    assert.are.equal(1, #failed)
    assert.matches("bad synthetic input", failed[1].msg, 1, true)
    assert.are.equal("w", failed[1].service)
    eng:publish("in", "y")
    eng:run()
    assert.are.same({ "1" }, datas(out))
    eng:close()
  end)

  it("a runaway warm-up is stopped after the load budget with an error naming the service", function()
    local mod = [[
      local real = true
      return { subscribe = { "in" },
        on_message = function(ctx, msg) ctx:emit("out", real and "real" or "scratch") end,
        warmup = function(ctx, warm)
          real = false
          local ok, err = pcall(function()
            while true do warm:deliver("in", "x") end
          end)
          real = true
          error(err, 0)
        end }]]
    local t0 = testing.monotonic()
    local eng = testing.engine { services = {
      { name = "spin", load_timeout_ms = 200, module = testing.module(mod) } } }
    local took = testing.monotonic() - t0
    assert.is_true(took < 2, "took " .. took)
    local failed = logs_with(eng, "warm-up")
    assert.are.equal(1, #failed)
    assert.matches("service 'spin'", failed[1].msg .. " service '" .. failed[1].service .. "'", 1, true)
    assert.matches("warm-up timeout: still running after its budget of 200 ms", failed[1].msg, 1, true)
    local out = eng:collect("out")
    eng:publish("in", "y")
    eng:run()
    assert.are.same({ "real" }, datas(out)) -- its state was put back
    eng:close()
  end)

  it("one that swallows the interruption and goes on is stopped too, naming the service", function()
    -- Where the one interruption lands decides: outside the inner pcall
    -- it ends the warm-up (the service starts cold); inside, the loop
    -- goes on until twice the budget, when its next allocation fails and
    -- the instance is abandoned (the start fails).  Either way it ends,
    -- and says which service and which budget.
    local mod = [[
      return { subscribe = { "in" }, on_message = function() end,
        warmup = function(ctx, warm)
          while true do pcall(function() while true do warm:deliver("in", "x") end end) end
        end }]]
    local t0 = testing.monotonic()
    local ok, eng = pcall(testing.engine, { services = {
      { name = "stubborn", load_timeout_ms = 100, module = testing.module(mod) } } })
    local took = testing.monotonic() - t0
    assert.is_true(took < 3, "took " .. took)
    local text = ok and "" or eng
    if ok then
      for _, l in ipairs(logs_with(eng, "warm-up")) do text = text .. l.service .. ": " .. l.msg end
      eng:close()
    end
    assert.matches("stubborn", text, 1, true)
    assert.matches("warm-up timeout: still running after its budget of 100 ms", text, 1, true)
  end)

  it("timers, requests, spawns and exits of a warm-up do not outlive it or leave it", function()
    local mod = [[
      local got = {}
      return { subscribe = { "in", "ask" },
        on_message = function(ctx, msg)
          if msg.topic == "ask" then return ctx:reply(msg, "answer") end
          ctx:emit("out", table.concat(got, ","))
        end,
        warmup = function(ctx, warm)
          ctx:after(0, function() ctx:emit("out", "timer of the warm-up fired") end)
          ctx:request("ask", "q", { timeout_ms = 10 }, function(r, why)
            got[#got + 1] = "request:" .. tostring(why)
          end)
          local name, why, code = ctx:spawn("child", "nowhere.lua")
          got[#got + 1] = "spawn:" .. tostring(code)
          ctx:exit("no")
          ctx:shutdown(3)
        end }]]
    local eng = testing.engine { services = {
      { name = "w", module = testing.module(mod) } } }
    local out = eng:collect("out")
    eng:advance(0.1)
    eng:run()
    eng:publish("in", "y")
    eng:run()
    assert.are.same({ "request:operation not valid in the current state,spawn:ESTATE" },
                    datas(out))
    assert.is_false(eng:stopping())
    assert.are.equal("running", eng:stats("w").state)
    eng:close()
  end)

  it("deliver refuses a topic without a handler, and works only inside warmup", function()
    local mod = [[
      local keep, got
      return { subscribe = { "in" },
        on_message = function(ctx, msg)
          if got == nil then got = msg.data return end
          local ok, err = pcall(keep.deliver, keep, "in", "again")
          ctx:emit("out", tostring(err))
        end,
        warmup = function(ctx, warm)
          keep = warm
          local ok, err = pcall(warm.deliver, warm, "nobody", "x")
          assert(not ok and err:find("no handler for topic nobody", 1, true), err)
          -- a value ctx:emit refuses raises, and the next message is its own
          ok, err = pcall(warm.deliver, warm, "in", { f = print })
          assert(not ok and err:find("field", 1, true), err)
          got = nil
          warm:deliver("in", "second")
          assert(got == "second", tostring(got))
        end }]]
    local eng = testing.engine { services = {
      { name = "w", module = testing.module(mod) } } }
    local out = eng:collect("out")
    eng:publish("in", "y")
    eng:run()
    assert.matches("deliver is for the module's warmup only", datas(out)[1], 1, true)
    eng:close()
  end)
end)
