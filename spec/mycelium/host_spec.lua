-- spec/mycelium/host_spec.lua -- the service host (mycelium.host): loading
-- services and what happens when they fail.
local testing = require "mycelium.testing"

local function try(src, name)
  local path = testing.module(src)
  local ok, err = pcall(testing.engine, { services = { { name = name or "svc", module = path } } })
  if ok then err:close() end
  return ok, err, path
end

describe("service loading", function()
  after_each(testing.cleanup)

  it("reports a missing file", function()
    local ok, err = pcall(testing.engine, { services = { { name = "x", module = "/nonexistent/x.lua" } } })
    assert.is_false(ok)
    -- as `mycelium check` says it
    assert.matches("'services[1].module': cannot read '/nonexistent/x.lua'", err, 1, true)
  end)

  it("finds modules next to the service's file", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "/lib'") == 0)
    local f = assert(io.open(dir .. "/lib/helper.lua", "w"))
    f:write("return { answer = 42 }")
    f:close()
    f = assert(io.open(dir .. "/svc.lua", "w"))
    f:write("local h = require 'lib.helper'\n" ..
            "return { init = function(ctx) ctx:emit('out', tostring(h.answer)) end }")
    f:close()
    local eng = testing.engine { services = { { name = "svc", module = dir .. "/svc.lua" } },
                                 start = false }
    local out = eng:collect("out")
    eng:start()
    eng:run()
    assert.equal("42", out:messages()[1].data)
    eng:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  -- What a service's state holds before its code asks for more: the
  -- cost of each of ten thousand small services (docs/PERFORMANCE.md).
  it("loads msgpack, log and the rare declarations on first use", function()
    local path = testing.module [[
      local cdefs = require "mycelium.cdefs"
      local function has(m) return package.loaded[m] ~= nil end
      local M = { subscribe = { "go" } }
      function M.on_message(ctx, msg)
        local before = { has("mycelium.msgpack"), has("mycelium.log"),
                         cdefs.declared.service == true }
        ctx:emit("out", { n = ctx:queue_depth() })
        ctx.log:info("logged")
        local t = msg.data -- a table payload: decoded by mycelium.msgpack
        ctx:emit("out", string.format("%s %s %s / %s %s %s %s", before[1],
          before[2], before[3], has("mycelium.msgpack"), has("mycelium.log"),
          cdefs.declared.service == true, t.k))
      end
      return M
    ]]
    local eng = testing.engine { services = { { name = "svc", module = path } } }
    local out = eng:collect("out")
    eng:publish("go", { k = "v" })
    eng:run()
    local got = out:messages()
    assert.equal(2, #got)
    assert.equal("false false false / true true true v", got[2].data)
    eng:close()
  end)

  it("reports a syntax error with file and line", function()
    local ok, err, path = try("local M = {}\n\nfunction M.on_message(ctx, msg\nreturn M\n")
    assert.is_false(ok)
    assert.matches(path:gsub("%p", "%%%0") .. ":4: ", err)
  end)

  it("reports a module that does not return a table", function()
    local ok, err, path = try("return 42")
    assert.is_false(ok)
    assert.matches("must return a table (the service module), got number", err, 1, true)
    assert.matches(path, err, 1, true)
  end)

  it("reports a module without any handler", function()
    local ok, err = try("return { subscribe = { 'a' } }")
    assert.is_false(ok)
    assert.matches("the module has no handler", err, 1, true)
  end)

  it("reports a subscription without a handler", function()
    local ok, err = try("return { subscribe = { 'a' }, handlers = { b = function() end } }")
    assert.is_false(ok)
    assert.matches("service 'svc': subscribe 'a': no handler", err, 1, true)
  end)

  it("reports an invalid subscription topic", function()
    local ok, err = try("return { subscribe = { 'a..b' }, on_message = function() end }")
    assert.is_false(ok)
    assert.matches("service 'svc': subscribe: invalid topic 'a..b': empty segment", err, 1, true)
  end)

  it("reports handlers of the wrong type", function()
    local ok, err = try("return { handlers = { a = 1 } }")
    assert.is_false(ok)
    assert.matches("handlers[a] must be a function", err, 1, true)
    ok, err = try("return { on_message = 'x' }")
    assert.is_false(ok)
    assert.matches("on_message must be a function, got string", err, 1, true)
  end)

  it("reports an error raised while loading, with its traceback line", function()
    local ok, err = try("error('top-level failure')")
    assert.is_false(ok)
    assert.matches("error while loading .*top%-level failure", err)
  end)

  it("starts nothing when an init fails, and stops what had started", function()
    local a = testing.module [[return { init = function(ctx) end,
      stop = function(ctx) ctx:emit("stopped", ctx.name) end }]]
    local b = testing.module [[return { init = function(ctx) error("init exploded") end }]]
    local watcher = testing.module [[return { subscribe = { "stopped" },
      on_message = function(ctx, m) ctx.log:info("saw stop of " .. m.data) end }]]
    local ok, err = pcall(testing.engine, { services = {
      { name = "w", module = watcher }, { name = "a", module = a }, { name = "b", module = b } } })
    assert.is_false(ok)
    assert.matches("service 'b': .*init exploded", err)
    assert.is_nil(err:find("traceback", 1, true))
  end)

  it("refuses two services with the same name", function()
    local a = testing.module [[return { init = function() end }]]
    local ok, err = pcall(testing.engine, { services = { { name = "a", module = a }, { name = "a", module = a } } })
    assert.is_false(ok)
    assert.matches("'services[2].name': service name 'a' is used twice", err, 1, true)
  end)
end)

describe("handler errors", function()
  after_each(testing.cleanup)

  it("send the message to $dead, log the trace, and spare the rest", function()
    local eng = testing.engine { services = { { name = "flaky", module = testing.module [[
      return { subscribe = { "in" }, on_message = function(ctx, msg)
        local n = tonumber(msg.data)
        if n % 5 == 0 then error("refusing " .. n) end
        ctx:emit("ok", msg.data)
      end }]] } } }
    local ok, dead = eng:collect("ok"), eng:collect("$dead")
    local traces = {}
    for i = 1, 20 do eng:publish("in", tostring(i)) end
    eng:advance(1) -- each error restarts the service after a backoff
    local good = ok:messages()
    local d = dead:messages()
    assert.are.equal(16, #good)
    assert.are.equal(4, #d)
    for i, m in ipairs(d) do
      assert.are.equal("in", m.data.topic)
      assert.are.equal("flaky", m.data.service)
      assert.are.equal("raw", m.data.kind)
      assert.are.equal(tostring(5 * i), m.data.payload)
      assert.matches("refusing " .. 5 * i, m.data.error, 1, true)
      assert.are.equal(m.trace_id, m.data.trace_id)
      assert.are.equal(m.parent_span_id, m.data.span_id)
      traces[m.data.trace_id] = true
    end
    local order = {}
    for _, m in ipairs(good) do order[#order + 1] = tonumber(m.data) end
    assert.are.same({ 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19 }, order)
    local st = eng:stats("flaky")
    assert.are.equal(4, st.errors)
    assert.are.equal(20, st["in"])
    local logged = 0
    for _, l in ipairs(eng:logs(true)) do
      if l.level == "error" and traces[l.trace_id] then
        logged = logged + 1
        assert.matches("handler failed: ", l.msg, 1, true)
        assert.matches("stack traceback", l.traceback, 1, true)
      end
    end
    assert.are.equal(4, logged)
    eng:close()
  end)
end)

-- What warm:deliver runs the handlers through (a C frame below them, as
-- when the engine calls them): it must hand back every result and let an
-- error through unchanged.
describe("mycelium.core.call", function()
  local core = require "mycelium.core"

  it("returns what the function returns, all of it", function()
    assert.are.same({ 3, nil, "x" },
                    { core.call(function(a, b) return a + b, nil, "x" end, 1, 2) })
    assert.are.equal(0, select("#", core.call(function() end)))
  end)

  it("lets an error through, and refuses what is not a function", function()
    local ok, err = pcall(core.call, function() error({ code = 7 }) end)
    assert.is_false(ok)
    assert.are.equal(7, err.code)
    assert.has_error(function() core.call("f") end)
  end)
end)
