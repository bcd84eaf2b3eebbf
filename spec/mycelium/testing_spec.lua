-- spec/mycelium/testing_spec.lua -- mycelium.testing itself: eng:run()
-- delivers until nothing is left anywhere.
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
