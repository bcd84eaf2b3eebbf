local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- The engine pipeline (PolygonAdapter -> MetadataService ->
-- ArbitrageDetector, typed messages between them, and the recorder) must
-- write exactly what the offline oracle writes: on the public sample (the
-- expected files) and on random captures of spec/services/bandit/xcheck.py
-- (other pools, tokens, decimals, fee tiers, subscription ids, faults,
-- reorgs), whose expected files come from an independent Python
-- implementation.
local H = require "spec.services.bandit.helper"
local peers = require "spec.support.peers"
local replay = require "bandit.replay_offline"
local testing = require "mycelium.testing"

local FILES = { "events.jsonl", "skipped.jsonl", "signals.jsonl",
                "summary.json" }

-- Runs a capture through the engine; returns the four texts and the
-- engine (closed).
local function run_engine(capture, pools, tokens, batch, extra)
  local dir = H.tmpdir()
  local o = { out = dir, pools = pools, tokens = tokens }
  for k, v in pairs(extra or {}) do o[k] = v end
  local eng = H.engine(o)
  H.feed(eng, H.lines(capture), batch)
  local got = {}
  for _, name in ipairs(FILES) do
    local f = io.open(dir .. "/" .. name, "rb")
    got[name] = f and f:read("*a")
    if f then f:close() end
  end
  local dead = eng:stats("arb").errors + eng:stats("polygon").errors +
    eng:stats("metadata").errors + eng:stats("recorder").errors
  local logs = eng:logs(true)
  eng:close()
  H.rmdir(dir)
  return got, dead, logs
end

describe("the engine pipeline", function()
  after_each(testing.cleanup)

  it("writes the sample's four expected files byte for byte", function()
    local got, errors = run_engine(H.DATA .. "sample_capture.jsonl")
    assert.equal(0, errors)
    for _, name in ipairs(FILES) do
      assert.is_string(got[name], name .. " not written")
      H.same_lines(H.read(H.DATA .. "sample_expected_" .. name), got[name], name)
    end
  end)

  it("gives the same files when lines arrive one at a time", function()
    local all = run_engine(H.DATA .. "sample_capture.jsonl")
    local one = run_engine(H.DATA .. "sample_capture.jsonl", nil, nil, 1)
    assert.same(all, one)
  end)

  it("gives the same files with the detector's reorg window at its default",
     function()
    -- The oracle keeps every log retractable; the service bounds memory
    -- (100000 logs by default), far more than any capture needs.
    local unbounded = run_engine(H.DATA .. "sample_capture.jsonl", nil, nil,
                                 nil, { detector = { reorg_window = false } })
    local bounded = run_engine(H.DATA .. "sample_capture.jsonl")
    assert.same(unbounded, bounded)
  end)

  -- 4000 deterministic mutations of real lines (as pipeline_spec makes
  -- them): truncations, byte flips, deletions, duplications, case.
  -- Returns the lines the engine and the oracle must agree on, and the
  -- oracle's pipeline having read them.
  local function mutated_lines()
    local sample = H.lines(H.DATA .. "sample_capture.jsonl")
    local seed = 4242
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local ALPHABET = '0123456789abcdefABCDEFxX",:{}[] \\-ntrue'
    local function mutate(l)
      local k, i = rnd(6), rnd(#l)
      if k == 1 then return l:sub(1, i) end
      if k == 2 then
        local c = rnd(#ALPHABET)
        return l:sub(1, i - 1) .. ALPHABET:sub(c, c) .. l:sub(i + 1)
      end
      if k == 3 then return l:sub(1, i - 1) .. l:sub(i + 1) end
      if k == 4 then return l:sub(1, i) .. l:sub(i, math.min(#l, i + rnd(70))) .. l:sub(i + 1) end
      if k == 5 then return l:sub(1, i - 1) .. l:sub(i, i):upper() .. l:sub(i + 1) end
      return l:sub(1, i - 1) .. string.char(rnd(256) - 1) .. l:sub(i + 1)
    end
    local lines = { sample[1] }
    for n = 1, 4000 do
      -- Unmutated lines too (a third), so that states and signals happen.
      local l = sample[rnd(#sample - 1) + 1]
      if rnd(3) > 1 then
        for _ = 1, rnd(3) do l = mutate(l) end
      end
      lines[n + 1] = l
    end
    -- The one place the engine differs from the oracle by design: a block
    -- or index beyond 64 bits (the oracle keeps any length) is bad_data.
    local pipeline = require "bandit.pipeline"
    local wire = require "bandit.wire"
    local reg = assert(require("bandit.registry").load(H.DATA .. "pools.json",
                                                       H.DATA .. "tokens.json"))
    local probe, kept = pipeline.new(reg), {}
    for _, l in ipairs(lines) do
      local what, ev = probe:feed(l)
      if not (what == "event" and not (wire.u64(ev.block) and
              wire.u64(ev.txIndex) and wire.u64(ev.logIndex))) then
        kept[#kept + 1] = l
      end
    end
    local p = pipeline.new(reg)
    for _, l in ipairs(kept) do p:feed(l) end
    return kept, p
  end

  it("agrees with the oracle on 4000 mutated sample lines", function()
    local kept, p = mutated_lines()
    local oracle = replay.outputs(p)
    local dir = H.tmpdir()
    local eng = H.engine { out = dir }
    H.feed(eng, kept, 97)
    for _, name in ipairs(FILES) do
      H.same_lines(oracle[name], H.read(dir .. "/" .. name), name)
    end
    for _, svc in ipairs { "polygon", "metadata", "arb", "recorder" } do
      assert.equal(0, eng:stats(svc).errors, svc)
    end
    assert.is_true(#p.signals > 10)
    assert.is_true(p.n_skipped > 1000)
    eng:close()
    H.rmdir(dir)
  end)

  describe("on random captures", function()
    if not peers.have("python3") then
      pending("python3 not installed")
      return
    end
    local dir
    setup(function() dir = H.tmpdir() end)
    teardown(function() H.rmdir(dir) end)

    -- The oracle above shares bandit.abi and bandit.detector with the
    -- services; the Python reference shares nothing.
    it("agrees with xcheck.py on the 4000 mutated sample lines", function()
      local kept, p = mutated_lines()
      local capture = dir .. "/mutated.jsonl"
      local f = assert(io.open(capture, "wb"))
      f:write(table.concat(kept, "\n"), "\n")
      f:close()
      local out = dir .. "/mutated"
      local cmd = string.format("python3 '%s' --capture '%s' --pools '%s' "
        .. "--tokens '%s' '%s' >/dev/null", H.XCHECK, capture,
        H.DATA .. "pools.json", H.DATA .. "tokens.json", out)
      assert.is_true(peers.ok(cmd), cmd)
      local got, errors = run_engine(capture, nil, nil, 97)
      assert.equal(0, errors)
      for _, name in ipairs(FILES) do
        H.same_lines(H.read(out .. "/expected_" .. name), got[name],
                     "xcheck " .. name)
      end
      assert.is_true(#p.signals > 10)
    end)

    for _, seed in ipairs { 3, 42, 777, 2024, 31337 } do
      it("agrees with the oracle and with xcheck.py, seed " .. seed, function()
        local out = dir .. "/" .. seed
        local cmd = string.format("python3 '%s' %d '%s' >/dev/null",
                                  H.XCHECK, seed, out)
        assert.is_true(peers.ok(cmd), cmd)
        local capture, pools, tokens = out .. "/capture.jsonl",
          out .. "/pools.json", out .. "/tokens.json"
        local got, errors = run_engine(capture, pools, tokens, 64)
        assert.equal(0, errors)
        local p = assert(replay.run { capture = capture, pools = pools,
                                      tokens = tokens })
        local oracle = replay.outputs(p)
        for _, name in ipairs(FILES) do
          H.same_lines(oracle[name], got[name], "oracle " .. name)
          H.same_lines(H.read(out .. "/expected_" .. name), got[name],
                       "xcheck " .. name)
        end
        assert.is_true(#p.signals > 0)
      end)
    end
  end)
end)
