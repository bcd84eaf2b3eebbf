-- spec/mycelium/testing_spec.lua -- mycelium.testing itself: eng:run()
-- delivers until nothing is left anywhere, and a spec's options are
-- checked as `mycelium check` checks a config.
local testing = require "mycelium.testing"

local ping = [[
local M = { subscribe = { "ping" } }
function M.on_message(ctx, msg)
  local n = tonumber(msg.data)
  if n < 50 then ctx:emit("pong", tostring(n + 1)) else ctx:emit("done", msg.data) end
end
return M]]

local pong = [[
return { subscribe = { "pong" }, on_message = function(ctx, msg)
  ctx:emit("ping", msg.data)
end }]]

describe("eng:run()", function()
  after_each(testing.cleanup)

  it("delivers until every mailbox and hand-over is empty, services on two workers", function()
    local eng = testing.engine { workers = 2, services = {
      { name = "ping", module = testing.module(ping), worker = 0 },
      { name = "pong", module = testing.module(pong), worker = 1 } } }
    local done = eng:collect("done")
    eng:publish("ping", "0")
    local handled = eng:run()
    assert.are.same({ "50" }, (function()
      local out = {}
      for _, m in ipairs(done:messages()) do out[#out + 1] = m.data end
      return out
    end)())
    assert.are.equal(51, eng:stats("ping")["in"]) -- 0 to 50
    assert.are.equal(50, eng:stats("pong")["in"]) -- 1 to 50
    assert.are.equal(102, handled) -- and the collector's "done"
    assert.are.equal(0, eng:run()) -- nothing was left behind
    eng:close()
  end)

  it("with a budget of batches stops early and goes on at the next call", function()
    local eng = testing.engine { workers = 2, services = {
      { name = "ping", module = testing.module(ping), worker = 0 },
      { name = "pong", module = testing.module(pong), worker = 1 } } }
    local done = eng:collect("done")
    eng:publish("ping", "0")
    eng:run(1)
    assert.are.equal(0, #done:messages())
    eng:run()
    assert.are.equal(1, #done:messages())
    eng:close()
  end)
end)

describe("testing.engine options", function()
  after_each(testing.cleanup)

  -- The message `mycelium check` gives for the same table in a config.
  local function check_message(t)
    local config = require "mycelium.config"
    local ok, err = pcall(config.normalise, "mycelium.testing", t, ".")
    assert.is_false(ok)
    return err
  end

  local function engine_message(t)
    local ok, err = pcall(testing.engine, t)
    assert.is_false(ok)
    return err
  end

  it("refuses a misspelled top-level key with the message of mycelium check", function()
    local svc = testing.module(pong)
    for _, key in ipairs { "servics", "wrkers" } do
      local t = { services = { { module = svc } } }
      t[key] = 1
      local err = engine_message(t)
      assert.matches("unknown key '" .. key .. "'", err, 1, true)
      assert.matches("did you mean", err, 1, true)
      assert.are.equal(check_message(t), err)
    end
  end)

  it("refuses values of the wrong type as mycelium check does", function()
    local svc = testing.module(pong)
    for _, t in ipairs {
      { workers = 0, services = { { module = svc } } },
      { workers = "2", services = { { module = svc } } },
      { log = { level = "loud" }, services = { { module = svc } } },
      { reload = "sometimes", services = { { module = svc } } },
      { node = "", services = { { module = svc } } },
      { services = { { module = svc, worker = 3 } }, workers = 2 },
    } do
      assert.are.equal(check_message(t), engine_message(t))
    end
  end)

  it("takes a service given as its module path, as a config does", function()
    local svc = testing.module(pong)
    local eng = testing.engine { services = { svc } }
    local out = eng:collect("ping")
    eng:publish("pong", "x")
    eng:run()
    assert.are.equal(1, #out:messages())
    eng:close()
    local config = require "mycelium.config"
    local cfg = config.normalise("mycelium.lua", { services = { svc } }, ".")
    assert.are.equal(svc, cfg.services[1].module)
  end)

  it("keeps what only a test engine takes: collect and start", function()
    local eng = testing.engine { services = { testing.module(pong) },
                                 collect = { "ping" }, start = false }
    eng:start()
    local out = eng:collect("ping")
    eng:publish("pong", "x")
    eng:run()
    assert.are.equal(1, #out:messages())
    eng:close()
  end)
end)
