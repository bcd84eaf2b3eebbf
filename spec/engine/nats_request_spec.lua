-- spec/engine/nats_request_spec.lua -- requests between two `mycelium run`
-- processes connected only through a nats-server: the reply comes back
-- with the deadline read by the responder, "no_responder" from NATS' no
-- responders status, "timeout" with the late reply counted, "failed" when
-- the responder crashes on the request; and libnats' pending limits
-- turning a burst into counted drops (slow consumer), where received +
-- dropped = sent.
local cli = require "support.cli"
local proc = require "support.proc"
local nats_cluster = require "support.nats_cluster"

local bin = cli.bin

-- The requester: a script of requests in one coroutine, each outcome
-- logged as "[client] result step=... ok=... why=...".
local CLIENT = [[
local M = {}
local function sleep(ctx, ms)
  local co = coroutine.running()
  ctx:after(ms, function() assert(coroutine.resume(co)) end)
  coroutine.yield()
end
local function show(ctx, step, r, why, detail)
  ctx.log:info("result", { step = step, ok = r and r.data, from = r and r.source,
                           why = why, detail = detail })
end
function M.init(ctx)
  ctx:fork(function()
    show(ctx, "nobody", ctx:request("nobody.home", "x", { timeout_ms = 5000 }))
    -- Until the responder's engine has subscribed.
    local r, why
    for _ = 1, 200 do
      r, why = ctx:request("math.double", "21", { timeout_ms = 1000 })
      if r or why ~= "no_responder" then break end
      sleep(ctx, 50)
    end
    show(ctx, "double", r, why)
    show(ctx, "slow", ctx:request("math.slow", "x", { timeout_ms = 50 }))
    sleep(ctx, 300) -- its reply comes meanwhile, late
    show(ctx, "crash", ctx:request("math.crash", "req-7", { timeout_ms = 5000 }))
    ctx:request("math.double", "5", { timeout_ms = 1000 }, function(r2, why2)
      show(ctx, "callback", r2, why2)
    end)
  end)
end
return M
]]

local SERVER = [[
local M = { subscribe = { "math.*" } }
function M.on_message(ctx, msg)
  if msg.topic == "math.double" then
    ctx.log:info("asked", { left = ctx:remaining_ms(msg), source = msg.source })
    ctx:reply(msg, tostring(tonumber(msg.data) * 2))
  elseif msg.topic == "math.slow" then
    local m = msg:copy()
    ctx:after(100, function(c) c:reply(m, "too late") end)
  elseif msg.topic == "math.crash" then
    error("boom on " .. msg.data)
  end
end
return M
]]

-- 'extra': more keys of the nats table; 'top': more keys of the config.
local function config(dir, name, url, services, extra, top)
  return dir:write(name .. ".lua", string.format([[
return { node = %q, workers = 2, connect = { %q },
  nats = { reconnect_wait_ms = 50 %s },
  control = "unix://%s/%s.ctl", %s
  services = { %s } }]], name, url, extra or "", dir.path, name, top or "",
    services))
end

local wait_for = proc.wait_for

local function status(dir, name)
  local rc, out = dir:sh(string.format("timeout 10 %s status --socket %s/%s.ctl --json",
                                       bin, dir.path, name))
  assert.equal(0, rc, out)
  return out
end

describe("NATS transport", function()
  local dir, server, engines
  before_each(function()
    dir = cli.tmpdir()
    server = nats_cluster.start(1)
    engines = {}
  end)
  after_each(function()
    for _, e in pairs(engines) do e.stop() end
    server:stop()
    dir:remove()
  end)

  -- 'extra': more keys of both engines' nats tables.
  local function requests_and_replies(extra)
    dir:write("client.lua", CLIENT)
    dir:write("server.lua", SERVER)
    engines.b = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "b", server.urls[1], [[{ name = "server", module = "server.lua" }]],
             extra)),
      "nats: connected to", 10)
    engines.a = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "a", server.urls[1], [[{ name = "client", module = "client.lua" }]],
             extra, 'metrics = { listen = "127.0.0.1:0" },')),
      "nats: connected to", 10)
    local out = wait_for(function()
      local o = engines.a.output()
      return o:find("step=callback", 1, true) and o
    end, 20)
    assert.truthy(out, engines.a.output() .. "\n--- b:\n" .. engines.b.output())
    -- NATS said nobody subscribes: a fresh trace, not an empty one.
    assert.matches("%[client%] result step=nobody why=no_responder trace_id=%x+", out)
    assert.is_nil(out:match("step=nobody why=no_responder trace_id=0+ "))
    assert.matches("%[client%] result from=server ok=42 step=double", out)
    assert.matches("%[client%] result step=slow why=timeout", out)
    assert.matches("%[client%] result detail=[^\n]*boom on req%-7 step=crash why=failed", out)
    assert.matches("%[client%] result from=server ok=10 step=callback", out)
    -- The deadline travelled: the responder saw at most the 1000 ms sent.
    local left = tonumber(engines.b.output():match("%[server%] asked left=([%d.%-]+) source=client@nats"))
    assert.truthy(left and left > 0 and left <= 1000, engines.b.output())
    -- The reply that came after the deadline is counted, not lost silently.
    local st = wait_for(function()
      local s = status(dir, "a")
      return s:match('"name":"client".-"replies_late":[1-9]') and s
    end, 10)
    assert.truthy(st, status(dir, "a"))
    assert.matches('"no_responders":[1-9]', st)
    return st
  end

  it("carries requests and replies between engines: reply, no_responder, "
     .. "timeout with the late reply counted, failed", function()
    requests_and_replies()
  end)

  it("carries them the same with the connection read on a worker's loop "
     .. "(nats.worker)", function()
    local st = requests_and_replies(", worker = 1")
    assert.matches('"msgs_in":[1-9]', st)
  end)

  it("shows the counters of status --json in /metrics", function()
    local st = requests_and_replies()
    local port = engines.a.output():match("metrics: serving http://127%.0%.0%.1:(%d+)/metrics")
    local rc, body = dir:sh("curl -sf -m 5 http://127.0.0.1:" .. port .. "/metrics")
    assert.equal(0, rc)
    local nats = st:match('"nats":(%b{})')
    -- Counted between the two reads: at least what status said.
    for _, k in ipairs({ "msgs_out", "msgs_direct", "writes_direct", "no_responders" }) do
      local want = tonumber(nats:match('"' .. k .. '":(%d+)'))
      local name = k == "msgs_out" and 'mycelium_nats_msgs_total{direction="out"}'
                   or "mycelium_nats_" .. k .. "_total"
      local got = tonumber(body:match("\n" .. name:gsub("[%{%}%.%-]", "%%%0") .. " (%d+)\n"))
      assert.is_true(got ~= nil and got >= want, k .. " " .. tostring(got) .. " < "
                     .. tostring(want) .. "\n" .. body)
    end
    assert.truthy(body:find("\nmycelium_nats_up 1\n", 1, true), body)
    assert.truthy(body:find('\nmycelium_nats_dropped_total{reason="lost"} 0\n', 1, true), body)
    local prc, pout = dir:promtool_check(body)
    assert.equal(0, prc, pout)
  end)

  it("sends only nats.publish, maps topics with an empty prefix, and counts "
     .. "what another client publishes that is no frame", function()
    dir:write("tx_svc.lua", [[
local M = {}
function M.init(ctx)
  ctx:every(20, function()
    ctx:emit("pub.a", "shared")
    ctx:emit("priv.a", "kept")
  end)
end
return M]])
    dir:write("rx_svc.lua", [[
local M = { subscribe = { "pub.*", "priv.*", "ext.*" } }
function M.on_message(ctx, msg) ctx.log:info("got", { topic = msg.topic }) end
return M]])
    engines.rx = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "rx", server.urls[1], [[{ name = "rx", module = "rx_svc.lua" }]],
             [[, prefix = "" ]])),
      "nats: connected to", 10)
    assert.truthy(wait_for(function()
      return status(dir, "rx"):match('"subjects":3')
    end, 10))
    engines.tx = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "tx", server.urls[1], [[{ name = "tx", module = "tx_svc.lua" }]],
             [[, prefix = "", publish = { "pub.*" } ]])),
      "nats: connected to", 10)
    -- Another client publishes bytes that are no frame on a subject rx takes.
    local port = server.urls[1]:match(":(%d+)$")
    local proto = dir:write("junk.txt",
      'CONNECT {"verbose":false}\r\nPUB ext.x 5\r\nhello\r\nPING\r\n')
    local rc, out, err = dir:sh(string.format([[python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(4096)
s.sendall(open(sys.argv[2], "rb").read())
while b"PONG" not in s.recv(4096): pass
' %s %s]], port, proto))
    assert.equal(0, rc, out .. err)
    local st = wait_for(function()
      local s = status(dir, "rx")
      return s:match('"frame_errors":1') and engines.rx.output():find("topic=pub.a", 1, true) and s
    end, 10)
    assert.truthy(st, status(dir, "rx") .. engines.rx.output())
    proc.sleep(0.3)
    assert.is_nil(engines.rx.output():find("topic=priv.a", 1, true))
    assert.matches("WARN  %[_nats%] nats: a message on 'ext.x' is not a mycelium v2 frame",
                   engines.rx.output())
    assert.matches('"msgs_out":0', status(dir, "rx"))
  end)

  it("gives up after nats.max_reconnect dials at start: failed, what waited "
     .. "counted", function()
    local port = require("support.redis_server").free_port()
    dir:write("early.lua", [[
local M = {}
function M.init(ctx)
  ctx:after(0, function() for n = 1, 20 do ctx:emit("early.x", tostring(n)) end end)
end
return M]])
    engines.e = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "e", "nats://127.0.0.1:" .. port,
             [[{ name = "early", module = "early.lua" }]],
             ", max_reconnect = 2, queue_msgs = 5, connect_timeout_ms = 200")),
      "nats: cannot connect to [^\n]* after 3 attempts %(nats.max_reconnect%)", 15)
    local st = wait_for(function()
      local s = status(dir, "e")
      return s:match('"disconnect":5') and s
    end, 10) or status(dir, "e")
    assert.matches('"state":"failed"', st)
    -- 5 waited in the queue (nats.queue_msgs) and are dropped when the
    -- transport gives up, whether they came before or after that.
    assert.matches('"queue_full":15', st)
    assert.matches('"disconnect":5', st)
    assert.matches('"queued":0', st)
  end)

  it("counts what libnats' pending limits drop (slow consumer): "
     .. "received + dropped = sent", function()
    local K = 20000
    dir:write("burst.lua", string.format([[
local M = {}
function M.init(ctx)
  ctx:after(500, function()
    for n = 1, %d do ctx:emit("flood.x", tostring(n)) end
    ctx.log:info("sent", { n = %d })
  end)
end
return M]], K, K))
    dir:write("count.lua", [[
local M = { subscribe = { "flood.x" } }
local n = 0
function M.init(ctx)
  ctx:every(100, function() ctx.log:info("count", { n = n }) end)
end
function M.on_message() n = n + 1 end
return M]])
    engines.rx = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "rx", server.urls[1],
             [[{ name = "count", module = "count.lua", mailbox = { capacity = 100000 } }]],
             ", pending_msgs = 8")),
      "nats: connected to", 10)
    -- The receiver has subscribed before the burst leaves.
    assert.truthy(wait_for(function()
      return status(dir, "rx"):match('"subjects":1')
    end, 10))
    engines.tx = proc.spawn(string.format("exec timeout 60 %s run %s", bin,
      config(dir, "tx", server.urls[1], [[{ name = "burst", module = "burst.lua" }]],
             ", queue_msgs = 100000")),
      "nats: connected to", 10)
    local settled = wait_for(function()
      local tx = status(dir, "tx")
      if tonumber(tx:match('"msgs_out":(%d+)')) ~= K then return nil end
      local rx = status(dir, "rx")
      local got = tonumber(engines.rx.output():match(".*%[count%] count n=(%d+)"))
      local d = rx:match('"dropped":(%b{})')
      local pending = tonumber(d:match('"pending_limit":(%d+)'))
      local lost = tonumber(d:match('"lost":(%d+)'))
      if got and got + pending + lost == K then
        return { got = got, pending = pending, lost = lost, rx = rx }
      end
    end, 20)
    assert.truthy(settled, status(dir, "rx") .. "\n" .. engines.rx.output():sub(-2000))
    assert.is_true(settled.pending > 0, settled.rx)
    assert.matches('"slow_consumer":[1-9]', settled.rx)
    assert.matches("WARN  %[_nats%] nats: slow consumer: a subscription went over "
                   .. "its pending limits", engines.rx.output())
  end)
end)
