-- spec/mycelium/net/ws_spec.lua -- mycelium.net.ws against an independent server (the
-- npm `ws` package run by node, spec/peers/ws_peer.js), a hostile peer that
-- breaks the protocol, and TLS endpoints with certificates made here. Every
-- server listens on 127.0.0.1 and is stopped after its test.
local testing = require "mycelium.testing"
local proc = require "support.proc"
local certs = require "support.certs"

local root = proc.root
local SERVICE = root .. "/spec/support/ws_service.lua"

local peer, tmp

local function start_peer(extra)
  local dir = proc.node_peers()
  return proc.spawn(string.format("node %s/ws_peer.js --ttl 120 %s", dir,
                                  extra or ""), "READY (%d+) (%d+)")
end

-- An engine running spec/support/ws_service.lua against 'url'.
local function client(url, wsopts, extra)
  local opts = { url = url, ws = wsopts }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local eng = testing.engine {
    services = { { name = "client", module = SERVICE, opts = opts } },
    collect = { "ws.open", "ws.msg", "ws.pong", "ws.close", "ws.result" },
  }
  local c = { eng = eng }
  for _, t in ipairs { "open", "msg", "pong", "close", "result" } do
    c[t] = eng:collect("ws." .. t)
  end
  -- Runs until collector 'what' holds 'n' messages (real time, bounded).
  function c.wait(what, n, secs)
    local col = c[what]
    eng:run_for(secs or 5, function()
      col:messages()
      return #col.all >= n
    end)
    assert(#col.all >= n, string.format("waited for %d ws.%s, got %d; logs:\n%s",
           n, what, #col.all, table.concat(eng:logs(), "\n")))
    return col.all[n].data
  end
  function c.cmd(t)
    eng:publish("ws.cmd", t)
    eng:run()
  end
  return c
end

local function ws_url(path, tls)
  return string.format("%s://127.0.0.1:%s%s", tls and "wss" or "ws",
                       peer.ready[1], path)
end

local eng
after_each(function()
  if eng then eng:close() end
  eng = nil
  testing.cleanup()
end)

describe("mycelium.net.ws against the npm ws server", function()
  setup(function() peer = start_peer() end)
  teardown(function() peer.stop() end)

  it("exchanges text and binary messages", function()
    local c = client(ws_url("/echo"))
    eng = c.eng
    assert.are.equal("open", c.wait("open", 1).state)
    c.cmd { op = "send", data = "hello, node" }
    c.cmd { op = "send_binary", data = "\0\1\2\255" }
    local m1, m2 = c.wait("msg", 1), c.wait("msg", 2)
    assert.are.same({ "hello, node", false }, { m1.data, m1.binary })
    assert.are.same({ "\0\1\2\255", true }, { m2.data, m2.binary })
  end)

  it("delivers the messages of one read in one call, in order, none lost",
     function()
    local n = 2000
    local c = client(ws_url("/burst?n=" .. n))
    eng = c.eng
    c.wait("msg", n)
    local all = c.msg.all
    assert.are.equal(n, #all)
    for i = 1, n do
      assert.are.same({ "m" .. i, i % 7 == 0 }, { all[i].data.data, all[i].data.binary })
    end
    -- 2000 corked messages come in far fewer reads than messages: each
    -- read is one call, and its messages share the read's arrival time.
    local batches = all[n].data.batches
    assert.is_true(batches >= 1 and batches < n / 4,
                   "expected far fewer batches than messages, got " .. batches)
    local same = 0
    for i = 2, n do
      local a, b = all[i - 1].data, all[i].data
      assert.is_true(b.arrival_ns >= a.arrival_ns)
      if b.batches == a.batches then
        same = same + 1
        assert.are.equal(a.arrival_ns, b.arrival_ns)
      end
    end
    assert.are.equal(n - batches, same)
    assert.is_true(all[1].data.arrival_ns > 0)
  end)

  it("goes on with the rest of a read when a handler raises on one message",
     function()
    local c = client(ws_url("/burst?n=300"), nil, { raise_on = "m5" })
    eng = c.eng
    c.wait("msg", 300)
    for i = 1, 300 do assert.are.equal("m" .. i, c.msg.all[i].data.data) end
    -- The error is the handler's, counted once like any handler error.
    assert.are.equal(1, tonumber(eng:stats("client").errors))
  end)

  it("stops delivering a read's messages once the handler closed", function()
    local c = client(ws_url("/burst?n=300"), { reconnect = false },
                     { close_on = "m3" })
    eng = c.eng
    c.wait("close", 1)
    eng:run_for(0.2)
    c.msg:messages()
    assert.are.equal(3, #c.msg.all)
    assert.are.equal("m3", c.msg.all[3].data.data)
  end)

  it("reassembles a fragmented 1 MiB message", function()
    local size = 1048576 + 7
    local c = client(ws_url("/fragment?size=" .. size))
    eng = c.eng
    local m = c.wait("msg", 1)
    assert.are.equal(size, m.len)
    assert.are.equal("BEGIN", m.head:sub(1, 5))
    assert.are.equal("END", m.tail:sub(-3))
  end)

  it("sends and receives a 3 MiB message", function()
    local c = client(ws_url("/echo"))
    eng = c.eng
    c.wait("open", 1)
    c.cmd { op = "send", size = 3 * 1048576 }
    local m = c.wait("msg", 1)
    assert.are.equal(3 * 1048576, m.len)
    assert.are.equal(string.rep("y", 16), m.tail)
  end)

  it("answers the server's pings and reports pongs to its own", function()
    local c = client(ws_url("/ping"))
    eng = c.eng
    assert.are.equal("pong:hello", c.wait("msg", 1).data)
    c.cmd { op = "ping", data = "are you there" }
    assert.are.equal("are you there", c.wait("pong", 1).data)
  end)

  it("closes with the handshake when the service asks", function()
    local c = client(ws_url("/echo"))
    eng = c.eng
    c.wait("open", 1)
    c.cmd { op = "close", code = 4000, reason = "done here" }
    local info = c.wait("close", 1)
    assert.is_true(info.clean)
    assert.are.equal(4000, info.code) -- the server echoes our code
    assert.is_nil(info.reconnect_ms)
    assert.are.equal("closed", info.state)
  end)

  it("reports the server's close code and reason, then reconnects", function()
    local c = client(ws_url("/close?code=4001&reason=bye"),
                     { reconnect = { initial_ms = 10, jitter = 0 } })
    eng = c.eng
    c.wait("open", 1)
    c.cmd { op = "send", data = "x" }
    local info = c.wait("close", 1)
    assert.are.same({ 4001, "bye", true }, { info.code, info.reason, info.clean })
    assert.are.equal(10, info.reconnect_ms)
    assert.are.equal(2, c.wait("open", 2).n)
  end)

  it("notices a peer that dies and reconnects", function()
    local c = client(ws_url("/drop?after=2"),
                     { reconnect = { initial_ms = 10, jitter = 0 } })
    eng = c.eng
    c.wait("open", 1)
    c.cmd { op = "send", data = "one" }
    c.cmd { op = "send", data = "two" }
    local info = c.wait("close", 1)
    assert.is_false(info.clean)
    assert.matches("^ws://127%.0%.0%.1:%d+/drop%?after=2: ", info.error)
    assert.matches("without a close frame", info.error)
    c.wait("open", 2)
  end)

  it("declares a silent peer dead after a ping goes unanswered", function()
    local c = client(ws_url("/silent"), { ping_interval_ms = 100,
                                          pong_timeout_ms = 150,
                                          reconnect = false })
    eng = c.eng
    local info = c.wait("close", 1)
    assert.matches("no data and no pong within 150 ms", info.error)
    assert.are.equal("ETIMEDOUT", info.err_name)
    assert.is_nil(info.reconnect_ms)
  end)

  it("refuses to send when not open and when too much is queued", function()
    local c = client(ws_url("/silent"), { max_buffered = 1000 })
    eng = c.eng
    c.cmd { op = "send", data = "early" }
    local r = c.result:messages()[1].data
    assert.are.same({ false, "ESTATE" }, { r.ok or false, r.code })
    c.wait("open", 1)
    c.cmd { op = "send", size = 2000 }
    r = c.result:messages()[1].data
    assert.are.equal("ELIMIT", r.code)
  end)
end)

describe("mycelium.net.ws failures", function()
  it("names the URL of a refused connection and backs off, capped", function()
    -- Held bound and never listening: a port merely found free can be
    -- taken by a parallel test, which then resets instead of refusing.
    local port, release = require("support.redis_server").refusing_port()
    finally(release)
    local url = "ws://127.0.0.1:" .. port .. "/x"
    local c = client(url, { reconnect = { initial_ms = 5, max_ms = 20,
                                          multiplier = 2, jitter = 0,
                                          max_attempts = 5 } })
    eng = c.eng
    local last = c.wait("close", 5)
    local delays = {}
    for i, m in ipairs(c.close.all) do
      delays[i] = m.data.reconnect_ms or -1
      assert.are.equal(i, m.data.attempt)
      assert.matches(url .. ": connect to 127.0.0.1 port " .. port
                     .. ": connection refused (ECONNREFUSED)", m.data.error, 1, true)
    end
    assert.are.same({ 5, 10, 20, 20, -1 }, delays)
    assert.are.equal("ECONNREFUSED", last.err_name)
  end)

  it("raises on a bad URL or option, naming the service", function()
    for _, case in ipairs {
      { "http://127.0.0.1/", "ws:// or wss://" },
      { "ws://", "not an absolute URL" },
      { "ws://user:pw@127.0.0.1/", "credentials" },
    } do
      local ok, err = pcall(testing.engine, { services = { { name = "client",
        module = SERVICE, opts = { url = case[1] } } } })
      assert.is_false(ok)
      assert.matches("service 'client': ws.connect: ", err, 1, true)
      assert.matches(case[2], err, 1, true)
    end
    local ok, err = pcall(testing.engine, { services = { { name = "client",
      module = SERVICE, opts = { url = "ws://127.0.0.1:1/",
                                 ws = { reconnect = { jitter = 2 } } } } } })
    assert.is_false(ok)
    assert.matches("jitter", err)
    ok, err = pcall(testing.engine, { services = { { name = "client",
      module = SERVICE, opts = { url = "ws://127.0.0.1:1/",
                                 ws = { colour = "red" } } } } })
    assert.is_false(ok)
    assert.matches("unknown option 'colour'", err)
  end)
end)

describe("mycelium.net.ws against a hostile peer", function()
  setup(function() peer = start_peer() end)
  teardown(function() peer.stop() end)

  local cases = {
    { "/reserved", "violated the WebSocket protocol %(closed with 1002%)" },
    { "/badopcode", "violated the WebSocket protocol %(closed with 1002%)" },
    { "/masked", "violated the WebSocket protocol %(closed with 1002%)" },
    { "/orphan", "violated the WebSocket protocol %(closed with 1002%)" },
    { "/badutf8", "not valid UTF%-8 %(closed with 1007%)" },
    { "/hugelen", "larger than max_message" },
    { "/longping", "violated the WebSocket protocol %(a malformed frame header%)" },
    { "/truncated", "without a close frame" },
    { "/badaccept", "Sec%-WebSocket%-Accept is AAAA" },
    { "/http404", "refused the WebSocket upgrade: HTTP 404" },
    { "/garbage", "bad reply to the WebSocket upgrade" },
  }
  for _, case in ipairs(cases) do
    it("reports " .. case[1] .. " clearly and survives", function()
      local url = string.format("ws://127.0.0.1:%s%s", peer.ready[2], case[1])
      local c = client(url, { reconnect = false })
      eng = c.eng
      local info = c.wait("close", 1)
      assert.is_false(info.clean)
      assert.are.equal(url .. ": ", info.error:sub(1, #url + 2))
      assert.matches(case[2], info.error)
      assert.are.equal(0, #c.msg:messages())
    end)
  end
end)

describe("mycelium.net.ws against frames cut awkwardly", function()
  setup(function() peer = start_peer() end)
  teardown(function() peer.stop() end)

  local function raw_client(path)
    local c = client(string.format("ws://127.0.0.1:%s%s", peer.ready[2], path),
                     { reconnect = false })
    eng = c.eng
    return c
  end

  -- Whether the frames come in one read or one byte per read, with a
  -- ping and a pong between fragments: the same messages, in order.
  for _, path in ipairs { "/mixed", "/trickle" } do
    it("reassembles " .. path, function()
      local c = raw_client(path)
      local info = c.wait("close", 1, 10)
      c.msg:messages()
      c.pong:messages()
      assert.are.equal(3, #c.msg.all, table.concat(eng:logs(), "\n"))
      local m = c.msg.all
      assert.are.equal("hello", m[1].data.data)
      assert.are.equal("\226\130\172" .. string.rep("x", 297), m[2].data.data)
      assert.are.equal("fr\195\169-end", m[3].data.data)
      assert.are.equal("unasked", c.pong.all[1].data.data)
      assert.are.same({ 1000, "bye", true }, { info.code, info.reason, info.clean })
      if path == "/trickle" then
        -- One byte per read: each message completed in a read of its own.
        assert.is_true(m[3].data.batches >= 3)
      end
    end)
  end

  it("refuses a text whose invalid UTF-8 is cut across reads", function()
    local c = raw_client("/splitutf8")
    local info = c.wait("close", 1)
    assert.matches("not valid UTF%-8 %(closed with 1007%)", info.error)
    assert.are.equal(1, #c.msg:messages())
    assert.are.equal("ok", c.msg.all[1].data.data)
  end)
end)

describe("mycelium.net.ws over TLS", function()
  setup(function()
    tmp = certs.make()
    peer = start_peer(string.format("--tls %s/srv.crt %s/srv.key", tmp, tmp))
  end)
  teardown(function()
    peer.stop()
    certs.remove(tmp)
  end)

  it("connects with the CA that signed the server's certificate", function()
    local c = client(ws_url("/echo", true), { ca_file = tmp .. "/ca.crt" })
    eng = c.eng
    c.wait("open", 1)
    c.cmd { op = "send", data = "over tls" }
    assert.are.equal("over tls", c.wait("msg", 1).data)
  end)

  it("refuses a certificate the system store does not know", function()
    local c = client(ws_url("/echo", true), { reconnect = false })
    eng = c.eng
    local info = c.wait("close", 1)
    assert.are.equal("ETLS", info.err_name)
    assert.matches("^wss://127%.0%.0%.1:%d+/echo: certificate verification "
                   .. "failed: unable to get local issuer certificate", info.error)
  end)

  it("refuses a certificate for another name", function()
    peer.stop()
    peer = start_peer(string.format("--tls %s/other.crt %s/other.key", tmp, tmp))
    local c = client(ws_url("/echo", true), { reconnect = false,
                                              ca_file = tmp .. "/ca.crt" })
    eng = c.eng
    local info = c.wait("close", 1)
    assert.matches("certificate verification failed: IP address mismatch",
                   info.error)
  end)

  it("accepts anything with insecure = true", function()
    local c = client(ws_url("/echo", true), { insecure = true })
    eng = c.eng
    c.wait("open", 1)
    c.cmd { op = "send", data = "trusting" }
    assert.are.equal("trusting", c.wait("msg", 1).data)
  end)

  it("fails clearly on a CA file that cannot be read", function()
    local ok, err = pcall(testing.engine, { services = { { name = "client",
      module = SERVICE, opts = { url = ws_url("/echo", true),
                                 ws = { ca_file = tmp .. "/missing.pem" } } } } })
    assert.is_false(ok)
    assert.matches("cannot load CA file", err)
    assert.matches("missing.pem", err, 1, true)
  end)
end)
