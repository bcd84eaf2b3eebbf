-- spec/mycelium/net/jsonrpc_spec.lua -- mycelium.net.jsonrpc against the replay server
-- (myc-replay) playing the bundled Polygon capture, and against peers
-- that never answer or die mid-request.
local testing = require "mycelium.testing"
local proc = require "support.proc"
local certs = require "support.certs"
local cjson = require "cjson"

local root = proc.root
local SERVICE = root .. "/spec/support/rpc_service.lua"
local CAPTURE = root .. "/examples/bandit/data/sample_capture.jsonl"
local REPLAY = (os.getenv("MYCELIUM_BIN") or root .. "/build/mycelium")
               :gsub("mycelium$", "myc-replay")
local SUB_ID = "0x8f28e02024fb031838268bf467cba603"

local function replay(args)
  return proc.spawn(string.format("%s -q --ttl 120 %s %s", REPLAY, args or "",
                                  CAPTURE),
                    "listening on wss?://127%.0%.0%.1:(%d+)/")
end

local function client(url, opts)
  opts = opts or {}
  opts.url = url or nil
  local eng = testing.engine {
    services = { { name = "rpc", module = SERVICE, opts = opts } },
    collect = { "rpc.*" },
  }
  local c = { eng = eng, all = eng:collect("rpc.*") }
  function c.of(topic)
    c.all:messages()
    local out = {}
    for _, m in ipairs(c.all.all) do
      if m.topic == topic then out[#out + 1] = m.data end
    end
    return out
  end
  function c.wait(topic, n, secs)
    eng:run_for(secs or 5, function() return #c.of(topic) >= n end)
    local got = c.of(topic)
    assert(#got >= n, string.format("waited for %d %s, got %d; logs:\n%s", n,
           topic, #got, table.concat(eng:logs(), "\n")))
    return got[n], got
  end
  function c.cmd(t)
    eng:publish("rpc.cmd", t)
    eng:run()
  end
  return c
end

local lines = {}
for l in io.lines(CAPTURE) do lines[#lines + 1] = l end

local server, eng

-- A raw subscriber of a replay server that plays `texts` (one a line).
local function raw_client_of(texts)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(table.concat(texts, "\n"), "\n")
  f:close()
  server = proc.spawn(string.format("%s -q --ttl 120 %s", REPLAY, path),
                      "listening on wss?://127%.0%.0%.1:(%d+)/")
  os.remove(path) -- the server has read it once it listens
  local c = client("ws://127.0.0.1:" .. server.ready[1] .. "/",
                   { subscribe = { "logs", {} }, raw = true })
  eng = c.eng
  return c
end

after_each(function()
  if eng then eng:close() end
  eng = nil
  if server then server.stop() end
  server = nil
  testing.cleanup()
end)

describe("mycelium.net.jsonrpc", function()
  it("routes every notification of its subscription, in order", function()
    server = replay()
    local c = client("ws://127.0.0.1:" .. server.ready[1] .. "/",
                     { subscribe = { "logs", { topics = {} } } })
    eng = c.eng
    assert.are.equal(SUB_ID, c.wait("rpc.subscribed", 1).id)
    -- 59 notifications: one is truncated JSON, one of another subscription
    local _, notes = c.wait("rpc.note", 57)
    c.wait("rpc.invalid", 1)
    c.wait("rpc.other", 1)
    assert.are.equal(57, #notes)
    assert.are.equal("malformed JSON", c.of("rpc.invalid")[1].why)
    assert.are.equal("eth_subscription", c.of("rpc.other")[1].method)
    local k = 0
    for i = 2, #lines do
      local ok, m = pcall(cjson.decode, lines[i])
      if ok and m.params.subscription == SUB_ID then
        k = k + 1
        assert.are.equal(m.params.result.transactionHash,
                         notes[k].result.transactionHash)
        assert.are.equal(m.params.result.logIndex, notes[k].result.logIndex)
        assert.are.equal(SUB_ID, notes[k].sub)
      end
    end
    assert.are.equal(57, k)
  end)

  it("hands raw subscribers every line byte for byte, broken ones too", function()
    server = replay()
    local c = client("ws://127.0.0.1:" .. server.ready[1] .. "/",
                     { subscribe = { "logs", {} }, raw = true })
    eng = c.eng
    local _, notes = c.wait("rpc.note", 58)
    -- the newHeads line of another subscription is not ours
    local expect = {}
    for i = 2, #lines do
      if not lines[i]:find('"subscription":"0x426ab', 1, true) then
        expect[#expect + 1] = lines[i]
      end
    end
    for i, line in ipairs(expect) do assert.are.equal(line, notes[i].result) end
  end)

  it("hands raw subscribers only their own notifications", function()
    -- Ids that begin with ours or name it later are other subscriptions.
    local note = lines[2]
    local longer = note:gsub(SUB_ID, SUB_ID .. "00", 1)
    local later = note:gsub('"subscription":"' .. SUB_ID .. '"',
      '"subscription":"0x1","result0":"' .. SUB_ID .. '"', 1)
    local c = raw_client_of { lines[1], longer, later, note }
    local _, notes = c.wait("rpc.note", 1)
    c.wait("rpc.other", 2)
    assert.are.same({ note }, { notes[1].result, notes[2] })
  end)

  -- A warm-up's synthetic stream: routed as the server's messages are,
  -- to the subscription under an id of its own only while it runs.
  it("receives a message as if from the server, under an alias id", function()
    local c = raw_client_of { lines[1] }
    c.wait("rpc.subscribed", 1)
    local warm = lines[2]:gsub(SUB_ID, "0x5eed", 1)
    c.cmd { op = "receive", text = warm, alias = "0x5eed" }
    local note = c.wait("rpc.note", 1)
    assert.are.equal(warm, note.result)
    -- The alias is gone after the call: the same text is no one's now.
    c.cmd { op = "receive", text = warm }
    c.wait("rpc.other", 1)
    c.cmd { op = "receive", text = "{not json" }
    local invalid = c.wait("rpc.invalid", 1)
    assert.are.equal("malformed JSON", invalid.why)
    local counts = c.of("rpc.count")
    assert.are.equal(3, #counts)
    for _, n in ipairs(counts) do assert.are.equal(0, n.invalid) end
  end)

  it("answers eth_call with ABI-encoded token0, symbol and decimals", function()
    server = replay()
    local c = client("ws://127.0.0.1:" .. server.ready[1] .. "/")
    eng = c.eng
    c.wait("rpc.open", 1)
    local pool = "0x7fC02afdC20328c62ce9e3E09C24314020cbB1A4"
    local usdc = "0x2791Bca1f2de4661ED88A30C99A7a9449Aa84174"
    local function call(tag, to, data, op)
      c.cmd { op = op or "call", tag = tag, method = "eth_call",
              params = { { to = to, data = data }, "latest" } }
    end
    call("token0", pool, "0x0dfe1681")
    call("token1", pool, "0xd21220a7", "co_call")
    call("symbol", usdc, "0x95d89b41")
    call("decimals", usdc, "0x313ce567", "co_call")
    call("revert", usdc, "0x0dfe1681")
    c.cmd { op = "call", tag = "nomethod", method = "eth_mine", params = {} }
    local _, replies = c.wait("rpc.reply", 6)
    local by = {}
    for _, r in ipairs(replies) do by[r.tag] = r end
    assert.are.equal("0x" .. string.rep("0", 24)
                     .. "0d500b1d8e8ef31e21c99d1db9a6444d3adf1270", by.token0.result)
    assert.are.equal("0x" .. string.rep("0", 24)
                     .. "2791bca1f2de4661ed88a30c99a7a9449aa84174", by.token1.result)
    assert.are.equal("0x" .. string.rep("0", 62) .. "20" .. string.rep("0", 63) .. "6"
                     .. "555344432e65" .. string.rep("0", 52), by.symbol.result)
    assert.are.equal("0x" .. string.rep("0", 63) .. "6", by.decimals.result)
    assert.are.same({ code = -32000, message = "execution reverted" }, by.revert.err)
    assert.are.equal(-32601, by.nomethod.err.code)
  end)

  it("resubscribes after the server drops it mid-stream, losing nothing", function()
    server = replay("--drop-after 20")
    local c = client("ws://127.0.0.1:" .. server.ready[1] .. "/",
                     { subscribe = { "logs", {} }, raw = true,
                       rpc = { reconnect = { initial_ms = 20, jitter = 0 } } })
    eng = c.eng
    local _, notes = c.wait("rpc.note", 58, 10)
    local close = c.of("rpc.close")
    assert.are.equal(1, #close)
    assert.matches("without a close frame", close[1].error)
    assert.are.equal(20, close[1].reconnect_ms)
    local opens = c.of("rpc.open")
    assert.are.same({ false, true }, { opens[1].reconnected, opens[2].reconnected })
    assert.are.equal(2, #c.of("rpc.subscribed"))
    -- every notification once, in order, across the two connections
    local k = 0
    for i = 2, #lines do
      if not lines[i]:find('"subscription":"0x426ab', 1, true) then
        k = k + 1
        assert.are.equal(lines[i], notes[k].result)
      end
    end
    assert.are.equal(58, #notes)
  end)

  it("unsubscribes", function()
    server = replay("--block-ms 50")
    local c = client("ws://127.0.0.1:" .. server.ready[1] .. "/",
                     { subscribe = { "logs", {} }, raw = true })
    eng = c.eng
    c.wait("rpc.note", 1)
    c.cmd { op = "unsubscribe", tag = "unsub" }
    local r = c.wait("rpc.reply", 1)
    assert.are.same({ "unsub", true }, { r.tag, r.result })
    local n = #c.of("rpc.note")
    eng:run_for(0.3)
    assert.are.equal(n, #c.of("rpc.note"))
  end)
end)

describe("mycelium.net.jsonrpc failures", function()
  local peer
  setup(function()
    peer = proc.spawn("node " .. proc.node_peers() .. "/ws_peer.js --ttl 120",
                      "READY (%d+) (%d+)")
  end)
  teardown(function() peer.stop() end)

  it("times out a call without reply (engine clock)", function()
    local c = client("ws://127.0.0.1:" .. peer.ready[1] .. "/silent",
                     { rpc = { timeout_ms = 2000 } })
    eng = c.eng
    c.wait("rpc.open", 1)
    c.cmd { op = "call", tag = "t", method = "eth_blockNumber" }
    eng:run_for(0.1)
    assert.are.equal(0, #c.of("rpc.reply"))
    eng:advance(2.5)
    local r = c.wait("rpc.reply", 1)
    assert.matches("no reply to eth_blockNumber within 2000 ms", r.err.message)
    assert.matches("ws://127.0.0.1:%d+/silent", r.err.message)
  end)

  it("fails calls in flight when the connection is lost", function()
    local c = client("ws://127.0.0.1:" .. peer.ready[1] .. "/drop?after=1",
                     { rpc = { reconnect = { initial_ms = 10 } } })
    eng = c.eng
    c.wait("rpc.open", 1)
    c.cmd { op = "co_call", tag = "lost", method = "eth_chainId" }
    local r = c.wait("rpc.reply", 1)
    assert.matches("connection lost before the reply to eth_chainId", r.err.message)
    c.wait("rpc.open", 2)
  end)

  it("fails calls at once after a final close", function()
    local c = client("ws://127.0.0.1:" .. peer.ready[1] .. "/echo")
    eng = c.eng
    c.wait("rpc.open", 1)
    c.cmd { op = "close" }
    c.wait("rpc.close", 1)
    c.cmd { op = "call", tag = "late", method = "eth_chainId" }
    local r = c.wait("rpc.reply", 1)
    assert.is_true(r.sync)
    assert.matches("connection closed", r.err)
  end)
end)

describe("mycelium.net.jsonrpc over HTTP", function()
  local ETH_CALL = { { to = "0x2791Bca1f2de4661ED88A30C99A7a9449Aa84174",
                       data = "0x313ce567" }, "latest" }
  local SIX = "0x" .. string.rep("0", 63) .. "6"

  it("posts eth_call to the replay server, with a callback or a coroutine", function()
    server = replay()
    local c = client(nil, { http_url = "http://127.0.0.1:" .. server.ready[1] .. "/" })
    eng = c.eng
    c.cmd { op = "http_call", tag = "cb", method = "eth_call", params = ETH_CALL }
    c.cmd { op = "http_co_call", tag = "co", method = "eth_call", params = ETH_CALL }
    c.cmd { op = "http_call", tag = "bad", method = "eth_call",
            params = { { to = ETH_CALL[1].to, data = "0x0dfe1681" } } }
    local _, replies = c.wait("rpc.reply", 3)
    local by = {}
    for _, r in ipairs(replies) do by[r.tag] = r end
    assert.are.equal(SIX, by.cb.result)
    assert.are.equal(SIX, by.co.result)
    assert.are.equal("execution reverted", by.bad.err.message)
  end)

  it("reports a refused connection and a server that never answers", function()
    local peer = proc.spawn("node " .. proc.node_peers() .. "/ws_peer.js --ttl 60",
                            "READY (%d+) (%d+)")
    local refusing, release = require("support.redis_server").refusing_port()
    local c = client(nil, { http_url = "http://127.0.0.1:" .. refusing .. "/" })
    eng = c.eng
    c.cmd { op = "http_call", tag = "refused", method = "eth_chainId" }
    local r = c.wait("rpc.reply", 1)
    release()
    assert.matches("^http://127%.0%.0%.1:%d+/: connect to 127%.0%.0%.1 port %d+: "
                   .. "connection refused", r.err.message)
    eng:close()
    c = client(nil, { http_url = "http://127.0.0.1:" .. peer.ready[1] .. "/",
                      http = { timeout_ms = 300 } })
    eng = c.eng
    c.cmd { op = "http_call", tag = "slow", method = "eth_chainId" }
    r = c.wait("rpc.reply", 1)
    assert.matches("no complete response within 300 ms", r.err.message)
    peer.stop()
  end)
end)

describe("mycelium.net.jsonrpc over TLS (wss and https)", function()
  local dir
  setup(function() dir = certs.make() end)
  teardown(function() certs.remove(dir) end)

  it("subscribes over wss and calls over https with the test CA", function()
    server = replay(string.format("--tls-cert %s/srv.crt --tls-key %s/srv.key",
                                  dir, dir))
    local port = server.output():match("wss://127%.0%.0%.1:(%d+)/")
    local c = client("wss://127.0.0.1:" .. port .. "/", {
      subscribe = { "logs", {} }, raw = true,
      rpc = { ca_file = dir .. "/ca.crt" },
      http_url = "https://127.0.0.1:" .. port .. "/",
      http = { ca_file = dir .. "/ca.crt" } })
    eng = c.eng
    c.wait("rpc.note", 58)
    c.cmd { op = "http_call", tag = "tls", method = "eth_chainId" }
    assert.are.equal("0x89", c.wait("rpc.reply", 1).result)
  end)

  it("refuses the server's certificate without the CA", function()
    server = replay(string.format("--tls-cert %s/srv.crt --tls-key %s/srv.key",
                                  dir, dir))
    local port = server.output():match("wss://127%.0%.0%.1:(%d+)/")
    local c = client("wss://127.0.0.1:" .. port .. "/", {
      rpc = { reconnect = false },
      http_url = "https://127.0.0.1:" .. port .. "/" })
    eng = c.eng
    local info = c.wait("rpc.close", 1)
    assert.matches("certificate verification failed", info.error)
    c.cmd { op = "http_call", tag = "tls", method = "eth_chainId" }
    local r = c.wait("rpc.reply", 1)
    assert.matches("^https://127%.0%.0%.1:%d+/: certificate verification failed",
                   r.err.message)
    assert.are.equal("ETLS", r.err.code)
  end)
end)
