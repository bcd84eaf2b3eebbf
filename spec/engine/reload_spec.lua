-- spec/engine/reload_spec.lua -- hot reload: state carried over, automatic
-- rollback on load, compile or init failure, probation rollback, and
-- nothing lost, duplicated or reordered across a swap.
local testing = require "mycelium.testing"

-- A counter: "in" messages are numbered from the carried-over state and
-- echoed on "out" as "<version>:<n>:<payload>".
local function counter(version, extra)
  return testing.module(string.format([[
local M = { subscribe = { "in" } }
local n = 0
function M.init(ctx, opts, state)
  n = state and state.n or 0
  ctx:emit("inits", %q)
end
function M.on_message(ctx, msg)
  n = n + 1
  %s
  ctx:emit("out", %q .. ":" .. n .. ":" .. msg.data)
end
function M.snapshot(ctx) return { n = n } end
return M
]], version, extra or "", version))
end

local function datas(c)
  local t = {}
  for _, m in ipairs(c:messages()) do t[#t + 1] = m.data end
  return t
end

describe("hot reload", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  local function start(module, extra)
    local spec = { services = { { name = "c", module = module } } }
    for k, v in pairs(extra or {}) do spec[k] = v end
    eng = testing.engine(spec)
    return eng:collect("out")
  end

  it("carries the state over: a counter continues", function()
    local out = start(counter("v1"))
    for i = 1, 3 do eng:publish("in", "a" .. i) end
    eng:run()
    assert.is_true(eng:reload("c", counter("v2")))
    for i = 1, 3 do eng:publish("in", "b" .. i) end
    eng:run()
    assert.are.same({ "v1:1:a1", "v1:2:a2", "v1:3:a3", "v2:4:b1", "v2:5:b2", "v2:6:b3" },
                    datas(out))
    local st = eng:stats("c")
    assert.are.equal(2, st.version)
    assert.are.equal(1, st.reloads)
    assert.are.equal("running", st.state)
  end)

  it("keeps messages that arrive during the swap, in order, none twice", function()
    local out = start(counter("v1"))
    for i = 1, 300 do eng:publish("in", tostring(i)) end
    eng:run()
    for i = 301, 600 do eng:publish("in", tostring(i)) end -- queued
    assert.is_true(eng:reload("c", counter("v2")))
    for i = 601, 700 do eng:publish("in", tostring(i)) end
    eng:run()
    local got = datas(out)
    assert.are.equal(700, #got)
    for i, d in ipairs(got) do
      local v, n, payload = d:match("^(v%d):(%d+):(%d+)$")
      assert.are.equal(i, tonumber(n))
      assert.are.equal(i, tonumber(payload))
      assert.are.equal(i <= 300 and "v1" or "v2", v)
    end
  end)

  it("reloads the same file read again when no new module is given", function()
    local path = counter("v1")
    local out = start(path)
    eng:publish("in", "x")
    eng:run()
    local f = assert(io.open(path, "r"))
    local src = f:read("*a"):gsub('"v1"', '"v9"')
    f:close()
    f = assert(io.open(path, "w"))
    f:write(src)
    f:close()
    assert.is_true(eng:reload("c"))
    eng:publish("in", "y")
    eng:run()
    assert.are.same({ "v1:1:x", "v9:2:y" }, datas(out))
  end)

  it("refuses a syntax error with file and line; the old version keeps answering", function()
    local out = start(counter("v1"))
    eng:publish("in", "a")
    eng:run()
    local bad = testing.module("local M = {}\nfunction M.on_message(ctx, msg\nreturn M\n")
    local ok, err, code = eng:reload("c", bad)
    assert.is_nil(ok)
    assert.are.equal("ELUA", code)
    assert.matches(bad:gsub("%p", "%%%0") .. ":3: ", err)
    eng:publish("in", "b")
    eng:run()
    assert.are.same({ "v1:1:a", "v1:2:b" }, datas(out))
    local st = eng:stats("c")
    assert.are.equal(1, st.version)
    assert.are.equal(1, st.reload_failures)
    assert.are.equal(0, st.reloads)
    local logged = false
    for _, l in ipairs(eng:logs(true)) do
      if l.msg:find("reload refused, the running version goes on", 1, true) then logged = true end
    end
    assert.is_true(logged)
  end)

  it("refuses a module that fails to load or lacks a handler", function()
    start(counter("v1"))
    local ok, err = eng:reload("c", testing.module("error('not today')"))
    assert.is_nil(ok)
    assert.matches("not today", err, 1, true)
    ok, err = eng:reload("c", testing.module("return { subscribe = { 'in' } }"))
    assert.is_nil(ok)
    assert.matches("the module has no handler", err, 1, true)
    ok, err = eng:reload("c", "/nonexistent/v2.lua")
    assert.is_nil(ok)
    assert.matches("cannot open /nonexistent/v2.lua", err, 1, true)
    assert.are.equal(3, eng:stats("c").reload_failures)
  end)

  it("rolls back when the new init raises: state, timers and subscriptions untouched", function()
    local out = start(counter("v1"))
    eng:publish("in", "a")
    eng:run()
    out:messages()
    local v2 = testing.module [[
      return { subscribe = { "other" }, on_message = function() end,
               init = function(ctx, opts, state)
                 ctx:every(10, function() ctx:emit("out", "v2 timer") end)
                 error("v2 cannot start with n=" .. state.n)
               end }]]
    local ok, err = eng:reload("c", v2)
    assert.is_nil(ok)
    assert.matches("v2 cannot start with n=1", err, 1, true)
    eng:publish("in", "b")
    eng:publish("other", "nobody")
    eng:advance(0.1)
    assert.are.same({ "v1:2:b" }, datas(out))
    assert.are.equal(1, eng:stats("c").version)
    assert.are.equal(2, eng:stats("c")["in"])
  end)

  it("carries nested tables, arrays and every scalar type", function()
    start(testing.module [[
      local st = { n = 1.5, s = "x\0y", t = true, f = false, arr = { 1, 2, 3, "four" },
                   nested = { a = { b = { c = "deep" } } }, [7] = "seven", [true] = "yes" }
      st.shared1 = { "same" }
      st.shared2 = st.shared1
      return { subscribe = { "in" }, on_message = function() end,
               snapshot = function() return st end }]])
    local v2 = testing.module [[
      local M = { subscribe = { "in" } }
      local got
      function M.init(ctx, opts, st) got = st end
      function M.on_message(ctx)
        local ok = got.n == 1.5 and got.s == "x\0y" and got.t == true and got.f == false
          and #got.arr == 4 and got.arr[4] == "four" and got.nested.a.b.c == "deep"
          and got[7] == "seven" and got[true] == "yes"
          and got.shared1[1] == "same" and got.shared2[1] == "same"
          and got.shared1 ~= got.shared2 -- copied twice
        ctx:emit("out", tostring(ok))
      end
      return M]]
    local out = eng:collect("out")
    assert.is_true(eng:reload("c", v2))
    eng:publish("in", "check")
    eng:run()
    assert.are.same({ "true" }, datas(out))
  end)

  it("refuses a snapshot that contains itself", function()
    start(testing.module [[
      local st = {}
      st.self = st
      return { subscribe = { "in" }, on_message = function() end,
               snapshot = function() return st end }]])
    local ok, err = eng:reload("c", counter("v2"))
    assert.is_nil(ok)
    assert.matches("nested more than 64 levels", err, 1, true)
    assert.matches("field 'self.self.self", err, 1, true)
    assert.are.equal(1, eng:stats("c").version)
  end)

  it("refuses a snapshot that cannot be carried over", function()
    start(testing.module [[
      return { subscribe = { "in" }, on_message = function() end,
               snapshot = function() return { f = print } end }]])
    local ok, err = eng:reload("c", counter("v2"))
    assert.is_nil(ok)
    assert.matches("service 'c': snapshot: field 'f' is a function", err, 1, true)
    assert.are.equal(1, eng:stats("c").version)
  end)

  it("rolls back to the previous code and its snapshot when the new version "
     .. "crashes within its probation", function()
    local out = start(counter("v1"), { supervisor = { reload_probation_s = 5 } })
    local dead = eng:collect("$dead")
    for _, d in ipairs { "a", "b" } do eng:publish("in", d) end
    eng:run()
    assert.is_true(eng:reload("c", counter("v2", 'if msg.data == "c" then error("v2 broke") end')))
    eng:publish("in", "c")
    eng:publish("in", "d")
    eng:run()
    -- v2 crashed on "c" (dead letter); v1 came back with n = 2 and took "d"
    assert.are.same({ "v1:1:a", "v1:2:b", "v1:3:d" }, datas(out))
    local d = dead:messages()
    assert.are.equal(1, #d)
    assert.matches("v2 broke", d[1].data.error, 1, true)
    local st = eng:stats("c")
    assert.are.equal(1, st.rollbacks)
    assert.are.equal("running", st.state)
    assert.are.equal(0, st.restarts)
  end)

  it("restarts the new version normally once its probation is over", function()
    local out = start(counter("v1"),
                      { supervisor = { reload_probation_s = 1, backoff_initial_ms = 10 } })
    assert.is_true(eng:reload("c", counter("v2", 'if msg.data == "boom" then error("late") end')))
    eng:advance(2)
    eng:publish("in", "boom")
    eng:publish("in", "after")
    eng:advance(0.1)
    -- a restart starts from scratch (init without state)
    assert.are.same({ "v2:1:after" }, datas(out))
    local st = eng:stats("c")
    assert.are.equal(0, st.rollbacks)
    assert.are.equal(1, st.restarts)
  end)

  it("follows the new module's subscriptions", function()
    local out = start(counter("v1"))
    local dead = eng:collect("$dead")
    local v2 = testing.module [[
      return { handlers = { in2 = function(ctx, msg) ctx:emit("out", "v2:" .. msg.data) end } }]]
    eng:publish("in", "queued before")
    assert.is_true(eng:reload("c", v2))
    eng:publish("in", "after") -- nobody listens to "in" any more
    assert.are.equal(1, eng:stats("c").queue_depth)
    eng:publish("in2", "new topic")
    eng:run()
    assert.are.same({ "v2:new topic" }, datas(out))
    -- what was queued on a topic it no longer handles is not lost
    -- silently, and does not crash it: $dead has it
    local d = dead:messages()
    assert.are.equal(1, #d)
    assert.are.equal("queued before", d[1].data.payload)
    assert.matches("no handler for topic 'in'", d[1].data.error, 1, true)
    local st = eng:stats("c")
    assert.are.equal(2, st["in"])
    assert.are.equal(0, st.errors)
    assert.are.equal(0, st.restarts)
  end)

  it("keeps, leaves and adds among thousands of patterns", function()
    local function ranged(version, from, to)
      return testing.module(string.format([[
local list = {}
for i = %d, %d do list[#list + 1] = "p." .. i end
return { subscribe = list,
  on_message = function(ctx, msg) ctx:emit("out", %q .. ":" .. msg.topic) end }]],
        from, to, version))
    end
    local out = start(ranged("v1", 1, 3000))
    eng:publish("p.1", "")
    eng:run()
    assert.is_true(eng:reload("c", ranged("v2", 1001, 4000)))
    for _, t in ipairs { "p.1", "p.1000", "p.1001", "p.3000", "p.3001", "p.4000" } do
      eng:publish(t, "")
    end
    eng:run()
    assert.are.same({ "v1:p.1", "v2:p.1001", "v2:p.3000", "v2:p.3001", "v2:p.4000" },
                    datas(out))
  end)

  it("forgets the old version's timers", function()
    local out = start(testing.module [[
      return { init = function(ctx) ctx:every(100, function() ctx:emit("out", "old") end) end,
               subscribe = { "in" }, on_message = function() end }]])
    eng:advance(0.25)
    assert.are.same({ "old", "old" }, datas(out))
    assert.is_true(eng:reload("c", testing.module [[
      return { init = function(ctx) ctx:every(100, function() ctx:emit("out", "new") end) end,
               subscribe = { "in" }, on_message = function() end }]]))
    eng:advance(0.25)
    assert.are.same({ "new", "new" }, datas(out))
  end)

  it("runs the old version's stop after the new init", function()
    start(testing.module [[
      return { subscribe = { "in" }, on_message = function() end,
               stop = function(ctx) ctx:emit("stops", "v1") end }]],
          { collect = { "stops", "inits" } })
    local stops = eng:collect("stops")
    assert.is_true(eng:reload("c", counter("v2")))
    eng:advance(0) -- right after the swap, once the new version had its turn
    assert.are.same({ "v1" }, datas(stops))
  end)

  it("revives a failed service", function()
    local out = start(testing.module [[
      return { subscribe = { "in" }, on_message = function() error("always") end }]],
      { supervisor = { max_restarts = 0 } })
    eng:publish("in", "1")
    eng:publish("in", "2")
    eng:run()
    assert.are.equal("failed", eng:stats("c").state)
    assert.is_true(eng:reload("c", counter("v2")))
    eng:run()
    -- "2" was queued when it failed: the new version handles it
    assert.are.same({ "v2:1:2" }, datas(out))
    assert.are.equal("running", eng:stats("c").state)
    eng:publish("in", "3")
    eng:run()
    assert.are.same({ "v2:2:3" }, datas(out))
  end)

  it("reports a reload of a service that does not exist, or of a C service", function()
    start(counter("v1"))
    local ok, err, code = eng:reload("nope")
    assert.is_nil(ok)
    assert.are.equal("ENOENT", code)
    assert.matches("no service named 'nope'", err, 1, true)
    eng:collect("x")
    ok, err, code = eng:reload("collector-1")
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.matches("is a C service", err, 1, true)
  end)
end)
