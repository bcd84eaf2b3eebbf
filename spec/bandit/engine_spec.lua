local root = debug.getinfo(1, "S").source:match("^@(.-)spec/bandit/[^/]+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- The engine pipeline (PolygonAdapter -> MetadataService ->
-- ArbitrageDetector, typed messages between them, and the recorder) must
-- write exactly what the offline oracle writes: on the public sample (the
-- expected files) and on random captures of spec/bandit/xcheck.py (other
-- pools, tokens, decimals, fee tiers, subscription ids, faults, reorgs),
-- whose expected files come from an independent Python implementation.
local H = require "spec.bandit.helper"
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

local function has_python()
  local ok = os.execute("python3 -c 'import fractions' >/dev/null 2>&1")
  return ok == true or ok == 0
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

  describe("on random captures", function()
    if not has_python() then
      pending("python3 not installed")
      return
    end
    local dir
    setup(function() dir = H.tmpdir() end)
    teardown(function() H.rmdir(dir) end)

    for _, seed in ipairs { 3, 42, 777, 2024, 31337 } do
      it("agrees with the oracle and with xcheck.py, seed " .. seed, function()
        local out = dir .. "/" .. seed
        local cmd = string.format("python3 '%sspec/bandit/xcheck.py' %d '%s' >/dev/null",
                                  H.ROOT, seed, out)
        local ok = os.execute(cmd)
        assert.truthy(ok == true or ok == 0, cmd)
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
