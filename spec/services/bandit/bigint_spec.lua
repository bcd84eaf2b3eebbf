local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local bigint = require "bandit.bigint"

-- Expected decimals were computed independently with Python integers.
local CASES = {
  { "1", "1" },
  { "a69e0f2a74de4", "2931164631748068" },
  { "14d4746513270e", "5863095911261966" },
  { "928b2f330c5c7fd0", "10559585647597486032" },
  { "dd9d1818e811892f902bd23f0824", "4494858801672126551680514260928548" },
  { "b6f675cc81e74ef5e8e25d940ed904759531985d",
    "1044532565336505628065052949015858985564567083101" },
  { "4688b7671738f7d93d9c172411e20b8f6b0d549b6f03675a1600a35a099950d8",
    "31903456400540094894163005950035899511696464677071245378879139948489508212952" },
  { "a170b33839263059f28c105d1fb17c2390c192cfd3ac94af0f21ddb66cad4a26",
    "73021492421532667060410026606111736389590672304807578143368807500707988851238" },
  { "b89f9ebdacc0cb1e29c658cda1495e60af593bd04cf0fd630f1f29d0da9953f48f1a09f76b5",
    "1469081031467351065571415118967205762339280950736142750009084979846320172918222615597774517" },
}

local function pad64(h) return string.rep("0", 64 - #h) .. h end

describe("bandit.bigint", function()
  describe("parsing", function()
    it("reads hex with and without 0x, any case, into exact decimals", function()
      for _, c in ipairs(CASES) do
        assert.equal(c[2], tostring(bigint.from_hex(c[1])))
        assert.equal(c[2], tostring(bigint.from_hex("0x" .. c[1]:upper())))
        assert.equal(c[1], bigint.from_dec(c[2]):tohex())
      end
    end)

    it("reads leading zeros and zero itself", function()
      assert.equal("0", tostring(bigint.from_hex("0x0")))
      assert.equal("255", tostring(bigint.from_hex("0x00000000ff")))
      assert.equal("0", tostring(bigint.from_dec("000")))
    end)

    it("rejects bad hex and bad decimals with nil, message", function()
      for _, s in ipairs { "", "0x", "0xg1", "12 34", "0x12 ", {}, "1.5" } do
        local z, err = bigint.from_hex(s)
        assert.is_nil(z)
        assert.is_string(err)
      end
      for _, s in ipairs { "", "12a", " 12", "1 2", "+1", "1e5", "--1" } do
        local z, err = bigint.from_dec(s)
        assert.is_nil(z)
        assert.is_string(err)
      end
      assert.equal("-17", tostring(bigint.from_dec("-17")))
    end)

    it("raises on programmer errors with a clear message", function()
      assert.has_error(function() bigint.new(1.5) end,
        "bandit.bigint: 1.5 is not an int64")
      assert.has_error(function() bigint.new({}) end,
        "bandit.bigint: cannot make a bigint from table")
      assert.has_error(function() bigint.new("zz") end)
    end)

    it("set_hex_range reads a slice in place and refuses non-hex", function()
      local z = bigint.new()
      local s = "xx" .. CASES[7][1] .. "yy"
      assert.equal(z, z:set_hex_range(s, 3, 66))
      assert.equal(CASES[7][2], tostring(z))
      local ok, err = z:set_hex_range(s, 2, 65)
      assert.is_nil(ok)
      assert.equal("invalid hex digit", err)
      assert.equal("0", tostring(z))    -- left well defined
    end)

    it("load_hex matches set_hex_range on validated digits", function()
      for _, c in ipairs(CASES) do
        local s = "0x" .. c[1]
        assert.equal(c[2], tostring(bigint.new():load_hex(s, 3, #s)))
      end
      local long = string.rep("f", 300)
      assert.equal(bigint.new():set_hex_range(long, 1, 300),
                   bigint.new():load_hex(long, 1, 300))
    end)
  end)

  describe("256-bit two's complement words", function()
    it("reads negative and positive extremes", function()
      local z = bigint.new()
      assert.equal("-1", tostring(z:load_word_signed(string.rep("f", 64), 1)))
      assert.equal("-282900", tostring(z:load_word_signed(
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffbaeec", 1)))
      assert.equal("-57896044618658097711785492504343953926634992332820282019728792003956564819968",
        tostring(z:load_word_signed("8" .. string.rep("0", 63), 1)))
      assert.equal("57896044618658097711785492504343953926634992332820282019728792003956564819967",
        tostring(z:load_word_signed("7" .. string.rep("f", 63), 1)))
      assert.equal("5", tostring(z:load_word_signed(pad64("5"), 1)))
    end)
  end)

  describe("arithmetic", function()
    local a = bigint.from_hex("123456789abcdef0123456789abcdef0123456789")
    local b = bigint.from_hex("fedcba9876543210fedcba98765")

    it("adds, subtracts, multiplies and divides exactly", function()
      assert.equal("537231891183411489197093354354675616280544931040989002191600670261416983146534925",
        tostring(a * b))
      assert.equal("1662864085140938086667595523606136654984988319780", tostring(a - b))
      assert.equal("-1662864085140938086667595523606136654984988319780", tostring(b - a))
      local q, r = bigint.new(), bigint.new()
      q:tdiv_qr(r, a, b)
      assert.equal("5146971002709138", tostring(q))
      assert.equal("70576346560516178978246987021295", tostring(r))
      assert.equal(a, q * b + r)
    end)

    it("floors towards minus infinity in fdiv_qr", function()
      local q, r = bigint.new(), bigint.new()
      q:fdiv_qr(r, bigint.new(-7), bigint.new(2))
      assert.equal("-4", tostring(q))
      assert.equal("1", tostring(r))
      assert.has_error(function() q:fdiv_qr(r, a, bigint.new(0)) end,
        "bandit.bigint: division by zero")
    end)

    it("works in place, also when the result aliases an operand", function()
      local z = bigint.new(3)
      z:mul(z, z)
      z:add(z, z)
      z:sub(z, bigint.new(1))
      assert.equal("17", tostring(z))
      z:mul_si(z, -2)
      assert.equal("-34", tostring(z))
      z:neg(z)
      assert.equal("34", tostring(z))
      assert.equal("272", tostring(z:mul_2exp(z, 3)))
    end)

    it("compares and reports sign, parity and size", function()
      assert.is_true(b < a)
      assert.is_true(a <= a)
      assert.is_true(a == bigint.new(tostring(a)))
      assert.equal(1, a:cmp(b))
      assert.equal(-1, b:cmp(a))
      assert.equal(0, a:cmp(a:copy()))
      assert.equal(-1, bigint.new(-5):sign())
      assert.is_true(bigint.new(0):is_zero())
      assert.is_true(bigint.new(7):is_odd())
      assert.equal(256, bigint.pow2(255):bits())
      assert.equal(0, bigint.new(0):bits())
    end)

    it("compares to exactly -1, 0 or 1 across sizes and signs", function()
      -- GMP's comparisons return any int of the right sign (a difference
      -- of sizes for operands of different lengths); the methods fold it
      -- to -1, 0, 1. Operands span zero, one limb, limb boundaries and 2^256,
      -- run often enough that the compiled code is checked too.
      local vals = { bigint.new(0), bigint.new(1), bigint.new(-1),
        bigint.pow2(63), -bigint.pow2(64), bigint.pow2(64) - 1,
        bigint.pow2(256), -bigint.pow2(256), bigint.pow2(1000),
        -bigint.pow2(1000) + 1, bigint.new("-340282366920938463463374607431768211456") }
      -- The expected sign from the decimal text of x - y.
      local function want(x, y)
        local d = (x - y):tostring()
        return d == "0" and 0 or (d:sub(1, 1) == "-" and -1 or 1)
      end
      for _ = 1, 200 do
        for _, x in ipairs(vals) do
          for _, y in ipairs(vals) do
            assert.equal(want(x, y), x:cmp(y))
            local ax, ay = x:copy():abs(x), y:copy():abs(y)
            assert.equal(want(ax, ay), x:cmpabs(y))
          end
          local s = x:tostring()
          assert.equal(s:sub(1, 1) == "-" and -1 or (s == "0" and 0 or 1), x:sign())
          assert.equal(x:cmp(bigint.new(-7)), x:cmp_si(-7))
          assert.equal(x:cmp(bigint.new(0)), x:cmp_si(0))
        end
      end
    end)

    it("new(bigint) copies it (comparing a bigint with nil raised)", function()
      local a = bigint.new("123456789012345678901234567890")
      local b = bigint.new(a)
      assert.equal(tostring(a), tostring(b))
      b:add(b, bigint.new(1))
      assert.equal("123456789012345678901234567890", tostring(a))
    end)

    it("converts to numbers only when exact", function()
      assert.equal(2 ^ 53, bigint.pow2(53):tonumber_exact())
      assert.is_nil((bigint.pow2(53) + 1):tonumber_exact())
      assert.equal(-123, bigint.new(-123):tonumber_exact())
    end)

    it("keeps shared constants intact", function()
      assert.equal("1000000000000000000", tostring(bigint.pow10(18)))
      assert.equal("6277101735386680763835789423207666416102355444464034512896",
        tostring(bigint.pow2(192)))
    end)
  end)

  describe("memory", function()
    it("frees limbs through finalisers under GC churn", function()
      for _ = 1, 20000 do
        local z = bigint.from_hex(string.rep("ab", 200))
        z:mul(z, z)
      end
      collectgarbage()
      collectgarbage()
      assert.equal("1", tostring(bigint.new(1)))
    end)
  end)
end)

describe("bandit.bigint little-endian bytes", function()
  local ffi = require "ffi"

  local function hex_of(buf, n)
    local t = {}
    for i = n - 1, 0, -1 do t[#t + 1] = string.format("%02x", buf[i]) end
    return table.concat(t)
  end

  it("writes and reads unsigned and two's complement widths", function()
    local buf = ffi.new("uint8_t[32]")
    assert.is_true(bigint.new(-1):to_bytes_le(buf, 32, true))
    assert.equal(string.rep("f", 64), hex_of(buf, 32))
    assert.equal("-1", tostring(bigint.new():set_bytes_le(buf, 32, true)))
    assert.equal(string.rep("f", 64), bigint.new():set_bytes_le(buf, 32):tohex())
    local v = bigint.from_dec("-282900")
    assert.is_true(v:to_bytes_le(buf, 32, true))
    assert.equal("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffbaeec",
      hex_of(buf, 32))
    local u = bigint.from_hex("0102030405")
    assert.is_true(u:to_bytes_le(buf, 32))
    assert.equal(5, buf[0])
    assert.equal(1, buf[4])
    assert.equal(0, buf[31])
    assert.equal(u, bigint.new():set_bytes_le(buf, 32))
  end)

  it("reads any width into a reused value, high zeros stripped", function()
    local z = bigint.new(2):mul_2exp(bigint.new(1), 300) -- more limbs than any below
    local buf = ffi.new("uint8_t[32]")
    assert.is_true(z:set_bytes_le(buf, 32):is_zero())
    assert.equal(0, z.size)
    buf[0], buf[1], buf[2] = 1, 2, 3
    assert.equal("30201", z:set_bytes_le(buf, 3):tohex())
    assert.equal(1, z.size)
    buf[8], buf[19] = 0x44, 0x99
    assert.equal("99" .. string.rep("0", 20) .. "44" .. string.rep("0", 10) .. "030201",
      z:set_bytes_le(buf, 20):tohex())
    assert.equal(3, z.size)
    assert.equal("30201", z:set_bytes_le(buf, 8):tohex())
    assert.equal("0", tostring(z:set_bytes_le(buf, 0)))
    -- every byte position of a 32-byte word, against the hex reader
    for i = 0, 31 do
      ffi.fill(buf, 32)
      buf[i] = 0xa5
      local want = bigint.from_hex("a5" .. string.rep("00", i))
      assert.equal(want, z:set_bytes_le(buf, 32), "byte " .. i)
      assert.equal(want.size, z.size, "byte " .. i)
    end
    buf[31] = 0xff
    assert.equal("-1" .. string.rep("0", 62), z:set_bytes_le(buf, 32, true):tohex())
  end)

  it("refuses values outside the width and leaves the buffer alone", function()
    local buf = ffi.new("uint8_t[2]", { 7, 7 })
    assert.is_nil((bigint.new(65536):to_bytes_le(buf, 2)))
    assert.is_nil((bigint.new(-1):to_bytes_le(buf, 2)))
    assert.is_nil((bigint.new(32768):to_bytes_le(buf, 2, true)))
    assert.is_nil((bigint.new(-32769):to_bytes_le(buf, 2, true)))
    assert.equal(7, buf[0])
    assert.is_true(bigint.new(-32768):to_bytes_le(buf, 2, true))
    assert.equal(0x80, buf[1])
    assert.is_true(bigint.new(65535):to_bytes_le(buf, 2))
    assert.is_true(bigint.new(0):to_bytes_le(buf, 2))
    assert.equal(0, buf[1])
  end)
end)
