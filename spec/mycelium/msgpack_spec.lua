-- spec/mycelium/msgpack_spec.lua -- mycelium.msgpack, the hot-path codec of
-- table payloads: the same bytes as the C codec, read back by an independent
-- decoder (lua-messagepack), and careful with malformed input.
local ffi = require "ffi"
local msgpack = require "mycelium.msgpack"
local MessagePack = require "MessagePack"
local testing = require "mycelium.testing"
local core = testing.core -- the C codec (engine/src/lua_core.c)

local function seq(n, f)
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return t
end

local function keyed(n)
  local t = {}
  for i = 1, n do t["k" .. i] = i end
  return t
end

local VALUES = {
  0, 1, 127, 128, 255, 256, 65535, 65536, 2 ^ 32 - 1, 2 ^ 32, 2 ^ 53, -1, -32, -33,
  -128, -129, -32768, -32769, -2 ^ 31, -2 ^ 31 - 1, -2 ^ 53, -2 ^ 63, 0.5, -1.5,
  math.pi, 1 / 0, -1 / 0, 2 ^ 64, "", "a", ("x"):rep(31), ("x"):rep(32),
  ("y"):rep(255), ("z"):rep(256), ("w"):rep(70000), "nul\0inside", true, false,
  {}, { 1, 2, 3 }, { a = 1 }, { 1, 2, x = 3 }, { [1] = "a", [3] = "c" },
  { [2.5] = 1 }, { list = { { a = { b = "c" } } } }, seq(20, function(i) return i end),
  keyed(20), seq(70000, function(i) return i % 3 end), keyed(70000),
}

local function encode(v)
  local p, n = msgpack.encode(v)
  assert(p, n)
  return ffi.string(p, n)
end

describe("mycelium.msgpack", function()
  it("writes the same bytes as the C codec", function()
    for i, v in ipairs(VALUES) do
      assert.are.equal(core.pack(v), encode(v), "value " .. i)
    end
  end)

  it("reads back what it writes, and an independent decoder agrees", function()
    for i, v in ipairs(VALUES) do
      local bytes = encode(v)
      assert.are.same(v, msgpack.decode(bytes), "value " .. i)
      assert.are.same(core.unpack(bytes), msgpack.decode(bytes), "value " .. i)
      if type(v) ~= "table" or next(v) ~= nil then -- it reads {} as an array
        assert.are.same(v, MessagePack.unpack(bytes), "value " .. i)
      end
    end
  end)

  it("reads what other encoders write: bin, float32, ext, nil values", function()
    MessagePack.set_string("binary")
    local bin = MessagePack.pack { data = "\1\2\3" }
    MessagePack.set_string("string_compat")
    assert.are.same({ data = "\1\2\3" }, msgpack.decode(bin))
    assert.are.equal(1.5, msgpack.decode("\xca\x3f\xc0\x00\x00"))
    -- an ext value and a nil value are dropped from a map
    assert.are.same({ b = 2 }, msgpack.decode("\x83\xa1a\xd4\x01\x02\xa1b\x02\xa1c\xc0"))
    assert.are.same({ 1, nil, 3 }, msgpack.decode("\x93\x01\xc0\x03"))
  end)

  it("decodes from a pointer and a length", function()
    local bytes = encode { a = 1 }
    local buf = ffi.new("uint8_t[?]", #bytes + 3)
    ffi.copy(buf, bytes, #bytes)
    assert.are.same({ a = 1 }, msgpack.decode(buf, #bytes))
  end)

  it("refuses malformed payloads without reading past them", function()
    for _, bad in ipairs {
      "", "\xc1", "\x92\x01", "\xdd\xff\xff\xff\xff", "\xdf\xff\xff\xff\xff\x01",
      "\xa5abc", "\xcb\x00\x00", "\x01\x02", "\xd9", "\xc7\x10\x01",
    } do
      local v, why = msgpack.decode(bad)
      assert.is_nil(v)
      assert.are.equal("malformed MessagePack payload", why)
    end
    assert.has_error(function() msgpack.decode(("\x91"):rep(70) .. "\x01") end,
      "MessagePack value nested too deeply")
  end)

  it("names the field it cannot encode, as the C codec does", function()
    local cases = {
      { { a = { cb = print } }, "cannot encode field 'a.cb': unsupported type function" },
      { { list = { 1, 2, io.stdout } }, "cannot encode field 'list[3]': unsupported type userdata" },
      { print, "cannot encode value: unsupported type function" },
      { { x = ffi.new("int[1]") }, "cannot encode field 'x': unsupported type cdata" },
      { { [true] = 1 }, "cannot encode value: table keys must be strings or numbers" },
    }
    for _, c in ipairs(cases) do
      local p, why = msgpack.encode(c[1])
      assert.is_nil(p)
      assert.are.equal(c[2], why)
    end
    local loop = {}
    loop.self = loop
    local _, why = msgpack.encode(loop)
    assert.matches("nested too deeply %(a table that contains itself%?%)$", why)
    assert.has_error(function() msgpack.pack(print) end,
      "cannot encode value: unsupported type function")
  end)

  it("decodes a recurring shape through its constructor, with the same result", function()
    local shapes = {
      { block = 1, pool = "0xabc", amount = 1.5, ok = true },
      { ["with space"] = 1, ["quote\"d"] = 2, ["nl\n"] = 3, ["\0"] = 4 },
      { a = 1, b = { a = 2, b = { a = 3 } } },
    }
    for _, shape in ipairs(shapes) do
      local bytes = encode(shape)
      for _ = 1, 20 do assert.are.same(shape, msgpack.decode(bytes)) end
    end
    -- nil values and repeated keys read as before the constructor exists
    local odd = "\x83\xa1a\x01\xa1b\xc0\xa1a\x02"
    for _ = 1, 20 do assert.are.same({ a = 2 }, msgpack.decode(odd)) end
  end)
end)
