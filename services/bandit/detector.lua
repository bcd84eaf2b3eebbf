-- detector.lua -- pool state with reorg history, and the arbitrage rule.
--
-- Invariant: a pool's current state is its newest accepted, non-retracted
-- state-carrying log (v2_sync, v3_swap); older ones stay in its history so
-- a retraction restores exactly what would be there had the log never
-- arrived. Each state change or retraction of one re-evaluates that
-- pool's pair with exact integer cross-multiplication: no division, no
-- rounding, until a signal is rendered.
local bigint = require "mycelium.bigint"
local pricing = require "bandit.pricing"
local abi = require "bandit.abi"

local setmetatable, error, type = setmetatable, error, type
local remove = table.remove
local move = table.move or function(t, a, b, dst)
  for k = 0, b - a do t[dst + k] = t[a + k] end
  return t
end

local M = {}
local Detector = {}
Detector.__index = Detector

local W1, W2, W3 = abi.WORD(1), abi.WORD(2), abi.WORD(3)
local PPM = pricing.PPM

--- A detector over `registry`. opts.reorg_window: how many of the newest
--- accepted logs stay retractable (nil keeps all; the engine bounds it).
function M.new(registry, opts)
  if type(registry) ~= "table" or not registry.venues then
    error("bandit.detector.new: registry expected", 2)
  end
  opts = opts or {}
  return setmetatable({
    reg = registry, slots = {}, index = {}, live = {},
    window = opts.reorg_window, fifo = {}, head = 1, tail = 0,
    evaluations = 0,
    -- Scratch for evaluate(): candidate and best ratio as X / Y.
    x = bigint.new(), y = bigint.new(), bx = bigint.new(), by = bigint.new(),
    l = bigint.new(), r = bigint.new(),
  }, Detector)
end

--- Pool state --------------------------------------------------------------

local function slot_of(self, pool)
  local s = self.slots[pool]
  if not s then
    s = { hist = {}, cur = nil, live = false, price = nil,
          num = bigint.new(), den = bigint.new(),
          a = bigint.new(), b = bigint.new() }
    self.slots[pool] = s
  end
  return s
end

-- Raw price num/den in token base units: V2 reserve1/reserve0,
-- V3 sqrtPriceX96^2 / 2^192. Returns false when the price is null.
local function load_raw(s, ev)
  local d = ev.data
  if ev.kind == "v2_sync" then
    s.den:set_hex_range(d, W1, W1 + 63)
    s.num:set_hex_range(d, W2, W2 + 63)
    return not s.num:is_zero() and not s.den:is_zero()
  end
  s.a:set_hex_range(d, W3, W3 + 63)
  s.num:mul(s.a, s.a)
  s.den:set(pricing.Q192)
  return not s.a:is_zero()
end

-- Make ev the pool's current state (nil: unknown) and cache what every
-- evaluation needs: a = num (1 - f) and b = num (1 + f), both scaled by
-- 10^6 and without the 10^dec factors, which cancel within a pair.
local function load(s, pool, ev)
  s.cur, s.live, s.price = ev, false, nil
  if not ev or not load_raw(s, ev) then return end
  if not pool.dec0 or not pool.dec1 then return end
  s.a:mul_si(s.num, PPM - pool.fee_ppm)
  s.b:mul_si(s.num, PPM + pool.fee_ppm)
  s.price = pricing.human(s.num, s.den, pool.dec0, pool.dec1)
  s.live = true
end

--- The current state of a pool: its log (or nil) and price (or nil).
function Detector:state(pool)
  local s = self.slots[pool]
  if not s then return nil, nil end
  return s.cur, s.price
end

--- The arbitrage rule -------------------------------------------------------

-- Is (buy b, sell s) before (bb, bs) in the tie order?
local function before(b, s, bb, bs)
  if b.key ~= bb.key then return b.key < bb.key end
  return s.key < bs.key
end

local function render(self, sp, bp, ss, sb)
  local g, h = self.l, self.r
  g:mul(ss.num, sb.den)
  h:mul(ss.den, sb.num)
  return {
    buy = bp, sell = sp, buy_price = sb.price, sell_price = ss.price,
    gross_bps = pricing.bps(g, h), net_bps = pricing.bps(self.bx, self.by),
  }
end

-- Best (sell, buy) over live venues by net + 1 = a_s den_b / (den_s b_b).
local function best_pair(self, live, n)
  local slots = self.slots
  local bs, bb
  for i = 1, n do
    local sp, ss = live[i], slots[live[i]]
    for j = 1, n do
      local bp, sb = live[j], slots[live[j]]
      if i ~= j then
        self.x:mul(ss.a, sb.den)
        self.y:mul(ss.den, sb.b)
        local c = 1
        if bs then
          self.l:mul(self.x, self.by)
          self.r:mul(self.bx, self.y)
          c = self.l:cmp(self.r)
        end
        if c > 0 or (c == 0 and before(bp, sp, bb, bs)) then
          bs, bb = sp, bp
          self.x, self.bx = self.bx, self.x
          self.y, self.by = self.by, self.y
        end
      end
    end
  end
  return bs, bb
end

--- Evaluate the pair of `pool`: the signal table, or nil when no ordered
--- venue pair has sell_price (1 - f_s) > buy_price (1 + f_b).
function Detector:evaluate(pool)
  self.evaluations = self.evaluations + 1
  local venues, live, n = self.reg:venues(pool.pair_key), self.live, 0
  for k = 1, #venues do
    local s = self.slots[venues[k]]
    if s and s.live then n = n + 1 live[n] = venues[k] end
  end
  if n < 2 then return nil end
  local sp, bp = best_pair(self, live, n)
  if self.bx:cmp(self.by) <= 0 then return nil end
  return render(self, sp, bp, self.slots[sp], self.slots[bp])
end

--- Accepted logs and retractions ---------------------------------------------

local function key(bh, th, li) return bh .. th .. li end

-- Drop the oldest retractable log once the window is full: it can no
-- longer be retracted, so history before it can never be restored.
local function expire(self)
  local old = self.fifo[self.head]
  self.fifo[self.head], self.head = nil, self.head + 1
  old.expired = true
  if self.index[old.key] == old then self.index[old.key] = old.dup end
  if old.retracted or old.kind == "v2_swap" then return end
  local h = self.slots[old.pool].hist
  for p = 1, #h do
    if h[p] == old then
      local n = #h
      move(h, p, n, 1)
      for k = n - p + 2, n do h[k] = nil end
      return
    end
  end
end

local function remember(self, ev)
  ev.key = key(ev.blockHash, ev.txHash, ev.logIndex)
  -- A log delivered twice stacks; each removal retracts the newest copy.
  ev.dup = self.index[ev.key]
  self.index[ev.key] = ev
  if not self.window then return end
  self.tail = self.tail + 1
  self.fifo[self.tail] = ev
  if self.tail - self.head + 1 > self.window then expire(self) end
end

--- Apply an accepted, decoded log (from abi.decode). Sets ev.price to the
--- pool's price right after it (nil when unknown or null). Returns
--- evaluated (boolean) and the signal, if any.
function Detector:accept(ev)
  remember(self, ev)
  local pool = ev.pool
  local s = slot_of(self, pool)
  if ev.kind ~= "v2_swap" then
    s.hist[#s.hist + 1] = ev
    load(s, pool, ev)
  end
  ev.price = s.price
  if ev.kind == "v2_swap" then return false, nil end
  return true, self:evaluate(pool)
end

--- The accepted, non-retracted log with this identity, or nil.
function Detector:find(bh, th, li)
  local k = key(bh, th, li)
  local ev = self.index[k]
  while ev and (ev.retracted or ev.expired) do ev = ev.dup end
  self.index[k] = ev
  return ev
end

--- Retract a log returned by find(). Returns evaluated and the signal.
function Detector:retract(ev)
  if ev.retracted then error("bandit.detector: log already retracted", 2) end
  ev.retracted = true
  if self.index[ev.key] == ev then self.index[ev.key] = ev.dup end
  if ev.kind == "v2_swap" then return false, nil end
  local s = self.slots[ev.pool]
  local h = s.hist
  for p = #h, 1, -1 do
    if h[p] == ev then remove(h, p) break end
  end
  if s.cur == ev then load(s, ev.pool, h[#h]) end
  return true, self:evaluate(ev.pool)
end

return M
