-- spec/hostile/redis_spec.lua -- mycelium.net.redis against broken and
-- hostile servers (spec/peers/redis_peer.js): whatever the server sends,
-- the command gets an error naming the server, only that connection is
-- dropped, the service keeps running and so does the engine.
local testing = require "mycelium.testing"
local proc = require "support.proc"
local cjson = require "cjson"

local SERVICE = [[
local redis = require "mycelium.net.redis"
local M = { subscribe = { "cmd", "ping" } }
local r

function M.init(ctx, opts)
  r = assert(redis.connect(ctx, opts.url, {
    -- a second between attempts: a command then meets the client down
    command_timeout_ms = 200, reconnect_min_ms = 1000, reconnect_max_ms = 2000,
    on_state = function(state, err) ctx:emit("state", { state = state, err = err }) end,
  }))
end

function M.on_message(ctx, msg)
  if msg.topic == "ping" then return ctx:emit("pong", "alive") end
  local tag = msg.data.tag
  local ok, err, code = r:command(msg.data.args, function(v, e, c)
    ctx:emit("reply", { tag = tag, v = type(v) == "string" and v or tostring(v),
                        err = e, code = c })
  end)
  if not ok then ctx:emit("reply", { tag = tag, now = true, err = err, code = code }) end
end
return M]]

-- What each behaviour of the peer comes to: why the connection went (in
-- the command's error and the "down" state) and the command's code.  A
-- server that speaks first is dropped before any command: the command is
-- sent once the client is down, and fails at once with ENOTCONN and the
-- same reason (sent while connecting, the greeting would pass for its
-- reply).
local DROPPED = "connection dropped: the server sent a reply to no command"
local TIMEOUT = "no reply within 200 ms; connection dropped"
local CASES = {
  extra = { DROPPED, first = "OK" },
  greet = { DROPPED, "ENOTCONN" },
  full = { "connection lost: ERR max number of clients reached", "ENOTCONN" },
  garbage = { "connection lost: Protocol error, got \"S\" as reply type byte", "EPROTO" },
  resp3 = { "connection lost: Protocol error, got \"%\" as reply type byte", "EPROTO" },
  deep = { "connection lost: No support for nested multi bulk replies with depth > 7",
           "EPROTO" },
  truncated = { "connection lost: Server closed the connection", "ECONNRESET" },
  bigbulk = { TIMEOUT, "ETIMEDOUT" },
  badlen = { "connection lost: Bulk string length out of range", "EPROTO" },
  silent = { TIMEOUT, "ETIMEDOUT" },
  drip = { TIMEOUT, "ETIMEDOUT" },
}

describe("a hostile Redis server", function()
  local peer, ports

  setup(function()
    local dir = proc.node_peers()
    peer = proc.spawn(string.format("node %s/redis_peer.js --ttl 120", dir), "READY (%b{})")
    ports = cjson.decode(peer.ready[1])
  end)
  teardown(function()
    if peer then peer.stop() end
    testing.cleanup()
  end)

  for name, want in pairs(CASES) do
    it("(" .. name .. ") costs its connection only", function()
      local url = "redis://127.0.0.1:" .. ports[name]
      local eng = testing.engine {
        services = { { name = "svc", module = testing.module(SERVICE), opts = { url = url } } },
        supervisor = { backoff_initial_ms = 0 },
      }
      finally(function() eng:close() end)
      local replies, states = eng:collect("reply"), eng:collect("state")
      local pongs, dead = eng:collect("pong"), eng:collect("$dead")
      local server = "redis 127.0.0.1:" .. ports[name] .. ": "
      local down
      local function wait(done)
        eng:run_for(3, function()
          replies:messages()
          for _, m in ipairs(states:messages()) do
            if m.data.state == "down" then down = down or m.data end
          end
          return done()
        end)
      end
      if want[2] == "ENOTCONN" then
        wait(function() return down ~= nil end)
      else
        eng:run_for(0.1)
      end
      eng:publish("cmd", { tag = "a", args = { "PING" } })
      wait(function() return #replies.all >= 1 and down ~= nil end)
      local a = replies.all[1]
      assert.is_not_nil(a, "no reply")
      a = a.data
      if want.first then
        assert.are.equal(want.first, a.v)
      else
        assert.is_truthy(a.err:find(server, 1, true) == 1, a.err)
        assert.is_truthy(a.err:find(want[1], 1, true), a.err)
        assert.are.equal(want[2], a.code)
      end
      assert.is_not_nil(down, "no down state")
      assert.is_truthy(down.err:find(server .. want[1], 1, true), down.err)
      -- The service neither raised nor stopped, and the engine answers.
      eng:publish("ping", "?")
      eng:run_for(1, function() pongs:messages() return #pongs.all > 0 end)
      assert.are.equal(1, #pongs.all)
      assert.are.equal(0, #dead:messages())
      assert.are.equal("running", eng:stats("svc").state)
    end)
  end
end)
