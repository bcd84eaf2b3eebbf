local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local warmup = require "bandit.warmup"

local function keys_in_order(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  return ks
end

describe("bandit.warmup.in_place", function()
  local function state()
    return { line = 7, pools = { "real" }, sub_id = "0xabc", ended = false,
             dedup = { n = 3 } }
  end

  it("puts back every field: changed, emptied and added", function()
    local S = state()
    local pools, dedup = S.pools, S.dedup
    warmup.in_place(S, function()
      S.line, S.pools, S.sub_id, S.dedup = 0, {}, nil, { n = 0 }
      S.first_ns, S.want_kind = 12345, "v3"
      S.line = S.line + 100
    end)
    assert.equal(7, S.line)
    assert.equal(pools, S.pools)
    assert.equal(dedup, S.dedup)
    assert.equal("0xabc", S.sub_id)
    assert.is_false(S.ended)
    assert.is_nil(S.first_ns)
    assert.is_nil(S.want_kind)
  end)

  it("puts the fields back when the warm-up raises, and raises again", function()
    local S = state()
    assert.has_error(function()
      warmup.in_place(S, function()
        S.line, S.extra = 99, true
        error("synthetic line 3 failed", 0)
      end)
    end, "synthetic line 3 failed")
    assert.equal(7, S.line)
    assert.is_nil(S.extra)
  end)

  -- The point of running in place: the table the handlers' traces were
  -- compiled on is the one real traffic reads, its hash part untouched.
  it("keeps the state table and its layout", function()
    local S = state()
    local before = keys_in_order(S)
    local seen
    warmup.in_place(S, function()
      seen = S
      S.line, S.pools, S.sub_id = 0, {}, nil
    end)
    assert.equal(S, seen)
    assert.same(before, keys_in_order(S))
  end)
end)
