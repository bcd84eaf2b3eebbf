local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "spec/?.lua", root .. "?.lua",
  package.path }, ";")

-- Bandit over a real WebSocket: the replay server (myc-replay) plays a
-- capture as a node would and the adapter subscribes with eth_subscribe.
-- The files must equal the expected ones when the server drops the
-- connection mid-stream (resubscription, no line lost or counted twice,
-- no duplicate signal), under another subscription id, on random
-- captures, and when MetadataService must learn a token by eth_call.
local H = require "spec.services.bandit.helper"
local testing = require "mycelium.testing"
local proc = require "support.proc"
local env = require "support.env"
local cjson = require "cjson"

local REPLAY = (os.getenv("MYCELIUM_BIN") or H.ROOT .. "build/mycelium")
               :gsub("mycelium$", "myc-replay")
local FILES = { "events.jsonl", "skipped.jsonl", "signals.jsonl", "summary.json" }

local function replay(capture, args)
  return proc.spawn(string.format("%s -q --ttl 120 %s %s", REPLAY, args or "", capture),
                    "listening on ws://127%.0%.0%.1:(%d+)/")
end

-- Runs the three services and the recorder against the server; returns
-- the four texts, what was collected, and the end messages. o.poll(eng)
-- runs while waiting.
local function run(server, capture, o)
  o = o or {}
  local url = "ws://127.0.0.1:" .. server.ready[1] .. "/"
  local dir = H.tmpdir()
  local pools, tokens = o.pools or H.DATA .. "pools.json", o.tokens or H.DATA .. "tokens.json"
  local adapter = { source = "ws", url = url, end_after = #H.lines(capture),
                    reconnect = { initial_ms = 20, jitter = 0 } }
  for k, v in pairs(o.adapter or {}) do adapter[k] = v end
  local eng = H.engine {
    out = dir, pools = pools, tokens = tokens, start = false,
    adapter = adapter,
    metadata = { tokens = o.meta_tokens or tokens,
                 rpc = "http://127.0.0.1:" .. server.ready[1] .. "/",
                 redis = o.redis },
    recorder = { exit = true },
  }
  local signals, ends = eng:collect("bandit.signal"), eng:collect("bandit.end.*")
  eng:start()
  -- 60 s: generous for a loaded machine.
  local done = eng:run_for(60, function()
    if o.poll then o.poll(eng) end
    local f = io.open(dir .. "/summary.json")
    if f then f:close() end
    return f ~= nil
  end)
  assert.is_true(done, "the recorder did not finish")
  local got = {}
  for _, name in ipairs(FILES) do got[name] = H.read(dir .. "/" .. name) end
  local by = {}
  for _, m in ipairs(ends:messages()) do by[m.topic] = m.data end
  local _, code = eng:stopping()
  local out = { files = got, signals = signals:messages(), ends = by,
                errors = 0, logs = eng:logs(true), code = code }
  for _, s in ipairs { "polygon", "metadata", "arb", "recorder" } do
    out.errors = out.errors + eng:stats(s).errors
  end
  eng:close()
  H.rmdir(dir)
  return out
end

local function same_files(want_prefix, got)
  for _, name in ipairs(FILES) do
    H.same_lines(H.read(want_prefix .. name), got.files[name], name)
  end
end

-- The sample with its line n made invalid UTF-8 (a WebSocket client must
-- fail the connection with 1007 on it); returns the capture's path.
local function bad_utf8_capture(dir, n)
  local lines = H.lines(H.DATA .. "sample_capture.jsonl")
  lines[n] = lines[n]:gsub('"removed":false', '"removed":false,"x":"\255\254"', 1)
  local f = assert(io.open(dir .. "/capture.jsonl", "wb"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  return dir .. "/capture.jsonl"
end

describe("Bandit over WebSocket", function()
  local server
  after_each(function()
    if server then server.stop() server = nil end
    testing.cleanup()
  end)

  it("writes the expected files from the replay server", function()
    server = replay(H.DATA .. "sample_capture.jsonl")
    local out = run(server, H.DATA .. "sample_capture.jsonl")
    assert.equal(0, out.errors)
    same_files(H.DATA .. "sample_expected_", out)
    assert.equal(1, out.ends["bandit.end.adapter"].subscriptions)
    assert.equal(0, out.code)
  end)

  it("skips malformed text jsonrpc cannot route as the topic source does",
     function()
    -- Line 19 of the sample is cut short after its subscription id, so it
    -- reaches the adapter as a notification; cut before it, it reaches
    -- the adapter as text jsonrpc found malformed. Same files.
    local dir = H.tmpdir()
    local lines = H.lines(H.DATA .. "sample_capture.jsonl")
    lines[19] = '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscr'
    local capture = dir .. "/capture.jsonl"
    local f = assert(io.open(capture, "wb"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    server = replay(capture)
    local out = run(server, capture)
    H.rmdir(dir)
    assert.equal(0, out.errors)
    same_files(H.DATA .. "sample_expected_", out)
  end)

  it("resubscribes after the server drops the connection, losing and doubling nothing",
     function()
    server = replay(H.DATA .. "sample_capture.jsonl", "--drop-after 20 --drops 2")
    local out = run(server, H.DATA .. "sample_capture.jsonl")
    assert.equal(0, out.errors)
    same_files(H.DATA .. "sample_expected_", out)
    local a = out.ends["bandit.end.adapter"]
    assert.equal(2, a.disconnects)
    assert.equal(3, a.subscriptions)
    assert.equal(60, a.lines)
    -- The node continued where it was: the count proves nothing was lost.
    assert.equal(0, a.missing)
    assert.is_true(a.complete)
    assert.equal(0, out.code)
    -- Each signal once: the lines that raised them are all different.
    local seen = {}
    for _, s in ipairs(out.signals) do
      assert.is_nil(seen[s.data.ws_seq], "two signals for line " .. s.data.ws_seq)
      seen[s.data.ws_seq] = true
    end
    assert.equal(11, #out.signals)
  end)

  -- The node drops the first connection after n notifications (lines
  -- 1..n+1 with the reply) and restarts the stream from its first
  -- notification: 59 lines more, the first n seen already. After 45, the
  -- reorg of lines 35-44 (three retractions, a removal matching nothing)
  -- is repeated too.
  for _, case in ipairs { { n = 20, dups = 18 }, { n = 45, dups = 40 } } do
    it("suppresses what a node restarted after " .. case.n .. " notifications replays, "
       .. "and counts it", function()
      server = replay(H.DATA .. "sample_capture.jsonl",
                      "--drop-after " .. case.n .. " --restart")
      local out = run(server, H.DATA .. "sample_capture.jsonl",
                      { adapter = { end_after = case.n + 60 } })
      assert.equal(0, out.errors)
      local want = H.restarted(H.DATA .. "sample_expected_", case.n + 1)
      for _, name in ipairs { "events.jsonl", "skipped.jsonl", "signals.jsonl" } do
        assert.same(want[name], H.records(out.files[name]), name)
      end
      assert.equal(case.dups, want.duplicates)
      local a = out.ends["bandit.end.adapter"]
      assert.same({ case.n + 60, case.dups, 1 }, { a.lines, a.duplicates, a.gaps })
      -- The node sent again the last log of the lost connection: it
      -- replayed from before the gap, so nothing fell into it.
      assert.is_true(a.complete)
      local sum, expected = cjson.decode(out.files["summary.json"]),
        cjson.decode(H.read(H.DATA .. "sample_expected_summary.json"))
      assert.equal(case.dups, sum.skipped_by_reason.duplicate)
      for _, k in ipairs { "events_accepted", "events_retracted", "evaluations", "signals",
                           "signals_by_pair", "signals_by_trigger", "final_pool_state" } do
        assert.same(expected[k], sum[k], k)
      end
      assert.is_nil(sum.incomplete)
      assert.equal(0, out.code)
    end)
  end

  it("counts the lines a connection closed for invalid UTF-8 lost, and fails the run",
     function()
    local dir = H.tmpdir()
    local capture = bad_utf8_capture(dir, 20)
    -- Everything is sent at once: the client fails the connection (1007)
    -- on line 20 with lines 21-60 already on their way, and the server,
    -- done, is gone when it reconnects.
    server = replay(capture, "--once")
    local out = run(server, capture, {
      adapter = { reconnect = { initial_ms = 20, jitter = 0, max_attempts = 2 } } })
    H.rmdir(dir)
    assert.equal(0, out.errors)
    local a = out.ends["bandit.end.adapter"]
    assert.same({ 19, 60, 41, 1, false },
                { a.lines, a.expected, a.missing, a.gaps, a.complete })
    local sum = cjson.decode(out.files["summary.json"])
    assert.equal(19, sum.lines)
    assert.same({ lines_expected = 60, lines_missing = 41, connections_lost = 1 },
                sum.incomplete)
    assert.equal(1, out.code)
    -- What arrived is decided as ever.
    local want = {}
    for _, e in ipairs(H.records(H.read(H.DATA .. "sample_expected_events.jsonl"))) do
      if e.line < 20 then want[#want + 1] = e end
    end
    assert.same(want, H.records(out.files["events.jsonl"]))
    local said = {}
    for _, l in ipairs(out.logs) do
      if l.level == "error" or l.level == "warn" then said[#said + 1] = l.msg end
    end
    said = table.concat(said, "\n")
    assert.matches("not valid UTF-8 (closed with 1007)", said, 1, true)
    assert.matches("the stream is incomplete: 41 of 60 lines were not received", said, 1, true)
  end)

  it("cannot vouch for a live stream that lost its connection: says so, and fails",
     function()
    -- No known length, as from a live node: the connection drops after 20
    -- notifications, the node goes on where it was (nothing is lost, but
    -- nothing shows it), then stops for good.
    server = replay(H.DATA .. "sample_capture.jsonl", "--drop-after 20")
    local out = run(server, H.DATA .. "sample_capture.jsonl", {
      adapter = { end_after = false,
                  reconnect = { initial_ms = 20, jitter = 0, max_attempts = 2 } },
      poll = function(eng)
        if server.pid and eng:stats("polygon").out >= 59 then server.stop() end
      end,
    })
    assert.equal(0, out.errors)
    local a = out.ends["bandit.end.adapter"]
    assert.same({ 60, false, false, 2, false },
                { a.lines, a.expected, a.missing, a.gaps, a.complete })
    -- Everything that arrived is decided as ever.
    for _, name in ipairs { "events.jsonl", "skipped.jsonl", "signals.jsonl" } do
      H.same_lines(H.read(H.DATA .. "sample_expected_" .. name), out.files[name], name)
    end
    local sum = cjson.decode(out.files["summary.json"])
    assert.equal(cjson.null, sum.incomplete.lines_expected)
    assert.equal(cjson.null, sum.incomplete.lines_missing)
    assert.equal(2, sum.incomplete.connections_lost)
    assert.equal(1, out.code)
  end)

  it("counts silence as the end only once the first notification came (a held replay)",
     function()
    -- The server answers eth_subscribe and holds the notifications until
    -- SIGUSR1, as when a launcher waits for its processes to link; the
    -- wait is four times opts.idle_end_ms. Counting it as the end would
    -- end the stream at line 1, ahead of every notification. The idle
    -- check runs on the engine's timers (the test's clock, moved here)
    -- and measures silence on the monotonic clock.
    server = replay(H.DATA .. "sample_capture.jsonl", "--hold")
    local polls = 0
    local out = run(server, H.DATA .. "sample_capture.jsonl", {
      adapter = { idle_end_ms = 200 },
      poll = function(eng)
        polls = polls + 1 -- at least 1 ms each (Engine:run_for)
        if polls < 800 then
          eng:advance(0.01)
        elseif polls == 800 then
          require("ffi").C.kill(server.pid, 10) -- SIGUSR1: release
        end
      end,
    })
    assert.is_true(polls >= 800, "the run ended before the stream was released")
    assert.equal(0, out.errors)
    same_files(H.DATA .. "sample_expected_", out)
    local a = out.ends["bandit.end.adapter"]
    assert.same({ "line count reached", 60, true }, { a.reason, a.lines, a.complete })
    assert.equal(0, out.code)
  end)

  it("follows the subscription id the node gives", function()
    server = replay(H.DATA .. "sample_capture.jsonl", "--sub-id 0x1")
    local out = run(server, H.DATA .. "sample_capture.jsonl")
    local want = H.read(H.DATA .. "sample_expected_summary.json")
      :gsub('"subscription_id": "0x8f28e02024fb031838268bf467cba603"',
            '"subscription_id": "0x1"')
    H.same_lines(want, out.files["summary.json"], "summary")
    H.same_lines(H.read(H.DATA .. "sample_expected_signals.jsonl"),
                 out.files["signals.jsonl"], "signals")
  end)

  it("learns a token missing from its list by eth_call, and writes it back to Redis",
     function()
    local redis_server = require "support.redis_server"
    local redis = redis_server.start()
    local dir = H.tmpdir()
    -- MetadataService's list lacks WETH; the node knows it.
    local toks = cjson.decode(H.read(H.DATA .. "tokens.json"))
    for i = #toks, 1, -1 do
      if toks[i].symbol == "WETH" then table.remove(toks, i) end
    end
    local f = assert(io.open(dir .. "/tokens.json", "wb"))
    f:write(cjson.encode(toks))
    f:close()
    server = replay(H.DATA .. "sample_capture.jsonl")
    -- Bounds a loaded CI machine keeps: with the default 1 s connect the
    -- client gave up once before the token was learned.
    local ok, out = pcall(run, server, H.DATA .. "sample_capture.jsonl",
                          { meta_tokens = dir .. "/tokens.json",
                            redis = { url = redis.url, connect_timeout_ms = 15000,
                                      command_timeout_ms = 15000 } })
    local p = io.popen(string.format("redis-cli -p %d GET %s", redis.port,
      "bandit:token:0x7ceb23fd6bc0add59e62ac25578270cff1b9f619"))
    local cached = p:read("*a")
    p:close()
    redis:stop()
    H.rmdir(dir)
    assert(ok, out)
    same_files(H.DATA .. "sample_expected_", out)
    local m = out.ends["bandit.end.metadata"]
    assert.equal(1, m.lookups)
    assert.equal(2, m.eth_calls)
    assert.equal(0, m.dropped)
    -- What the client said is the explanation when the value is missing.
    local said = {}
    for _, l in ipairs(out.logs) do
      if l.service == "metadata" then said[#said + 1] = cjson.encode(l) end
    end
    assert(cached:match("%S"), "nothing under the key; the end message: " .. cjson.encode(m)
           .. "\nwhat MetadataService logged:\n" .. table.concat(said, "\n"))
    assert.same({ symbol = "WETH", decimals = 18 }, cjson.decode(cached))
  end)

  it("learns a pool missing from its list from the node (opts.discover)", function()
    local QUICK = "0x7fC02afdC20328c62ce9e3E09C24314020cbB1A4"
    local dir = H.tmpdir()
    local pools = cjson.decode(H.read(H.DATA .. "pools.json"))
    assert.equal(QUICK, table.remove(pools, 1).address)
    local f = assert(io.open(dir .. "/pools.json", "wb"))
    f:write(cjson.encode(pools))
    f:close()
    server = replay(H.DATA .. "sample_capture.jsonl")
    local url = "ws://127.0.0.1:" .. server.ready[1] .. "/"
    local eng = H.engine {
      out = dir, pools = dir .. "/pools.json", start = false,
      adapter = { source = "ws", url = url, end_after = 60, discover = true },
      metadata = { rpc = "http://127.0.0.1:" .. server.ready[1] .. "/", discover = true },
      recorder = { pools = false },
    }
    eng:start()
    assert.is_true(eng:run_for(20, function()
      local g = io.open(dir .. "/summary.json")
      if g then g:close() end
      return g ~= nil
    end))
    -- Everything as expected, but the venue's name the node cannot tell.
    local function patched(name)
      local out = {}
      for _, l in ipairs(H.lines(H.DATA .. "sample_expected_" .. name)) do
        local r = cjson.decode(l)
        if r.pool == QUICK then r.dex = "unknown" end
        if r.buy_pool == QUICK then r.buy_dex = "unknown" end
        if r.sell_pool == QUICK then r.sell_dex = "unknown" end
        -- The Sync of a pool nobody knows (line 24) is now looked up, and
        -- the node has no code there: dropped, not an unknown pool.
        if r.reason == "unknown_pool" then r.reason = "unenriched" end
        out[#out + 1] = r
      end
      return out
    end
    for _, name in ipairs { "events.jsonl", "skipped.jsonl", "signals.jsonl" } do
      local got = {}
      for _, l in ipairs(H.lines(dir .. "/" .. name)) do got[#got + 1] = cjson.decode(l) end
      assert.same(patched(name), got, name)
    end
    assert.equal(0, eng:stats("metadata").errors)
    eng:close()
    H.rmdir(dir)
  end)

  describe("on random captures", function()
    if not require("spec.support.peers").have("python3") then
      pending("python3 not installed")
      return
    end
    for _, seed in ipairs { 11, 4096 } do
      it("agrees with xcheck.py, seed " .. seed .. ", with a drop mid-stream", function()
        local dir = H.tmpdir()
        assert.is_true(require("spec.support.peers").ok(string.format(
          "python3 %s %d %s >/dev/null", H.XCHECK, seed, dir)))
        server = replay(dir .. "/capture.jsonl", "--drop-after 97")
        local out = run(server, dir .. "/capture.jsonl",
                        { pools = dir .. "/pools.json", tokens = dir .. "/tokens.json" })
        assert.equal(0, out.errors)
        same_files(dir .. "/expected_", out)
        H.rmdir(dir)
      end)
    end
  end)

  -- A read's messages are delivered by one Lua loop (mycelium.net.ws), so
  -- the trace that leaves the last loop of one log's fill ran on into the
  -- next message; with nothing to link to there it grew too long for
  -- LuaJIT until that exit went to the interpreter for good, with the
  -- emit after it (docs/TUNING.md). The adapter breaks each message's
  -- trace. Without the breaks this failed in 5 of 7 runs (how many
  -- messages a read brings decides); the pipeline runs on one worker, as
  -- in the bench's flood, so that reads bring many.
  it("floods the adapter with no trace too long after its warm-up", function()
    local plays, capture = 4000, H.DATA .. "sample_capture.jsonl"
    server = replay(capture, "--fast --loop " .. plays)
    local dir = H.tmpdir()
    env.set("MYC_JIT_LOG", dir)
    local lines = #H.lines(capture)
    local eng = testing.engine {
      contracts = H.ROOT .. "services/contracts.yaml", start = false, workers = 1,
      services = {
        { name = "polygon", module = H.ROOT .. "services/polygon_adapter.lua",
          opts = { source = "ws", url = "ws://127.0.0.1:" .. server.ready[1] .. "/",
                   end_after = lines + (lines - 1) * (plays - 1) } },
        { name = "metadata", module = H.ROOT .. "services/metadata_service.lua" },
        { name = "arb", module = H.ROOT .. "services/arbitrage_detector.lua" },
      },
    }
    local ends = eng:collect("bandit.end.adapter")
    eng:start()
    local done = eng:run_for(60, function() return #ends:messages() > 0 end)
    eng:close()
    env.unset("MYC_JIT_LOG")
    local text = H.read(dir .. "/polygon.jitv")
    H.rmdir(dir)
    assert.is_true(done, "the adapter did not reach the end of the replay")
    local traffic = text:match("%[MARK traffic%](.*)$")
    assert.is_truthy(traffic, text)
    assert.is_falsy(traffic:find("trace too long", 1, true), traffic)
  end)
end)
