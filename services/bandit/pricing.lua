-- pricing.lua -- exact rational prices and their decimal renderings.
--
-- A price is a pair of bigints (num, den), never a double. Rendering
-- rounds the exact rational once, half to even: 12 significant digits in
-- positional notation for prices, a fixed 4 decimals for basis points.
-- Functions never modify their arguments; module scratch bigints are
-- reused so rendering allocates only the resulting Lua string.
local bigint = require "bandit.bigint"

local sub, rep = string.sub, string.rep
local error, floor, log = error, math.floor, math.log

local LOG10_2 = log(2) / log(10)

local M = {}

local pow10 = bigint.pow10
-- GMP's comparison called directly, and signs read from the size field:
-- bigint's small methods, hot from the loops of several callers, are
-- where LuaJIT starts root traces that fail (see bigint.gmp).
local cmp = bigint.gmp.__gmpz_cmp
local q, r, t1, t2 = bigint.new(), bigint.new(), bigint.new(), bigint.new()
local hp, hd, bp = bigint.new(), bigint.new(), bigint.new()
local ONE = bigint.new(1)

--- 2^192 = (2^96)^2, the denominator of a squared sqrtPriceX96.
M.Q192 = bigint.pow2(192)
M.PPM = 1000000

-- Given q, r = floor(a / b) for b > 0, turn q into round_half_even(a / b).
local function round_quotient(b)
  r:mul_2exp(r, 1)
  local c = cmp(r, b)
  if c > 0 or (c == 0 and q:is_odd()) then q:add(q, ONE) end
  return q
end

-- q, r = floor(p * 10^k / d), for any integer k; returns the divisor used.
local function scaled_floor(p, d, k)
  if k >= 0 then
    t1:mul(p, pow10(k))
    q:fdiv_qr(r, t1, d)
    return d
  end
  t2:mul(d, pow10(-k))
  q:fdiv_qr(r, p, t2)
  return t2
end

-- Walk e until floor(p 10^(digits-1-e) / d) has `digits` digits. Kept
-- out of format_sig: a loop there, even one that never runs, splits
-- every trace through it.
local function settle(p, d, digits, e, lo, hi)
  local div
  repeat
    e = e + (cmp(q, hi) >= 0 and 1 or -1)
    div = scaled_floor(p, d, digits - 1 - e)
  until cmp(q, hi) < 0 and cmp(q, lo) >= 0
  return e, div
end

--- p/d (both > 0) to `digits` significant digits, positional notation,
--- trailing zeros kept: 0.000322580645161, 67941.8837104, 1.00070000000.
function M.format_sig(p, d, digits)
  if p.size <= 0 or d.size <= 0 then
    error("pricing.format_sig: needs p > 0 and d > 0", 2)
  end
  digits = digits or 12
  local lo, hi = pow10(digits - 1), pow10(digits)
  -- e = floor(log10(p/d)), found on the truncated quotient (rounding first
  -- could carry into a digit that is not there). From bit lengths,
  -- log10(p/d) lies within 0.302 of (bp - bq) log10 2, so e is this lower
  -- estimate or the next integer; settle() only absorbs float slack.
  local e = floor((p:bits() - d:bits() - 1) * LOG10_2)
  local div = scaled_floor(p, d, digits - 1 - e)
  if cmp(q, hi) >= 0 then
    e = e + 1
    div = scaled_floor(p, d, digits - 1 - e)
  end
  if cmp(q, hi) >= 0 or cmp(q, lo) < 0 then
    e, div = settle(p, d, digits, e, lo, hi)
  end
  round_quotient(div)
  if cmp(q, hi) == 0 then q:set(lo) e = e + 1 end   -- 9.99..95 -> 10.0..0
  local s = q:tostring()
  if e >= digits - 1 then return s .. rep("0", e - digits + 1) end
  if e >= 0 then return sub(s, 1, e + 1) .. "." .. sub(s, e + 2) end
  return "0." .. rep("0", -e - 1) .. s
end

--- p/d (d > 0, p any sign) with exactly `places` decimals.
function M.format_fixed(p, d, places)
  if d.size <= 0 then error("pricing.format_fixed: needs d > 0", 2) end
  local n = round_quotient(scaled_floor(p, d, places))
  local neg = n.size < 0
  if neg then n:neg(n) end
  local s = n:tostring()
  if #s <= places then s = rep("0", places - #s + 1) .. s end
  s = sub(s, 1, #s - places) .. "." .. sub(s, #s - places + 1)
  return neg and "-" .. s or s
end

--- Human price of token0 in token1 from a raw ratio num/den (token units):
--- num * 10^dec0 / (den * 10^dec1), 12 significant digits.
function M.human(num, den, dec0, dec1)
  hp:mul(num, pow10(dec0))
  hd:mul(den, pow10(dec1))
  return M.format_sig(hp, hd, 12)
end

--- Basis points of x/y - 1 (y > 0), exactly 4 decimals: 10^4 (x - y) / y.
function M.bps(x, y)
  bp:sub(x, y)
  bp:mul(bp, pow10(4))
  return M.format_fixed(bp, y, 4)
end

return M
