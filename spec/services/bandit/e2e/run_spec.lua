local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- examples/bandit/run end to end, as a user runs it (the replay server on
-- a free port, a real threaded engine on two workers): the files equal
-- the expected ones byte for byte, the human summary is printed, bad
-- arguments fail with a message.
local H = require "spec.services.bandit.helper"

local function sh(cmd)
  local p = io.popen(cmd .. "; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return rc, out:gsub("rc=%d+\n$", "")
end

local RUN = H.ROOT .. "examples/bandit/run"

describe("examples/bandit/run", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.rmdir(dir) end)

  local function outputs(extra)
    return string.format("%s --events %s/e --skipped %s/s --signals %s/g --summary %s/m %s",
                         RUN, dir, dir, dir, dir, extra or "")
  end

  it("writes the sample's expected files and prints signals and a summary", function()
    local rc, out = sh(outputs() .. " 2>" .. dir .. "/err")
    assert.equal(0, rc, out .. H.read(dir .. "/err"))
    for f, name in pairs { e = "events.jsonl", s = "skipped.jsonl", g = "signals.jsonl",
                           m = "summary.json" } do
      H.same_lines(H.read(H.DATA .. "sample_expected_" .. name), H.read(dir .. "/" .. f), name)
    end
    local n = 0
    for _ in out:gmatch("signal line ") do n = n + 1 end
    assert.equal(11, n)
    assert.matches("events decoded   50 (v2_swap 18, v2_sync 23, v3_swap 9), 3 retracted",
                   out, 1, true)
    assert.matches("signals          11", out, 1, true)
    assert.matches("log arrival %-> signal: p50 [%d.]+ ms, p99 [%d.]+ ms %(11 signals%)", out)
    -- The pipeline on worker 0, the recorder on 1 (examples/bandit/mycelium.lua).
    assert.matches("\narb%s+0%s+%d+", out)
    assert.matches("\nrecorder%s+1%s+%d+", out)
  end)

  it("runs any capture of the format", function()
    local peers = require "spec.support.peers"
    if not peers.have("python3") then return pending("python3 not installed") end
    local x = dir .. "/x"
    assert.is_true(peers.ok(string.format("python3 %s 11 %s >/dev/null",
                                          H.XCHECK, x)))
    local rc, out = sh(outputs(string.format("--quiet --capture %s/capture.jsonl "
      .. "--pools %s/pools.json --tokens %s/tokens.json 2>/dev/null", x, x, x)))
    assert.equal(0, rc, out)
    assert.equal("", out)
    for f, name in pairs { e = "events.jsonl", s = "skipped.jsonl", g = "signals.jsonl",
                           m = "summary.json" } do
      H.same_lines(H.read(x .. "/expected_" .. name), H.read(dir .. "/" .. f), name)
    end
  end)

  it("gives the same files when the lines are injected instead of served", function()
    local rc, out = sh(outputs("--quiet --inject 2>/dev/null"))
    assert.equal(0, rc, out)
    for f, name in pairs { e = "events.jsonl", s = "skipped.jsonl", g = "signals.jsonl",
                           m = "summary.json" } do
      H.same_lines(H.read(H.DATA .. "sample_expected_" .. name), H.read(dir .. "/" .. f), name)
    end
  end)

  it("decides a capture the replay server refuses (no reply on line 1) in process",
     function()
    local lines = H.lines(H.DATA .. "sample_capture.jsonl")
    local f = assert(io.open(dir .. "/c.jsonl", "wb"))
    f:write(lines[2], "\n", lines[3], "\n")
    f:close()
    local rc, out = sh(RUN .. " --quiet --capture " .. dir .. "/c.jsonl --skipped "
                       .. dir .. "/s 2>&1")
    assert.equal(0, rc, out)
    assert.matches("feeding the lines in process instead", out, 1, true)
    assert.equal('{"line":2,"reason":"foreign_message"}\n', H.read(dir .. "/s"))
  end)

  it("feeds a line with a NUL byte in process as one line, as the oracle reads it",
     function()
    local lines = H.lines(H.DATA .. "sample_capture.jsonl")
    lines[5] = lines[5]:gsub('"data":"0x', '"data":"0x\0', 1)
    local f = assert(io.open(dir .. "/nul.jsonl", "wb"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    local rc, out = sh(outputs("--quiet --inject --capture " .. dir .. "/nul.jsonl 2>&1"))
    assert.equal(0, rc, out)
    local want = require("bandit.replay_offline").outputs(assert(
      require("bandit.replay_offline").run { capture = dir .. "/nul.jsonl",
        pools = H.DATA .. "pools.json", tokens = H.DATA .. "tokens.json" }))
    for f2, name in pairs { e = "events.jsonl", s = "skipped.jsonl", g = "signals.jsonl",
                            m = "summary.json" } do
      H.same_lines(want[name], H.read(dir .. "/" .. f2), name)
    end
    assert.matches('{"line":5,"reason":"malformed_json"}', H.read(dir .. "/s"), 1, true)
  end)

  it("says how many lines a connection closed for invalid UTF-8 lost, and fails",
     function()
    -- Line 20 is not UTF-8: the client fails the connection (1007), loses
    -- it and whatever was on its way, reconnects and gets the rest.
    local lines = H.lines(H.DATA .. "sample_capture.jsonl")
    lines[20] = lines[20]:gsub('"removed":false', '"removed":false,"x":"\255"', 1)
    local f = assert(io.open(dir .. "/bad.jsonl", "wb"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    local rc, out = sh("BANDIT_IDLE_MS=1000 " .. outputs("--rate 200 --capture " .. dir
                       .. "/bad.jsonl 2>" .. dir .. "/err"))
    local err = H.read(dir .. "/err")
    assert.equal(1, rc, out .. err)
    local sum = require("cjson").decode(H.read(dir .. "/m"))
    local gone = sum.incomplete
    assert.equal(60, gone.lines_expected)
    assert.is_true(gone.lines_missing >= 1)
    assert.equal(60, sum.lines + gone.lines_missing)
    assert.equal(1, gone.connections_lost)
    assert.matches(string.format("lines            %d of 60 expected: %d lost "
      .. "(1 connection(s) lost mid-stream), RESULTS INCOMPLETE", sum.lines,
      gone.lines_missing), out, 1, true)
    assert.matches("not valid UTF-8 (closed with 1007)", err, 1, true)
    assert.matches("the stream is incomplete: " .. gone.lines_missing .. " of 60 lines",
                   err, 1, true)
  end)

  it("emits no log twice when the node is killed (-9) and restarts from the start",
     function()
    local proc = require "support.proc"
    local cjson = require "cjson"
    local bin = os.getenv("MYCELIUM_BIN") or H.ROOT .. "build/mycelium"
    local replay = bin:gsub("mycelium$", "myc-replay")
    local capture = H.DATA .. "sample_capture.jsonl"
    local node = proc.spawn(string.format("%s -q --ttl 60 --rate 40 %s", replay, capture),
                            "listening on ws://127%.0%.0%.1:(%d+)/")
    local port = node.ready[1]
    local env = string.format("BANDIT_URL=ws://127.0.0.1:%s/ BANDIT_RPC=http://127.0.0.1:%s/ "
      .. "BANDIT_IDLE_MS=1500 BANDIT_QUIET=1 BANDIT_EVENTS=%s/ke BANDIT_SKIPPED=%s/ks "
      .. "BANDIT_SIGNALS=%s/kg BANDIT_SUMMARY=%s/km", port, port, dir, dir, dir, dir)
    -- The adapter warns of line 15 (a Transfer log): the node is mid-stream.
    local run = proc.spawn(string.format("(%s %s run %sexamples/bandit/mycelium.lua; "
      .. "echo exit=$?)", env, bin, H.ROOT), "reason=unknown_topic", 20)
    assert.is_true(node.kill(9), "the killed node is still running")
    node.stop()
    node = proc.spawn(string.format("%s -q --ttl 60 -p %s %s", replay, port, capture),
                      "listening on")
    local deadline, code = os.time() + 30, nil
    repeat
      code = run.output():match("exit=(%d+)")
      proc.sleep(0.05)
    until code or os.time() > deadline
    local said = run.output()
    node.stop()
    run.stop()
    assert.equal("0", code, said)
    -- The lines of the first connection, as the adapter said when it lost it.
    local k = tonumber(said:match("connection lost: [^\n]- lines=(%d+)"))
    assert.is_number(k, said)
    local want = H.restarted(H.DATA .. "sample_expected_", k)
    for f, name in pairs { ke = "events.jsonl", ks = "skipped.jsonl", kg = "signals.jsonl" } do
      assert.same(want[name], H.records(H.read(dir .. "/" .. f)), name)
    end
    local sum = cjson.decode(H.read(dir .. "/km"))
    local expected = cjson.decode(H.read(H.DATA .. "sample_expected_summary.json"))
    assert.equal(59 + k, sum.lines)
    assert.equal(want.duplicates, sum.skipped_by_reason.duplicate)
    for _, key in ipairs { "events_accepted", "events_retracted", "evaluations", "signals",
                           "final_pool_state" } do
      assert.same(expected[key], sum[key], key)
    end
    assert.is_nil(sum.incomplete)
  end)

  it("refuses what it cannot run, saying why", function()
    local rc, out = sh(RUN .. " --capture /nonexistent/c.jsonl 2>&1")
    assert.equal(2, rc)
    assert.matches("run: cannot read /nonexistent/c.jsonl", out, 1, true)
    rc, out = sh(RUN .. " --bogus 2>&1")
    assert.equal(2, rc)
    assert.matches("run: unknown argument '--bogus'", out, 1, true)
    rc, out = sh(RUN .. " --events 2>&1")
    assert.equal(2, rc)
    assert.matches("run: --events needs a value", out, 1, true)
  end)
  -- `make demo` builds what it runs without a word, and without npm (the
  -- npm peers are the tests'): a fake npm and node first on the PATH say
  -- whether anything called them.
  it("make demo-build prints nothing and calls no npm", function()
    local bin = os.getenv("MYCELIUM_BIN") or (H.ROOT .. "build/mycelium")
    local build = bin:match("^(.*)/mycelium$") or (H.ROOT .. "build")
    local fake = dir .. "/fakebin"
    assert(os.execute("mkdir -p " .. fake) == 0)
    for _, tool in ipairs { "npm", "node" } do
      local f = assert(io.open(fake .. "/" .. tool, "w"))
      f:write("#!/bin/sh\necho called >> " .. dir .. "/npm_called\nexit 1\n")
      f:close()
      os.execute("chmod +x " .. fake .. "/" .. tool)
    end
    local rc, out = sh(string.format("cd %s && PATH=%s:$PATH make -s demo-build BUILD=%s 2>&1",
                                     H.ROOT, fake, build))
    assert.equal(0, rc, out)
    assert.equal("", out)
    assert.is_nil(io.open(dir .. "/npm_called"))
  end)
end)
