-- quantile.lua -- order statistics of a list of numbers without sorting
-- it: the detector's latency summary at the end of a stream.
--
-- Invariant: M.quantiles returns exactly what indexing the sorted list
-- would (`sorted[floor(q * (n - 1)) + 1]`): selection only moves values.
-- table.sort compares through a C callback per comparison (lua_lessthan)
-- that LuaJIT cannot compile; a selection over a double array is linear
-- and compiles, which matters for rings of hundreds of thousands of
-- samples (docs/PERFORMANCE.md).
local ffi = require "ffi"

local floor, unpack, error = math.floor, unpack, error

local M = {}

local doubles = ffi.typeof("double[?]")

-- Rearranges a[lo..hi] (0-based, inclusive) so that a[k] holds the value
-- a sorted a would hold there, everything before it is <= and everything
-- after it >= (Hoare's selection, middle-of-three pivot).
local function select(a, lo, hi, k)
  while hi > lo do
    local mid = lo + floor((hi - lo) / 2)
    -- Order a[lo], a[mid], a[hi]: the pivot is their median, and the
    -- two ends stop both scans below.
    if a[mid] < a[lo] then a[mid], a[lo] = a[lo], a[mid] end
    if a[hi] < a[lo] then a[hi], a[lo] = a[lo], a[hi] end
    if a[hi] < a[mid] then a[hi], a[mid] = a[mid], a[hi] end
    local pivot = a[mid]
    local i, j = lo, hi
    while i <= j do
      while a[i] < pivot do i = i + 1 end
      while pivot < a[j] do j = j - 1 end
      if i <= j then
        a[i], a[j] = a[j], a[i]
        i, j = i + 1, j - 1
      end
    end
    -- Now a[lo..j] <= pivot <= a[i..hi], and a[j+1..i-1] == pivot.
    if k <= j then hi = j
    elseif k >= i then lo = i
    else return end
  end
end

--- The values at quantiles q1 <= q2 <= ... of the n values buf[0] ..
--- buf[n - 1] (a `double[?]`, or anything indexed from 0), as
--- `sorted[floor(q * (n - 1)) + 1]`; nil for each when n is 0. `buf` is
--- left as it was (the selection works on a copy).
function M.quantiles(buf, n, ...)
  local qs = { ... }
  local out = {}
  if n == 0 then return unpack(out, 1, #qs) end
  local a = doubles(n)
  for i = 0, n - 1 do a[i] = buf[i] end
  local lo = 0
  for i = 1, #qs do
    local k = floor(qs[i] * (n - 1))
    if k < lo then
      error("bandit.quantile.quantiles: quantiles must be in ascending "
            .. "order", 2)
    end
    -- What is left of a[k] is <= a[k] already: later, larger quantiles
    -- need only look right of the last one.
    select(a, lo, n - 1, k)
    out[i] = a[k]
    lo = k
  end
  return unpack(out, 1, #qs)
end

--- A ring of the newest `cap` numbers, kept in a double array that grows
--- by doubling as it first fills (so a small stream takes little memory,
--- and the collector never walks it, as it would a Lua table's slots).
--- ring.n counts every number put; M.quantiles(ring.buf, M.count(ring))
--- summarises what it holds. `first` (optional): room made now for that
--- many, so that the first ones are put without growing.
function M.ring(cap, first)
  local size = first and (first < cap and first or cap) or 0
  return { n = 0, cap = cap, size = size, buf = size > 0 and doubles(size) }
end

--- Adds v to the ring, over its oldest number once it is full.
function M.put(ring, v)
  local n = ring.n
  local i = n % ring.cap
  if i >= ring.size then
    local size = ring.size * 2
    if size < 1024 then size = 1024 end
    if size > ring.cap then size = ring.cap end
    local buf = doubles(size)
    if ring.buf then ffi.copy(buf, ring.buf, ring.size * 8) end
    ring.buf, ring.size = buf, size
  end
  ring.buf[i] = v
  ring.n = n + 1
end

--- How many numbers the ring holds.
function M.count(ring)
  return ring.n < ring.cap and ring.n or ring.cap
end

return M
