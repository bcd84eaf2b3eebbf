-- pricing.lua -- exact rational prices and their decimal renderings.
--
-- A price is a pair of bigints (num, den), never a double. Rendering
-- rounds the exact rational once, half to even: 12 significant digits in
-- positional notation for prices, a fixed 4 decimals for basis points.
-- Functions never modify their arguments; module scratch bigints and one
-- byte buffer are reused, so rendering allocates only the resulting Lua
-- string.
local ffi = require "ffi"
local bigint = require "bandit.bigint"

local copy, fill, fstring = ffi.copy, ffi.fill, ffi.string
local error, floor, log, tonumber = error, math.floor, math.log, tonumber

local LOG10_2 = log(2) / log(10)
local ZERO, POINT, MINUS = 48, 46, 45

local M = {}

local pow10 = bigint.pow10
-- GMP is called directly and signs are read from the size field: a
-- bigint method, hot from the loops of several callers, is where LuaJIT
-- starts root traces that fail and get blacklisted, and then every trace
-- through a rendering aborts (see bigint.gmp). Nothing here builds a Lua
-- string but the result: the digits go from GMP into one buffer, where
-- the point and the zeros are placed around them.
local G = bigint.gmp
local mpz_mul, mpz_fdiv_qr, mpz_cmp, mpz_set, mpz_add, mpz_sub, mpz_neg,
  mpz_mul_2exp, mpz_tstbit, mpz_sizeinbase, mpz_get_str =
  G.__gmpz_mul, G.__gmpz_fdiv_qr, G.__gmpz_cmp, G.__gmpz_set, G.__gmpz_add,
  G.__gmpz_sub, G.__gmpz_neg, G.__gmpz_mul_2exp, G.__gmpz_tstbit,
  G.__gmpz_sizeinbase, G.__gmpz_get_str
local q, r, t = bigint.new(), bigint.new(), bigint.new()
local bp = bigint.new()
local ONE = bigint.new(1)

-- The rendering buffer (out) and GMP's digits (dig), grown on demand: a
-- rendering's length has no small bound (a price of 10^-40 has 40 zeros).
local bytes = ffi.typeof("char[?]")
local out, dig, cap = bytes(256), bytes(256), 256
local function grow(n)
  cap = 2 * n
  out, dig = bytes(cap), bytes(cap)
end

--- 2^192 = (2^96)^2, the denominator of a squared sqrtPriceX96.
M.Q192 = bigint.pow2(192)
M.PPM = 1000000

-- q, r = floor(p 10^k / d), for any integer k; returns the divisor used.
local function scaled_floor(p, d, k)
  if k >= 0 then
    mpz_mul(t, p, pow10(k))
    mpz_fdiv_qr(q, r, t, d)
    return d
  end
  mpz_mul(t, d, pow10(-k))
  mpz_fdiv_qr(q, r, p, t)
  return t
end

-- Given q, r = floor(a / div) for div > 0, turn q into
-- round_half_even(a / div): up when 2r > div, or 2r = div and q is odd.
local function round_half_even(div)
  mpz_mul_2exp(r, r, 1)
  local c = mpz_cmp(r, div)
  if c > 0 or (c == 0 and mpz_tstbit(q, 0) == 1) then mpz_add(q, q, ONE) end
end

-- Walk e until floor(p 10^(shift+digits-1-e) / d) has `digits` digits.
-- Kept out of sig(): a loop there, even one that never runs, splits
-- every trace through it.
local function settle(p, d, shift, digits, e, lo, hi)
  local div
  repeat
    e = e + (mpz_cmp(q, hi) >= 0 and 1 or -1)
    div = scaled_floor(p, d, shift + digits - 1 - e)
  until mpz_cmp(q, hi) < 0 and mpz_cmp(q, lo) >= 0
  return e, div
end

-- p 10^shift / d (p, d > 0) to `digits` significant digits, into out;
-- returns the length. The power of ten is applied inside the one
-- division, never to p or d themselves.
local function sig(p, d, shift, digits)
  local lo, hi = pow10(digits - 1), pow10(digits)
  -- e = floor(log10(p 10^shift / d)), found on the truncated quotient
  -- (rounding first could carry into a digit that is not there). From
  -- bit lengths, log10(p/d) lies within 0.302 of (bp - bq) log10 2, so e
  -- is this lower estimate or the next integer; settle() only absorbs
  -- float slack.
  local e = floor((tonumber(mpz_sizeinbase(p, 2)) -
                   tonumber(mpz_sizeinbase(d, 2)) - 1) * LOG10_2) + shift
  local div = scaled_floor(p, d, shift + digits - 1 - e)
  if mpz_cmp(q, hi) >= 0 then
    e = e + 1
    div = scaled_floor(p, d, shift + digits - 1 - e)
  end
  if mpz_cmp(q, hi) >= 0 or mpz_cmp(q, lo) < 0 then
    e, div = settle(p, d, shift, digits, e, lo, hi)
  end
  round_half_even(div)
  if mpz_cmp(q, hi) == 0 then mpz_set(q, lo) e = e + 1 end -- 9.9..95 -> 10.0..0
  -- q has exactly `digits` digits now.
  if e >= digits - 1 then
    if e + 2 > cap then grow(e + 2) end
    mpz_get_str(out, 10, q)
    fill(out + digits, e - digits + 1, ZERO)
    return e + 1
  end
  if e >= 0 then
    if digits + 2 > cap then grow(digits + 2) end
    mpz_get_str(dig, 10, q)
    copy(out, dig, e + 1)
    out[e + 1] = POINT
    copy(out + e + 2, dig + e + 1, digits - e - 1)
    return digits + 1
  end
  if digits + 2 - e > cap then grow(digits + 2 - e) end
  out[0], out[1] = ZERO, POINT
  fill(out + 2, -e - 1, ZERO)
  mpz_get_str(out + 1 - e, 10, q)
  return digits + 1 - e
end

-- round_half_even(p 10^places / d) (d > 0, p any sign) with exactly
-- `places` decimals, into out; returns the length.
local function fixed(p, d, places)
  round_half_even(scaled_floor(p, d, places))
  local at = 0
  if q.size < 0 then -- after rounding: no negative zero
    mpz_neg(q, q)
    at = 1
  end
  -- GMP's size in base 10 is exact or one too many.
  local n = tonumber(mpz_sizeinbase(q, 10))
  if n + places + 4 > cap then grow(n + places + 4) end
  mpz_get_str(dig, 10, q)
  if dig[n - 1] == 0 then n = n - 1 end
  out[0] = MINUS
  if n <= places then
    out[at], out[at + 1] = ZERO, POINT
    fill(out + at + 2, places - n, ZERO)
    copy(out + at + 2 + places - n, dig, n)
    return at + 2 + places
  end
  copy(out + at, dig, n - places)
  out[at + n - places] = POINT
  copy(out + at + n - places + 1, dig + n - places, places)
  return at + n + 1
end

--- p/d (both > 0) to `digits` significant digits, positional notation,
--- trailing zeros kept: 0.000322580645161, 67941.8837104, 1.00070000000.
function M.format_sig(p, d, digits)
  if p.size <= 0 or d.size <= 0 then
    error("pricing.format_sig: needs p > 0 and d > 0", 2)
  end
  local n = sig(p, d, 0, digits or 12) -- may grow the buffer: first
  return fstring(out, n)
end

--- p/d (d > 0, p any sign) with exactly `places` decimals.
function M.format_fixed(p, d, places)
  if d.size <= 0 then error("pricing.format_fixed: needs d > 0", 2) end
  local n = fixed(p, d, places)
  return fstring(out, n)
end

--- Human price of token0 in token1 from a raw ratio num/den (token units):
--- num * 10^dec0 / (den * 10^dec1), 12 significant digits.
function M.human(num, den, dec0, dec1)
  if num.size <= 0 or den.size <= 0 then
    error("pricing.human: needs num > 0 and den > 0", 2)
  end
  local n = sig(num, den, dec0 - dec1, 12)
  return fstring(out, n)
end

--- Basis points of x/y - 1 (y > 0), exactly 4 decimals: 10^4 (x - y) / y.
function M.bps(x, y)
  mpz_sub(bp, x, y)
  mpz_mul(bp, bp, pow10(4))
  local n = fixed(bp, y, 4)
  return fstring(out, n)
end

return M
