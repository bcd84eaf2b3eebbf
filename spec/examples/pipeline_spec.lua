local root = debug.getinfo(1, "S").source:match("^@(.-)spec/examples/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- examples/pipeline/run: Bandit as three `mycelium run` processes linked
-- over Unix sockets or TCP. Its files are those of the single-process run
-- byte for byte; with the metadata process killed (-9) and started again
-- mid-stream, no line is decided twice, the adapter's link queues up to
-- its bound, and the summary counts what was lost and says where.
local H = require "spec.services.bandit.helper"

local function sh(cmd)
  local p = io.popen(cmd .. "; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return rc, out:gsub("rc=%d+\n$", "")
end

local PIPELINE = H.ROOT .. "examples/pipeline/run"
local SINGLE = H.ROOT .. "examples/bandit/run"
local FILES = { e = "events.jsonl", s = "skipped.jsonl", g = "signals.jsonl",
                m = "summary.json" }

describe("examples/pipeline/run", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.rmdir(dir) end)

  local function outputs(cmd, prefix, extra)
    local d = dir .. "/" .. prefix
    return string.format("%s --events %se --skipped %ss --signals %sg --summary %sm %s",
                         cmd, d, d, d, d, extra or "")
  end

  it("writes the sample's expected files over Unix sockets and prints the summary",
     function()
    local rc, out = sh(outputs(PIPELINE, "u", "2>" .. dir .. "/err"))
    assert.equal(0, rc, out .. H.read(dir .. "/err"))
    for f, name in pairs(FILES) do
      assert.equal(H.read(H.DATA .. "sample_expected_" .. name), H.read(dir .. "/u" .. f),
                   name)
    end
    local n = 0
    for _ in out:gmatch("signal line ") do n = n + 1 end
    assert.equal(11, n)
    assert.matches("events decoded   50 (v2_swap 18, v2_sync 23, v3_swap 9), 3 retracted",
                   out, 1, true)
    assert.matches("log arrival %-> signal: p50 [%d.]+ ms, p99 [%d.]+ ms %(11 signals%)", out)
    -- Every service has its row, the remote ones from their processes.
    assert.matches("\narb%s+1%s+%d+", out)
    assert.matches("\npolygon%s+0%s+0%s+60%s", out)
    assert.matches("\nmetadata%s+0%s+%d+", out)
    assert.matches("link polygon %-> metadata%s+%d+ frames out, 0 queued, 0 dropped", out)
    assert.not_matches("\nlost ", out)
  end)

  it("gives the single-process run's files over TCP on a random capture", function()
    local peers = require "spec.support.peers"
    if not peers.have("python3") then return pending("python3 not installed") end
    local x = dir .. "/x"
    assert.is_true(peers.ok(string.format("python3 %s 11 %s >/dev/null", H.XCHECK, x)))
    local input = string.format("--quiet --capture %s/capture.jsonl --pools %s/pools.json "
                                .. "--tokens %s/tokens.json 2>/dev/null", x, x, x)
    local rc, out = sh(outputs(SINGLE, "one", input))
    assert.equal(0, rc, out)
    rc, out = sh(outputs(PIPELINE, "tcp", "--tcp " .. input))
    assert.equal(0, rc, out)
    assert.equal("", out)
    for f, name in pairs(FILES) do
      local single = H.read(dir .. "/one" .. f)
      assert.is_true(#single > 0, name)
      assert.equal(single, H.read(dir .. "/tcp" .. f), name)
    end
  end)

  it("decides no line twice when the metadata process is killed and restarted, and "
     .. "counts what the bounded link dropped", function()
    -- The sample twenty times at 300 lines/s (4 s); metadata down for
    -- 250 ms of it while the adapter's link holds at most 32 messages.
    -- It must be back before the end of the stream (which a full queue
    -- would drop): 3.5 s to start again on a loaded machine.
    local rc, out = sh(outputs(PIPELINE, "k", "--loops 20 --rate 300 --kill-metadata 250 "
                               .. "--down 250 --queue-frames 32 --timeout 30 2>"
                               .. dir .. "/kerr"))
    assert.equal(1, rc, out .. H.read(dir .. "/kerr"))
    local lost = tonumber(out:match("\nlost%s+(%d+) lines between the adapter and the "
                                    .. "detector %([%d, -]+%): sent by the adapter, never "
                                    .. "decided downstream, RESULTS INCOMPLETE"))
    assert.is_number(lost, out)
    -- Messages in flight when the connection broke may add a
    -- 'disconnect' reason; a slow restart may take more than one redial.
    local why, reconnects = out:match("link polygon %-> metadata%s+%d+ frames out, "
      .. "%d+ queued, %d+ dropped %(([^)]*)%), (%d+) reconnects")
    assert.is_string(why, out)
    assert.is_true(tonumber(reconnects) >= 1, out)
    local queue_full = tonumber(why:match("queue_full (%d+)"))
    assert.is_number(queue_full, out)
    -- 250 ms at 300/s is ~75 lines, of which 32 fit in the queue.
    assert.is_true(queue_full > 0, out)
    local said, by_links, inside = out:match("why%s+(%d+) lost = (%d+) dropped by the "
                                             .. "links above %+ (%-?%d+) inside")
    assert.equal(lost, tonumber(said), out)
    assert.is_true(tonumber(by_links) >= queue_full and tonumber(inside) >= 0, out)
    assert.matches("fault            metadata process killed (-9) 250 ms into the stream",
                   out, 1, true)
    -- Every line is decided once at most; with the lost ones, all of them.
    local seen, records = {}, 0
    for _, f in ipairs { "ke", "ks" } do
      for line in H.read(dir .. "/" .. f):gmatch('{"line":(%d+),') do
        assert.is_nil(seen[line], "line " .. line .. " decided twice")
        seen[line], records = true, records + 1
      end
    end
    assert.equal(20 * 59, records + lost)
    local signals = {}
    for at in H.read(dir .. "/kg"):gmatch('"line":(%d+),"trigger"') do
      assert.is_nil(signals[at], "signal of line " .. at .. " twice")
      signals[at] = true
    end
    assert.is_not_nil(next(signals))
  end)

  it("--trace prints one signal's trace across the three processes, each stage under "
     .. "the one before", function()
    if not require("spec.support.peers").have("python3") then
      return pending("python3 not installed")
    end
    local rc, out = sh(PIPELINE .. " --trace --quiet 2>" .. dir .. "/terr")
    assert.equal(0, rc, out .. H.read(dir .. "/terr"))
    local tree = out:match("(trace %x+: %d+ spans, %d+ services.*)$")
    assert.is_string(tree, out)
    -- Each line of the tree: the branches (3 characters a level), then
    -- "TOPIC SERVICE@NODE ..."; 'up' keeps the ancestors of the line.
    local up, signal = {}, nil
    for line in tree:gmatch("[^\n]+") do
      local pre, name, service, node = line:match("^([|`%- ]*)(%S+) ([%w_]+)@(%S+)")
      if pre then
        local depth = #pre / 3
        local span = { name = name, service = service, node = node,
                       up = { unpack(up, 1, depth) } }
        up[depth + 1] = span
        for i = #up, depth + 2, -1 do up[i] = nil end
        if name == "bandit.signal" then signal = signal or span end
      end
    end
    assert.is_table(signal, "no span of bandit.signal in\n" .. tree)
    assert.same({ "recorder", "arb" }, { signal.service, signal.node })
    -- Its ancestors, root first: the adapter's socket event in process
    -- polygon, the metadata service's handling in process metadata, the
    -- detector's in process arb. Without the trace ids crossing the links
    -- each process would start traces of its own and the chain would
    -- stop at the process boundary.
    local chain = {}
    for _, s in ipairs(signal.up) do
      if s.service ~= "_links" then chain[#chain + 1] = s.service .. "@" .. s.node end
    end
    assert.same({ "polygon@polygon", "metadata@metadata", "arb@arb" }, chain, tree)
    assert.equal("event", signal.up[1].name, tree)
  end)

  it("refuses what it cannot run, saying why", function()
    local rc, out = sh(PIPELINE .. " --capture /nonexistent/c.jsonl 2>&1")
    assert.equal(2, rc)
    assert.matches("run: cannot read /nonexistent/c.jsonl", out, 1, true)
    rc, out = sh(PIPELINE .. " --rate fast 2>&1")
    assert.equal(2, rc)
    assert.matches("run: 'fast' is not a whole number", out, 1, true)
    rc, out = sh(PIPELINE .. " --trace --bench 2>&1")
    assert.equal(2, rc)
    assert.matches("run: --trace would measure the span export: not with --bench", out, 1, true)
    rc, out = sh(PIPELINE .. " --bogus 2>&1")
    assert.equal(2, rc)
    assert.matches("run: unknown argument '--bogus'", out, 1, true)
  end)
end)
