-- spec/hostile/numbers_spec.lua -- numbers at the edges (issue 11, item
-- 7): math.huge and 1e300 in timers and time settings overflowed their
-- conversion to integer nanoseconds, so ctx:after(math.huge, f) and
-- ctx:every(1e13, f) fired at once, reset_s = math.huge stopped the
-- backoff from growing, memory_limit_mb = 1e300 was accepted and
-- memory_limit_mb = 0.0001 failed without naming the key.  Every number
-- now has a range, and a value outside it is an error naming the key.
local testing = require "mycelium.testing"
local cli = require "support.cli"

local function engine_with(init_src)
  return testing.engine { services = { { name = "svc", module = testing.module(
    "return { init = function(ctx) " .. init_src .. " end }") } } }
end

describe("timers", function()
  after_each(function() testing.cleanup() end)

  it("refuse math.huge, 1e13 and NaN, naming the call", function()
    for _, call in ipairs { "ctx:after(math.huge, function() end)",
                            "ctx:every(1e13, function() end)",
                            "ctx:after(0/0, function() end)",
                            "ctx:every(-math.huge, function() end)" } do
      local ok, err = pcall(engine_with, call)
      assert.is_false(ok, call)
      assert.matches("service 'svc': " .. call:match("ctx:(%a+)")
                     .. ": interval must be a [%a-]+ number of milliseconds up to 1e%+12",
                     err)
    end
  end)

  it("at the bound, wait instead of firing at once", function()
    local eng = testing.engine { collect = { "fired" }, services = { {
      name = "svc", module = testing.module [[
        return { init = function(ctx)
          ctx:after(1e12, function(c) c:emit("fired", "after") end)
          ctx:every(1e12, function(c) c:emit("fired", "every") end)
          ctx:after(5, function(c) c:emit("fired", "soon") end)
        end }]] } } }
    local fired = eng.collect_before_start.fired
    eng:advance(1000)
    local got = fired:messages()
    assert.are.equal(1, #got)
    assert.are.equal("soon", got[1].data)
    eng:close()
  end)

  it("eng:advance refuses math.huge", function()
    local eng = engine_with("")
    assert.has_error(function() eng:advance(math.huge) end,
      "mycelium.testing: advance: seconds must be a number from 0 to 1e9, got inf")
    eng:close()
  end)
end)

describe("time and budget settings", function()
  local dir
  before_each(function()
    dir = cli.tmpdir()
    dir:write("q.lua", "return { init = function() end }")
  end)
  after_each(function()
    dir:remove()
    testing.cleanup()
  end)

  -- { config fragment, key path, expected range text }
  local CASES = {
    { "supervisor = { reset_s = math.huge }", "supervisor.reset_s",
      "a number from 0 to 1e+09, got number inf" },
    { "supervisor = { window_s = 1e300 }", "supervisor.window_s",
      "a number in (0, 1e+09], got number 1e+300" },
    { "supervisor = { backoff_max_ms = math.huge }", "supervisor.backoff_max_ms",
      "a number from 0 to 1e+12, got number inf" },
    { "supervisor = { multiplier = 1e300 }", "supervisor.multiplier",
      "a number from 1 to 1000, got number 1e+300" },
    { "supervisors = { g = { reset_s = math.huge } }", "supervisors.g.reset_s",
      "a number from 0 to 1e+09" },
    { "services = { { module = 'q.lua', memory_limit_mb = 1e300 } }",
      "services[1].memory_limit_mb",
      "0 or a number from 1 to 1048576, got number 1e+300" },
    { "services = { { module = 'q.lua', memory_limit_mb = 0.0001 } }",
      "services[1].memory_limit_mb", "0 or a number from 1 to 1048576" },
    { "services = { { module = 'q.lua', handler_timeout_ms = math.huge } }",
      "services[1].handler_timeout_ms", "a number from 0 to 1e+12" },
    { "services = { { module = 'q.lua', load_timeout_ms = math.huge } }",
      "services[1].load_timeout_ms", "a number in (0, 1e+12], got number inf" },
    { "services = { { module = 'q.lua', reload_probation_s = 1e300 } }",
      "services[1].reload_probation_s", "a number from 0 to 1e+09" },
  }

  it("are refused by mycelium check, naming the key", function()
    for _, c in ipairs(CASES) do
      local text = c[1]
      if not text:match("^services") then
        text = text .. ", services = { 'q.lua' }"
      end
      dir:write("mycelium.lua", "return { " .. text .. " }")
      local rc, _, err = dir:mycelium("check " .. dir.path .. "/mycelium.lua")
      assert.are.equal(1, rc, c[1])
      assert.matches("'" .. c[2] .. "' must be " .. c[3], err, 1, true)
    end
  end)

  it("are refused by mycelium.testing with the same message", function()
    for _, c in ipairs(CASES) do
      local spec = assert(load("return { " .. c[1] .. " }"))()
      for _, s in ipairs(spec.services or {}) do
        s.module = dir.path .. "/" .. s.module
      end
      spec.services = spec.services or { dir.path .. "/q.lua" }
      local ok, err = pcall(testing.engine, spec)
      assert.is_false(ok, c[1])
      assert.matches("mycelium.testing: '" .. c[2] .. "' must be " .. c[3], err,
                     1, true)
    end
  end)

  it("the largest reset_s still lets the backoff grow", function()
    local eng = testing.engine {
      supervisor = { backoff_initial_ms = 100, multiplier = 2, jitter = 0,
                     reset_s = 1e9, max_restarts = 10 },
      services = { { name = "w", module = testing.module [[
        return { subscribe = { "in" }, on_message = function() error("boom") end }]] } } }
    for _ = 1, 3 do
      eng:publish("in", "x")
      eng:run()
      eng:advance(1)
    end
    local delays = {}
    for _, l in ipairs(eng:logs(true)) do
      local ms = l.msg:match("^restarting in ([%d.]+) ms")
      if ms then delays[#delays + 1] = tonumber(ms) end
    end
    eng:close()
    assert.are.same({ 100, 200, 400 }, delays)
  end)
end)

describe("network client options", function()
  after_each(function() testing.cleanup() end)

  it("refuse infinite times and sizes before connecting", function()
    local eng = testing.engine { collect = { "report" }, services = { {
      name = "client", module = testing.module [[
        local ws = require "mycelium.net.ws"
        local http = require "mycelium.net.http"
        return { subscribe = { "go" }, on_message = function(ctx)
          local r = {}
          r[1] = select(2, pcall(ws.connect, ctx, "ws://127.0.0.1:9/",
                                 { open_timeout_ms = math.huge }))
          r[2] = select(2, pcall(ws.connect, ctx, "ws://127.0.0.1:9/",
                                 { max_message = 1e300 }))
          r[3] = select(2, pcall(http.request, ctx,
                                 { url = "http://127.0.0.1:9/", timeout_ms = 1e300 },
                                 function() end))
          ctx:emit("report", r)
        end }]] } } }
    eng:publish("go", "")
    eng:run()
    local r = eng.collect_before_start.report:messages()[1].data
    eng:close()
    assert.matches("ws.connect: .*times must be at most 1e12 ms", r[1])
    assert.matches("ws.connect: .*max_message and max_buffered must be at most 1e15", r[2])
    assert.matches("http.request: .*timeout_ms > 0 and at most 1e12", r[3])
  end)
end)
