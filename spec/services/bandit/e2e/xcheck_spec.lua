local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- The independent Python reference (spec/services/bandit/xcheck.py) is
-- itself checked: over the bundled sample it must write the four
-- sample_expected_* files byte for byte, which were written before any
-- implementation.  The other specs trust it for every capture but the
-- sample.  Pending where python3 is not installed, a failure when CI is
-- set.
local H = require "spec.services.bandit.helper"
local peers = require "spec.support.peers"

local FILES = { "events.jsonl", "skipped.jsonl", "signals.jsonl",
                "summary.json" }

describe("xcheck.py, the independent reference", function()
  if not peers.have("python3") then
    pending("python3 not installed")
    return
  end
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  local function xcheck(args)
    return peers.ok(string.format("python3 '%s' %s >'%s/out' 2>&1", H.XCHECK,
                                  args, dir))
  end

  it("writes the sample's four expected files byte for byte", function()
    assert.is_true(xcheck(string.format(
      "--capture '%ssample_capture.jsonl' --pools '%spools.json' "
      .. "--tokens '%stokens.json' '%s/x'", H.DATA, H.DATA, H.DATA, dir)),
      H.read(dir .. "/out"))
    for _, name in ipairs(FILES) do
      H.same_lines(H.read(H.DATA .. "sample_expected_" .. name),
                   H.read(dir .. "/x/expected_" .. name), name)
    end
    assert.matches("lines 60 events 50 skipped 9 signals 11",
                   H.read(dir .. "/out"), 1, true)
  end)

  it("decides a capture it did not generate, bytes that are not UTF-8, "
     .. "NUL bytes and a missing final newline included", function()
    local lines = H.lines(H.DATA .. "sample_capture.jsonl")
    -- line 3 gets a byte that is not UTF-8 inside its data: bad_data
    lines[3] = lines[3]:gsub('"data":"0x', '"data":"0x\255', 1)
    -- line 4 loses its address prefix case: 0X is not hex, unknown_pool
    lines[4] = lines[4]:gsub('"address":"0x', '"address":"0X', 1)
    -- line 5 gets a NUL byte: the engine's JSON decoder stops there
    lines[5] = lines[5]:gsub('"data":"0x', '"data":"0x\0', 1)
    local f = assert(io.open(dir .. "/c.jsonl", "wb"))
    f:write(table.concat(lines, "\n")) -- no final newline
    f:close()
    assert.is_true(xcheck(string.format(
      "--capture '%s/c.jsonl' --pools '%spools.json' --tokens '%stokens.json' "
      .. "'%s/x'", dir, H.DATA, H.DATA, dir)), H.read(dir .. "/out"))
    local skipped = H.records(H.read(dir .. "/x/expected_skipped.jsonl"))
    local reason = {}
    for _, r in ipairs(skipped) do reason[r.line] = r.reason end
    assert.equal("bad_data", reason[3])
    assert.equal("unknown_pool", reason[4])
    assert.equal("malformed_json", reason[5])
    local summary = require("cjson").decode(
      H.read(dir .. "/x/expected_summary.json"))
    assert.equal(60, summary.lines)
    -- and the Lua oracle decides the same
    local replay = require "bandit.replay_offline"
    local got = replay.outputs(assert(replay.run {
      capture = dir .. "/c.jsonl", pools = H.DATA .. "pools.json",
      tokens = H.DATA .. "tokens.json" }))
    for _, name in ipairs(FILES) do
      H.same_lines(H.read(dir .. "/x/expected_" .. name), got[name], name)
    end
  end)

  it("refuses bad arguments with its usage", function()
    assert.is_false(xcheck("--capture only"))
    assert.matches("usage: xcheck.py", H.read(dir .. "/out"), 1, true)
    assert.is_false(xcheck("--frobnicate x y"))
    assert.matches("unknown option --frobnicate", H.read(dir .. "/out"), 1, true)
    assert.is_false(xcheck("notaseed " .. dir))
  end)
end)
