-- keccak.lua -- Keccak-256 as Ethereum uses it (original Keccak padding
-- 0x01, not the 0x06 of FIPS-202 SHA3-256), over 64-bit FFI lanes.
--
-- Rate 136 bytes, capacity 512 bits, 24 rounds of Keccak-f[1600]. The
-- state is module-local scratch; that is safe because a digest never
-- yields, so two digests in one Lua state cannot interleave.
local ffi = require "ffi"
local bit = require "bit"

local bxor, band, bnot, rol = bit.bxor, bit.band, bit.bnot, bit.rol
local rshift = bit.rshift
local new, cast, copy, fill, fstring = ffi.new, ffi.cast, ffi.copy, ffi.fill,
  ffi.string
local byte, format, concat, type, error = string.byte, string.format,
  table.concat, type, error

assert(ffi.abi("le"), "bandit.keccak: lanes are read little-endian")

local M = {}

local RATE = 136

local RC = new("uint64_t[24]", {
  0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL,
  0x8000000080008000ULL, 0x000000000000808BULL, 0x0000000080000001ULL,
  0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008AULL,
  0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
  0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL,
  0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
  0x000000000000800AULL, 0x800000008000000AULL, 0x8000000080008081ULL,
  0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
})

-- rho rotation offsets and pi destinations, indexed by lane x + 5y.
local ROT = new("int32_t[25]", {
  0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39,
  41, 45, 15, 21, 8, 18, 2, 61, 56, 14,
})
local PI = new("int32_t[25]")
for x = 0, 4 do
  for y = 0, 4 do PI[x + 5 * y] = y + 5 * ((2 * x + 3 * y) % 5) end
end

-- The permutation is generated once at load, each round fully unrolled
-- over lanes held in locals. The lanes are loaded from A and stored back
-- in every round, not carried from round to round in locals: 25 carried
-- 64-bit locals are more loop variables than LuaJIT's register
-- allocator can join ("NYI: register coalescing too complex"), the
-- trace aborted every time and each digest ran interpreted, boxing a
-- cdata per operation (150-330 us a digest, against about 4 once
-- compiled). The generator is the readable form of theta, rho+pi, chi
-- and iota.
local function permutation_source()
  local L, lanes, loads = {}, {}, {}
  for i = 0, 24 do
    lanes[#lanes + 1] = "a" .. i
    loads[#loads + 1] = "A[" .. i .. "]"
  end
  local function emit(fmt, ...) L[#L + 1] = format(fmt, ...) end
  emit("local bxor, band, bnot, rol = ...")
  emit("return function(A, RC)")
  emit("for round = 0, 23 do")
  emit("local %s = %s", concat(lanes, ", "), concat(loads, ", "))
  for x = 0, 4 do                                   -- theta: column parities
    emit("local c%d = bxor(a%d, a%d, a%d, a%d, a%d)",
      x, x, x + 5, x + 10, x + 15, x + 20)
  end
  for x = 0, 4 do
    emit("local d%d = bxor(c%d, rol(c%d, 1))", x, (x + 4) % 5, (x + 1) % 5)
  end
  for i = 0, 24 do                                  -- rho and pi
    emit("local b%d = rol(bxor(a%d, d%d), %d)", PI[i], i, i % 5, ROT[i])
  end
  for y = 0, 20, 5 do                               -- chi
    for x = 0, 4 do
      emit("a%d = bxor(b%d, band(bnot(b%d), b%d))",
        x + y, x + y, (x + 1) % 5 + y, (x + 2) % 5 + y)
    end
  end
  emit("a0 = bxor(a0, RC[round])")                  -- iota
  emit("%s = %s", concat(loads, ", "), concat(lanes, ", "))
  emit("end")
  emit("end")
  return concat(L, "\n")
end
local permute_state = assert(loadstring(permutation_source(), "=keccak-f"))(
  bxor, band, bnot, rol)

local A = new("uint64_t[25]")
local block = new("uint8_t[?]", RATE)

local lanes = cast("const uint64_t *", block)
local function absorb()
  for i = 0, RATE / 8 - 1 do A[i] = bxor(A[i], lanes[i]) end
  permute_state(A, RC)
end

--- Keccak-256 of string s, as 32 raw bytes.
function M.digest(s)
  if type(s) ~= "string" then
    error("bandit.keccak: digest expects a string, got " .. type(s), 2)
  end
  fill(A, 200)
  local n, pos = #s, 0
  while n - pos >= RATE do
    copy(block, cast("const uint8_t *", s) + pos, RATE)
    absorb()
    pos = pos + RATE
  end
  fill(block, RATE)
  copy(block, cast("const uint8_t *", s) + pos, n - pos)
  block[n - pos] = bxor(block[n - pos], 0x01)
  block[RATE - 1] = bxor(block[RATE - 1], 0x80)
  absorb()
  return fstring(A, 32)
end

local HEXB = {}
for i = 0, 255 do HEXB[i] = format("%02x", i) end

local function tohex(raw)
  local t = {}
  for i = 1, #raw do t[i] = HEXB[byte(raw, i)] end
  return concat(t)
end
M.tohex = tohex

--- Keccak-256 of s as 64 lowercase hex digits (no 0x).
function M.hex(s) return tohex(M.digest(s)) end

--- The nibble i (0-based, most significant first) of a raw digest.
function M.nibble(raw, i)
  local b = byte(raw, rshift(i, 1) + 1)
  return i % 2 == 0 and rshift(b, 4) or band(b, 15)
end

return M
