local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local bigint = require "bandit.bigint"
local pricing = require "bandit.pricing"

local B = bigint.new

-- Expected strings computed independently with Python's Fraction and
-- Decimal (ROUND_HALF_EVEN), not with this code.
local SIG12 = {
  { "518", "1000", "0.518000000000" },
  { "1", "3100", "0.000322580645161" },
  { "679418837104", "10000000", "67941.8837104" },
  { "1", "1", "1.00000000000" },
  { "9999999999995", "1000000000000", "10.0000000000" },       -- carry
  { "9999999999985", "1000000000000", "9.99999999998" },       -- tie, even
  { "9999999999975", "1000000000000", "9.99999999998" },       -- tie, up
  { "1000000000005", "1000000000000", "1.00000000000" },
  { "1000000000015", "1000000000000", "1.00000000002" },
  { "1234567890125", "10000000000000000", "0.000123456789012" },
  { "1234567890135", "10000000000000000", "0.000123456789014" },
  { "123", "1", "123.000000000" },
  { "1234567890123456", "1", "1234567890120000" },
  { "999999999999", "1", "999999999999" },
  { "999999999999500", "1000", "1000000000000" },
  { "999999999998500", "1000", "999999999998" },
  { "7", "9", "0.777777777778" },
  { "1", "1000000000000000000000", "0.00000000000000000000100000000000" },
  { "5192296858534827628530496329220095", "1", "5192296858530000000000000000000000" },
  { "1", "5192296858534827628530496329220095",
    "0.000000000000000000000000000000000192592994439" },
}

local FIXED4 = {
  { "602300", "10000", "60.2300" }, { "-1298", "10000", "-0.1298" },
  { "5", "100000", "0.0000" }, { "15", "100000", "0.0002" },
  { "25", "100000", "0.0002" }, { "-25", "100000", "-0.0002" },
  { "-5", "100000", "0.0000" }, { "1", "3", "0.3333" },
  { "-2", "3", "-0.6667" }, { "123456789", "7", "17636684.1429" },
}

describe("bandit.pricing", function()
  it("renders 12 significant digits, half to even, positional", function()
    for _, c in ipairs(SIG12) do
      assert.equal(c[3], pricing.format_sig(B(c[1]), B(c[2]), 12), c[1] .. "/" .. c[2])
    end
  end)

  it("leaves its arguments untouched", function()
    local p, d = B(7), B(9)
    pricing.format_sig(p, d, 12)
    pricing.format_fixed(p, d, 4)
    assert.equal("7", tostring(p))
    assert.equal("9", tostring(d))
  end)

  it("renders fixed decimals, half to even, without negative zero", function()
    for _, c in ipairs(FIXED4) do
      assert.equal(c[3], pricing.format_fixed(B(c[1]), B(c[2]), 4))
    end
  end)

  it("renders texts of any length, then short ones again", function()
    local big = bigint.pow10(300)
    assert.equal("1" .. string.rep("0", 300), pricing.format_sig(big, B(1), 12))
    assert.equal("0." .. string.rep("0", 299) .. "100000000000",
      pricing.format_sig(B(1), big, 12))
    assert.equal(string.rep("3", 40) .. "." .. string.rep("3", 40),
      pricing.format_sig(bigint.pow10(40), B(3), 80))
    assert.equal("1" .. string.rep("0", 300) .. ".0000",
      pricing.format_fixed(big, B(1), 4))
    assert.equal("-1" .. string.rep("0", 300) .. ".0000",
      pricing.bps(B(1) - bigint.pow10(296), B(1)))
    assert.equal("0.518000000000", pricing.format_sig(B(518), B(1000), 12))
    assert.equal("-0.1298", pricing.format_fixed(B(-1298), B(10000), 4))
    assert.equal("12.3", pricing.format_sig(B(123), B(10), 3))
    assert.equal("1.2", pricing.format_sig(B(123), B(100), 2))
    assert.equal("0.0012", pricing.format_fixed(B(12), B(10000), 4))
  end)

  it("raises on non-positive operands", function()
    assert.has_error(function() pricing.format_sig(B(0), B(1), 12) end,
      "pricing.format_sig: needs p > 0 and d > 0")
    assert.has_error(function() pricing.format_fixed(B(1), B(0), 4) end,
      "pricing.format_fixed: needs d > 0")
  end)

  describe("human prices", function()
    it("prices V3 from sqrtPriceX96 with the token decimals", function()
      local sp = B("1424128760150719918443225369640037")
      local num = B():mul(sp, sp)
      assert.equal("0.000323101777060", pricing.human(num, pricing.Q192, 6, 18))
      assert.equal("323101777060000000000", pricing.human(num, pricing.Q192, 18, 6))
    end)

    it("prices the extremes of the V3 range", function()
      local lo = B(4295128739)                                   -- MIN_SQRT_RATIO
      local hi = B("1461446703485210103287273052203988822378723970342")  -- MAX
      assert.equal("0.00000000000000000000000000000000000000293895680877",
        pricing.human(B():mul(lo, lo), pricing.Q192, 18, 18))
      assert.equal("340256786836000000000000000000000000000",
        pricing.human(B():mul(hi, hi), pricing.Q192, 18, 18))
    end)

    it("prices V2 reserves with other decimals", function()
      local r0, r1 = B(987654321), B("123456789012345678901234")
      assert.equal("12499.9998873", pricing.human(r1, r0, 8, 18))
      assert.equal("0.0000800000007210", pricing.human(r0, r1, 18, 8))
    end)
  end)

  it("computes basis points of a ratio", function()
    assert.equal("60.2300", pricing.bps(B(1006023), B(1000000)))
    assert.equal("-0.1298", pricing.bps(B(99998702), B(100000000)))
    assert.equal("-1.2980", pricing.bps(B(9998702), B(10000000)))
    assert.equal("0.0000", pricing.bps(B(5), B(5)))
  end)
end)
