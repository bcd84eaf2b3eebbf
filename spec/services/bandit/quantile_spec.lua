local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local ffi = require "ffi"
local quantile = require "bandit.quantile"

-- A Lua array as the 0-based double buffer the detector's rings hold.
local function buffer(v)
  local b = ffi.new("double[?]", #v + 1)
  for i = 1, #v do b[i - 1] = v[i] end
  return b
end

-- What the detector summarised before: a sorted copy, indexed.
local function by_sorting(v, n, ...)
  local s = {}
  for i = 1, n do s[i] = v[i] end
  table.sort(s)
  local out = {}
  for i, q in ipairs { ... } do
    out[i] = n > 0 and s[math.floor(q * (n - 1)) + 1] or nil
  end
  return out
end

local function check(v, n)
  local buf = buffer(v)
  local want = by_sorting(v, n, 0, 0.5, 0.9, 0.99, 1)
  local a, b, c, d, e = quantile.quantiles(buf, n, 0, 0.5, 0.9, 0.99, 1)
  assert.are.same(want, { a, b, c, d, e })
  for i = 1, #v do -- the samples are left as they were
    assert.are.equal(v[i], buf[i - 1])
  end
end

describe("bandit.quantile", function()
  it("gives nothing for no samples, the sample for one", function()
    assert.is_nil(quantile.quantiles(buffer {}, 0, 0.5))
    local a, b = quantile.quantiles(buffer { 7 }, 1, 0.5, 1)
    assert.are.equal(7, a)
    assert.are.equal(7, b)
  end)

  it("selects what sorting would, on ordered, reversed, equal and random samples",
     function()
    local ordered, reversed, equal, two = {}, {}, {}, {}
    for i = 1, 1000 do
      ordered[i], reversed[i], equal[i], two[i] = i, 1001 - i, 5, i % 2
    end
    check(ordered, 1000)
    check(reversed, 1000)
    check(equal, 1000)
    check(two, 1000)
    math.randomseed(12345)
    for round = 1, 300 do
      local n = math.random(1, round < 200 and 40 or 5000)
      local v = {}
      -- Latencies in ns: wide values, and many repeats in some rounds.
      local span = round % 3 == 0 and 10 or 2 ^ 40
      for i = 1, n do v[i] = math.floor(math.random() * span) end
      check(v, n)
    end
  end)

  it("reads only the first n entries (a ring that has not filled)", function()
    local a, b = quantile.quantiles(buffer { 3, 1, 2, 100, 200 }, 3, 0.5, 1)
    assert.are.equal(2, a)
    assert.are.equal(3, b)
  end)

  it("makes room for the first numbers when told, and grows past it", function()
    local ring = quantile.ring(100, 8)
    assert.are.equal(8, ring.size)
    assert.are.equal(3, quantile.ring(3, 8).size)
    for v = 1, 150 do quantile.put(ring, v) end
    assert.are.equal(100, ring.size)
    assert.are.same({ 51, 100, 150 },
      { quantile.quantiles(ring.buf, quantile.count(ring), 0, 0.5, 1) })
  end)

  it("keeps the newest cap numbers of a ring, growing as it first fills",
     function()
    for _, cap in ipairs { 1, 3, 1024, 1500, 5000 } do
      local ring, all = quantile.ring(cap), {}
      for i = 1, 3 * cap + 7 do
        local v = (i * 7919) % 10007
        quantile.put(ring, v)
        all[i] = v
        if i % 97 == 0 or i == 3 * cap + 7 or i == cap then
          -- The ring's numbers are the newest min(i, cap) of all.
          local newest = {}
          for k = math.max(1, i - cap + 1), i do newest[#newest + 1] = all[k] end
          assert.are.equal(i, ring.n)
          assert.are.equal(#newest, quantile.count(ring))
          assert.are.same(by_sorting(newest, #newest, 0, 0.5, 0.99, 1),
            { quantile.quantiles(ring.buf, quantile.count(ring), 0, 0.5, 0.99, 1) })
        end
      end
      assert.is_true(ring.size <= math.max(cap, 1))
    end
  end)

  it("refuses quantiles out of order", function()
    assert.has_error(function()
      quantile.quantiles(buffer { 1, 2, 3 }, 3, 1, 0.5)
    end,
      "bandit.quantile.quantiles: quantiles must be in ascending order")
  end)
end)
