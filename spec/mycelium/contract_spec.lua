-- spec/mycelium/contract_spec.lua -- mycelium.contract: generated structs,
-- views and value helpers, over contract sets loaded by the C core.
--
-- A payload's trip through the engine is simulated here by copying the
-- bytes of a filled struct into a separate buffer and reading it through
-- a view; spec/mycelium/typed_spec.lua sends them through a real engine.

local root = os.getenv("MYCELIUM_SOURCE_DIR") or "."
package.path = (os.getenv("MYCELIUM_PATH") or (root .. "/lua")) .. "/?.lua;" .. package.path

local ffi = require "ffi"
local contract = require "mycelium.contract"

local HEAD = "schema: {id: 7, version: 1}\nmessages:\n"

local ALL = HEAD .. [[
  All:
    tlv_type: 1000
    fields:
      a_u8: {type: u8}
      a_u16: {type: u16}
      a_u32: {type: u32}
      a_u64: {type: u64}
      a_i8: {type: i8}
      a_i16: {type: i16}
      a_i32: {type: i32}
      a_i64: {type: i64}
      a_f32: {type: f32}
      a_f64: {type: f64}
      a_bool: {type: bool}
      addr: {type: "[u8; 20]"}
      hash: {type: "[u8; 32]"}
      amount: {type: U256}
      delta: {type: I256}
      name:
        type: String
        validation: [{max_length: 10}]
      nums:
        type: Vec<u32>
        validation: [{max_length: 3}]
      path:
        type: Vec<[u8; 20]>
        validation: [{max_length: 2}]
      words: {type: "[i16; 3]"}
      pair: {type: "[[u8;20]; 2]"}
      bigs:
        type: Vec<U256>
        validation: [{max_length: 2}]
]]

local U256_MAX = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
local I256_MIN = "-57896044618658097711785492504343953926634992332820282019728792003956564819968"
local WMATIC = "0x0d500b1d8e8ef31e21c99d1db9a6444d3adf1270"
local USDC = "0x2791bca1f2de4661ed88a30c99a7a9449aa84174"

local function load(yaml)
  local set, err = contract.load_string(yaml, "spec.yaml")
  assert(set, err)
  return set
end

-- Copies the payload of 'obj' into a fresh buffer and returns a view of it.
local function deliver(T, obj)
  local buf = ffi.new("uint8_t[?]", T.size)
  ffi.copy(buf, T:bytes(obj), T.size)
  return T:view(buf), buf
end

local full = {
  a_u8 = 255, a_u16 = 65535, a_u32 = 4294967295, a_u64 = "18446744073709551615",
  a_i8 = -128, a_i16 = -32768, a_i32 = -2147483648, a_i64 = "-9223372036854775808",
  a_f32 = 1.5, a_f64 = math.pi, a_bool = true,
  addr = WMATIC, hash = "0x" .. ("ab"):rep(32),
  amount = U256_MAX, delta = I256_MIN, name = "USDC.e",
  nums = { 1, 2, 4294967295 }, path = { WMATIC, USDC },
  words = { -1, 0, 32767 }, pair = { USDC, WMATIC }, bigs = { "0", U256_MAX },
}

describe("mycelium.contract", function()
  local set, T

  before_each(function()
    set = load(ALL)
    T = set:type("All")
  end)

  describe("loading", function()
    it("loads the Bandit contracts with a digest", function()
      local s = assert(contract.load(root .. "/services/contracts.yaml"))
      assert.matches("^%x+$", s.digest)
      assert.equal(64, #s.digest)
      for _, name in ipairs { "SwapEvent", "PoolStateUpdate", "InstrumentMeta",
                              "ArbitrageSignal", "LogRetraction", "PoolMeta" } do
        local t = s:type(name)
        assert.truthy(t, name)
        assert.equal(t, s:type(t.tag))
        assert.equal(t.size, ffi.sizeof(t.ctype))
        assert.equal(64, #t.digest)
      end
    end)

    it("returns every error with file, line and field", function()
      local s, msg, code, list = contract.load_string(HEAD .. [[
  A:
    tlv_type: 1000
    fields:
      x: {type: U512}
  B:
    tlv_type: 1000
    fields: {}
]], "bad.yaml")
      assert.is_nil(s)
      assert.equal("ECONTRACT", code)
      assert.equal(2, #list)
      assert.equal("unknown_type", list[1].kind)
      assert.equal(6, list[1].line)
      assert.matches("bad.yaml:6: A.x: unknown field type 'U512'", msg, 1, true)
      assert.equal("duplicate_tag", list[2].kind)
      assert.matches("bad.yaml:7: B: tlv_type 1000 is also used by A (line 3)", msg, 1, true)
    end)

    it("reports a missing file", function()
      local s, msg, code = contract.load("/nonexistent/contracts.yaml")
      assert.is_nil(s)
      assert.equal("ECONTRACT", code)
      assert.matches("/nonexistent/contracts.yaml: cannot read", msg, 1, true)
    end)

    it("keeps two layouts of one type name apart", function()
      local other = load(HEAD .. "  All:\n    tlv_type: 1000\n    fields: {x: {type: u8}}\n")
      local o = other:type("All")
      assert.are_not.equal(T.cname, o.cname)
      assert.equal(1, ffi.sizeof(o.ctype))
      assert.equal(T.cname, load(ALL):type("All").cname)
    end)
  end)

  describe("layout", function()
    it("packs fields little-endian at the contract's offsets", function()
      local obj = T:new(full)
      local bytes = T:bytes(obj)
      assert.equal(T.size, #bytes)
      for _, f in ipairs(T.fields) do
        assert.equal(f.offset, ffi.offsetof(T.ctype, f.name), f.name)
      end
      local off = T.field.a_u16.offset
      assert.equal("\255\255", bytes:sub(off + 1, off + 2))
      off = T.field.a_i32.offset
      assert.equal("\0\0\0\128", bytes:sub(off + 1, off + 4))
      off = T.field.name.offset
      assert.equal("\6\0USDC.e\0\0\0\0", bytes:sub(off + 1, off + 12))
      off = T.field.delta.offset
      assert.equal(("\0"):rep(31) .. "\128", bytes:sub(off + 1, off + 32))
    end)
  end)

  describe("round trip through a payload", function()
    it("preserves every field type", function()
      local view = deliver(T, T:new(full))
      local got = T:totable(view)
      assert.same({
        a_u8 = 255, a_u16 = 65535, a_u32 = 4294967295, a_u64 = "18446744073709551615",
        a_i8 = -128, a_i16 = -32768, a_i32 = -2147483648, a_i64 = "-9223372036854775808",
        a_f32 = 1.5, a_f64 = math.pi, a_bool = true,
        addr = got.addr, hash = "0x" .. ("ab"):rep(32),
        amount = U256_MAX, delta = I256_MIN, name = "USDC.e",
        nums = { 1, 2, 4294967295 }, path = got.path,
        words = { -1, 0, 32767 }, pair = got.pair, bigs = { "0", U256_MAX },
      }, got)
      assert.equal(WMATIC, got.addr:lower())
      assert.same({ WMATIC, USDC }, { got.path[1]:lower(), got.path[2]:lower() })
      assert.same({ USDC, WMATIC }, { got.pair[1]:lower(), got.pair[2]:lower() })
    end)

    it("reads fields of a view directly, without copies", function()
      local view = deliver(T, T:new(full))
      assert.equal(255, view.a_u8)
      assert.equal(-1, view.words[0])
      assert.equal(-9223372036854775808LL, view.a_i64)
      assert.equal(U256_MAX, tostring(view.amount))
      assert.equal("USDC.e", tostring(view.name))
      assert.equal(6, #view.name)
      assert.equal(3, #view.nums)
      assert.same({ 1, 2, 4294967295 }, view.nums:totable())
      assert.equal(WMATIC, contract.address_to_hex(view.addr):lower())
    end)

    it("round-trips U256 max in decimal, hex and as a double", function()
      local u = contract.u256(U256_MAX)
      assert.equal(U256_MAX, tostring(u))
      assert.equal("0x" .. ("f"):rep(64), u:hex())
      assert.equal(2^256, u:tonumber())
      assert.equal(U256_MAX, tostring(contract.u256(u:hex())))
      local view = deliver(T, T:new { amount = u })
      assert.equal(U256_MAX, tostring(view.amount))
    end)

    it("round-trips negative i64 and I256", function()
      local view = deliver(T, T:new { a_i64 = -1, delta = -1, a_i8 = -5 })
      assert.equal(-1LL, view.a_i64)
      assert.equal(-1, T:totable(view).a_i64)
      assert.equal(-5, view.a_i8)
      assert.equal("-1", tostring(view.delta))
      assert.equal("-0x1", view.delta:hex())
      assert.equal(-1, view.delta:tonumber())
      assert.equal(("\255"):rep(32), ffi.string(view.delta.b, 32))
      assert.equal(I256_MIN, tostring(contract.i256(I256_MIN)))
    end)

    it("round-trips [u8; 20] addresses from hex, raw bytes and cdata", function()
      local raw = assert(contract.address_from_hex(WMATIC))
      assert.equal(20, #raw)
      for _, input in ipairs { WMATIC, WMATIC:upper():gsub("^0X", "0x"), raw } do
        local view = deliver(T, T:new { addr = input })
        assert.equal(raw, ffi.string(view.addr, 20))
      end
      local a = T:new { addr = WMATIC }
      local b = T:new { addr = a.addr }
      assert.equal(raw, ffi.string(b.addr, 20))
    end)
  end)

  describe("read-only views", function()
    it("refuses writes, naming type and field", function()
      local view = deliver(T, T:new(full))
      for _, f in ipairs(T.fields) do
        assert.has_error(function() view[f.name] = 0 end,
          ("All.%s is read-only: a received message cannot be changed (make a writable "
            .. "copy: ctx:new(\"All\", msg.data) to emit, or "
            .. "ctx.contracts:type(\"All\"):new(msg.data))"):format(f.name))
      end
    end)

    it("refuses writes into nested arrays, strings, vectors and U256", function()
      local view = deliver(T, T:new(full))
      assert.has_error(function() view.addr[0] = 1 end)
      assert.has_error(function() view.amount.b[0] = 1 end)
      assert.has_error(function() view.name.len = 1 end)
      assert.has_error(function() view.nums.data[0] = 1 end)
      assert.has_error(function() view.bigs.data[0].b[0] = 1 end)
      assert.has_error(function() view.pair[0][0] = 1 end)
      assert.has_error(function() view.amount:set(1) end)
      assert.has_error(function() view.nums:push(1) end)
      assert.has_error(function() view.name:set("x") end)
    end)

    it("names unknown fields", function()
      local view = deliver(T, T:new(full))
      assert.has_error(function() return view.nope end, "All has no field 'nope'")
      assert.has_error(function() view.nope = 1 end, "All has no field 'nope'")
      local obj = T:new()
      assert.has_error(function() return obj.nope end, "All has no field 'nope'")
      assert.has_error(function() obj.nope = 1 end, "All has no field 'nope'")
    end)
  end)

  describe("conversions refuse what does not fit", function()
    local cases = {
      { "a_u8", 256, "All.a_u8 (u8): 256 is out of range 0..255" },
      { "a_u8", 1.5, "All.a_u8 (u8): expected an integer, got 1.5" },
      { "a_i16", -32769, "All.a_i16 (i16): -32769 is out of range -32768..32767" },
      { "a_u64", "18446744073709551616", "does not fit 64 bits" },
      { "a_u64", -1, "negative value -1 for u64" },
      { "a_i64", "9223372036854775808", "out of the i64 range" },
      { "a_bool", 1, "expected a boolean, got number" },
      { "a_f64", "1.5", "expected a number, got string" },
      { "amount", "-1", "negative value -1" },
      { "amount", "1" .. U256_MAX, "does not fit in 256 bits" },
      { "amount", 2^60, "is not an exact integer" },
      { "amount", "12abc", "not a decimal or 0x-hex integer" },
      { "delta", "57896044618658097711785492504343953926634992332820282019728792003956564819968",
        "out of range -2^255 .. 2^255-1" },
      { "addr", "0x1234", "expected 20 bytes or 0x + 40 hex digits, got 6 characters" },
      { "addr", "0x" .. ("zz"):rep(20), "not a 0x address of 40 hex digits" },
      { "name", "much too long", "All.name (String): 13 bytes do not fit a String of capacity 10" },
      { "name", 5, "expected a string, got number" },
      { "nums", { 1, 2, 3, 4 }, "4 elements do not fit 3" },
      { "nums", { 1, -2 }, "element 2: -2 is out of range 0..4294967295" },
      { "path", { "0x12" }, "element 1: expected 20 bytes" },
      { "words", { 1, 2, 3, 4 }, "4 elements do not fit 3" },
    }
    for _, c in ipairs(cases) do
      it(("%s = %s"):format(c[1], tostring(c[2])), function()
        local ok, err = pcall(T.new, T, { [c[1]] = c[2] })
        assert.is_false(ok)
        assert.matches(c[3], err, 1, true)
      end)
    end

    it("never truncates a string in place", function()
      local obj = T:new { name = "abc" }
      assert.has_error(function() obj.name:set("01234567890") end,
        "String: 11 bytes do not fit a String of capacity 10")
      assert.equal("abc", tostring(obj.name))
      obj.name:set("0123456789")
      assert.equal("0123456789", tostring(obj.name))
    end)

    it("names unknown fields in fill, suggesting the nearest", function()
      assert.has_error(function() T:new { zzzzzz = 1 } end, "All has no field 'zzzzzz'")
      assert.has_error(function() T:new { nmae = "x" } end,
        "All has no field 'nmae' (did you mean 'name'?)")
      assert.has_error(function() T:new(5) end,
        "All: the initial values must be a table, or a All message to copy; got number")
    end)
  end)

  describe("helpers", function()
    it("converts U256 from numbers, hex and 64-bit cdata, and compares", function()
      assert.equal("255", tostring(contract.u256("0xff")))
      assert.equal("9007199254740992", tostring(contract.u256(2^53)))
      assert.equal("18446744073709551615", tostring(contract.u256(0xffffffffffffffffULL)))
      assert.equal("0x0", contract.u256(0):hex())
      assert.is_true(contract.u256(1) < contract.u256("2"))
      assert.is_true(contract.u256(7) == contract.u256("0x7"))
      assert.is_true(contract.i256(-2) < contract.i256(1))
      assert.has_error(function() contract.u256(-1) end, "U256: negative value -1")
      assert.has_error(function() contract.u256({}) end)
    end)

    it("sets U256 and Vec fields in place", function()
      local obj = T:new()
      obj.amount:set("12345678901234567890123")
      assert.equal("12345678901234567890123", tostring(obj.amount))
      obj.nums:push(7):push(8)
      assert.same({ 7, 8 }, obj.nums:totable())
      obj.nums:push(9)
      assert.has_error(function() obj.nums:push(10) end, "Vec: full (capacity 3)")
      obj.bigs:set { U256_MAX }
      assert.equal(1, #obj.bigs)
      assert.equal(U256_MAX, tostring(obj.bigs.data[0]))
    end)

    it("converts hex and addresses", function()
      assert.equal("0x00ff10", contract.hex("\0\255\16"))
      assert.equal("\0\255\16", contract.unhex("0x00ff10"))
      local none, why = contract.unhex("0xabc")
      assert.is_nil(none)
      assert.matches("even number of hex digits", why)
      local none2, why2 = contract.address_from_hex("0x1234")
      assert.is_nil(none2)
      assert.matches("not a 0x address of 40 hex digits", why2, 1, true)
    end)

    describe("addresses", function()
      local CHECKSUMMED = "0x0d500B1d8E8eF31E21C99d1Db9A6444d3ADf1270"
      local BAD = "0x0D500B1d8E8eF31E21C99d1Db9A6444d3ADf1270" -- one letter off
      local RAW = contract.unhex(WMATIC)
      after_each(function() contract.set_address_codec(nil) end)

      it("are lowercase 0x-hex by default, and any case is accepted", function()
        assert.equal(WMATIC, contract.address_to_hex(RAW))
        assert.equal(RAW, contract.address_from_hex(CHECKSUMMED))
        assert.equal(RAW, contract.address_from_hex(BAD))
        assert.equal(RAW, contract.address_from_hex("0x" .. WMATIC:sub(3):upper()))
        local obj = T:new { addr = BAD }
        assert.equal(WMATIC, T:totable(obj).addr)
        assert.equal(WMATIC, T:totable(deliver(T, obj)).addr)
      end)

      it("follow a registered codec (EIP-55, as Bandit registers it)", function()
        contract.set_address_codec(require "bandit.eip55")
        assert.equal(CHECKSUMMED, contract.address_to_hex(RAW))
        assert.equal(CHECKSUMMED, contract.address_to_hex(ffi.cast("const uint8_t *", RAW)))
        assert.equal(RAW, contract.address_from_hex(CHECKSUMMED))
        assert.equal(RAW, contract.address_from_hex(WMATIC))
        local none, why = contract.address_from_hex(BAD)
        assert.is_nil(none)
        assert.matches("bad address checksum", why, 1, true)
        assert.has_error(function() T:new { addr = BAD } end)
        local obj = T:new { addr = CHECKSUMMED, path = { WMATIC, USDC } }
        local t = T:totable(deliver(T, obj))
        assert.equal(CHECKSUMMED, t.addr)
        assert.same({ CHECKSUMMED, "0x2791Bca1f2de4661ED88A30C99A7a9449Aa84174" }, t.path)
        -- nil restores the default.
        contract.set_address_codec(nil)
        assert.equal(WMATIC, contract.address_to_hex(RAW))
        assert.equal(RAW, contract.address_from_hex(BAD))
      end)

      it("refuses a codec without from_bytes and is_valid", function()
        assert.has_error(function() contract.set_address_codec("eip55") end,
          "contract.set_address_codec: expected nil or a table with " ..
          "from_bytes and is_valid functions, got string")
        assert.has_error(function()
          contract.set_address_codec { from_bytes = function() end }
        end)
        assert.equal(WMATIC, contract.address_to_hex(RAW))
      end)
    end)
  end)

  describe("validation rules", function()
    it("names type, field and rule", function()
      local s = assert(contract.load(root .. "/services/contracts.yaml"))
      local Meta = s:type("InstrumentMeta")
      local m = Meta:new { token_address = WMATIC, symbol = "WMATIC", decimals = 18, chain_id = 137 }
      assert.is_true(Meta:validate(m))
      m.symbol:set("")
      local ok, err = Meta:validate(m)
      assert.is_nil(ok)
      assert.equal("InstrumentMeta.symbol: violates not_empty", err)
      local view = deliver(Meta, Meta:new { symbol = "X", decimals = 90 })
      ok, err = Meta:validate(view)
      assert.is_nil(ok)
      assert.equal("InstrumentMeta.token_address: violates not_zero", err)
    end)

    -- Emit checks a type's rules with a Lua function compiled from them
    -- (T.passes); it must refuse exactly what myc_contract_validate
    -- refuses, bounds included, at every edge of every rule.
    it("are compiled once per type, agreeing with C at every edge", function()
      local s = load(HEAD .. [[
  Ruled:
    tlv_type: 1000
    fields:
      kind: {type: u8, validation: [{min: 2}, {max: 3}]}
      tick: {type: i32, optional: true, validation: [{min: -8388608}, {max: 8388607}]}
      block: {type: u64, validation: [{not_zero: true}, {max: 18446744073709551614}]}
      big: {type: u64, validation: [{min: 9223372036854775808}]}
      delta: {type: i64, validation: [{min: -9223372036854775808}, {max: -3}]}
      small: {type: i16, validation: [{min: -300}]}
      nz: {type: u16, validation: [{not_zero: true}]}
      maybe: {type: i8, optional: true, validation: [{not_zero: true}]}
      fee: {type: u32, optional: true, validation: [{max: 999999}]}
      ratio: {type: f32, validation: [{min: -1.5}, {max: 2}]}
      share: {type: f64, optional: true, validation: [{max: 0.25}]}
      real: {type: f64, validation: [{not_zero: true}]}
      flag: {type: bool}
      name: {type: String, optional: true, validation: [{min_length: 2}, {max_length: 5}]}
      label: {type: String, validation: [{not_empty: true}, {max_length: 4}]}
      text: {type: String, validation: [{max_length: 3}]}
      nums: {type: Vec<u16>, validation: [{not_empty: true}, {max_length: 2}]}
      pool: {type: "[u8; 20]", validation: [{not_zero: true}]}
      amount: {type: U256, validation: [{not_zero: true}]}
      free: {type: I256}
  Free:
    tlv_type: 1001
    fields: {x: {type: u64}}
  Wide:
    tlv_type: 1002
    fields: {x: {type: U256, validation: [{max: 5}]}}
]])
      local T = s:type("Ruled")
      assert.is_function(T.passes)
      assert.is_function(s:type("Free").passes)
      assert.is_nil(s:type("Wide").passes) -- a 256-bit bound: C checks it
      local m = T:new { kind = 2, block = 1, big = "9223372036854775808",
        delta = -3, nz = 1, real = 1, label = "x", nums = { 1 }, amount = 1,
        pool = "0x0d500b1d8e8ef31e21c99d1db9a6444d3adf1270" }
      assert.are.same({ true }, { T:validate(m) })
      assert.is_true(T.passes(m))
      local p = ffi.cast("uint8_t *", m)
      local function agree(what)
        local ok, err = T:validate(m)
        assert.equal(ok == true, T.passes(m), what .. ": " .. tostring(err))
        return ok == true
      end
      local edges = {
        kind = { 0, 1, 2, 3, 4, 255 }, tick = { -8388609, -8388608, 0, 8388607, 8388608 },
        small = { -32768, -301, -300, 0, 32767 }, nz = { 0, 1, 65535 },
        maybe = { -128, -1, 0, 1, 127 }, fee = { 0, 999999, 1000000, 4294967295 },
        ratio = { -1.5000001, -1.5, 0, 2, 2.0000002, 1 / 0, -1 / 0, 0 / 0 },
        share = { -1, 0, -0.0, 0.25, 0.2500000001, 0 / 0 },
        real = { 0, -0.0, 1e-300, 0 / 0 }, flag = { 0, 1, 2, 255 },
      }
      local int64 = {
        block = { 0ULL, 1ULL, 18446744073709551614ULL, 18446744073709551615ULL },
        big = { 0ULL, 9223372036854775807ULL, 9223372036854775808ULL, 18446744073709551615ULL },
        delta = { -9223372036854775807LL - 1, -4LL, -3LL, -2LL, 0LL, 9223372036854775807LL },
      }
      local saw = { [true] = 0, [false] = 0 }
      local function count(ok) saw[ok] = saw[ok] + 1 end
      local CT = { u8 = "uint8_t *", i8 = "int8_t *", u16 = "uint16_t *", i16 = "int16_t *",
        u32 = "uint32_t *", i32 = "int32_t *", f32 = "float *", f64 = "double *",
        bool = "uint8_t *" }
      for name, values in pairs(edges) do
        local f, keep = T.field[name], ffi.new("uint8_t[64]")
        ffi.copy(keep, p + f.offset, f.size)
        for _, v in ipairs(values) do
          ffi.cast(CT[f.type], p + f.offset)[0] = v
          count(agree(name .. " = " .. tostring(v)))
        end
        ffi.copy(p + f.offset, keep, f.size)
      end
      for name, values in pairs(int64) do
        local f, keep = T.field[name], ffi.new("uint8_t[8]")
        ffi.copy(keep, p + f.offset, 8)
        local ct = name == "delta" and "int64_t *" or "uint64_t *"
        for _, v in ipairs(values) do
          ffi.cast(ct, p + f.offset)[0] = v
          count(agree(name .. " = " .. tostring(v)))
        end
        ffi.copy(p + f.offset, keep, 8)
      end
      -- Lengths: zero, at each bound, past it, past the capacity.
      for _, name in ipairs { "name", "label", "text", "nums" } do
        local f = T.field[name]
        local len = ffi.cast("uint16_t *", p + f.offset)
        local keep = len[0]
        for n = 0, 7 do
          len[0] = n
          count(agree(name .. " length " .. n))
        end
        len[0] = keep
      end
      -- Byte arrays and the 256-bit not_zero: each byte alone.
      for _, name in ipairs { "pool", "amount", "nz", "block" } do
        local f, keep = T.field[name], ffi.new("uint8_t[32]")
        ffi.copy(keep, p + f.offset, f.size)
        for b = 0, f.size - 1 do
          ffi.fill(p + f.offset, f.size)
          count(agree(name .. " zero"))
          p[f.offset + b] = 0x80
          count(agree(name .. " byte " .. b))
        end
        ffi.copy(p + f.offset, keep, f.size)
      end
      assert.is_true(saw[true] > 20 and saw[false] > 20)
      -- Random payloads, mostly refused, and random changes of one field
      -- of a good one, in both directions.
      math.randomseed(7)
      local good = ffi.new("uint8_t[?]", T.size)
      ffi.copy(good, p, T.size)
      for i = 1, 3000 do
        if i % 3 == 0 then
          for b = 0, T.size - 1 do p[b] = math.random(0, 255) end
        else
          ffi.copy(p, good, T.size)
          local f = T.fields[math.random(#T.fields)]
          for b = 0, math.random(0, f.size - 1) do
            p[f.offset + b] = math.random(0, 3) == 0 and 0 or math.random(0, 255)
          end
        end
        agree("random " .. i)
      end
    end)
  end)
end)
