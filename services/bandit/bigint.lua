-- bigint.lua -- exact arbitrary-precision integers backed by GMP's mpz_t.
--
-- A bigint is a mutable FFI struct owning GMP limbs; its finaliser clears
-- them. Hot paths use the in-place methods (z:mul(a, b) sets z = a * b) on
-- preallocated values so they allocate nothing; the operators (+ - * ..)
-- allocate a fresh result and are for code where clarity beats speed.
local ffi = require "ffi"

local cast, new, copy, istype, fstring =
  ffi.cast, ffi.new, ffi.copy, ffi.istype, ffi.string
local byte, find = string.byte, string.find
local floor, type, tostring, tonumber, error, ipairs, pcall =
  math.floor, type, tostring, tonumber, error, ipairs, pcall
local bor, arshift, rshift = bit.bor, bit.arshift, bit.rshift

ffi.cdef [[
typedef struct myc_mpz { int alloc; int size; void *d; } myc_mpz;
void __gmpz_init(myc_mpz *);
void __gmpz_clear(myc_mpz *);
void __gmpz_set(myc_mpz *, const myc_mpz *);
void __gmpz_set_si(myc_mpz *, long);
int __gmpz_set_str(myc_mpz *, const char *, int);
char *__gmpz_get_str(char *, int, const myc_mpz *);
double __gmpz_get_d(const myc_mpz *);
long __gmpz_get_si(const myc_mpz *);
int __gmpz_fits_slong_p(const myc_mpz *);
void __gmpz_add(myc_mpz *, const myc_mpz *, const myc_mpz *);
void __gmpz_sub(myc_mpz *, const myc_mpz *, const myc_mpz *);
void __gmpz_mul(myc_mpz *, const myc_mpz *, const myc_mpz *);
void __gmpz_mul_si(myc_mpz *, const myc_mpz *, long);
void __gmpz_mul_2exp(myc_mpz *, const myc_mpz *, unsigned long);
void __gmpz_neg(myc_mpz *, const myc_mpz *);
void __gmpz_abs(myc_mpz *, const myc_mpz *);
void __gmpz_tdiv_qr(myc_mpz *, myc_mpz *, const myc_mpz *, const myc_mpz *);
void __gmpz_fdiv_qr(myc_mpz *, myc_mpz *, const myc_mpz *, const myc_mpz *);
void __gmpz_ui_pow_ui(myc_mpz *, unsigned long, unsigned long);
int __gmpz_cmp(const myc_mpz *, const myc_mpz *);
int __gmpz_cmp_si(const myc_mpz *, long);
int __gmpz_cmpabs(const myc_mpz *, const myc_mpz *);
int __gmpz_tstbit(const myc_mpz *, unsigned long);
size_t __gmpz_sizeinbase(const myc_mpz *, int);
uint64_t *__gmpz_limbs_write(myc_mpz *, long);
void __gmpz_import(myc_mpz *, size_t, int, size_t, int, size_t, const void *);
void *__gmpz_export(void *, size_t *, int, size_t, int, size_t,
                    const myc_mpz *);
void __gmpz_limbs_finish(myc_mpz *, long);
]]

-- Debian ships libgmp.so only in libgmp-dev; the runtime package has .so.10.
local function load_gmp()
  for _, name in ipairs { "gmp", "libgmp.so.10" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then return lib end
  end
  error("bandit.bigint: cannot load GMP (install libgmp10)", 2)
end
local G = load_gmp()

-- The hex loader writes 64-bit limbs as pairs of 32-bit halves.
assert(ffi.abi("le") and ffi.sizeof("long") == 8,
  "bandit.bigint: needs a little-endian LP64 target")

local M = {}
local methods = {}
local mpz_t

local u8p, u32p = ffi.typeof("const uint8_t *"), ffi.typeof("uint32_t *")

-- HEXV[c] is the value of hex digit byte c, or -1.
local HEXV = new("int8_t[256]")
for c = 0, 255 do HEXV[c] = -1 end
for c = 48, 57 do HEXV[c] = c - 48 end
for c = 97, 102 do HEXV[c] = c - 87 end
for c = 65, 70 do HEXV[c] = c - 55 end
M.HEXV = HEXV

-- One reusable output buffer, grown on demand; results are copied into
-- Lua strings before anything else can reuse it.
local outbuf, outcap = nil, 0
local function buffer(n)
  if n > outcap then
    outcap = n < 128 and 128 or n * 2
    outbuf = new("char[?]", outcap)
  end
  return outbuf
end

local function alloc()
  local z = new(mpz_t)
  G.__gmpz_init(z)
  return z
end

--- Low-level setters (in place, return the bigint or nil, message) --------

-- Value of the hex digits p[a .. b-1] (at most 8), or -1.
local function hex8(p, a, b)
  local v = 0
  for k = a, b - 1 do
    local d = HEXV[p[k]]
    if d < 0 then return -1 end
    v = v * 16 + d
  end
  return v
end

-- z = the unsigned value of the hex digits s[i..j] (1-based, inclusive),
-- or nil, message if one is not a hex digit. Digits go straight from the
-- string into GMP's limbs: no substring, no C string.
function methods.set_hex_range(z, s, i, j)
  local nd = j - i + 1
  if nd <= 0 then G.__gmpz_set_si(z, 0) return z end
  local nlimbs = floor((nd + 15) / 16)
  local limbs = cast(u32p, G.__gmpz_limbs_write(z, nlimbs))
  local p, first = cast(u8p, s), i - 1
  for k = 0, 2 * nlimbs - 1 do
    local b = j - 8 * k
    local a = b - 8
    if a < first then a = first end
    local v = b > first and hex8(p, a, b) or 0
    if v < 0 then
      G.__gmpz_limbs_finish(z, 0)
      return nil, "invalid hex digit"
    end
    limbs[k] = v
  end
  G.__gmpz_limbs_finish(z, nlimbs)
  return z
end

local digits_buf, digits_cap = nil, 0

-- z = the hex digits s[i..j], which the caller has already validated
-- (GMP would skip white space, not reject it). This is the hot path for
-- ABI words: one memcpy and one GMP call, which keeps LuaJIT traces
-- short, where a Lua digit loop would make them too long to compile.
function methods.load_hex(z, s, i, j)
  local n = j - i + 1
  if n <= 0 then G.__gmpz_set_si(z, 0) return z end
  if n >= digits_cap then
    digits_cap = n < 128 and 128 or 2 * n
    digits_buf = new("char[?]", digits_cap)
  end
  copy(digits_buf, cast(u8p, s) + (i - 1), n)
  digits_buf[n] = 0
  G.__gmpz_set_str(z, digits_buf, 16)
  return z
end

-- z = the 256-bit two's complement word of 64 validated hex digits at
-- s[i], as a signed value.
local TWO256
function methods.load_word_signed(z, s, i)
  methods.load_hex(z, s, i, i + 63)
  if HEXV[byte(s, i)] >= 8 then G.__gmpz_sub(z, z, TWO256) end
  return z
end

-- z = hex string s, with or without 0x; at least one digit.
function methods.set_hex(z, s)
  if type(s) ~= "string" then return nil, "hex: not a string" end
  local i = (find(s, "^0[xX]") and 3) or 1
  if i > #s then return nil, "hex: no digits" end
  return methods.set_hex_range(z, s, i, #s)
end

-- z = decimal string s (optional leading '-'); GMP alone would also accept
-- embedded white space, so the shape is checked first.
function methods.set_dec(z, s)
  if type(s) ~= "string" or not find(s, "^%-?%d+$") then
    return nil, "decimal: not an integer literal"
  end
  G.__gmpz_set_str(z, s, 10)
  return z
end

function methods.set(z, v)
  if istype(mpz_t, v) then
    G.__gmpz_set(z, v)
  elseif type(v) == "number" then
    if v ~= floor(v) or v >= 2^63 or v < -2^63 then
      error("bandit.bigint: " .. tostring(v) .. " is not an int64", 2)
    end
    G.__gmpz_set_si(z, v)
  elseif type(v) == "string" then
    local ok = find(v, "^%-?%d+$") and methods.set_dec(z, v)
      or methods.set_hex(z, v)
    if not ok then
      error("bandit.bigint: bad integer literal '" .. v .. "'", 2)
    end
  else
    error("bandit.bigint: cannot make a bigint from " .. type(v), 2)
  end
  return z
end

--- Fixed-width little-endian bytes (the wire form of U256 / I256) -----------

local countp = new("size_t[1]")
local scratch = nil

-- z = the n bytes at ptr, little-endian; two's complement when signed.
-- GMP's limbs are little-endian 64-bit words here (asserted above), so
-- the bytes are copied into them as they are: mpz_import, which handles
-- any order and word size, took a quarter of the detector's GMP time
-- walking them one at a time.
function methods.set_bytes_le(z, ptr, n, signed)
  if n <= 0 then G.__gmpz_set_si(z, 0) return z end
  local nlimbs = rshift(n + 7, 3)
  local limbs = G.__gmpz_limbs_write(z, nlimbs)
  limbs[nlimbs - 1] = 0 -- the bytes past n in the top limb
  copy(limbs, ptr, n)
  G.__gmpz_limbs_finish(z, nlimbs) -- strips high zero limbs
  if signed and n > 0 and cast(u8p, ptr)[n - 1] >= 128 then
    G.__gmpz_sub(z, z, M.pow2(8 * n))
  end
  return z
end

-- Write z into the n bytes at ptr, little-endian; as two's complement
-- when signed. Returns true, or nil, message when z is out of range for
-- that width (then ptr is untouched).
function methods.to_bytes_le(z, ptr, n, signed)
  local bits = 8 * n
  if signed then
    local lim = M.pow2(bits - 1)
    if G.__gmpz_cmp(z, lim) >= 0 or
       (z.size < 0 and G.__gmpz_cmpabs(z, lim) > 0) then
      return nil, "out of range for a signed " .. bits .. "-bit integer"
    end
  elseif z.size < 0 or tonumber(G.__gmpz_sizeinbase(z, 2)) > bits then
    return nil, "out of range for an unsigned " .. bits .. "-bit integer"
  end
  local v = z
  if z.size < 0 then
    scratch = scratch or alloc()
    v = scratch:add(z, M.pow2(bits))
  end
  ffi.fill(ptr, n)
  G.__gmpz_export(ptr, countp, -1, 1, 0, 0, v)
  return true
end

--- Arithmetic (in place: z = a op b) ---------------------------------------

function methods.add(z, a, b) G.__gmpz_add(z, a, b) return z end
function methods.sub(z, a, b) G.__gmpz_sub(z, a, b) return z end
function methods.mul(z, a, b) G.__gmpz_mul(z, a, b) return z end
function methods.mul_si(z, a, n) G.__gmpz_mul_si(z, a, n) return z end
function methods.mul_2exp(z, a, n) G.__gmpz_mul_2exp(z, a, n) return z end
function methods.neg(z, a) G.__gmpz_neg(z, a) return z end
function methods.abs(z, a) G.__gmpz_abs(z, a) return z end
function methods.pow_ui(z, base, e) G.__gmpz_ui_pow_ui(z, base, e) return z end

-- q, r = n / d truncated towards zero (r has the sign of n).
function methods.tdiv_qr(q, r, n, d)
  if d.size == 0 then error("bandit.bigint: division by zero", 2) end
  G.__gmpz_tdiv_qr(q, r, n, d)
  return q, r
end

-- q, r = n / d rounded towards minus infinity (r has the sign of d).
function methods.fdiv_qr(q, r, n, d)
  if d.size == 0 then error("bandit.bigint: division by zero", 2) end
  G.__gmpz_fdiv_qr(q, r, n, d)
  return q, r
end

--- Queries -----------------------------------------------------------------

-- -1, 0 or 1 for GMP's int c of any sign (|c| < 2^31, so -c cannot
-- overflow), without a branch: a branch here was a side exit in every
-- trace through a comparison. Written out in each method: a shared
-- helper function would be one more place a trace can start, fail and
-- be blacklisted, which then aborts every trace that calls it.
function methods.cmp(a, b)
  local c = G.__gmpz_cmp(a, b)
  return bor(arshift(c, 31), rshift(-c, 31))
end
function methods.cmp_si(a, n)
  local c = G.__gmpz_cmp_si(a, n)
  return bor(arshift(c, 31), rshift(-c, 31))
end
function methods.cmpabs(a, b)
  local c = G.__gmpz_cmpabs(a, b)
  return bor(arshift(c, 31), rshift(-c, 31))
end
function methods.sign(a)
  local c = a.size
  return bor(arshift(c, 31), rshift(-c, 31))
end
function methods.is_zero(a) return a.size == 0 end
function methods.is_odd(a) return G.__gmpz_tstbit(a, 0) == 1 end
function methods.bits(a) return a.size == 0 and 0 or
  tonumber(G.__gmpz_sizeinbase(a, 2)) end
-- Decimal digits of |a|: exact or one too many (GMP's contract).
function methods.digits_upper(a) return tonumber(G.__gmpz_sizeinbase(a, 10)) end

-- Lua number when |a| <= 2^53 (exact), else nil.
function methods.tonumber_exact(a)
  if G.__gmpz_fits_slong_p(a) == 0 then return nil end
  local v = G.__gmpz_get_si(a)
  if v > 9007199254740992LL or v < -9007199254740992LL then return nil end
  return tonumber(v)
end
function methods.tonumber(a) return G.__gmpz_get_d(a) end

local function to_base(a, base)
  local n = tonumber(G.__gmpz_sizeinbase(a, base)) + 2
  local buf = buffer(n)
  G.__gmpz_get_str(buf, base, a)
  return fstring(buf)
end
function methods.tostring(a) return to_base(a, 10) end
function methods.tohex(a) return to_base(a, 16) end
function methods.copy(a) local z = alloc() G.__gmpz_set(z, a) return z end

--- Operators (allocate; for clarity, not for hot paths) --------------------

local function coerce(v)
  if istype(mpz_t, v) then return v end
  return methods.set(alloc(), v)
end

local mt = {
  __index = methods,
  __gc = G.__gmpz_clear,
  __tostring = methods.tostring,
  __add = function(a, b) return methods.add(alloc(), coerce(a), coerce(b)) end,
  __sub = function(a, b) return methods.sub(alloc(), coerce(a), coerce(b)) end,
  __mul = function(a, b) return methods.mul(alloc(), coerce(a), coerce(b)) end,
  __unm = function(a) return methods.neg(alloc(), a) end,
  __eq = function(a, b) return G.__gmpz_cmp(coerce(a), coerce(b)) == 0 end,
  __lt = function(a, b) return G.__gmpz_cmp(coerce(a), coerce(b)) < 0 end,
  __le = function(a, b) return G.__gmpz_cmp(coerce(a), coerce(b)) <= 0 end,
  __len = function(a) return methods.bits(a) end,
}
mpz_t = ffi.metatype("myc_mpz", mt)

--- Constructors -------------------------------------------------------------

-- bigint.new() is zero; new(v) takes an int64-exact number, a decimal or
-- hex literal, or another bigint (copied). Bad input is a programmer error.
function M.new(v)
  local z = alloc()
  -- Not `v ~= nil`: for a bigint v that runs __eq against nil.
  if type(v) ~= "nil" then methods.set(z, v) end
  return z
end

-- Untrusted input: nil, message on failure.
function M.from_hex(s)
  local z = alloc()
  local ok, err = methods.set_hex(z, s)
  if not ok then return nil, err end
  return z
end
function M.from_dec(s)
  local z = alloc()
  local ok, err = methods.set_dec(z, s)
  if not ok then return nil, err end
  return z
end

function M.is(v) return istype(mpz_t, v) end

TWO256 = M.new():mul_2exp(M.new(1), 256)

-- Shared read-only constants: 10^n and 2^n. Callers must not mutate them.
local pow10_cache, pow2_cache = {}, {}
function M.pow10(n)
  local z = pow10_cache[n]
  if not z then z = alloc():pow_ui(10, n) pow10_cache[n] = z end
  return z
end
function M.pow2(n)
  local z = pow2_cache[n]
  if not z then z = alloc():mul_2exp(M.new(1), n) pow2_cache[n] = z end
  return z
end

M.type = mpz_t
-- GMP itself, for the hottest loops: a call of G.__gmpz_mul is a direct
-- call in compiled code, where z:mul() is a Lua function that a trace can
-- start at. Such a small function, hot from many callers, gets root
-- traces that fail where they return into a caller's loop; LuaJIT then
-- blacklists it, and every trace that reaches it afterwards aborts.
M.gmp = G
return M
