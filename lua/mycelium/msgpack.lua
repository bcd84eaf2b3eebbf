-- mycelium.msgpack -- MessagePack for table payloads on the hot path,
-- written for the JIT: encode into a reused FFI buffer, decode straight
-- from a frame's payload.  Same rules and bytes as the C codec in
-- engine/src/lua/msgpack.c (config opts, mycelium.testing):
--   nil, booleans; numbers that are integers within int64 as the smallest
--   integer form, others as float64; strings as str; a table whose keys
--   are exactly 1..n as an array, any other table as a map (an empty
--   table is an empty map).  Decoding: arrays become sequences, maps
--   tables, str and bin strings; nil and extension values are dropped.
local ffi = require "ffi"
local bit = require "bit"

local band, bor, rshift = bit.band, bit.bor, bit.rshift
local floor = math.floor
local type, pairs, error, loadstring = type, pairs, error, loadstring
local format, concat = string.format, table.concat
local ffi_copy, ffi_string = ffi.copy, ffi.string
local new_table = require "table.new"

local MAX_DEPTH = 64

if not pcall(function() return ffi.C.memmove end) then
  ffi.cdef "void *memmove(void *dst, const void *src, size_t n);"
end

local M = {}

-- ===================================================================
-- Encoding
-- ===================================================================

local cap = 4096
local buf = ffi.new("uint8_t[?]", cap)
local pos = 0
local d2b = ffi.new("union { double d; uint8_t b[8]; }")
local failure -- why the last encode failed (a string), for the slow path

local function grow(need)
  local ncap = cap
  while ncap < pos + need do ncap = ncap * 2 end
  local nbuf = ffi.new("uint8_t[?]", ncap)
  ffi_copy(nbuf, buf, pos)
  buf, cap = nbuf, ncap
end

local function put_be(v, n) -- v >= 0 and < 2^32, 'n' (2 or 4) bytes, big-endian
  if n == 2 then
    buf[pos], buf[pos + 1] = rshift(v, 8), band(v, 0xff)
  else
    buf[pos], buf[pos + 1] = rshift(v, 24), band(rshift(v, 16), 0xff)
    buf[pos + 2], buf[pos + 3] = band(rshift(v, 8), 0xff), band(v, 0xff)
  end
  pos = pos + n
end

local function put_u64(tag, v) -- 0 <= v < 2^64, an integral double
  local hi = floor(v / 4294967296)
  buf[pos] = tag
  pos = pos + 1
  put_be(hi, 4)
  put_be(v - hi * 4294967296, 4)
end

local function put_number(v)
  if pos + 9 > cap then grow(9) end
  if v == floor(v) and v >= -9223372036854775808 and v < 9223372036854775808 then
    if v >= 0 then
      if v < 128 then
        buf[pos] = v
        pos = pos + 1
      elseif v < 256 then
        buf[pos], buf[pos + 1] = 0xcc, v
        pos = pos + 2
      elseif v < 65536 then
        buf[pos] = 0xcd
        pos = pos + 1
        put_be(v, 2)
      elseif v < 4294967296 then
        buf[pos] = 0xce
        pos = pos + 1
        put_be(v, 4)
      else
        put_u64(0xcf, v)
      end
    elseif v >= -32 then
      buf[pos] = 256 + v
      pos = pos + 1
    elseif v >= -128 then
      buf[pos], buf[pos + 1] = 0xd0, 256 + v
      pos = pos + 2
    elseif v >= -32768 then
      buf[pos] = 0xd1
      pos = pos + 1
      put_be(65536 + v, 2)
    elseif v >= -2147483648 then
      buf[pos] = 0xd2
      pos = pos + 1
      put_be(4294967296 + v, 4)
    else
      -- two's complement of a 64-bit negative: 2^64 + v, split exactly
      local hi = floor(v / 4294967296)
      buf[pos] = 0xd3
      pos = pos + 1
      put_be(hi + 4294967296, 4)
      put_be(v - hi * 4294967296, 4)
    end
  else
    d2b.d = v
    buf[pos] = 0xcb
    for i = 0, 7 do buf[pos + 1 + i] = d2b.b[7 - i] end
    pos = pos + 9
  end
end

local function put_header(n, fix, fixmax, t16) -- str, array or map header
  if pos + 5 > cap then grow(5) end
  if n <= fixmax then
    buf[pos] = bor(fix, n)
    pos = pos + 1
  elseif t16 == 0xda and n < 256 then -- str8
    buf[pos], buf[pos + 1] = 0xd9, n
    pos = pos + 2
  elseif n < 65536 then
    buf[pos] = t16
    pos = pos + 1
    put_be(n, 2)
  else
    buf[pos] = t16 + 1
    pos = pos + 1
    put_be(n, 4)
  end
end

local function put_string(s)
  local n = #s
  put_header(n, 0xa0, 31, 0xda)
  if pos + n > cap then grow(n) end
  ffi_copy(buf + pos, s, n)
  pos = pos + n
end

-- Returns true, or false with 'failure' set.
local put_value

local function put_table(t, depth)
  if depth >= MAX_DEPTH then
    failure = "nested too deeply (a table that contains itself?)"
    return false
  end
  -- A sequence: #t > 0 and no key other than the numbers 1..#t.
  local n, count, seq = #t, 0, true
  if n > 0 then
    for k in pairs(t) do
      count = count + 1
      if type(k) ~= "number" then seq = false end
    end
    if seq and count == n then
      put_header(n, 0x90, 15, 0xdc)
      for i = 1, n do
        if not put_value(t[i], depth + 1) then return false end
      end
      return true
    end
  end
  -- A map.  Counting its keys would take a pass of its own: write a
  -- fixmap header and move the entries if more than 15 follow.
  if pos + 1 > cap then grow(1) end
  local head = pos
  pos = pos + 1
  count = 0
  for k, v in pairs(t) do
    count = count + 1
    local tk = type(k)
    if tk == "string" then
      put_string(k)
    elseif tk == "number" then
      put_number(k)
    else
      failure = "table keys must be strings or numbers"
      return false
    end
    if not put_value(v, depth + 1) then return false end
  end
  if count <= 15 then
    buf[head] = 0x80 + count
  else
    local body, extra = head + 1, count < 65536 and 2 or 4
    if pos + extra > cap then grow(extra) end
    ffi.C.memmove(buf + body + extra, buf + body, pos - body)
    local stop = pos + extra
    pos = head
    put_header(count, 0x80, 15, 0xde)
    pos = stop
  end
  return true
end

function put_value(v, depth)
  local tv = type(v)
  if tv == "number" then
    put_number(v)
  elseif tv == "string" then
    put_string(v)
  elseif tv == "table" then
    return put_table(v, depth)
  elseif tv == "boolean" then
    if pos + 1 > cap then grow(1) end
    buf[pos] = v and 0xc3 or 0xc2
    pos = pos + 1
  elseif v == nil then
    if pos + 1 > cap then grow(1) end
    buf[pos] = 0xc0
    pos = pos + 1
  else
    failure = "unsupported type " .. (tv == "cdata" and "cdata" or tv)
    return false
  end
  return true
end

-- The path of the first value of 't' that cannot be encoded, as the C
-- codec names it ("a.b", "list[2]"), or nil.  Only runs after a failure.
local function bad_path(t, prefix, depth)
  if depth >= MAX_DEPTH then return prefix end
  for k, v in pairs(t) do
    local tk = type(k)
    local p
    if tk == "number" then
      p = prefix .. format("[%.14g]", k)
    elseif tk == "string" then
      p = prefix == "" and k or prefix .. "." .. k
    else
      return prefix
    end
    local tv = type(v)
    if tv == "table" then
      local inner = bad_path(v, p, depth + 1)
      if inner then return inner end
    elseif tv ~= "number" and tv ~= "string" and tv ~= "boolean" then
      return p
    end
  end
end

-- Encodes 'v' into the shared buffer.  Returns a pointer and a length,
-- valid until the next encode; or nil and "cannot encode field 'x':
-- why".  The buffer is per Lua state: a service runs on one thread.
function M.encode(v)
  pos = 0
  if put_value(v, 0) then return buf, pos end
  local path = type(v) == "table" and bad_path(v, "", 0)
  if path and path ~= "" then
    return nil, format("cannot encode field '%s': %s", path, failure)
  end
  return nil, format("cannot encode value: %s", failure)
end

-- Encodes 'v' into a Lua string; raises on failure.
function M.pack(v)
  local p, n = M.encode(v)
  if p == nil then error(n, 2) end
  return ffi_string(p, n)
end

-- ===================================================================
-- Decoding
-- ===================================================================

local u8p = ffi.typeof("const uint8_t *")
local b2d = ffi.new("union { double d; float f[2]; uint8_t b[8]; }")

-- What is being decoded.  A read past the end sets 'bad' and yields
-- zeros: decoding then runs out quickly and reports the payload as
-- malformed, without a protected call on the hot path.
local src, len, at, bad

local function need(n)
  if at + n > len then
    bad, at = true, len
    return false
  end
  return true
end

local function be(n) -- unsigned big-endian of 'n' (1, 2 or 4) bytes
  if not need(n) then return 0 end
  local p, v = src + at, nil
  if n == 1 then
    v = p[0]
  elseif n == 2 then
    v = p[0] * 256 + p[1]
  else
    v = ((p[0] * 256 + p[1]) * 256 + p[2]) * 256 + p[3]
  end
  at = at + n
  return v
end

local function get_string(n)
  if not need(n) then return "" end
  local s = ffi_string(src + at, n)
  at = at + n
  return s
end

local get_value

-- Every element takes a byte at least: a count beyond what is left is
-- malformed (and must not size a table).
local function get_array(n, depth)
  if n > len - at then bad, at = true, len return nil end
  local t = new_table(n, 0)
  for i = 1, n do t[i] = get_value(depth + 1) end
  return t
end

-- Shapes.  Filling a new table key by key costs more than the rest of
-- decoding, so maps of up to 16 string keys are recognised by their key
-- sequence (a trie of interned keys), and a sequence seen often enough
-- gets a generated constructor: one table template copy and n stores.
-- Both are bounded: beyond them, maps are built key by key.
local SHAPE_KEYS, SHAPE_NODES, SHAPE_CTORS, SHAPE_AFTER = 16, 4096, 256, 8
local CTOR, SEEN = 1, 2 -- trie node slots (keys in the trie are strings)
local shape_root, nodes, ctors = { [SEEN] = 0 }, 0, 0
local scratch = {} -- per depth: keys and values of the map being read

local function make_ctor(keys, n)
  local src = { "local v = ... return {" }
  for i = 1, n do src[#src + 1] = format("[%q] = v[%d],", keys[i], i) end
  src[#src + 1] = "}"
  return loadstring(concat(src, "\n"), "=mycelium.msgpack shape")
end

local function get_map(n, depth)
  if 2 * n > len - at then bad, at = true, len return nil end
  local s = scratch[depth]
  if s == nil then
    s = { k = {}, v = {} }
    scratch[depth] = s
  end
  local keys, vals, node = s.k, s.v, n <= SHAPE_KEYS and shape_root or nil
  for i = 1, n do
    local k = get_value(depth + 1)
    keys[i], vals[i] = k, get_value(depth + 1)
    if node ~= nil then
      local child = type(k) == "string" and node[k] or nil
      if child == nil and type(k) == "string" and nodes < SHAPE_NODES then
        child, nodes = { [SEEN] = 0 }, nodes + 1
        node[k] = child
      end
      node = child
    end
  end
  local ctor = node and node[CTOR]
  if ctor then return ctor(vals) end
  local t = new_table(0, n)
  for i = 1, n do
    local k = keys[i]
    if k ~= nil and k == k then t[k] = vals[i] end
  end
  if node ~= nil and not bad then
    local seen = node[SEEN] + 1
    node[SEEN] = seen
    if seen == SHAPE_AFTER and ctors < SHAPE_CTORS then
      node[CTOR], ctors = make_ctor(keys, n), ctors + 1
    end
  end
  return t
end

local EXT = { [0xd4] = 2, [0xd5] = 3, [0xd6] = 5, [0xd7] = 9, [0xd8] = 17 }

function get_value(depth)
  if depth > MAX_DEPTH then error("MessagePack value nested too deeply", 0) end
  if not need(1) then return nil end
  local c = src[at]
  at = at + 1
  if c < 0x80 then return c end
  if c >= 0xe0 then return c - 256 end
  if c < 0x90 then return get_map(c - 0x80, depth) end
  if c < 0xa0 then return get_array(c - 0x90, depth) end
  if c < 0xc0 then return get_string(c - 0xa0) end
  if c == 0xc0 then return nil end
  if c == 0xc2 then return false end
  if c == 0xc3 then return true end
  if c == 0xcc then return be(1) end
  if c == 0xcd then return be(2) end
  if c == 0xce then return be(4) end
  if c == 0xcf then
    local hi = be(4)
    return hi * 4294967296 + be(4)
  end
  if c == 0xd0 then local v = be(1) return v >= 0x80 and v - 0x100 or v end
  if c == 0xd1 then local v = be(2) return v >= 0x8000 and v - 0x10000 or v end
  if c == 0xd2 then
    local v = be(4)
    return v >= 0x80000000 and v - 0x100000000 or v
  end
  if c == 0xd3 then
    local hi = be(4)
    local lo = be(4)
    if hi >= 0x80000000 then hi = hi - 0x100000000 end
    return hi * 4294967296 + lo
  end
  if c == 0xca then
    if not need(4) then return 0 end
    for i = 0, 3 do b2d.b[i] = src[at + 3 - i] end
    at = at + 4
    return b2d.f[0]
  end
  if c == 0xcb then
    if not need(8) then return 0 end
    for i = 0, 7 do b2d.b[i] = src[at + 7 - i] end
    at = at + 8
    return b2d.d
  end
  if c == 0xd9 or c == 0xc4 then return get_string(be(1)) end
  if c == 0xda or c == 0xc5 then return get_string(be(2)) end
  if c == 0xdb or c == 0xc6 then return get_string(be(4)) end
  if c == 0xdc then return get_array(be(2), depth) end
  if c == 0xdd then return get_array(be(4), depth) end
  if c == 0xde then return get_map(be(2), depth) end
  if c == 0xdf then return get_map(be(4), depth) end
  -- extension types are skipped (read as nil); 0xc1 is never used
  local n = EXT[c]
  if c == 0xc7 then n = be(1) + 1 elseif c == 0xc8 then n = be(2) + 1
  elseif c == 0xc9 then n = be(4) + 1 end
  if n == nil then bad = true return nil end
  if need(n) then at = at + n end
  return nil
end

-- Decodes the 'n' bytes at 'p' (a pointer, or a Lua string).  Returns the
-- value, or nil, "malformed MessagePack payload".  Raises only for
-- nesting deeper than 64.
function M.decode(p, n)
  if type(p) == "string" then n = n or #p end
  src, len, at, bad = ffi.cast(u8p, p), n, 0, false
  local v = get_value(0)
  src = nil
  if bad or at ~= len then return nil, "malformed MessagePack payload" end
  return v
end

return M
