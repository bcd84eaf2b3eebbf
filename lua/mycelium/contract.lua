-- mycelium.contract -- message contracts on the Lua side: FFI structs
-- generated at load time from a contract set loaded by the C core, and
-- the helpers that move values between Lua and those structs.
--
-- A message type T gives two views of the same packed bytes:
--   T:cast(ptr)  a writable struct (what ctx:new returns, in an engine buffer)
--   T:view(ptr)  a read-only view (what msg.data is); writes raise an error
--                naming the type and field.
-- Conversions never truncate: a value that does not fit raises.

local ffi = require "ffi"
local bit = require "bit"
local cdefs = require "mycelium.cdefs"
cdefs.need("contract")

local C -- the engine library, resolved on first load
local byte, char, fmt, concat = string.byte, string.char, string.format, table.concat
local floor, tonumber, tostring, type = math.floor, tonumber, tostring, type
local error, pairs, ipairs, pcall = error, pairs, ipairs, pcall
local setmetatable, getmetatable = setmetatable, getmetatable
local unpack, min = unpack, math.min

local M = {}

-- Field kinds, as in contract.h (MYC_FIELD_KIND_MAP).
local K = { U8 = 1, U16 = 2, U32 = 3, U64 = 4, I8 = 5, I16 = 6, I32 = 7,
  I64 = 8, F32 = 9, F64 = 10, BOOL = 11, U256 = 12, I256 = 13, ARRAY = 14,
  STRING = 15, VEC = 16 }
M.kinds = K

local CTYPE = { [K.U8] = "uint8_t", [K.U16] = "uint16_t", [K.U32] = "uint32_t",
  [K.U64] = "uint64_t", [K.I8] = "int8_t", [K.I16] = "int16_t",
  [K.I32] = "int32_t", [K.I64] = "int64_t", [K.F32] = "float",
  [K.F64] = "double", [K.BOOL] = "bool" }

local function defined(ctype)
  return (pcall(ffi.typeof, ctype))
end

-- The engine's C API: mycelium.h's functions and the FFI table's
-- (mycelium.cdefs declares them and binds them, inside the engine or in
-- a plain LuaJIT).
local function lib()
  if C then return C end
  C = cdefs.library()
  return C
end

-- ===================================================================
-- Names
-- ===================================================================

local nearest = require("mycelium.suggest").nearest
M.nearest = nearest

-- ===================================================================
-- Bytes and hex
-- ===================================================================

local HEX = {}
for i = 0, 255 do HEX[i] = fmt("%02x", i) end

-- Lowercase 0x-hex of 'n' bytes at 'p' (cdata pointer or Lua string).
function M.hex(p, n)
  if type(p) == "string" then n = n or #p; p = ffi.cast("const uint8_t *", p) end
  local out = {}
  for i = 0, n - 1 do out[i + 1] = HEX[p[i]] end
  return "0x" .. concat(out)
end

-- Bytes of an even-length hex string (0x prefix optional), or nil, why.
function M.unhex(s)
  if type(s) ~= "string" then return nil, "expected a hex string" end
  local h = s:match("^0[xX](.*)$") or s
  if #h % 2 ~= 0 or h:find("[^%x]") then
    return nil, "not an even number of hex digits: " .. s
  end
  return (h:gsub("%x%x", function(d) return char(tonumber(d, 16)) end))
end

-- ===================================================================
-- Addresses ([u8; 20])
-- ===================================================================

-- The address codec of this Lua state: nil is the default (lowercase
-- 0x-hex out, any case in).  The framework knows no address scheme; an
-- application that has one registers it (Bandit: EIP-55 checksums).
local codec

-- Registers how [u8; 20] fields read and write as text in this Lua state:
-- 'c' is a table with from_bytes(s20) -> "0x..." and is_valid(s) ->
-- boolean (s is already "0x" + 40 hex digits); nil restores the default.
-- Raises on anything else.
function M.set_address_codec(c)
  if c ~= nil and (type(c) ~= "table" or type(c.from_bytes) ~= "function"
      or type(c.is_valid) ~= "function") then
    error("contract.set_address_codec: expected nil or a table with " ..
      "from_bytes and is_valid functions, got " .. type(c), 2)
  end
  codec = c
end

-- "0x" + 40 hex digits of 20 bytes (string or cdata): lowercase, or the
-- registered codec's form.
function M.address_to_hex(a)
  local s = type(a) == "string" and a or ffi.string(a, 20)
  if #s ~= 20 then error("address must be 20 bytes, got " .. #s, 2) end
  if codec then return codec.from_bytes(s) end
  return M.hex(s)
end

-- The 20 bytes of a 0x-hex address, or nil, why.  With a codec
-- registered, the address must also pass its is_valid (EIP-55: a
-- mixed-case address must carry a valid checksum).
function M.address_from_hex(s)
  if type(s) ~= "string" or not s:match("^0[xX]" .. ("%x"):rep(40) .. "$") then
    return nil, "not a 0x address of 40 hex digits: " .. tostring(s)
  end
  if codec and not codec.is_valid(s) then
    return nil, "bad address checksum (refused by the registered address codec): " .. s
  end
  return M.unhex(s)
end

-- ===================================================================
-- 256-bit integers: 32 bytes little-endian (I256: two's complement)
-- ===================================================================

-- Numbers are processed as 16 limbs of 16 bits, little-endian, so every
-- intermediate stays an exact double.
local function limbs_of(b)
  local l = {}
  for i = 0, 15 do l[i + 1] = b[2 * i] + b[2 * i + 1] * 256 end
  return l
end

local function store(l, out)
  for i = 0, 15 do
    out.b[2 * i] = l[i + 1] % 256
    out.b[2 * i + 1] = floor(l[i + 1] / 256)
  end
  return out
end

local function negate(l)
  local carry = 1
  for i = 1, 16 do
    local v = 65535 - l[i] + carry
    l[i] = v % 65536
    carry = floor(v / 65536)
  end
end

local function is_zero(l)
  for i = 1, 16 do if l[i] ~= 0 then return false end end
  return true
end

-- Magnitude limbs of a decimal or 0x-hex digit string, or nil, why.
local function parse_digits(s)
  local base, digits = 10, s
  local h = s:match("^0[xX](%x+)$")
  if h then base, digits = 16, h
  elseif not s:match("^%d+$") then return nil, "not a decimal or 0x-hex integer: " .. s end
  local l = {}
  for i = 1, 16 do l[i] = 0 end
  for i = 1, #digits do
    local carry = tonumber(digits:sub(i, i), base)
    for j = 1, 16 do
      local v = l[j] * base + carry
      l[j] = v % 65536
      carry = floor(v / 65536)
    end
    if carry ~= 0 then return nil, "does not fit in 256 bits: " .. s end
  end
  return l
end

local function to_decimal(l)
  l = { unpack(l) }
  local groups = {}
  repeat
    local rem = 0
    for i = 16, 1, -1 do
      local cur = rem * 65536 + l[i]
      l[i] = floor(cur / 10000)
      rem = cur % 10000
    end
    groups[#groups + 1] = rem
  until is_zero(l)
  local out = { tostring(groups[#groups]) }
  for i = #groups - 1, 1, -1 do out[#out + 1] = fmt("%04d", groups[i]) end
  return concat(out)
end

local function to_double(l)
  local acc = 0
  for i = 16, 1, -1 do acc = acc * 65536 + l[i] end
  return acc
end

local U256, U256V, I256, I256V -- ctypes, set by declare_support()

local function signed_parts(x)
  local l = limbs_of(x.b)
  local neg = l[16] >= 32768
  if neg then negate(l) end
  return l, neg
end

-- Magnitude limbs and sign of a Lua value meant for a 256-bit field, or
-- nil, why.
local function big_of(v)
  local tv = type(v)
  if tv == "number" then
    if v ~= floor(v) or v > 2^53 or v < -2^53 then
      return nil, "number " .. tostring(v) ..
        " is not an exact integer (pass a string for large values)"
    end
    return parse_digits(fmt("%.0f", v < 0 and -v or v)), v < 0
  elseif tv == "string" then
    local neg = v:sub(1, 1) == "-"
    local l, why = parse_digits(neg and v:sub(2) or v)
    if not l then return nil, why end
    return l, neg
  elseif tv == "cdata" then
    if ffi.istype(I256, v) or ffi.istype(I256V, v) then return signed_parts(v) end
    if ffi.istype(U256, v) or ffi.istype(U256V, v) then return limbs_of(v.b), false end
    if ffi.istype("int64_t", v) or ffi.istype("uint64_t", v) then
      return big_of((tostring(v):gsub("U?LL$", "")))
    end
  end
  return nil, "expected a decimal or 0x-hex string, an integer or a 256-bit value, got " .. tv
end

local function fits_i256(l, neg)
  if l[16] < 32768 then return true end
  if not neg or l[16] ~= 32768 then return false end
  for i = 1, 15 do if l[i] ~= 0 then return false end end
  return true
end

-- U256 limbs of 'v', or nil, why.
local function u256_limbs(v)
  local l, neg = big_of(v)
  if not l then return nil, neg end
  if neg and not is_zero(l) then return nil, "negative value " .. tostring(v) end
  return l
end

-- I256 two's complement limbs of 'v', or nil, why.
local function i256_limbs(v)
  local l, neg = big_of(v)
  if not l then return nil, neg end
  if not fits_i256(l, neg) then
    return nil, "out of range -2^255 .. 2^255-1: " .. tostring(v)
  end
  if neg then negate(l) end
  return l
end

-- A new U256 (myc_u256) from a decimal or 0x-hex string, an exact integer
-- number, a 64-bit cdata or another 256-bit value.  Raises when negative
-- or too large.
function M.u256(v)
  local l, why = u256_limbs(v)
  if not l then error("U256: " .. why, 2) end
  return store(l, U256())
end

-- A new I256 (myc_i256): as u256, with an optional '-', within
-- -2^255 .. 2^255-1.
function M.i256(v)
  local l, why = i256_limbs(v)
  if not l then error("I256: " .. why, 2) end
  return store(l, I256())
end

-- Methods shared by U256 and I256 values (writable or views).
local big_methods = {
  unsigned = {
    tostring = function(x) return to_decimal(limbs_of(x.b)) end,
    hex = function(x)
      local out = {}
      for i = 31, 0, -1 do out[#out + 1] = HEX[x.b[i]] end
      local s = concat(out):gsub("^0+", "")
      return "0x" .. (s == "" and "0" or s)
    end,
    tonumber = function(x) return to_double(limbs_of(x.b)) end,
  },
  signed = {
    tostring = function(x)
      local l, neg = signed_parts(x)
      return (neg and "-" or "") .. to_decimal(l)
    end,
    hex = function(x)
      local l, neg = signed_parts(x)
      local u = store(l, U256())
      return (neg and "-" or "") .. M.u256_hex(u)
    end,
    tonumber = function(x)
      local l, neg = signed_parts(x)
      return neg and -to_double(l) or to_double(l)
    end,
  },
}
M.u256_hex = big_methods.unsigned.hex

-- Compare as unsigned (U256) or signed (I256) integers.
local function big_cmp(a, b, signed)
  if signed then
    local sa, sb = a.b[31] >= 128, b.b[31] >= 128
    if sa ~= sb then return sa and -1 or 1 end
  end
  for i = 31, 0, -1 do
    if a.b[i] ~= b.b[i] then return a.b[i] < b.b[i] and -1 or 1 end
  end
  return 0
end

local function big_metatable(methods, signed, writable)
  local index = {}
  for k, f in pairs(methods) do index[k] = f end
  if writable then
    index.set = function(x, v)
      local l, why = (signed and i256_limbs or u256_limbs)(v)
      if not l then error((signed and "I256: " or "U256: ") .. why, 2) end
      store(l, x)
      return x
    end
  end
  return {
    __index = index,
    __tostring = methods.tostring,
    __eq = function(a, b) return big_cmp(a, b, signed) == 0 end,
    __lt = function(a, b) return big_cmp(a, b, signed) < 0 end,
    __le = function(a, b) return big_cmp(a, b, signed) <= 0 end,
  }
end

-- ===================================================================
-- Support types: 256-bit values, fixed strings, bounded vectors
-- ===================================================================
-- Each has a writable and a view variant.  Views declare every member
-- const: LuaJIT does not carry a pointer's const to nested members, so
-- only const members make nested writes fail.

local function declare_support()
  if U256 then return end
  if not defined("myc_u256") then
    ffi.cdef [[
      typedef struct { uint8_t b[32]; } myc_u256;
      typedef struct { const uint8_t b[32]; } myc_u256v;
      typedef struct { uint8_t b[32]; } myc_i256;
      typedef struct { const uint8_t b[32]; } myc_i256v;
    ]]
    ffi.metatype("myc_u256", big_metatable(big_methods.unsigned, false, true))
    ffi.metatype("myc_u256v", big_metatable(big_methods.unsigned, false, false))
    ffi.metatype("myc_i256", big_metatable(big_methods.signed, true, true))
    ffi.metatype("myc_i256v", big_metatable(big_methods.signed, true, false))
  end
  U256, U256V = ffi.typeof("myc_u256"), ffi.typeof("myc_u256v")
  I256, I256V = ffi.typeof("myc_i256"), ffi.typeof("myc_i256v")
end

-- Fixed strings: u16 length, then 'cap' bytes (zero-filled past length).
local function string_set(cap)
  return function(s, v)
    if type(v) ~= "string" then
      return nil, "expected a string, got " .. type(v)
    end
    if #v > cap then
      return nil, fmt("%d bytes do not fit a String of capacity %d", #v, cap)
    end
    ffi.copy(s.data, v, #v)
    if #v < cap then ffi.fill(s.data + #v, cap - #v) end
    s.len = #v
    return s
  end
end

local function string_type(cap, view)
  local name = (view and "myc_strv_" or "myc_str_") .. cap
  if defined(name) then return name end
  local q = view and "const " or ""
  ffi.cdef(fmt("typedef struct __attribute__((packed)) { %suint16_t len; %suint8_t data[%d]; } %s;",
    q, q, cap, name))
  local function str(s) return ffi.string(s.data, min(s.len, cap)) end
  local index = { tostring = str }
  if not view then
    local set = string_set(cap)
    index.set = function(s, v)
      local ok, why = set(s, v)
      if not ok then error("String: " .. why, 2) end
      return s
    end
  end
  ffi.metatype(name, { __index = index, __tostring = str,
    __len = function(s) return min(s.len, cap) end })
  return name
end

-- Element declarations of arrays and vectors.
local function elem_tag(kind, size)
  if kind == K.ARRAY then return "b" .. size end
  if kind == K.U256 then return "u256" end
  if kind == K.I256 then return "i256" end
  return CTYPE[kind]:gsub("_t$", "")
end

local function elem_decl(kind, size, name, count, view)
  local q = view and "const " or ""
  if kind == K.ARRAY then return fmt("%suint8_t %s[%d][%d]", q, name, count, size) end
  if kind == K.U256 then return fmt("%s %s[%d]", view and "myc_u256v" or "myc_u256", name, count) end
  if kind == K.I256 then return fmt("%s %s[%d]", view and "myc_i256v" or "myc_i256", name, count) end
  return fmt("%s%s %s[%d]", q, CTYPE[kind], name, count)
end

local vec_methods -- defined with the value converters below

local function vec_type(f, view)
  local name = fmt("%s%s_%d", view and "myc_vecv_" or "myc_vec_",
    elem_tag(f.elem_kind, f.elem_size), f.count)
  if defined(name) then return name end
  ffi.cdef(fmt("typedef struct __attribute__((packed)) { %suint16_t len; %s; } %s;",
    view and "const " or "", elem_decl(f.elem_kind, f.elem_size, "data", f.count, view), name))
  ffi.metatype(name, vec_methods(f, view))
  return name
end

-- ===================================================================
-- Values: Lua -> field (setters) and field -> Lua (getters)
-- ===================================================================
-- A setter is f(container, key, value) -> true | nil, why; it writes
-- container[key].  A getter is f(container, key) -> Lua value.  Keys are
-- member names (mangled in views) or array indexes.

local INT_RANGE = { [K.U8] = { 0, 255 }, [K.U16] = { 0, 65535 },
  [K.U32] = { 0, 4294967295 }, [K.I8] = { -128, 127 },
  [K.I16] = { -32768, 32767 }, [K.I32] = { -2147483648, 2147483647 } }

local function int64_of(kind, v)
  local l, neg = big_of(v)
  if not l then return nil, neg end
  for i = 5, 16 do
    if l[i] ~= 0 then return nil, tostring(v) .. " does not fit 64 bits" end
  end
  local u = 0ULL
  for i = 4, 1, -1 do u = u * 65536 + l[i] end
  if kind == K.U64 then
    if neg and u ~= 0 then return nil, "negative value " .. tostring(v) .. " for u64" end
    return u
  end
  if u > (neg and 9223372036854775808ULL or 9223372036854775807ULL) then
    return nil, tostring(v) .. " is out of the i64 range"
  end
  return ffi.cast("int64_t", neg and 0ULL - u or u)
end

local function scalar_of(kind, v)
  local r = INT_RANGE[kind]
  if r then
    if type(v) ~= "number" or v ~= floor(v) then
      return nil, "expected an integer, got " .. tostring(v)
    end
    if v < r[1] or v > r[2] then
      return nil, fmt("%s is out of range %d..%d", tostring(v), r[1], r[2])
    end
    return v
  end
  if kind == K.U64 or kind == K.I64 then return int64_of(kind, v) end
  if kind == K.BOOL then
    if type(v) ~= "boolean" then return nil, "expected a boolean, got " .. type(v) end
    return v
  end
  if type(v) ~= "number" then return nil, "expected a number, got " .. type(v) end
  return v
end

-- Raw bytes of exactly n, or 0x-hex of 2n digits (for n = 20, also
-- checked by the address codec, if one is registered).
local function bytes_of(n, v)
  if type(v) == "cdata" then return v end
  if type(v) ~= "string" then return nil, "expected bytes or 0x-hex, got " .. type(v) end
  if #v == n then return v end
  if #v == 2 * n + 2 and v:match("^0[xX]") then
    if n == 20 then return M.address_from_hex(v) end
    return M.unhex(v)
  end
  return nil, fmt("expected %d bytes or 0x + %d hex digits, got %d characters",
    n, 2 * n, #v)
end

local function int_out(x)
  local n = tonumber(x)
  if n >= -2^53 and n <= 2^53 then return n end
  return (tostring(x):gsub("U?LL$", ""))
end

local function bytes_out(p, n)
  if n == 20 then return M.address_to_hex(p) end
  return M.hex(p, n)
end

local function atom_setter(kind, size)
  if kind == K.ARRAY then
    return function(c, k, v)
      local b, why = bytes_of(size, v)
      if not b then return nil, why end
      ffi.copy(c[k], b, size)
      return true
    end
  elseif kind == K.U256 or kind == K.I256 then
    local limbs = kind == K.U256 and u256_limbs or i256_limbs
    return function(c, k, v)
      local l, why = limbs(v)
      if not l then return nil, why end
      store(l, c[k])
      return true
    end
  end
  return function(c, k, v)
    local x, why = scalar_of(kind, v)
    if x == nil then return nil, why end
    c[k] = x
    return true
  end
end

local function atom_getter(kind, size)
  if kind == K.ARRAY then return function(c, k) return bytes_out(c[k], size) end end
  if kind == K.U256 or kind == K.I256 then
    return function(c, k) return c[k]:tostring() end
  end
  if kind == K.U64 or kind == K.I64 then return function(c, k) return int_out(c[k]) end end
  return function(c, k) return c[k] end
end

-- Sets elements 0..#v-1 of array 'a' and zeroes the rest.
local function set_list(a, count, esize, set, v)
  if type(v) ~= "table" then return nil, "expected a list, got " .. type(v) end
  if #v > count then return nil, fmt("%d elements do not fit %d", #v, count) end
  for i = 1, #v do
    local ok, why = set(a, i - 1, v[i])
    if not ok then return nil, fmt("element %d: %s", i, why) end
  end
  if #v < count then
    ffi.fill(ffi.cast("uint8_t *", a) + #v * esize, (count - #v) * esize)
  end
  return true
end

local function get_list(a, n, get)
  local out = {}
  for i = 0, n - 1 do out[i + 1] = get(a, i) end
  return out
end

function vec_methods(f, view)
  local set, get = atom_setter(f.elem_kind, f.elem_size), atom_getter(f.elem_kind, f.elem_size)
  local count, esize = f.count, f.elem_size
  local function len(v) return min(v.len, count) end
  local index = { totable = function(v) return get_list(v.data, len(v), get) end }
  if not view then
    index.set = function(v, list)
      local ok, why = set_list(v.data, count, esize, set, list)
      if not ok then error("Vec: " .. why, 2) end
      v.len = #list
      return v
    end
    index.push = function(v, x)
      if v.len >= count then error(fmt("Vec: full (capacity %d)", count), 2) end
      local ok, why = set(v.data, v.len, x)
      if not ok then error("Vec: " .. why, 2) end
      v.len = v.len + 1
      return v
    end
  end
  return { __index = index, __len = len }
end

-- Setter and getter of a whole field.
local function field_setter(f)
  if f.kind == K.STRING then
    local set = string_set(f.count)
    return function(c, k, v) return set(c[k], v) end
  elseif f.kind == K.VEC then
    local set = atom_setter(f.elem_kind, f.elem_size)
    return function(c, k, v)
      local ok, why = set_list(c[k].data, f.count, f.elem_size, set, v)
      if ok then c[k].len = #v end
      return ok, why
    end
  elseif f.kind == K.ARRAY and f.elem_kind ~= K.U8 then
    local set = atom_setter(f.elem_kind, f.elem_size)
    return function(c, k, v) return set_list(c[k], f.count, f.elem_size, set, v) end
  elseif f.kind == K.ARRAY then
    return atom_setter(K.ARRAY, f.count)
  end
  return atom_setter(f.kind, f.size)
end

local function field_getter(f)
  if f.kind == K.STRING then
    return function(c, k) local s = c[k]; return ffi.string(s.data, min(s.len, f.count)) end
  elseif f.kind == K.VEC then
    local get = atom_getter(f.elem_kind, f.elem_size)
    return function(c, k) local v = c[k]; return get_list(v.data, min(v.len, f.count), get) end
  elseif f.kind == K.ARRAY and f.elem_kind ~= K.U8 then
    local get = atom_getter(f.elem_kind, f.elem_size)
    return function(c, k) return get_list(c[k], f.count, get) end
  elseif f.kind == K.ARRAY then
    return atom_getter(K.ARRAY, f.count)
  end
  return atom_getter(f.kind, f.size)
end

-- ===================================================================
-- Message structs
-- ===================================================================

local function field_decl(f, view)
  local q, name = view and "const " or "", view and f.member or f.name
  if f.kind == K.STRING then return fmt("%s%s %s", q, string_type(f.count, view), name) end
  if f.kind == K.VEC then return fmt("%s%s %s", q, vec_type(f, view), name) end
  if f.kind == K.ARRAY then return elem_decl(f.elem_kind, f.elem_size, name, f.count, view) end
  if f.kind == K.U256 then return fmt("%s%s %s", q, view and "myc_u256v" or "myc_u256", name) end
  if f.kind == K.I256 then return fmt("%s%s %s", q, view and "myc_i256v" or "myc_i256", name) end
  return fmt("%s%s %s", q, CTYPE[f.kind], name)
end

local function struct_decl(cname, fields, view)
  local decls = {}
  for i, f in ipairs(fields) do decls[i] = "  " .. field_decl(f, view) .. ";\n" end
  return fmt("struct __attribute__((packed)) %s {\n%s};", cname, concat(decls))
end

-- Unknown names are typos: fail loudly instead of returning nil.  The
-- reserved name _myc_type (field names cannot start with _myc_) answers
-- the message type, so emit can tell what a struct is without a lookup.
-- Metatypes are per Lua state and per layout: _myc_type is the first
-- Type declared with this layout, maybe of a set freed since, so users
-- map it to their own set by tag and digest before touching its C side.
local function writable_mt(T)
  local function nofield(_, k)
    error(fmt("%s has no field '%s'", T.name, tostring(k)), 2)
  end
  return {
    __index = function(obj, k)
      if k == "_myc_type" then return T end
      nofield(obj, k)
    end,
    __newindex = nofield,
  }
end

-- Views store fields under reserved names (_myc_<i>), so every access by
-- the real name goes through __index and every write through __newindex,
-- which can then name the type and the field.
local function read_only(T, member)
  return function(_, k)
    if member[k] then
      error(fmt("%s.%s is read-only: a received message cannot be changed "
        .. "(make a writable copy: ctx:new(\"%s\", msg.data) to emit, or "
        .. "ctx.contracts:type(\"%s\"):new(msg.data))", T.name, k, T.name, T.name), 2)
    end
    error(fmt("%s has no field '%s'", T.name, tostring(k)), 2)
  end
end

local function view_mt(T)
  local member = {}
  for _, f in ipairs(T.fields) do member[f.name] = f.member end
  return {
    __index = function(v, k)
      local m = member[k]
      if m == nil then
        if k == "_myc_type" then return T end
        error(fmt("%s has no field '%s'", T.name, tostring(k)), 2)
      end
      return v[m]
    end,
    __newindex = read_only(T, member),
  }
end

-- ===================================================================
-- Messages made with ctx:new: checked handles
-- ===================================================================
-- ctx:new returns a handle: a pointer to the payload in the engine
-- buffer, but typed as a pointer to an incomplete struct (T.hptr), so
-- that every field access goes through the metamethods below, which
-- check that the message is still this service's before touching it.
-- ffi.cast and ffi.copy see the payload address, as with a plain
-- pointer.  Being a pointer, a handle is an immutable value the JIT
-- keeps in a register: the usual new-fill-emit allocates no Lua object,
-- and nothing has to track one (a tracked object is never sunk).
--
-- Live messages are known by address, in tables of this Lua state that
-- are never freed: live[i].a holds the address whose bits 8..17 are i
-- (buffers are at least 256 bytes apart) and live[i].own the support
-- that holds it (one entry: one index computed per access); 'extra' the
-- rare address whose index was taken.  A handle whose address is in neither was
-- emitted, or made in an activation that is over: it raises, and never
-- reads memory the engine has taken back.  (A handle kept after its
-- emit whose buffer the engine has since given to another ctx:new of
-- the same service, not yet emitted, passes the check: it then reaches
-- that message's memory, never freed memory.)

local MASK = 1023
local live = ffi.new("struct { const void *a; int32_t own; int32_t pad; }[?]", MASK + 1)
local extra = {} -- tonumber(address) -> support number
local uptr = ffi.typeof("uintptr_t")
local band, rshift = bit.band, bit.rshift
local state_service = "?" -- the service of this Lua state, for errors
local handles = {} -- ctype id of a handle -> its type
local views = {} -- ctype id of a view handle (msg.data) -> its type
local supports = 0 -- engine supports made in this state

local function slot_of(a) return band(rshift(a, 8), MASK) end

local function is_live(h)
  local a = ffi.cast(uptr, h)
  return live[slot_of(a)].a == h or extra[tonumber(a)] ~= nil
end

local function stale(T, k, level)
  error(fmt("service '%s': this %s (made with ctx:new) was emitted, or the "
    .. "handler that made it returned: it cannot be used any more (field '%s'). "
    .. "Emit a message in the handler that made it; to keep one, keep a copy: "
    .. "ctx.contracts:type(\"%s\"):new(m)", state_service, T.name,
    tostring(k), T.name), level + 1)
end

local cur_view -- the myc_svc_view of the service of this state
local VOFF = cdefs.HDR_OFFSET + cdefs.FRAME_SIZE

local function is_current(h)
  local v = cur_view
  if v == nil then return false end
  local i = v.cursor
  return i >= 0 and ffi.cast(uptr, h) == ffi.cast(uptr, v.batch[i]) + VOFF
end

local function stale_view(T, k, level)
  error(fmt("service '%s': msg.data (a %s) was used after its handler returned "
    .. "(field '%s'): a received message is valid only during its handler; keep "
    .. "it with msg:copy(), or copy the data: ctx.contracts:type(\"%s\"):new(msg.data)",
    state_service, T.name, tostring(k), T.name), level + 1)
end

-- The payload pointer behind 'obj' when it is a live handle (raising
-- when it is a dead one), else 'obj' itself.
local function unref(obj, level)
  if type(obj) == "cdata" then
    local id = tonumber(ffi.typeof(obj))
    local T = handles[id]
    if T ~= nil then
      if not is_live(obj) then stale(T, "?", level + 1) end
      return ffi.cast(T.ptr, obj)
    end
    T = views[id]
    if T ~= nil then
      if not is_current(obj) then stale_view(T, "?", level + 1) end
      return ffi.cast(T.vptr, obj)
    end
  end
  return obj
end

-- Field access through a handle: checked, then a plain FFI access.
-- A 256-bit value stored whole is copied as 32 raw bytes: the FFI's
-- struct assignment calls memcpy (its inline copy does not take a
-- struct holding an array), a call that also makes the JIT reload what
-- it had loaded before it.
local function handle_mt(T)
  local field, ptr = T.field, T.ptr
  local whole = {} -- 256-bit field name -> the ctype copied raw
  for _, f in ipairs(T.fields) do
    if f.kind == K.U256 then whole[f.name] = U256
    elseif f.kind == K.I256 then whole[f.name] = I256 end
  end
  local istype, copy = ffi.istype, ffi.copy
  return {
    __index = function(h, k)
      if k == "_myc_type" then return T end
      local a = ffi.cast(uptr, h)
      if live[slot_of(a)].a ~= h and extra[tonumber(a)] == nil then stale(T, k, 2) end
      if field[k] == nil then
        error(fmt("%s has no field '%s'", T.name, tostring(k)), 2)
      end
      return ffi.cast(ptr, h)[k]
    end,
    __newindex = function(h, k, v)
      local a = ffi.cast(uptr, h)
      if live[slot_of(a)].a ~= h and extra[tonumber(a)] == nil then stale(T, k, 2) end
      if field[k] == nil then
        error(fmt("%s has no field '%s'", T.name, tostring(k)), 2)
      end
      local wt = whole[k]
      if wt ~= nil and istype(wt, v) then
        copy(ffi.cast(ptr, h)[k], v, 32)
        return
      end
      ffi.cast(ptr, h)[k] = v
    end,
  }
end

-- msg.data of a typed message is a view handle too (T.whptr): a pointer
-- to the payload typed as a pointer to another incomplete struct, whose
-- reads check that it is still the message being handled (the service's
-- myc_svc_view: the payload of batch[cursor]).  Once its handler has
-- returned it raises instead of reading a buffer the engine may have
-- freed.  (A view kept until a later handler whose message happens to
-- be in the same buffer reads that message.)  msg:copy() keeps its
-- buffer and hands out plain views (T.vptr).
local function view_handle_mt(T)
  local member, vptr = {}, T.vptr
  for _, f in ipairs(T.fields) do member[f.name] = f.member end
  return {
    __index = function(h, k)
      local m = member[k]
      if m == nil then
        if k == "_myc_type" then return T end
        error(fmt("%s has no field '%s'", T.name, tostring(k)), 2)
      end
      if not is_current(h) then stale_view(T, k, 2) end
      return ffi.cast(vptr, h)[m]
    end,
    __newindex = read_only(T, member),
  }
end

-- Declares the writable struct and the view of T, once per Lua state.
-- The C names carry the type digest: a reloaded contract with a changed
-- layout gets new names, while an unchanged one reuses its ctypes.
local function declare_struct(T)
  local suffix = T.name .. "_" .. T.digest:sub(1, 12)
  local t, v, h, w = "myc_t_" .. suffix, "myc_v_" .. suffix,
    "myc_h_" .. suffix, "myc_w_" .. suffix
  T.cname, T.vname = t, v
  if not defined("struct " .. t) then
    ffi.cdef(struct_decl(t, T.fields, false))
    ffi.cdef(struct_decl(v, T.fields, true))
    -- Incomplete: no field of a handle is reached but through its checks.
    ffi.cdef(fmt("struct %s; struct %s;", h, w))
    ffi.metatype("struct " .. t, writable_mt(T))
    ffi.metatype("struct " .. v, view_mt(T))
    T.ptr = ffi.typeof("struct " .. t .. " *")
    T.vptr = ffi.typeof("struct " .. v .. " *")
    ffi.metatype("struct " .. h, handle_mt(T))
    ffi.metatype("struct " .. w, view_handle_mt(T))
  end
  T.ctype = ffi.typeof("struct " .. t)
  T.ptr = ffi.typeof("struct " .. t .. " *")
  T.vptr = ffi.typeof("struct " .. v .. " *")
  T.hptr = ffi.typeof("struct " .. h .. " *")
  T.whptr = ffi.typeof("struct " .. w .. " *")
  handles[tonumber(T.hptr)] = handles[tonumber(T.hptr)] or T
  views[tonumber(T.whptr)] = views[tonumber(T.whptr)] or T
  assert(ffi.sizeof(T.ctype) == T.size, "FFI layout differs from the contract")
end

-- ===================================================================
-- Message types
-- ===================================================================

local Type = {}
Type.__index = Type

local function field_info(c_field, i)
  local f = {
    name = ffi.string(c_field.name), type = ffi.string(c_field.type),
    kind = c_field.kind, elem_kind = c_field.elem_kind,
    elem_size = c_field.elem_size, count = c_field.count,
    offset = c_field.offset, size = c_field.size,
    optional = c_field.optional ~= 0, member = "_myc_" .. i,
  }
  f.set, f.get = field_setter(f), field_getter(f)
  return f
end

-- The check of T's rules compiled once into a Lua function over the
-- payload pointer, which the JIT inlines into the emit: true when the
-- message passes, false when myc_contract_validate() would refuse it.
-- It mirrors check_field() in engine/src/contract/contract.c, from the
-- facts myc_ffi_contract_check() gives per checked field.  nil when a
-- rule has no Lua form (a min or max on a 256-bit integer) or there are
-- too many to inline: every emit asks C then.  A failure is always
-- handed to myc_contract_validate(), which names type, field and rule.
local CHECK = { OPTIONAL = 1, NOT_ZERO = 2, NOT_EMPTY = 4, MIN = 8, MAX = 16,
  MIN_LENGTH = 32, MAX_LENGTH = 64 }
local MAX_CHECKED = 64
-- The pointer the check reads a field of kind k through (the chunk's
-- arguments are those of kinds 1 to 10, in order).
local CHECK_PTR = { [K.U8] = "u8", [K.U16] = "u16", [K.U32] = "u32",
  [K.U64] = "u64", [K.I8] = "i8", [K.I16] = "i16", [K.I32] = "i32",
  [K.I64] = "i64", [K.F32] = "f32", [K.F64] = "f64" }

-- "These bytes are not all zero", a word at a time.
local function nonzero_test(off, size)
  local terms = {}
  for _, w in ipairs { { 8, "u64" }, { 4, "u32" }, { 2, "u16" }, { 1, "u8" } } do
    while size >= w[1] do
      terms[#terms + 1] = fmt("cast(%s, p + %d)[0] ~= 0", w[2], off)
      off, size = off + w[1], size - w[1]
    end
  end
  return "(" .. concat(terms, " or ") .. ")"
end

-- A bound's text as a Lua literal of the field's kind: 64-bit integers
-- compare as int64/uint64 cdata, the others as numbers.
local function bound_literal(kind, text)
  if kind == K.U64 then return text .. "ULL" end
  if kind ~= K.I64 then return text end
  if text == "-9223372036854775808" then return "(-9223372036854775807LL - 1)" end
  return "(" .. text .. "LL)"
end

-- The Lua statements of one checked field (c: the facts), or nil.
local function field_check(c, lo, hi)
  local off, size, kind, count, flags = c[0], c[1], c[2], c[3], c[4]
  local function has(f) return bit.band(flags, f) ~= 0 end
  local optional = has(CHECK.OPTIONAL)
  local out = {}
  local function fail_if(cond) out[#out + 1] = "if " .. cond .. " then return false end" end
  if kind == K.STRING or kind == K.VEC then
    out[1] = fmt("local n = cast(u16, p + %d)[0]", off)
    fail_if(fmt("n > %d", count))
    if optional then out[#out + 1] = "if n ~= 0 then" end
    if has(CHECK.NOT_EMPTY) then fail_if("n == 0") end
    if has(CHECK.MIN_LENGTH) then fail_if(fmt("n < %d", c[5])) end
    if has(CHECK.MAX_LENGTH) then fail_if(fmt("n > %d", c[6])) end
    if optional then out[#out + 1] = "end" end
  elseif kind == K.BOOL then
    fail_if(fmt("p[%d] > 1", off))
  elseif CHECK_PTR[kind] == nil or not (has(CHECK.MIN) or has(CHECK.MAX)
      or kind == K.F32 or kind == K.F64) then
    -- Byte arrays, 256-bit integers, and integers without bounds: only
    -- not_zero, as bytes (a bound on 256 bits stays with C).
    if has(CHECK.MIN) or has(CHECK.MAX) then return nil end
    if has(CHECK.NOT_ZERO) and not optional then
      fail_if("not " .. nonzero_test(off, size))
    end
  else
    local zero = (kind == K.U64 and "0ULL") or (kind == K.I64 and "0LL") or "0"
    out[1] = fmt("local v = cast(%s, p + %d)[0]", CHECK_PTR[kind], off)
    if optional then
      out[#out + 1] = fmt("if v ~= %s then", zero)
    elseif has(CHECK.NOT_ZERO) then
      fail_if(fmt("v == %s", zero))
    end
    -- Written so that a float NaN fails both bounds, as in C.
    if has(CHECK.MIN) then fail_if(fmt("not (v >= %s)", bound_literal(kind, lo))) end
    if has(CHECK.MAX) then fail_if(fmt("not (v <= %s)", bound_literal(kind, hi))) end
    if optional then out[#out + 1] = "end" end
  end
  if #out == 0 then return "" end
  return "  do\n    " .. concat(out, "\n    ") .. "\n  end\n"
end

local function compile_check(T)
  local c = ffi.new("uint32_t[7]")
  local lo, hi = ffi.new("const char *[1]"), ffi.new("const char *[1]")
  local src = { "local cast, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64 = ...\n",
    "return function(p)\n  p = cast(u8, p)\n" }
  local i = 0
  while C.myc_ffi_contract_check(T.c, i, c, lo, hi) == 0 do
    if i == MAX_CHECKED then return nil end
    local one = field_check(c, lo[0] ~= nil and ffi.string(lo[0]),
      hi[0] ~= nil and ffi.string(hi[0]))
    if one == nil then return nil end
    src[#src + 1] = one
    i = i + 1
  end
  src[#src + 1] = "  return true\nend\n"
  local chunk = assert(loadstring(concat(src), "=" .. T.name .. " check"))
  local ptrs = {}
  for k = K.U8, K.F64 do ptrs[k] = ffi.typeof("const " .. CTYPE[k] .. " *") end
  return chunk(ffi.cast, unpack(ptrs))
end

local function new_type(set, ct)
  local T = setmetatable({
    set = set, c = ct,
    name = ffi.string(C.myc_contract_type_name(ct)),
    tag = C.myc_contract_type_tag(ct),
    size = tonumber(C.myc_contract_type_size(ct)),
    padded = bit.band(tonumber(C.myc_contract_type_size(ct)) + 7, -8),
    digest = ffi.string(C.myc_contract_type_digest(ct)),
    fields = {}, field = {},
  }, Type)
  local domain = C.myc_contract_type_domain(ct)
  T.domain = domain ~= nil and ffi.string(domain) or nil
  for i = 0, tonumber(C.myc_contract_field_count(ct)) - 1 do
    local f = field_info(C.myc_contract_field_at(ct, i), i)
    T.fields[i + 1], T.field[f.name] = f, f
  end
  declare_struct(T)
  T.passes = compile_check(T)
  return T
end

-- A writable struct over the payload memory at 'ptr' (T.size bytes that
-- the caller keeps alive): what ctx:new hands out in an engine buffer.
function Type:cast(ptr)
  return ffi.cast(self.ptr, ptr)
end

local cu8p = ffi.typeof("const uint8_t *")

-- A read-only view over the payload at 'ptr': what msg.data is.
function Type:view(ptr)
  return ffi.cast(self.vptr, ptr)
end

-- A zeroed struct owned by Lua (garbage collected), filled from 'init' (a
-- table, or a message of this type to copy: a received msg.data).
function Type:new(init)
  local obj = ffi.new(self.ctype)
  if init ~= nil then self:fill(obj, init, 2) end
  return obj
end

-- Sets the fields named in table 'values' (Lua values converted by field
-- type, see docs/CONTRACTS.md).  Raises naming type and field (after
-- 'prefix', if given) on an unknown field or a value that does not fit;
-- fields before it are set.
function Type:fill(obj, values, level, prefix)
  level, prefix = (level or 1) + 1, prefix or ""
  obj, values = unref(obj, level), unref(values, level)
  if type(values) == "cdata" and (ffi.istype(self.vptr, values)
      or ffi.istype(self.ptr, values) or ffi.istype(self.ctype, values)) then
    -- A message of this type (a read-only view, a struct or a pointer to
    -- one): its bytes, which is how a received message is made writable.
    ffi.copy(obj, ffi.cast(cu8p, values), self.size)
    return obj
  end
  if type(values) ~= "table" then
    error(fmt("%s%s: the initial values must be a table, or a %s message to copy; got %s",
      prefix, self.name, self.name, type(values) == "cdata"
        and tostring(ffi.typeof(values)) or type(values)), level)
  end
  for k, v in pairs(values) do
    local f = self.field[k]
    if f == nil then
      local near = type(k) == "string" and nearest(k, self.field)
      error(fmt("%s%s has no field '%s'%s", prefix, self.name, tostring(k),
        near and fmt(" (did you mean '%s'?)", near) or ""), level)
    end
    local ok, why = f.set(obj, k, v)
    if not ok then
      error(fmt("%s%s.%s (%s): %s", prefix, self.name, k, f.type, why), level)
    end
  end
  return obj
end

-- All fields as Lua values: numbers, booleans, strings; 64-bit integers
-- above 2^53 and 256-bit integers as decimal strings; [u8; 20] as
-- addresses (M.address_to_hex), other byte arrays as 0x-hex; lists for
-- arrays and Vecs.
function Type:totable(obj)
  obj = unref(obj, 2)
  local view, out = ffi.istype(self.vptr, obj), {}
  for _, f in ipairs(self.fields) do
    out[f.name] = f.get(obj, view and f.member or f.name)
  end
  return out
end

-- The payload bytes of 'obj' (a copy).
function Type:bytes(obj)
  obj = unref(obj, 2)
  return ffi.string(ffi.cast("const uint8_t *", obj), self.size)
end

-- Checks the contract's validation rules: true, or nil, "Type.field: rule".
function Type:validate(obj)
  obj = unref(obj, 2)
  local err = ffi.new("char[256]")
  local rc = C.myc_contract_validate(self.c, ffi.cast("const void *", obj),
    self.size, err, 256)
  if rc == 0 then return true end
  return nil, ffi.string(err), rc
end

-- ===================================================================
-- Contract sets
-- ===================================================================

local Set = {}
Set.__index = Set

-- The type named 'key' (string) or tagged 'key' (number), or nil.
function Set:type(key)
  if type(key) == "number" then return self.by_tag[key] end
  return self.by_name[key]
end

local function diagnostics(cs)
  local list, texts = {}, {}
  for i = 0, tonumber(C.myc_contract_error_count(cs)) - 1 do
    local e = { text = ffi.string(C.myc_contract_error(cs, i)),
      kind = ffi.string(C.myc_contract_error_kind(cs, i)),
      line = C.myc_contract_error_line(cs, i) }
    list[#list + 1], texts[#texts + 1] = e, e.text
  end
  return list, concat(texts, "\n")
end

local function new_set(cs)
  local set = setmetatable({ cs = cs, types = {}, by_name = {}, by_tag = {},
    digest = ffi.string(C.myc_contract_digest(cs)),
    schema_id = C.myc_contract_schema_id(cs),
    version = C.myc_contract_schema_version(cs),
    min_compatible = C.myc_contract_min_compatible(cs) }, Set)
  for i = 0, tonumber(C.myc_contract_type_count(cs)) - 1 do
    local T = new_type(set, C.myc_contract_type_at(cs, i))
    set.types[i + 1], set.by_name[T.name], set.by_tag[T.tag] = T, T, T
  end
  return set
end

-- ===================================================================
-- Engine support: ctx:new, typed emit, msg.data
-- ===================================================================

local function type_field(obj) return obj._myc_type end

-- What the service host plugs into ctx and msg, one per service state:
--   new(name, init, level) -> handle of a struct in an engine buffer (ctx:new)
--   emit(tid, value, topic, level) -> rc  (ctx:emit, a publisher)
--   typed(buf, ptr, len, kept) -> read-only view (msg.data of a typed
--     frame): checked against the message being handled, or for a
--     msg:copy() ('kept'), which holds the buffer, a plain view
--   type_name(tag) -> name                 (msg.type)
--   flush()                                (at the start of every activation)
-- opts: svc (the service's myc_service*), view (its myc_svc_view*: which
-- message is being handled), service (its name, for errors),
-- validate (false skips the rules on emit: the hot-path switch).
-- 'level' arguments place errors, as in ctx.lua: the caller's caller is 2.
--
-- Ownership.  ctx:new takes an engine buffer (one reference), records
-- its payload address as live (above) and returns a handle to it.
-- Emitting hands the reference to the engine and forgets the address;
-- at the start of the next activation, whatever this service still holds
-- was neither emitted nor can be (its handler returned): its buffer goes
-- back to the engine and its handle is dead.  No Lua object is tracked,
-- so the usual new-fill-emit allocates none.
function Set:engine_support(opts)
  local svc, service = opts.svc, opts.service or "?"
  local validate = opts.validate ~= false
  local set, by_name, by_tag = self, self.by_name, self.by_tag
  local E = lib()
  -- In upvalues, each a constant of compiled code: a direct call (read
  -- from E on each call, a load and an indirect one).
  local ffi_emit, emit_buf, buf_new, buf_release, contract_validate =
    E.myc_ffi_emit, E.myc_ffi_emit_buf, E.myc_ffi_buf_new, E.myc_ffi_buf_release,
    E.myc_contract_validate
  local OFF = cdefs.HDR_OFFSET + cdefs.FRAME_SIZE
  local u8p, voidp = ffi.typeof("uint8_t *"), ffi.typeof("const void *")
  local errbuf = ffi.new("char[256]")
  local prefix = fmt("service '%s': ctx:new: ", service)
  -- Messages this support holds.  A cdata, not an upvalue: the JIT may
  -- take a store to an upvalue of another closure for one to the emit
  -- path's upvalues, and load those again after it.
  local held = ffi.new("int32_t[1]")
  local S = { set = self }
  supports = supports + 1
  local me = supports -- this support's number in live[].own and extra
  state_service = service
  if opts.view ~= nil then cur_view = ffi.cast("myc_svc_view *", opts.view) end

  local function fail(level, f, ...)
    error(fmt("service '%s': " .. f, service, ...), level + 1)
  end

  local function unknown(name, level)
    if type(name) ~= "string" then
      fail(level + 1, "ctx:new: the type name must be a string, got %s", type(name))
    end
    local near = nearest(name, by_name)
    fail(level + 1, "ctx:new: unknown message type '%s'%s", name,
      near and fmt(" (did you mean '%s'?)", near) or "")
  end

  local bufp = ffi.typeof("myc_buf *")
  local function release(a)
    buf_release(svc, ffi.cast(bufp, a - OFF))
  end

  -- ctx:new of each type: a closure whose sizes and ctypes are upvalues
  -- that never change, which the JIT compiles as constants (immediates,
  -- nothing loaded from T, no conversion per message).
  --
  -- Its inline path does what myc__emit_buf_new (runtime/emit.c) does
  -- when a recycled first-class buffer fits (refs 1, not shared, flags
  -- and payload length set, payload and padding zeroed), without the
  -- call; otherwise ctx:new goes to C, which takes the other cases and
  -- keeps the view's small_room current.  Only on the service's worker
  -- (the pool is that thread's), which is where its handlers run.
  -- Without a view (a state outside the engine), or one without a
  -- worker's pool, small_room stays 0.  The free list and its count do
  -- not move (runtime/service.h): read once, they are constants of the
  -- compiled code, one load less each per message.
  -- (Each local assigned once: an upvalue never assigned again is a
  -- constant of the compiled code.)
  local given = opts.view ~= nil and ffi.cast("myc_svc_view *", opts.view)
  local view = given and given.small_free ~= nil and given or ffi.new("myc_svc_view")
  local small_free = view.small_free
  -- Counted as int32 (it stays below the pool's max_free): uint32
  -- arithmetic would go through doubles in the JIT.
  local small_nfree = ffi.cast("int32_t *", view.small_nfree)
  local fill = ffi.fill
  local function maker(T)
    local name, size, padded, hptr, tptr = T.name, T.size, T.padded, T.hptr, T.ptr
    return function(init, level)
      local b
      -- small_room is an int32: compared as integers, not doubles.
      if padded <= view.small_room then
        b = small_free[0]
        if b ~= nil then
          small_free[0] = b.next
          small_nfree[0] = small_nfree[0] - 1
          b.refs, b.shared = 1, 0
          b.hdr.flags, b.hdr.payload_len = 0, size
          fill(ffi.cast(u8p, b) + OFF, padded)
        end
      end
      if b == nil then
        b = buf_new(svc, size)
        if b == nil then fail(level + 1, "ctx:new: out of memory for a %s", name) end
      end
      local p = ffi.cast(u8p, b) + OFF
      local a = ffi.cast(uptr, p)
      held[0] = held[0] + 1
      -- The slot is not kept in a local: the JIT would keep it for the
      -- exits that follow (a store per message).
      if live[slot_of(a)].a == nil then
        live[slot_of(a)].a, live[slot_of(a)].own = p, me
      else
        extra[tonumber(a)] = me
      end
      if init ~= nil then T:fill(ffi.cast(tptr, p), init, level + 1, prefix) end
      return ffi.cast(hptr, p)
    end
  end
  local makers = {} -- type name -> its ctx:new
  for _, T in ipairs(self.types) do makers[T.name] = maker(T) end

  function S.new(name, init, level)
    level = level or 1
    local make = makers[name]
    if make == nil then unknown(name, level + 1) end
    local m = make(init, level + 1)
    return m
  end

  -- Forgets live address 'a' (of 'h'): false if it was not live.
  local function disown(a, h)
    local i = slot_of(a)
    if live[i].a == h then
      live[i].a = nil
    elseif extra[tonumber(a)] ~= nil then
      extra[tonumber(a)] = nil
    else
      return false
    end
    held[0] = held[0] - 1
    return true
  end

  local function check(T, obj, topic, level)
    if not validate then return end
    local passes = T.passes
    if passes ~= nil and passes(obj) then return end
    if contract_validate(T.c, obj, T.size, errbuf, 256) ~= 0 then
      fail(level + 1, "emit to '%s': %s", topic, ffi.string(errbuf))
    end
  end

  -- What emit does with a cdata, by ctype id (tonumber(ffi.typeof(x))
  -- compiles to a constant): hand over the buffer of a handle from
  -- ctx:new, or copy a read-only view (msg.data), a Lua-owned struct
  -- (T:new) or a pointer to one.  Types of another set with the same
  -- digest share these ctypes, and are ours.
  local HANDOVER, COPY, VIEW = 1, 2, 3
  local how, type_of = {}, {}
  for _, T in ipairs(self.types) do
    for id, h in pairs { [tonumber(T.hptr)] = HANDOVER, [tonumber(T.ptr)] = COPY,
                         [tonumber(T.whptr)] = VIEW,
                         [tonumber(T.vptr)] = COPY, [tonumber(T.ctype)] = COPY } do
      how[id], type_of[id] = h, T
    end
  end

  local function not_message(obj, topic, level)
    local ok, T = pcall(type_field, obj)
    if ok and getmetatable(T) == Type then
      fail(level + 1, "emit to '%s': %s is not a type of this engine's contracts",
        topic, T.name)
    end
    fail(level + 1, "emit to '%s': this %s is not a message (make one with ctx:new)",
      topic, tostring(ffi.typeof(obj)))
  end

  function S.emit(tid, obj, topic, level)
    local id = tonumber(ffi.typeof(obj))
    local h = how[id]
    if h == HANDOVER then
      local T, a = type_of[id], ffi.cast(uptr, obj)
      if live[slot_of(a)].a ~= obj and extra[tonumber(a)] == nil then
        fail(level + 1, "emit to '%s': this %s was emitted already, or the "
          .. "handler that made it returned (a message from ctx:new is handed "
          .. "over to the engine once, in the handler that made it; make a new "
          .. "one)", topic, T.name)
      end
      check(T, ffi.cast(T.ptr, obj), topic, level + 1)
      disown(a, obj)
      -- From a local, not a tail call to C: a root trace started here
      -- (an emit from interpreted code) could not return into its caller
      -- after one ("leaving loop in root trace"), and stayed interpreted.
      local rc = emit_buf(svc, tid, ffi.cast(bufp, a - OFF), 3, T.tag)
      return rc
    elseif h == VIEW then
      local T = type_of[id]
      if not is_current(obj) then stale_view(T, "?", level + 1) end
      obj = ffi.cast(T.vptr, obj)
      check(T, obj, topic, level + 1)
      return ffi_emit(svc, tid, 3, T.tag, ffi.cast(voidp, obj), T.size)
    elseif h == COPY then
      local T = type_of[id]
      check(T, obj, topic, level + 1)
      return ffi_emit(svc, tid, 3, T.tag, ffi.cast(voidp, obj), T.size)
    end
    not_message(obj, topic, level + 1)
  end

  function S.flush()
    if held[0] == 0 then return end
    -- next() in a while loop, not pairs(): this also runs as a finaliser,
    -- where Debian 12's LuaJIT can spin for ever at the end of a compiled
    -- pairs() loop (docs/CHANGES.md, the FFI table's lookup).
    local k, who = next(extra)
    while k ~= nil do
      if who == me then
        extra[k] = nil
        release(ffi.cast(uptr, k))
        held[0] = held[0] - 1
      end
      k, who = next(extra, k)
    end
    for i = 0, MASK do
      if held[0] == 0 then break end
      local e = live[i]
      if e.a ~= nil and e.own == me then
        local a = ffi.cast(uptr, e.a)
        e.a = nil
        release(a)
        held[0] = held[0] - 1
      end
    end
    held[0] = 0
  end

  -- lua_close runs every finaliser but knows nothing of the slots.
  S.sentinel = ffi.gc(ffi.new("char[1]"), S.flush)

  function S.typed(buf, ptr, len, kept)
    local T = by_tag[buf.hdr.type]
    if T ~= nil and len == T.size then
      -- Without the service's view nothing can tell which message is
      -- current: plain views then, as for a copy.
      return ffi.cast((kept or cur_view == nil) and T.vptr or T.whptr, ptr)
    end
    return ffi.string(ptr, len) -- unknown tag or wrong size: never viewed
  end

  function S.type_name(tag)
    local T = by_tag[tag]
    return T and T.name or ("type:" .. tostring(tag))
  end

  return S
end

-- Wraps the result of a C load: a set, or nil, message, code, diagnostics.
local function wrap(out, rc)
  local cs = out[0]
  if cs == nil then
    return nil, "contracts: " .. ffi.string(C.myc_strerror(rc)),
      cdefs.err_name(rc), {}
  end
  cs = ffi.gc(cs, C.myc_contract_free)
  if rc ~= 0 then
    local list, text = diagnostics(cs)
    return nil, text, "ECONTRACT", list
  end
  return new_set(cs)
end

-- A set over a myc_contract_set* the engine owns (and keeps alive for as
-- long as this Lua state runs); no finaliser.
function M.wrap(ptr)
  lib(); declare_support()
  return new_set(ffi.cast("myc_contract_set *", ptr))
end

-- Loads a contracts file.  Returns a set, or nil, message (every error,
-- one per line, each "file:line: where: what"), "ECONTRACT", and the list
-- of diagnostics {text, kind, line}.
function M.load(path)
  lib(); declare_support()
  local out = ffi.new("myc_contract_set *[1]")
  return wrap(out, C.myc_contract_load(out, path, nil, nil))
end

-- As load, from YAML text; 'name' stands for the file name in messages.
function M.load_string(text, name)
  lib(); declare_support()
  local out = ffi.new("myc_contract_set *[1]")
  return wrap(out, C.myc_contract_load_string(out, name or "contracts", text, #text, nil, nil))
end

return M
