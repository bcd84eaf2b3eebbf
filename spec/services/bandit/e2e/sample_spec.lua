local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- The public fixture, end to end through the reference driver: every
-- output must equal the expected files field by field and byte by byte.
local H = require "spec.services.bandit.helper"
local cjson = require "cjson"
local abi = require "bandit.abi"
local report = require "bandit.report"
local replay = require "bandit.replay_offline"

local function expected_jsonl(name)
  local out = {}
  for _, l in ipairs(H.lines(H.DATA .. "sample_expected_" .. name)) do
    out[#out + 1] = cjson.decode(l)
  end
  return out
end

local function run()
  return assert(replay.run { capture = H.DATA .. "sample_capture.jsonl",
                             pools = H.DATA .. "pools.json",
                             tokens = H.DATA .. "tokens.json" })
end

-- Field by field, in order, with a message naming line and field.
local function same_records(expected, got, what)
  assert.equal(#expected, #got, what .. ": record count")
  for i, exp in ipairs(expected) do
    local rec = got[i]
    local keys = rec:keys()
    local n = 0
    for _ in pairs(exp) do n = n + 1 end
    assert.equal(n, #keys, what .. " #" .. i .. ": field count")
    for _, k in ipairs(keys) do
      local want = exp[k]
      if want == cjson.null then want = nil end
      assert.equal(want, rec:get(k), string.format("%s line %s field %s",
        what, tostring(exp.line), k))
    end
  end
end

describe("the sample capture", function()
  local p
  setup(function() p = run() end)

  it("gives every expected event, field by field", function()
    same_records(expected_jsonl("events.jsonl"), p:event_records(), "events")
  end)

  it("skips exactly the expected lines for the expected reasons", function()
    same_records(expected_jsonl("skipped.jsonl"), p.skipped, "skipped")
  end)

  it("emits exactly the expected signals", function()
    same_records(expected_jsonl("signals.jsonl"), p.signals, "signals")
  end)

  it("gives the expected summary", function()
    local want = cjson.decode(H.read(H.DATA .. "sample_expected_summary.json"))
    assert.same(want, report.plain(p:summary()))
  end)

  it("writes files byte-identical to the expected ones", function()
    local out = replay.outputs(p)
    for _, name in ipairs { "events.jsonl", "skipped.jsonl", "signals.jsonl" } do
      assert.equal(H.read(H.DATA .. "sample_expected_" .. name), out[name], name)
    end
    assert.equal(H.read(H.DATA .. "sample_expected_summary.json"), out["summary.json"])
  end)

  it("decides the same through cjson alone", function()
    local fast = replay.outputs(p)
    abi.fast_scan = false
    local ok, slow = pcall(function() return replay.outputs(run()) end)
    abi.fast_scan = true
    assert.is_true(ok, slow)
    assert.same(fast, slow)
  end)
end)
