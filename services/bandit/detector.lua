-- detector.lua -- pool state with reorg history, and the arbitrage rule.
--
-- Invariant: a pool's current state is its newest accepted, non-retracted
-- state-carrying log (v2_sync, v3_swap). Those logs form a doubly linked
-- list per pool (ev.older / ev.newer), so a retraction anywhere restores
-- exactly what would be there had the log never arrived, in O(1). Each
-- state change, or retraction of one, re-evaluates that pool's pair with
-- exact integer cross-multiplication: nothing is divided or rounded
-- until a signal is rendered.
local ffi = require "ffi"
local bigint = require "bandit.bigint"
local pricing = require "bandit.pricing"
local abi = require "bandit.abi"

local setmetatable, error, type = setmetatable, error, type
local cast, u8p = ffi.cast, ffi.typeof("const uint8_t *")

local M = {}
local Detector = {}
Detector.__index = Detector

local W1, W2, W3 = abi.WORD(1), abi.WORD(2), abi.WORD(3)
local mpz_mul, mpz_cmp, mpz_get_d = bigint.gmp.__gmpz_mul,
  bigint.gmp.__gmpz_cmp, bigint.gmp.__gmpz_get_d
local PPM = pricing.PPM
-- A venue pair is compared exactly only when its ratio in doubles,
-- fa_s / fb_b, exceeds 1 - 2^-40 (see load() and best_pair()).
local KEEP = 1 - 2 ^ -40

--- A detector over `registry`. opts.reorg_window: how many of the newest
--- accepted logs stay retractable (nil keeps all; an engine bounds it).
--- opts.lazy_prices: render a pool's price only when asked (state(),
--- signals), not at every state change; accept() then leaves ev.price
--- unset (the engine service ships the state bytes instead).
--- opts.recycle (with a reorg_window): logs that left the window and that
--- nothing here refers to any more are handed back by spare() for the
--- caller to refill as its next log, so that in steady state a log
--- allocates no table (the caller must keep no log of its own past the
--- handler that accepted or retracted it); and every signal is the same
--- table, refilled (valid until the next evaluation).
--- det.evaluations counts evaluations, det.compared the venue pairs they
--- compared exactly (with GMP).
function M.new(registry, opts)
  if type(registry) ~= "table" or not registry.venues then
    error("bandit.detector.new: registry expected", 2)
  end
  opts = opts or {}
  local window = opts.reorg_window
  if window ~= nil and (type(window) ~= "number" or window < 1) then
    error("bandit.detector.new: reorg_window must be a positive number", 2)
  end
  return setmetatable({
    reg = registry, slots = {}, by_tx = {}, live = {},
    lazy = opts.lazy_prices == true, window = window, ring = {}, ring_pos = 0,
    evaluations = 0, compared = 0,
    spares = window and opts.recycle and {} or false,
    sig = window and opts.recycle and {} or false,
    nspares = 0,
    -- Scratch for evaluate(): candidate and best ratios as x / y.
    x = bigint.new(), y = bigint.new(), bx = bigint.new(), by = bigint.new(),
    l = bigint.new(), r = bigint.new(),
  }, Detector)
end

--- Pool state --------------------------------------------------------------

local function slot_of(self, pool)
  local s = self.slots[pool]
  if not s then
    s = { pool = pool, cur = nil, live = false, price = nil, fa = 0, fb = 0,
          num = bigint.new(), den = bigint.new(),
          a = bigint.new(), b = bigint.new() }
    self.slots[pool] = s
  end
  return s
end

-- The same from an event of a typed message (services/bandit/wire.lua):
-- ev.state holds two little-endian 32-byte words, V2 reserve0 and
-- reserve1, or V3 sqrtPriceX96 and liquidity.
local function load_bytes(s, ev, st)
  local p = cast(u8p, st)
  if ev.kind == "v2_sync" then
    s.den:set_bytes_le(p, 32)
    s.num:set_bytes_le(p + 32, 32)
    return not s.num:is_zero() and not s.den:is_zero()
  end
  s.a:set_bytes_le(p, 32)
  s.num:mul(s.a, s.a)
  s.den:set(pricing.Q192)
  return not s.a:is_zero()
end

-- Raw price num/den in token base units: V2 reserve1/reserve0,
-- V3 sqrtPriceX96^2 / 2^192. Returns false when the price is null.
local function load_raw(s, ev)
  local st = ev.state
  if st then return load_bytes(s, ev, st) end
  local d = ev.data
  if ev.kind == "v2_sync" then
    s.den:load_hex(d, W1, W1 + 63)
    s.num:load_hex(d, W2, W2 + 63)
    return not s.num:is_zero() and not s.den:is_zero()
  end
  s.a:load_hex(d, W3, W3 + 63)
  s.num:mul(s.a, s.a)
  s.den:set(pricing.Q192)
  return not s.a:is_zero()
end

-- Make ev (or nil: unknown) the pool's current state and cache what every
-- evaluation needs: a = num (1 - f) and b = num (1 + f), both times 10^6
-- and without the 10^dec factors, which cancel within a pair; and
-- fa = a / den, fb = b / den in doubles. GMP truncates each operand to
-- 53 bits and the division rounds once, so fa and fb are within 2^-50 of
-- the exact ratios (every value here is below 2^600: no overflow, and
-- den > 0 is at least 1).
local function load(s, ev, lazy)
  local pool = s.pool
  s.cur, s.live, s.price = ev, false, nil
  if not ev or not load_raw(s, ev) then return end
  if not pool.dec0 or not pool.dec1 then return end
  s.a:mul_si(s.num, PPM - pool.fee_ppm)
  s.b:mul_si(s.num, PPM + pool.fee_ppm)
  local den = mpz_get_d(s.den)
  s.fa, s.fb = mpz_get_d(s.a) / den, mpz_get_d(s.b) / den
  if not lazy then s.price = pricing.human(s.num, s.den, pool.dec0, pool.dec1) end
  s.live = true
end

-- The rendered price of a live slot (made once per state when lazy).
local function price_of(s)
  local p = s.price
  if p or not s.live then return p end
  p = pricing.human(s.num, s.den, s.pool.dec0, s.pool.dec1)
  s.price = p
  return p
end

--- The current state of a pool: its log (or nil) and price (or nil).
function Detector:state(pool)
  local s = self.slots[pool]
  if not s then return nil, nil end
  return s.cur, price_of(s)
end

--- The log that set a pool's current state (or nil), and whether that
--- state has a price (not null, decimals known). Renders nothing.
function Detector:current(pool)
  local s = self.slots[pool]
  if not s then return nil, false end
  return s.cur, s.live
end

--- The arbitrage rule -------------------------------------------------------

-- Is (buy b, sell s) before (bb, bs) in the tie order?
local function before(b, s, bb, bs)
  if b.key ~= bb.key then return b.key < bb.key end
  return s.key < bs.key
end

-- The four texts are rendered in a loop on purpose: its trace is a break
-- in the signal's path. Written straight, the rendering and all that
-- follows it (EventApplied, the signal, their emits) made one side trace
-- of the pair search, longer than LuaJIT allows: every recording aborted
-- and signals ran in the interpreter, where a text costs ten times more.
-- The loop compiles on its own (each text a short side trace of it), the
-- pair search's exit links to it, and what follows is its exit's trace.
local function render(self, ss, sb)
  local g, h = self.l, self.r
  mpz_mul(g, ss.num, sb.den)
  mpz_mul(h, ss.den, sb.num)
  local sig = self.sig or {}
  sig.buy, sig.sell = sb.pool, ss.pool
  -- The fifth turn does nothing: a text's side trace then ends where the
  -- loop goes round, never running on into the rest of the signal.
  for k = 1, 5 do
    if k == 1 then sig.buy_price = price_of(sb)
    elseif k == 2 then sig.sell_price = price_of(ss)
    elseif k == 3 then sig.gross_bps = pricing.bps(g, h)
    elseif k == 4 then sig.net_bps = pricing.bps(self.bx, self.by) end
  end
  return sig
end

-- Best (sell, buy) slots over live venues by net + 1 = x / y with
-- x = a_s den_b and y = den_s b_b; leaves the best ratio in bx / by.
-- Only pairs that can pass are compared: fa_s <= fb_b (1 - 2^-40) puts
-- x / y below 1 whatever the doubles' error, and such a pair can never
-- be the best of a signal (any pair that passes beats it), so most
-- evaluations call GMP not at all. nil when no pair can pass.
-- GMP is called directly (bigint.gmp): see there why.
local function best_pair(self, live, n)
  local bs, bb
  for i = 1, n do
    local ss = live[i]
    for j = 1, n do
      local sb = live[j]
      if i ~= j and ss.fa > sb.fb * KEEP then
        self.compared = self.compared + 1
        local x, y = self.x, self.y
        mpz_mul(x, ss.a, sb.den)
        mpz_mul(y, ss.den, sb.b)
        local c = 1
        if bs then
          mpz_mul(self.l, x, self.by)
          mpz_mul(self.r, self.bx, y)
          c = mpz_cmp(self.l, self.r)
        end
        if c > 0 or (c == 0 and before(sb.pool, ss.pool, bb.pool, bs.pool)) then
          bs, bb = ss, sb
          self.x, self.bx = self.bx, x
          self.y, self.by = self.by, y
        end
      end
    end
  end
  return bs, bb
end

--- Evaluate the pair of `pool`: the signal table, or nil when no ordered
--- venue pair has sell_price (1 - f_s) > buy_price (1 + f_b). A signal
--- has buy, sell (pools), buy_price, sell_price, gross_bps, net_bps.
function Detector:evaluate(pool)
  self.evaluations = self.evaluations + 1
  local venues, live, n = self.reg:venues(pool.pair_key), self.live, 0
  for k = 1, #venues do
    local s = self.slots[venues[k]]
    if s and s.live then n = n + 1 live[n] = s end
  end
  if n < 2 then return nil end
  local ss, sb = best_pair(self, live, n)
  if not ss or mpz_cmp(self.bx, self.by) <= 0 then return nil end
  return render(self, ss, sb)
end

--- The log index --------------------------------------------------------------

-- Logs are indexed by ev.txHash, newest first, linked through
-- ev.prev_tx / ev.next_tx. The key is the caller's: the hash itself (an
-- interned string), or a number made from some of its bytes when making
-- a string per log costs too much (then logs of different transactions
-- may share a chain, and find() is given a test of the full bytes).
local function index(self, ev)
  local head = self.by_tx[ev.txHash]
  ev.next_tx = head
  if head then head.prev_tx = ev end
  self.by_tx[ev.txHash] = ev
end

local function unindex(self, ev)
  if ev.prev_tx then ev.prev_tx.next_tx = ev.next_tx
  elseif self.by_tx[ev.txHash] == ev then self.by_tx[ev.txHash] = ev.next_tx end
  if ev.next_tx then ev.next_tx.prev_tx = ev.prev_tx end
  ev.prev_tx, ev.next_tx = nil, nil
end

-- A log nothing refers to any more (see spare()).
local function free(self, ev)
  local spares = self.spares
  if not spares then return end
  local n = self.nspares + 1
  spares[n], self.nspares = ev, n
end

-- The oldest retractable log leaves the window: it can never be retracted
-- now, so no state older than it can ever be restored either. What it
-- frees: itself when retracted (unlinked and unindexed then) or a swap
-- (never linked); else the state before it, which left the window
-- earlier and is neither a pool's current state (it has a newer one) nor
-- anyone's older any more. It stays itself, as its pool's current state
-- or as the state its newer one's retraction would restore.
local function expire(self, old)
  if old.retracted then return free(self, old) end
  unindex(self, old)
  if old.kind == "v2_swap" then return free(self, old) end
  local older = old.older
  if older then
    older.newer, old.older = nil, nil
    free(self, older)
  end
end

local function remember(self, ev)
  index(self, ev)
  local window = self.window
  if not window then return end
  local pos = self.ring_pos % window + 1
  local old = self.ring[pos]
  if old then expire(self, old) end
  self.ring[pos], self.ring_pos = ev, pos
end

--- Accepted logs and retractions -------------------------------------------

--- A log table to refill as the next log (every field set again: it
--- keeps the values of the log it was), or nil; only with opts.recycle.
function Detector:spare()
  local n = self.nspares
  if n == 0 then return nil end
  local spares = self.spares
  local ev = spares[n]
  spares[n], self.nspares = nil, n - 1
  return ev
end

--- Apply an accepted, decoded log (from abi.decode). Sets ev.price to the
--- pool's price right after it (nil when unknown or null). Returns
--- evaluated (boolean) and the signal, if any.
function Detector:accept(ev)
  remember(self, ev)
  local s = slot_of(self, ev.pool)
  if ev.kind == "v2_swap" then
    ev.price = s.price
    return false, nil
  end
  ev.older = s.cur
  if s.cur then s.cur.newer = ev end
  load(s, ev, self.lazy)
  ev.price = s.price
  return true, self:evaluate(ev.pool)
end

--- The accepted, non-retracted log with this identity (lowercase hashes,
--- numeric logIndex), newest first if it was delivered twice; or nil.
--- With same, th is the key the logs were indexed by (ev.txHash) and a
--- log of logIndex li is the one when same(ev, bh) is true (it compares
--- whatever the key leaves open: both hashes, when the key is a number).
function Detector:find(bh, th, li, same)
  local ev = self.by_tx[th]
  if same then
    while ev and (ev.logIndex ~= li or not same(ev, bh)) do ev = ev.next_tx end
    return ev
  end
  while ev and (ev.logIndex ~= li or ev.blockHash ~= bh) do ev = ev.next_tx end
  return ev
end

--- Retract a log returned by find(). Returns evaluated and the signal.
function Detector:retract(ev)
  if ev.retracted then error("bandit.detector: log already retracted", 2) end
  ev.retracted = true
  unindex(self, ev)
  if ev.kind == "v2_swap" then return false, nil end
  local s = self.slots[ev.pool]
  local older, newer = ev.older, ev.newer
  if older then older.newer = newer end
  if newer then newer.older = older end
  ev.older, ev.newer = nil, nil
  if s.cur == ev then load(s, older, self.lazy) end
  return true, self:evaluate(ev.pool)
end

return M
