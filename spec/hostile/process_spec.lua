-- spec/hostile/process_spec.lua -- what plain Lua in one service could do
-- to the whole process: os.exit would end the engine and every service in
-- it, os.setlocale would change how every thread writes numbers.  In a
-- service both raise an error naming what to call instead; the service
-- crashes alone (its message to $dead, restarted) and the others go on.
local testing = require "mycelium.testing"
local cli = require "spec.support.cli"

-- On "exit", os.exit(3); on "locale", os.setlocale("C"); on "query",
-- emits what os.setlocale reads; on anything else, echoes it.
local CALLER = [[
local M = {}
function M.init(ctx) ctx:subscribe("in") end
function M.on_message(ctx, msg)
  local d = msg.data
  if d == "exit" then os.exit(3) end
  if d == "locale" then os.setlocale("C") end
  if d == "query" then
    ctx:emit("out", tostring(os.setlocale()) .. " " ..
                    tostring(os.setlocale(nil, "numeric")))
    return
  end
  ctx:emit("out", d)
end
return M
]]

describe("a service's plain Lua", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  local function start()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 1, max_restarts = 100 },
      services = { { name = "caller", module = testing.module(CALLER) } },
    }
    return eng:collect("out"), eng:collect("$dead")
  end

  local function restarted(n)
    local waited = 0
    while eng:stats("caller").restarts < n do
      eng:advance(0.001)
      waited = waited + 1
      assert.is_true(waited < 5000, "no restart")
    end
    eng:run()
  end

  for _, case in ipairs {
    { "exit", "os.exit would end the whole engine and every service in it: "
              .. "ctx:exit([reason]) ends this service, ctx:shutdown(code) "
              .. "stops the engine" },
    { "locale", "os.setlocale would change the locale of the whole engine" },
  } do
    local what, says = case[1], case[2]
    it("cannot " .. (what == "exit" and "end the process" or "set the locale")
       .. ": the call is an error naming what to use, the service restarts "
       .. "and the next message goes through", function()
      local out, dead = start()
      local locale = os.setlocale()
      eng:publish("in", "before")
      eng:publish("in", what)
      eng:publish("in", "after")
      eng:run()
      restarted(1)
      local got = {}
      for _, m in ipairs(out:messages()) do got[#got + 1] = m.data end
      assert.are.same({ "before", "after" }, got)
      local d = dead:messages()
      assert.are.equal(1, #d)
      assert.are.equal(what, d[1].data.payload)
      assert.matches(says, d[1].data.error, 1, true)
      -- the message names the service's own line, not the runtime's
      assert.matches(":%d+: os%.", d[1].data.error)
      assert.are.equal(1, eng:stats("caller").errors)
      assert.are.equal(locale, os.setlocale())
    end)
  end

  it("may read the locale", function()
    local out = start()
    eng:publish("in", "query")
    eng:run()
    local m = out:messages()
    assert.are.equal(1, #m)
    assert.are.equal(os.setlocale() .. " " .. os.setlocale(nil, "numeric"),
                     m[1].data)
  end)
end)

describe("mycelium run", function()
  it("goes on when a service calls os.exit, and exits with ctx:shutdown's "
     .. "code", function()
    local dir = cli.tmpdir()
    finally(function() dir:remove() end)
    -- The quitter calls os.exit(3) in a handler after each start; the ticker
    -- stops the engine with code 7 after 25 ticks of 20 ms, by which time
    -- the quitter has restarted several times.
    dir:write("quitter.lua", [[
      return { init = function(ctx)
        ctx:subscribe("go")
        ctx:after(10, function() ctx:emit("go", "") end)
      end, on_message = function() os.exit(3) end }]])
    dir:write("ticker.lua", [[
      local n = 0
      return { init = function(ctx)
        ctx:every(20, function()
          n = n + 1
          if n == 25 then ctx:shutdown(7) end
        end)
      end }]])
    local cfg = dir:write("mycelium.lua", [[return {
      supervisor = { backoff_initial_ms = 10, max_restarts = 100 },
      services = { { name = "quitter", module = "quitter.lua" },
                   { name = "ticker", module = "ticker.lua" } } }]])
    local rc, out, err = dir:mycelium("run " .. cfg, 30)
    local log = out .. err
    assert.are.equal(7, rc, log)
    assert.matches("os.exit would end the whole engine", log, 1, true)
    assert.matches("[quitter] restarted", log, 1, true)
  end)
end)
