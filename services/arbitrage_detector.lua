-- arbitrage_detector.lua -- ArbitrageDetector: per-pool prices from the
-- enriched logs, reorg retractions, and an ArbitrageSignal exactly when
-- the README §4 rule says so (services/bandit/detector.lua decides; this
-- service moves messages in and out of it).
--
-- Invariant: logs are applied in the order they arrive (MetadataService
-- keeps the adapter's order), each accepted log is answered by one
-- EventApplied (its pool's price right after it), each removed log by a
-- skipped record ("retraction" with retracts_line, or
-- "removed_unmatched"), and every evaluation that finds a spread beating
-- both fees by one signal.
--
-- Pools are learned from PoolMeta (MetadataService publishes one before
-- a pool's first log): the venues of a pair are the pools seen with a
-- known price, which is the README's rule since a pool without logs has
-- no price.
local ffi = require "ffi"
local jit = require "jit"
local detector = require "bandit.detector"
local wire = require "bandit.wire"
local warmup = require "bandit.warmup"
local quantile = require "bandit.quantile"

local format, type, tostring, tonumber, ipairs, pairs =
  string.format, type, tostring, tonumber, ipairs, pairs
local setmetatable = setmetatable
local lower = string.lower
local cast, copy, fill, fstring = ffi.cast, ffi.copy, ffi.fill, ffi.string
local now_ns, qty = wire.now_ns, wire.qty
-- Positions are read as wire.qty gives them (a number up to 2^53, else
-- its decimal string) with the test written out at each read, the call
-- kept for the rare wide one: qty is a small function hot from every
-- handler, where LuaJIT starts root traces that fail and blacklist it,
-- and from then on every trace through a call of it aborts.
local MAX53 = 9007199254740992ULL
local KIND_CODE = wire.KIND_CODE

-- A position (number, or decimal string above 2^53) for a u64 field.
local function u64(v)
  if type(v) == "number" then return v end
  return wire.u64(v)
end

local T = wire.TOPICS

local M = {}
local S

--- Pools ----------------------------------------------------------------------------

-- The registry the detector module asks for venues, grown from PoolMeta.
local Registry = {}
Registry.__index = Registry
function Registry:venues(pair_key) return self.venues_by_pair[pair_key] or {} end
function Registry:pool(raw) return self.by_raw[raw] end

local function on_pool(_, msg)
  local m = msg.data
  local raw = fstring(m.pool, 20)
  local reg = S.reg
  local p = reg.by_raw[raw]
  local address, token0, token1 = wire.address(m.pool), wire.address(m.token0),
    wire.address(m.token1)
  if p then
    -- Same pool described again: keep the record (the detector's state
    -- hangs off it), refresh names and terms.
    p.dex, p.pair, p.label = tostring(m.dex), tostring(m.pair), tostring(m.label)
    p.fee_ppm, p.dec0, p.dec1 = m.fee_ppm, m.decimals0, m.decimals1
    S.templates = {}
    return
  end
  p = {
    raw = raw, address = address, key = lower(address),
    kind = m.pool_kind == 3 and "v3" or "v2", fee_ppm = m.fee_ppm,
    token0 = token0, token1 = token1, t0raw = fstring(m.token0, 20),
    t1raw = fstring(m.token1, 20), dec0 = m.decimals0, dec1 = m.decimals1,
    dex = tostring(m.dex), pair = tostring(m.pair), label = tostring(m.label),
    pair_key = lower(token0) .. "/" .. lower(token1),
  }
  reg.by_raw[raw] = p
  reg.pools[#reg.pools + 1] = p
  local v = reg.venues_by_pair[p.pair_key]
  if not v then v = {} reg.venues_by_pair[p.pair_key] = v end
  v[#v + 1] = p
end

--- Outputs ------------------------------------------------------------------------

local function skip(ctx, line, reason, retracts_line)
  S.skipped = S.skipped + 1
  S.by_reason[reason] = (S.by_reason[reason] or 0) + 1
  S.pub_skipped { line = line, reason = reason, retracts_line = retracts_line,
                  service = ctx.name }
end

-- Latency samples (ns) in rings of the newest `cap` (bandit.quantile).
local put = quantile.put
local RING_PRESIZE = 32768

-- Every sample goes to `lat` and to its cold or steady part: a log that
-- arrived within opts.cold_ms (default 2000) of the stream's first one
-- is a cold start's (the JIT is still compiling); users see both, so
-- neither is discarded.
local function sample(lat, arrival, v)
  put(lat.all, v)
  local first = S.first_arrival
  if not first then first = arrival S.first_arrival = arrival end
  put(arrival - first < S.cold_ns and lat.cold or lat.steady, v)
end

-- The pool's state after ev, as bytes: rendering its price costs more
-- than the rest of an event, so whoever wants it (the recorder) renders
-- it from the exact inputs.
local function applied(ev, line, arrival)
  local a = S.applied_msg
  local t = now_ns()
  a.ws_seq, a.block, a.log_index = line, u64(ev.block), u64(ev.logIndex)
  a.arrival_ns, a.applied_ns, a.kind = arrival, t, KIND_CODE[ev.kind]
  copy(a.pool, ev.pool.raw, 20)
  local cur, live = S.det:current(ev.pool)
  if live then
    a.state_kind = cur.kind == "v2_sync" and 1 or 3
    copy(a.state_a, cur.state, 64) -- state_a and state_b are adjacent
  else
    a.state_kind = 0
    fill(a.state_a, 64)
  end
  S.pub_applied(a)
  sample(S.event_lat, arrival, t - arrival)
end

-- What of a signal depends on its two pools alone (the pair's tokens,
-- decimals and name, each venue's pool, fee and dex), as the message's
-- bytes, made at the first signal of that buy and sell pool and copied
-- whole into every later one: ten FFI accesses fewer per signal, three
-- padded strings among them. Each access is constants in a trace; with
-- them the signal's path held more than LuaJIT allows one (maxirconst,
-- 500), every recording aborted and signals ran in the interpreter.
-- on_pool forgets the templates when a pool is described again.
local function template(buy, sell)
  local by_sell = S.templates[buy]
  if not by_sell then by_sell = {} S.templates[buy] = by_sell end
  local t = by_sell[sell]
  if t then return t end
  local size = S.Signal.size
  local buf = ffi.new("uint8_t[?]", size)
  local m = cast(S.Signal.ptr, buf)
  copy(m.token0, buy.t0raw, 20)
  copy(m.token1, buy.t1raw, 20)
  m.decimals0, m.decimals1 = buy.dec0, buy.dec1
  wire.set_string(m.pair, buy.pair, 129)
  copy(m.buy_pool, buy.raw, 20)
  m.buy_fee_ppm = buy.fee_ppm
  wire.set_string(m.buy_dex, buy.dex:sub(1, 64), 64)
  copy(m.sell_pool, sell.raw, 20)
  m.sell_fee_ppm = sell.fee_ppm
  wire.set_string(m.sell_dex, sell.dex:sub(1, 64), 64)
  t = fstring(buf, size)
  by_sell[sell] = t
  return t
end

-- The venue's two words of its current state (_a and _b are adjacent)
-- and its price; returns its price source's kind (1 = V2 reserves, 3 =
-- V3).
local function venue(a, price_field, pool, price)
  local cur = S.det:state(pool)
  copy(a, cur.state, 64)
  wire.set_string(price_field, price, 160)
  return cur.kind == "v2_sync" and 1 or 3
end

-- The signal is written through a plain pointer to the message made just
-- above, in this handler: the handle's checked accessors (a metamethod
-- and a liveness check per field, some thirty fields) made this path too
-- long for one trace, so every signal ran in the interpreter. The handle
-- itself is what is emitted (its buffer is handed over, not copied).
local function signal(ctx, sig, line, trigger, ev, arrival)
  local h = ctx:new("ArbitrageSignal")
  local m = cast(S.Signal.ptr, h)
  local b, s = sig.buy, sig.sell
  copy(m, template(b, s), S.Signal.size)
  m.block, m.log_index, m.ws_seq = u64(ev.block), u64(ev.logIndex), line
  m.arrival_ns, m.trigger = arrival, trigger
  m.buy_kind = venue(m.buy_a, m.buy_price, b, sig.buy_price)
  m.sell_kind = venue(m.sell_a, m.sell_price, s, sig.sell_price)
  wire.set_string(m.gross_bps, sig.gross_bps, 320)
  wire.set_string(m.net_bps, sig.net_bps, 320)
  local t = now_ns()
  m.emitted_ns = t
  S.signals = S.signals + 1
  S.by_pair[b.pair] = (S.by_pair[b.pair] or 0) + 1
  S.pub_signal(h)
  sample(S.signal_lat, arrival, t - arrival)
end

--- Logs ---------------------------------------------------------------------------

-- A state field of an event, by name (report.pool_state's), from the
-- bytes of its message. Read at the end of the stream only: a metatable
-- on every event to provide these lazily made each read of a field the
-- detector leaves nil (older, newer, prev_tx, next_tx, retracted) a call.
local STATE_AT = { reserve0 = 0, reserve1 = 32, sqrtPriceX96 = 0,
                   liquidity = 32 }
local function state_field(ev, k)
  local p = cast("const uint8_t *", ev.state)
  if k == "tick" then return cast("const int32_t *", p + 64)[0] end
  return wire.dec(p + STATE_AT[k])
end

-- A log's identity is its block hash, tx hash and log index, but only a
-- retraction asks for it: the hashes stay bytes in the log's buffer
-- (after its state), and the detector indexes the log by a number made
-- from 53 bits of its tx hash, read in place. Two strings per log cost
-- an interning lookup each (a hash-chain walk, missing the cache) and,
-- on a real chain where most hashes are new, 49 bytes of garbage each.
-- Logs whose keys collide share a chain; same() tells them apart by the
-- full bytes.
local BH_AT, TH_AT = 68, 100
local tx_key = wire.hash_key

ffi.cdef "int memcmp(const void *, const void *, size_t);"
local C = ffi.C

-- Is ev the log of retraction m (its log index already matched)?
local function same(ev, m)
  local p = ev.state
  return C.memcmp(p + BH_AT, m.block_hash, 32) == 0
    and C.memcmp(p + TH_AT, m.tx_hash, 32) == 0
end

-- A detector event from a PoolStateUpdate or SwapEvent struct, in a log
-- table the detector no longer needs (detector.spare(); a new one only
-- while the reorg window fills), so that in steady state an event
-- allocates no table and no string. Its state is a copy of the
-- message's bytes in the table's own buffer: reserve0 and reserve1 (64),
-- or sqrtPriceX96, liquidity and tick (68), adjacent in both types; a
-- swap's state holds nothing of use; the hashes follow at BH_AT and
-- TH_AT. ev.txHash is the index key, ev.blockHash is unused (false). At
-- most 15 fields: 16 hash slots, where one more would double the table.
local STATE = ffi.typeof("uint8_t[132]")
local function event(m, kind, pool)
  local ev = S.det:spare()
  if ev == nil then
    ev = { kind = kind, pool = pool, state = STATE(), block = 0, txIndex = 0,
           logIndex = 0, blockHash = false, txHash = false, line = false,
           price = nil, retracted = nil, older = nil, newer = nil,
           prev_tx = nil, next_tx = nil }
  end
  local st = ev.state
  copy(st + BH_AT, m.block_hash, 32)
  copy(st + TH_AT, m.tx_hash, 32)
  if kind == "v2_sync" then copy(st, m.reserve0, 64)
  elseif kind == "v3_swap" then copy(st, m.sqrt_price_x96, 68) end
  ev.kind, ev.pool = kind, pool
  local b, t, l = m.block, m.tx_index, m.log_index
  ev.block = b <= MAX53 and tonumber(b) or qty(b)
  ev.txIndex = t <= MAX53 and tonumber(t) or qty(t)
  ev.logIndex = l <= MAX53 and tonumber(l) or qty(l)
  ev.txHash = tx_key(m.tx_hash)
  ev.price, ev.retracted, ev.older, ev.newer = nil, nil, nil, nil
  ev.prev_tx, ev.next_tx = nil, nil
  return ev
end

local function on_log(ctx, msg, Ty, kinds)
  local m = cast(Ty.ptr, (msg:bytes()))
  local w = m.ws_seq
  local line = w <= MAX53 and tonumber(w) or qty(w)
  local arrival = tonumber(m.arrival_ns)
  local pool = S.reg.by_raw[fstring(m.pool, 20)]
  local kind = kinds[m.kind]
  if not pool or not kind then
    -- MetadataService publishes a PoolMeta first; this is a producer bug.
    ctx.log:error("a log of a pool without PoolMeta", { line = line })
    return skip(ctx, line, "unenriched")
  end
  local ev = event(m, kind, pool)
  ev.line = line
  S.events = S.events + 1
  if S.events == 1 then S.first_ns = now_ns() end
  local _, sig = S.det:accept(ev)
  if S.emit_applied then applied(ev, line, arrival) end
  if sig then signal(ctx, sig, line, 1, ev, arrival) end
end

local function on_removed(ctx, msg)
  local m = cast(S.Retraction.ptr, (msg:bytes()))
  local w, l = m.ws_seq, m.log_index
  local line = w <= MAX53 and tonumber(w) or qty(w)
  local arrival = tonumber(m.arrival_ns)
  local ev = S.det:find(m, tx_key(m.tx_hash),
                        l <= MAX53 and tonumber(l) or qty(l), same)
  if not ev then return skip(ctx, line, "removed_unmatched") end
  S.retracted = S.retracted + 1
  skip(ctx, line, "retraction", ev.line)
  local _, sig = S.det:retract(ev)
  if sig then signal(ctx, sig, line, 2, ev, arrival) end
end

--- End of stream ------------------------------------------------------------------

-- Every pool's current state (report.pool_state's fields), by address.
local function pool_states()
  local out = {}
  for _, p in ipairs(S.reg.pools) do
    local ev, price = S.det:state(p)
    local st = { price = price or false, kind = ev and ev.kind or false }
    if ev and ev.kind == "v2_sync" then
      st.reserve0, st.reserve1 = state_field(ev, "reserve0"),
        state_field(ev, "reserve1")
    elseif ev then
      st.sqrtPriceX96, st.liquidity, st.tick = state_field(ev, "sqrtPriceX96"),
        state_field(ev, "liquidity"), state_field(ev, "tick")
    end
    out[p.address] = st
  end
  return out
end

local function finish(ctx, msg)
  local last = now_ns() -- before the samples are summarised below
  local lat = {}
  -- At a flood's end a ring holds up to opts.latency_samples samples:
  -- selected, not sorted (bandit.quantile), they no longer make most of
  -- finish().
  local function summary(ring)
    local p50, p99, max = quantile.quantiles(ring.buf, quantile.count(ring),
                                             0.5, 0.99, 1)
    return { n = ring.n, p50 = p50 or false, p99 = p99 or false,
             max = max or false }
  end
  for name, l in pairs { signal = S.signal_lat, event = S.event_lat } do
    lat[name] = summary(l.all)
    lat[name .. "_cold"] = summary(l.cold)
    lat[name .. "_steady"] = summary(l.steady)
  end
  S.pub_end {
    service = ctx.name, events = S.events, retracted = S.retracted,
    evaluations = S.det.evaluations, signals = S.signals,
    signals_by_pair = S.by_pair, skipped = S.skipped,
    by_reason = S.by_reason, latency_ns = lat, pools = pool_states(),
    first_ns = S.first_ns or false, last_ns = last, upstream = msg.data,
  }
end

--- Service ------------------------------------------------------------------------

local function contract_type(ctx, name)
  local Ty = ctx.contracts and ctx.contracts:type(name)
  if not Ty then
    error(format("service '%s': needs the Bandit contracts (config "
                 .. "contracts = \"services/contracts.yaml\")", ctx.name), 0)
  end
  return Ty
end

-- Machine code the detector's Lua state may hold, in KB (LuaJIT's
-- default is 512). Its traces (pair search, texts, retractions, each
-- with side traces) outgrow 512 KB within seconds of traffic in some
-- runs; LuaJIT then drops every trace of the state and compiles them
-- again, a stall of tens of ms in the middle of the stream. The areas
-- are mapped as traces need them, so the larger limit costs nothing
-- until it is used (docs/TUNING.md, "Machine-code room").
local MAXMCODE = 4096

function M.init(ctx, opts)
  wire.gc_pause(ctx, opts)
  jit.opt.start("maxmcode=" .. MAXMCODE)
  local reg = setmetatable({ by_raw = {}, pools = {}, venues_by_pair = {} },
                           Registry)
  -- Only the newest accepted logs can be retracted: reorgs drop recent
  -- blocks (tens on Polygon at worst), and 10 000 logs of tracked pools
  -- are a hundred blocks even at a hundred per block. Unbounded history
  -- would cost memory and garbage-collector time per event for ever.
  -- false keeps everything, as the offline oracle does.
  local window = opts.reorg_window
  if window == nil then window = 10000 end
  local cap = opts.latency_samples or 1000000
  local function rings()
    -- Made whole up to RING_PRESIZE now, not grown by doubling as they
    -- fill: each doubling copied (and first touched) the array inside a
    -- handler, a pause of up to a millisecond in the first 2 s, where the
    -- cold rings fill (20 000 events at 10 000/s).
    return { all = quantile.ring(cap, RING_PRESIZE),
             cold = quantile.ring(cap, RING_PRESIZE),
             steady = quantile.ring(cap, RING_PRESIZE) }
  end
  S = {
    reg = reg, det = detector.new(reg, { reorg_window = window or nil,
                                         lazy_prices = true, recycle = true }),
    events = 0, retracted = 0, signals = 0, skipped = 0, by_reason = {},
    by_pair = {}, emit_applied = opts.applied ~= false, templates = {},
    signal_lat = rings(), event_lat = rings(),
    cold_ns = (opts.cold_ms or 2000) * 1e6,
    State = contract_type(ctx, "PoolStateUpdate"),
    Swap = contract_type(ctx, "SwapEvent"),
    Retraction = contract_type(ctx, "LogRetraction"),
    Signal = contract_type(ctx, "ArbitrageSignal"),
    applied_msg = contract_type(ctx, "EventApplied"):new(),
    pub_applied = ctx:publisher(T.applied),
    pub_signal = ctx:publisher(T.signal),
    pub_skipped = ctx:publisher(T.skipped),
    pub_end = ctx:publisher(T.end_detector),
  }
end

-- Contract kind codes to detector kinds, per message type.
local STATE_KINDS = { [1] = "v2_sync", [3] = "v3_swap" }
local SWAP_KINDS = { [2] = "v2_swap", [3] = "v3_swap" }

M.handlers = {
  [T.pool] = on_pool,
  [T.enriched_state] = function(ctx, msg)
    on_log(ctx, msg, S.State, STATE_KINDS)
  end,
  [T.enriched_swap] = function(ctx, msg)
    on_log(ctx, msg, S.Swap, SWAP_KINDS)
  end,
  [T.enriched_removed] = on_removed,
  [T.end_metadata] = finish,
}

--- Warm-up (docs/BANDIT.md): run by the engine after init, before any
--- log, with the JIT on. PoolMeta and enriched logs of synthetic traffic
--- go through the handlers against a scratch state (a second init's):
--- signals and no signals, retractions matched and not. The pools are
--- opts.pools and opts.tokens when given, else a set with every kind and
--- fee tier (the detector's code depends on those, not on addresses).
local WARM_WINDOW = 64
function M.warmup(ctx, warm)
  local opts = ctx.opts or {}
  local n = warmup.count(opts)
  if n == 0 then return end
  local reg = opts.pools and warmup.load(opts, "") or warmup.synthetic()
  local topics = { state = T.enriched_state, swap = T.enriched_swap,
                   removed = T.enriched_removed }
  local real = S
  -- A window of WARM_WINDOW logs, so that the warm-up's logs leave it
  -- and are refilled (detector.spare) as they will once the real window
  -- is full: else that path compiled in the traffic's first seconds.
  local scratch = setmetatable({ reorg_window = opts.reorg_window ~= false
                                   and WARM_WINDOW or false },
                               { __index = opts })
  warmup.scratch(real, nil, function(st) S = st end, function()
    M.init(ctx, scratch)
    for _, p in ipairs(reg.pools) do warm:deliver(T.pool, warmup.pool_meta(ctx, p)) end
    for line, text in ipairs(warmup.lines(reg, n)) do
      local what, m, ev = warmup.typed(ctx, text, reg, line)
      if ev then warmup.enrich(m, ev.pool) end
      if what then warm:deliver(topics[what], m) end
    end
  end)
end

--- Counters, for tests.
function M.stats()
  return { events = S.events, retracted = S.retracted, signals = S.signals,
           evaluations = S.det.evaluations, skipped = S.skipped }
end

return M
