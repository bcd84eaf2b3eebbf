-- spec/engine/supervisor_spec.lua -- supervision: restarts after a backoff with
-- jitter, restart intensity, OTP restart types, groups, and the handler
-- and memory budgets (docs/SUPERVISION.md).
local testing = require "mycelium.testing"

-- A service on topic "in.<name>" that crashes on "crash" and on numbers
-- divisible by opts.every, exits on "exit"/"exit:reason", echoes the rest
-- on "done.<name>", and says when it starts and stops.
local WORKER = [[
local M = {}
function M.init(ctx, opts)
  ctx:subscribe("in." .. ctx.name)
  ctx:emit("started", ctx.name)
end
function M.on_message(ctx, msg)
  local d = msg.data
  if d == "crash" then error("crash requested") end
  if d == "exit" then ctx:exit() end
  if d:sub(1, 5) == "exit:" then ctx:exit(d:sub(6)) end
  local n = tonumber(d)
  if n and ctx.opts.every and n % ctx.opts.every == 0 then
    error("refusing " .. n)
  end
  ctx:emit("done." .. ctx.name, d)
end
function M.stop(ctx)
  ctx:emit("stopped", ctx.name)
end
return M
]]

local function datas(c)
  local t = {}
  for _, m in ipairs(c:messages()) do t[#t + 1] = m.data end
  return t
end

local function count(list, v)
  local n = 0
  for _, x in ipairs(list) do if x == v then n = n + 1 end end
  return n
end

local function logs_matching(eng, pattern)
  local n = 0
  for _, l in ipairs(eng:logs(true)) do
    if l.msg:find(pattern, 1, true) then n = n + 1 end
  end
  return n
end

describe("supervision", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("restarts a service that crashes on every 5th message: all others are "
     .. "delivered in order, dead letters are exact, the backoff is on time", function()
    local jitter, initial = 0.2, 100
    eng = testing.engine {
      supervisor = { backoff_initial_ms = initial, multiplier = 2, jitter = jitter,
                     max_restarts = 10, window_s = 60 },
      services = { { name = "w", module = testing.module(WORKER), opts = { every = 5 } } },
    }
    local done, dead = eng:collect("done.w"), eng:collect("$dead")
    for i = 1, 20 do eng:publish("in.w", tostring(i)) end
    eng:run()
    -- the kth crash restarts after 100, 200, 400, 800 ms (+-20%)
    for k = 1, 4 do
      assert.are.equal("restarting", eng:stats("w").state)
      local waited = 0
      while eng:stats("w").restarts < k do
        eng:advance(0.001)
        waited = waited + 1
        assert.is_true(waited < 2000, "no restart")
      end
      local d = initial * 2 ^ (k - 1)
      assert.is_true(waited >= d * (1 - jitter) and waited <= d * (1 + jitter) + 1,
                     string.format("restart %d after %d ms, expected %g +- %g%%", k,
                                   waited, d, jitter * 100))
      eng:run()
    end
    local got = datas(done)
    local expect = {}
    for i = 1, 20 do if i % 5 ~= 0 then expect[#expect + 1] = tostring(i) end end
    assert.are.same(expect, got)
    local d = dead:messages()
    assert.are.equal(4, #d)
    for i, m in ipairs(d) do
      assert.are.equal(tostring(5 * i), m.data.payload)
      assert.are.equal("w", m.data.service)
      assert.matches("refusing " .. 5 * i, m.data.error, 1, true)
    end
    local st = eng:stats("w")
    assert.are.equal(4, st.errors)
    assert.are.equal(4, st.restarts)
    assert.are.equal(20, st["in"])
    assert.are.equal(0, st.dropped)
    assert.are.equal("running", st.state)
  end)

  it("delivers the messages queued behind the failing one to the new instance", function()
    eng = testing.engine {
      services = { { name = "w", module = testing.module(WORKER) } },
    }
    local done = eng:collect("done.w")
    eng:publish("in.w", "a")
    eng:publish("in.w", "crash")
    for i = 1, 300 do eng:publish("in.w", "m" .. i) end -- past one batch
    eng:run()
    assert.are.equal(1, #done:messages())
    assert.are.equal(300, eng:stats("w").queue_depth)
    eng:advance(0.05)
    local got = datas(done)
    assert.are.equal(300, #got)
    for i = 1, 300 do assert.are.equal("m" .. i, got[i]) end
  end)

  it("fails a service past its restart intensity while the others go on", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10, max_restarts = 3, window_s = 10, jitter = 0 },
      services = { { name = "bad", module = testing.module(WORKER) },
                   { name = "good", module = testing.module(WORKER) } },
    }
    local done_good = eng:collect("done.good")
    for _ = 1, 10 do eng:publish("in.bad", "crash") end
    eng:advance(5)
    local st = eng:stats("bad")
    assert.are.equal("failed", st.state)
    assert.are.equal(3, st.restarts)
    assert.are.equal(4, st.errors)
    assert.are.equal(1, logs_matching(eng, "restart intensity reached (3 restarts within 10 s)"))
    -- what was queued stays in the mailbox (a reload can revive it)
    assert.are.equal(6, st.queue_depth)
    -- it left its topics: nothing more piles up
    eng:publish("in.bad", "x")
    assert.are.equal(6, eng:stats("bad").queue_depth)
    eng:publish("in.good", "still here")
    eng:run()
    assert.are.same({ "still here" }, datas(done_good))
    assert.are.equal("running", eng:stats("good").state)
  end)

  it("starts the backoff over after a quiet period", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 100, multiplier = 4, jitter = 0,
                     max_restarts = 100, reset_s = 2 },
      services = { { name = "w", module = testing.module(WORKER) } },
    }
    local function crash_and_time()
      eng:publish("in.w", "crash")
      eng:run()
      local waited = 0
      while eng:stats("w").state == "restarting" do
        eng:advance(0.01)
        waited = waited + 10
      end
      return waited
    end
    assert.are.equal(100, crash_and_time())
    assert.are.equal(400, crash_and_time())
    assert.are.equal(1600, crash_and_time())
    eng:advance(2.5) -- quiet
    assert.are.equal(100, crash_and_time())
  end)

  describe("restart types", function()
    local function start()
      eng = testing.engine {
        collect = { "started" },
        supervisor = { backoff_initial_ms = 10, jitter = 0 },
        services = {
          { name = "perm", module = testing.module(WORKER), restart = "permanent" },
          { name = "trans", module = testing.module(WORKER), restart = "transient" },
          { name = "temp", module = testing.module(WORKER), restart = "temporary" },
        },
      }
      return eng:collect("started")
    end
    local function send(svc, what)
      eng:publish("in." .. svc, what)
      eng:advance(0.1)
    end

    it("permanent: restarted after a crash and after a normal exit", function()
      local started = start()
      send("perm", "crash")
      send("perm", "exit")
      local st = eng:stats("perm")
      assert.are.equal("running", st.state)
      assert.are.equal(2, st.restarts)
      assert.are.equal(3, count(datas(started), "perm"))
    end)

    it("transient: restarted after a crash or an exit with a reason, not after a "
       .. "normal exit", function()
      start()
      send("trans", "crash")
      send("trans", "exit:lost the upstream")
      assert.are.equal("running", eng:stats("trans").state)
      assert.are.equal(2, eng:stats("trans").restarts)
      send("trans", "exit")
      local st = eng:stats("trans")
      assert.are.equal("stopped", st.state)
      assert.are.equal(2, st.restarts)
      assert.are.equal(1, st.errors) -- exits are not errors
    end)

    it("temporary: never restarted", function()
      start()
      send("temp", "crash")
      local st = eng:stats("temp")
      assert.are.equal("failed", st.state)
      assert.are.equal(0, st.restarts)
    end)

    it("an exit does not send the message to $dead, and runs stop", function()
      local started = start()
      local dead, stopped = eng:collect("$dead"), eng:collect("stopped")
      send("trans", "exit")
      assert.are.equal(0, #dead:messages())
      assert.are.same({ "trans" }, datas(stopped))
      assert.are.equal(3, #datas(started))
    end)
  end)

  describe("groups", function()
    local function start(strategy, extra)
      local spec = {
        collect = { "started", "stopped" },
        supervisor = { backoff_initial_ms = 10, jitter = 0 },
        supervisors = { pipe = { strategy = strategy, max_restarts = 2, window_s = 60 } },
        services = {
          { name = "a", module = testing.module(WORKER), group = "pipe" },
          { name = "b", module = testing.module(WORKER), group = "pipe" },
          { name = "c", module = testing.module(WORKER), group = "pipe" },
          { name = "solo", module = testing.module(WORKER) },
        },
      }
      for k, v in pairs(extra or {}) do spec[k] = v end
      eng = testing.engine(spec)
      eng:run() -- the collectors take what the inits emitted
      return eng:collect("started"), eng:collect("stopped")
    end

    it("one_for_all restarts every member when one crashes", function()
      local started, stopped = start("one_for_all")
      datas(started)
      eng:publish("in.b", "crash")
      eng:run()
      -- the others ran their stop (they were shut down, not crashed)
      local s = datas(stopped)
      table.sort(s)
      assert.are.same({ "a", "c" }, s)
      for _, n in ipairs { "a", "b", "c" } do
        assert.are.equal("restarting", eng:stats(n).state)
      end
      eng:advance(0.1)
      local again = datas(started)
      table.sort(again)
      assert.are.same({ "a", "b", "c" }, again)
      for _, n in ipairs { "a", "b", "c" } do
        assert.are.equal("running", eng:stats(n).state)
        assert.are.equal(1, eng:stats(n).restarts)
      end
      assert.are.equal(0, eng:stats("solo").restarts)
    end)

    it("one_for_all keeps every member's mailbox", function()
      start("one_for_all")
      local done_a, done_c = eng:collect("done.a"), eng:collect("done.c")
      eng:publish("in.b", "crash")
      eng:publish("in.a", "1")
      eng:publish("in.c", "2")
      eng:advance(0.1)
      assert.are.same({ "1" }, datas(done_a))
      assert.are.same({ "2" }, datas(done_c))
    end)

    it("rest_for_one restarts the member and those after it", function()
      local started = start("rest_for_one")
      datas(started)
      eng:publish("in.b", "crash")
      eng:advance(0.1)
      local again = datas(started)
      table.sort(again)
      assert.are.same({ "b", "c" }, again)
      assert.are.equal(0, eng:stats("a").restarts)
    end)

    it("one_for_one restarts only the member that crashed", function()
      local started = start("one_for_one")
      datas(started)
      eng:publish("in.a", "crash")
      eng:advance(0.1)
      assert.are.same({ "a" }, datas(started))
    end)

    it("fails the whole group past its intensity", function()
      start("one_for_all")
      for _ = 1, 3 do
        eng:publish("in.a", "crash")
        eng:advance(0.2)
      end
      for _, n in ipairs { "a", "b", "c" } do
        assert.are.equal("failed", eng:stats(n).state)
      end
      assert.are.equal("running", eng:stats("solo").state)
    end)
  end)

  it("injects faults through mycelium.testing", function()
    eng = testing.engine { services = { { name = "w", module = testing.module(WORKER) } } }
    local dead, done = eng:collect("$dead"), eng:collect("done.w")
    eng:fault("w")
    eng:publish("in.w", "1")
    eng:publish("in.w", "2")
    eng:advance(0.1)
    local d = dead:messages()
    assert.are.equal(1, #d)
    assert.are.equal("1", d[1].data.payload)
    assert.are.equal("injected fault", d[1].data.error)
    assert.are.same({ "2" }, datas(done))
    assert.are.equal(1, eng:stats("w").restarts)
  end)
end)

describe("budgets", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("a service over its memory limit crashes alone, and restarts", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = {
        { name = "hog", memory_limit_mb = 8, module = testing.module [[
          local keep = {}
          return { subscribe = { "in" }, on_message = function(ctx, msg)
            if msg.data == "grow" then
              for i = 1, 1e8 do keep[i] = { i, tostring(i) } end
            elseif msg.data == "swallow" then
              -- catching the error does not save the instance: the code
              -- after the pcall never runs
              local ok = pcall(function()
                local t = {}
                for i = 1, 1e8 do t[i] = { i } end
              end)
              ctx:emit("out", "caught: " .. tostring(not ok))
            else
              ctx:emit("out", msg.data)
            end
          end }]] },
        { name = "other", module = testing.module(WORKER) },
      },
    }
    local out, dead = eng:collect("out"), eng:collect("$dead")
    eng:publish("in", "grow")
    eng:publish("in", "after")
    eng:run()
    local st = eng:stats("hog")
    assert.are.equal("restarting", st.state)
    assert.are.equal(8 * 1048576, st.memory_limit)
    local d = dead:messages()
    assert.are.equal(1, #d)
    assert.are.equal("grow", d[1].data.payload)
    assert.matches("memory limit of 8.0 MB exceeded", d[1].data.error, 1, true)
    eng:advance(0.1)
    assert.are.same({ "after" }, datas(out))
    st = eng:stats("hog")
    assert.are.equal("running", st.state)
    assert.is_true(st.memory_bytes < 8 * 1048576)
    eng:publish("in", "swallow")
    eng:run()
    assert.are.same({}, datas(out))
    d = dead:messages()
    assert.are.equal("swallow", d[1].data.payload)
    assert.matches("memory limit of 8.0 MB exceeded", d[1].data.error, 1, true)
    assert.are.equal("restarting", eng:stats("hog").state)
    eng:advance(0.1)
    assert.are.equal(2, eng:stats("hog").restarts)
    assert.are.equal("running", eng:stats("other").state)
  end)

  it("reports and interrupts a handler past its time budget", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = { { name = "slow", handler_timeout_ms = 50, load_timeout_ms = 30000,
                     module = testing.module [[
        jit.off() -- this state runs interpreted: the hook reaches everything
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          if msg.data == "spin" then
            local x, t0 = 0, os.clock()
            -- 60 s of CPU if the hook missed: far above the bound below,
            -- which is generous for a loaded machine
            while os.clock() - t0 < 60 do x = x + 1 end
          end
          ctx:emit("out", msg.data)
        end }]] } },
    }
    local out, dead = eng:collect("out"), eng:collect("$dead")
    eng:publish("in", "spin")
    eng:publish("in", "next")
    local t0 = testing.monotonic()
    eng:run()
    local took = testing.monotonic() - t0
    assert.is_true(took < 30, "interrupted after " .. took .. " s")
    local d = dead:messages()
    assert.are.equal(1, #d)
    assert.matches("handler timeout", d[1].data.error, 1, true)
    local st = eng:stats("slow")
    assert.are.equal(1, st.timeouts)
    assert.are.equal("restarting", st.state)
    local reported = 0
    for _, l in ipairs(eng:logs(true)) do
      if l.msg:find("handler in: running for", 1, true)
          and l.msg:find("past its budget of 50 ms", 1, true) then
        reported = reported + 1
      end
    end
    assert.are.equal(1, reported)
    eng:advance(0.1)
    assert.are.same({ "next" }, datas(out))
  end)

  it("cannot interrupt a JIT-compiled loop inside its trace (bounded test)", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = { { name = "hot", handler_timeout_ms = 50, load_timeout_ms = 30000,
                     module = testing.module [[
        local ffi = require "ffi"
        ffi.cdef "struct hot_ts { long s, ns; }; int clock_gettime(int, struct hot_ts *);"
        local ts = ffi.new("struct hot_ts")
        local function now()
          ffi.C.clock_gettime(1, ts)
          return tonumber(ts.s) + tonumber(ts.ns) * 1e-9
        end
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          -- compiled: FFI calls and arithmetic, no allocation, no exit
          local stop, x = now() + 0.6, 0
          while now() < stop do x = x + 1 end
          ctx:emit("out", "finished")
        end }]] } },
    }
    local out, dead = eng:collect("out"), eng:collect("$dead")
    eng:publish("in", "go")
    local t0 = testing.monotonic()
    eng:run()
    local took = testing.monotonic() - t0
    -- it ran its whole 0.6 s: the hook cannot fire inside the trace ...
    assert.is_true(took >= 0.6 and took < 30, "took " .. took .. " s")
    -- ... and fires as soon as the code leaves it: the handler never emits
    assert.are.equal(0, #out:messages())
    local d = dead:messages()
    assert.are.equal(1, #d)
    assert.matches("handler timeout", d[1].data.error, 1, true)
    local said = false
    for _, l in ipairs(eng:logs(true)) do
      if l.msg:find("compiled code the hook cannot reach", 1, true) then said = true end
    end
    assert.is_true(said)
    assert.are.equal(1, eng:stats("hot").timeouts)
  end)

  it("interrupts a JIT-compiled loop that allocates", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = { { name = "alloc", handler_timeout_ms = 50, load_timeout_ms = 30000,
                     module = testing.module [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          local t = {}
          -- minutes if the hook missed, far above the bound below
          for i = 1, 2e10 do t[i % 64 + 1] = { i } end
        end }]] } },
    }
    local dead = eng:collect("$dead")
    eng:publish("in", "go")
    local t0 = testing.monotonic()
    eng:run()
    local took = testing.monotonic() - t0
    assert.is_true(took < 30, "took " .. took .. " s")
    assert.are.equal(1, #dead:messages())
    assert.are.equal(1, eng:stats("alloc").timeouts)
  end)
end)

describe("before start", function()
  after_each(testing.cleanup)

  it("messages queued before the start are handled once the service runs", function()
    local eng = testing.engine { start = false, services = { { name = "w",
      module = testing.module [[
        return { subscribe = { "in" },
                 on_message = function(ctx, msg) ctx:emit("out", msg.data) end }]] } } }
    local out = eng:collect("out")
    eng:publish("in", "early")
    eng:run()
    eng:start()
    eng:run()
    local got = out:messages()
    assert.are.equal(1, #got)
    assert.are.equal("early", got[1].data)
    eng:close()
  end)
end)
