local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- bandit.wire: hex to message bytes and back, u64 positions, strings.
local ffi = require "ffi"
local wire = require "bandit.wire"
local H = require "spec.services.bandit.helper"

describe("bandit.wire", function()
  it("writes hex digits as bytes, in order and little-endian", function()
    local b = ffi.new("uint8_t[32]")
    wire.put_hex(b, "0x00fFa5", 3, 3)
    assert.same({ 0, 255, 165 }, { b[0], b[1], b[2] })
    local word = ("00"):rep(30) .. "0102"
    wire.put_word_le(b, "0x" .. word, 3)
    assert.equal(2, b[0])
    assert.equal(1, b[1])
    assert.equal(0, b[31])
    assert.equal("258", wire.dec(b))
    wire.put_word_le(b, "0x" .. ("ff"):rep(32), 3)
    assert.equal("-1", wire.dec(b, true))
    assert.equal("115792089237316195423570985008687907853269984665640564039457584007913129639935",
                 wire.dec(b))
  end)

  it("renders addresses and hashes", function()
    local raw = assert(wire.address_bytes(H.addr("x")))
    assert.equal(20, #raw)
    assert.equal(H.addr("x"), wire.key_of(raw))
    assert.equal(H.checksum(H.addr("x")), wire.address(raw))
    assert.is_nil(wire.address_bytes("0x12"))
    assert.is_nil(wire.address_bytes(H.addr("x"):gsub("0x", "0y")))
  end)

  it("fits quantities into u64 or says they do not", function()
    assert.equal(7, wire.u64(7))
    assert.equal(18446744073709551615ULL, wire.u64("18446744073709551615"))
    assert.equal(9007199254740993ULL, wire.u64("0009007199254740993"))
    assert.is_nil(wire.u64("18446744073709551616"))
    assert.is_nil(wire.u64("123456789012345678901"))
    assert.is_nil(wire.u64("-1"))
    assert.is_nil(wire.u64({}))
    assert.equal(9007199254740992, wire.qty(9007199254740992ULL))
    assert.equal("9007199254740993", wire.qty(9007199254740993ULL))
    assert.equal("18446744073709551615", wire.qty(18446744073709551615ULL))
  end)

  it("fills String fields exactly and refuses what does not fit", function()
    local s = ffi.new("struct { uint16_t len; uint8_t data[4]; }")
    ffi.fill(s.data, 4, 65)
    assert.is_true(wire.set_string(s, "ab", 4))
    assert.equal("ab", wire.string(s))
    assert.equal(0, s.data[3])
    assert.is_false(wire.set_string(s, "abcde", 4))
    assert.equal("ab", wire.string(s))
  end)

  it("reads a monotonic clock in nanoseconds", function()
    local a = wire.now_ns()
    local b = wire.now_ns()
    assert.truthy(a > 0 and b >= a)
  end)
  it("sets the collector's pause from opts.gc_pause, 400 by default", function()
    local before = collectgarbage("setpause", 200)
    local ctx = { name = "svc" }
    wire.gc_pause(ctx, {})
    assert.equal(400, collectgarbage("setpause", 200))
    wire.gc_pause(ctx, { gc_pause = 250 })
    assert.equal(250, collectgarbage("setpause", 200))
    for _, bad in ipairs { 99, 250.5, "400", true } do
      local ok, err = pcall(wire.gc_pause, ctx, { gc_pause = bad })
      assert.is_false(ok)
      assert.matches("service 'svc': opts.gc_pause must be a whole number >= 100, got "
                     .. tostring(bad), err, 1, true)
    end
    collectgarbage("setpause", before)
  end)
end)
