-- recorder.lua -- writes what the Bandit pipeline decided as the files of
-- examples/bandit/data/README.md §5 (events, skipped, signals, summary:
-- same field names, order and value formats as the *_expected_* files,
-- through services/bandit/report.lua), and prints signals and a summary
-- for people.
--
-- Invariant: a file is written once, when the stream has ended and every
-- message the stages counted has arrived (an event's `retracted` flag can
-- change until then). The end marker travels adapter -> metadata ->
-- detector behind everything each emitted; messages straight from an
-- earlier stage may still be crossing workers, so the recorder compares
-- its counts with the stages' and waits for the rest (opts.wait_ms).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
package.path = here .. "/../../services/?.lua;" .. package.path

local ffi = require "ffi"
local wire = require "bandit.wire"
local report = require "bandit.report"
local pricing = require "bandit.pricing"
local bigint = require "bandit.bigint"
local registry = require "bandit.registry"

local format, concat, sort, floor = string.format, table.concat, table.sort,
  math.floor
local type, tostring, pairs, ipairs, tonumber =
  type, tostring, pairs, ipairs, tonumber
local cast, fstring = ffi.cast, ffi.string
local qty, dec, address = wire.qty, wire.dec, wire.address

local T = wire.TOPICS

local M = {}
local S

local function out(...)
  if not S.print then return end
  io.stdout:write(...)
  io.stdout:flush()
end

--- Records ----------------------------------------------------------------------

local function on_pool(_, msg)
  local m = msg.data
  local raw = fstring(m.pool, 20)
  S.pools[raw] = {
    address = address(m.pool), dex = tostring(m.dex), pair = tostring(m.pair),
    token0 = address(m.token0), token1 = address(m.token1),
    fee_ppm = m.fee_ppm, label = tostring(m.label),
    dec0 = m.decimals0, dec1 = m.decimals1,
  }
end

-- The per-kind fields of README §5, rendered from the message.
local function fields(ev, m, kind)
  if kind == "v2_sync" then
    ev.reserve0, ev.reserve1 = dec(m.reserve0), dec(m.reserve1)
  elseif kind == "v2_swap" then
    ev.sender, ev.to = address(m.sender), address(m.recipient)
    ev.amount0In, ev.amount1In = dec(m.amount0_in), dec(m.amount1_in)
    ev.amount0Out, ev.amount1Out = dec(m.amount0_out), dec(m.amount1_out)
  else
    ev.sender, ev.recipient = address(m.sender), address(m.recipient)
    ev.amount0, ev.amount1 = dec(m.amount0, true), dec(m.amount1, true)
    ev.sqrtPriceX96, ev.liquidity = dec(m.sqrt_price_x96), dec(m.liquidity)
    ev.tick = m.tick
  end
end

local function on_event(msg, Ty, kinds)
  local m = cast(Ty.ptr, (msg:bytes()))
  local kind = kinds[m.kind]
  local pool = S.pools[fstring(m.pool, 20)]
  local line = qty(m.ws_seq)
  S.n_enriched = S.n_enriched + 1
  if not pool or not kind then
    S.problems[#S.problems + 1] = format("line %s: an event without PoolMeta",
                                         tostring(line))
    return
  end
  local ev = {
    line = line, block = qty(m.block), blockHash = wire.hex(m.block_hash, 32),
    txHash = wire.hex(m.tx_hash, 32), txIndex = qty(m.tx_index),
    logIndex = qty(m.log_index), pool = pool, kind = kind,
  }
  fields(ev, m, kind)
  S.events[#S.events + 1] = ev
  S.by_kind[kind] = (S.by_kind[kind] or 0) + 1
end

-- The mid price of the pool state an EventApplied carries (README §3),
-- or false when it has none.
local num, den, sq = bigint.new(), bigint.new(), bigint.new()
local function price_of(m)
  local pool = S.pools[fstring(m.pool, 20)]
  if m.state_kind == 0 or not pool then return false end
  if m.state_kind == 1 then
    den:set_bytes_le(m.state_a, 32)
    num:set_bytes_le(m.state_b, 32)
  else
    sq:set_bytes_le(m.state_a, 32)
    num:mul(sq, sq)
    den:set(pricing.Q192)
  end
  return pricing.human(num, den, pool.dec0, pool.dec1)
end

local function on_applied(_, msg)
  local m = cast(S.Applied.ptr, (msg:bytes()))
  S.prices[qty(m.ws_seq)] = price_of(m)
  S.n_applied = S.n_applied + 1
end

local function on_skipped(_, msg)
  local d = msg.data
  if type(d) ~= "table" or not d.line or not d.reason then return end
  S.skipped[#S.skipped + 1] = d
  S.by_reason[d.reason] = (S.by_reason[d.reason] or 0) + 1
  if d.retracts_line then S.retracted_by[d.retracts_line] = d.line end
end

local TRIGGER = { "event", "retraction" }

local function side(m, s)
  local raw = fstring(m[s.pool], 20)
  local known = S.pools[raw]
  return {
    address = known and known.address or address(m[s.pool]),
    dex = wire.string(m[s.dex]), fee_ppm = m[s.fee],
    pair = wire.string(m.pair), token0 = address(m.token0),
    token1 = address(m.token1),
  }
end

local BUY = { pool = "buy_pool", dex = "buy_dex", fee = "buy_fee_ppm" }
local SELL = { pool = "sell_pool", dex = "sell_dex", fee = "sell_fee_ppm" }

local function on_signal(_, msg)
  local m = cast(S.Signal.ptr, (msg:bytes()))
  local sig = {
    buy = side(m, BUY), sell = side(m, SELL),
    buy_price = wire.string(m.buy_price),
    sell_price = wire.string(m.sell_price),
    gross_bps = wire.string(m.gross_bps), net_bps = wire.string(m.net_bps),
  }
  local at = { line = qty(m.ws_seq), trigger = TRIGGER[m.trigger] or "?",
               block = qty(m.block), logIndex = qty(m.log_index) }
  S.signals[#S.signals + 1] = report.signal(sig, at)
  S.by_pair[sig.buy.pair] = (S.by_pair[sig.buy.pair] or 0) + 1
  S.by_trigger[at.trigger] = (S.by_trigger[at.trigger] or 0) + 1
  local lat = tonumber(m.emitted_ns - m.arrival_ns)
  S.latency[#S.latency + 1] = lat
  out(format("signal line %-6s %-14s buy %s @ %s  sell %s @ %s  gross %s bps"
             .. "  net %s bps  block %s  trace %s\n", tostring(at.line),
             sig.buy.pair, sig.buy.dex, sig.buy_price, sig.sell.dex,
             sig.sell_price, sig.gross_bps, sig.net_bps, tostring(at.block),
             msg.trace_id))
end

--- Files ----------------------------------------------------------------------------

local function by_line(a, b) return a.line < b.line end

local function write(path, lines)
  if not path then return true end
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(concat(lines))
  f:close()
  if not ok then return nil, werr end
  return true
end

local function events_text()
  local lines = {}
  sort(S.events, by_line)
  for i, ev in ipairs(S.events) do
    local p = S.prices[ev.line]
    ev.price = p or nil
    ev.retracted_by_line = S.retracted_by[ev.line]
    lines[i] = report.event_json(ev) .. "\n"
  end
  return lines
end

local function skipped_text()
  sort(S.skipped, by_line)
  local lines = {}
  for i, d in ipairs(S.skipped) do
    lines[i] = report.encode(report.skipped(d.line, d.reason,
                                            d.retracts_line)) .. "\n"
  end
  return lines
end

local function signals_text()
  local lines = {}
  for i, r in ipairs(S.signals) do lines[i] = report.encode(r) .. "\n" end
  return lines
end

-- Pools in pools.json order when the recorder has the list (the
-- summary's final_pool_state lists every one), else as they were seen.
local function summary_pools(det)
  local states = det.pools or {}
  local list = {}
  if S.reg then
    for _, p in ipairs(S.reg.pools) do list[#list + 1] = p end
  else
    for _, p in pairs(S.pools) do list[#list + 1] = p end
    sort(list, function(a, b) return a.address < b.address end)
  end
  local out_states = {}
  for i, p in ipairs(list) do
    local st = states[p.address]
    local ev = st and st.kind and st or nil
    out_states[i] = { pool = p, ev = ev, price = st and st.price or nil }
  end
  return out_states
end

-- What the summary says of a stream not known whole (nil when it is):
-- lines expected and missing (null when unknown), connections lost.
local function incomplete(ad)
  if ad.complete ~= false then return nil end
  return { expected = ad.expected or nil, missing = ad.missing or nil,
           gaps = ad.gaps }
end

local function summary_text(ends)
  local det, ad = ends.detector, ends.adapter
  return { report.encode(report.summary {
    lines = ad.lines, incomplete = incomplete(ad),
    subscription_id = ad.subscription_id or nil,
    events_accepted = #S.events, events_by_kind = S.by_kind,
    events_retracted = det.retracted, skipped = #S.skipped,
    skipped_by_reason = S.by_reason, evaluations = det.evaluations,
    signals = #S.signals, signals_by_pair = S.by_pair,
    signals_by_trigger = S.by_trigger, pool_states = summary_pools(det),
  }, 2) .. "\n" }
end

--- Human summary -----------------------------------------------------------------

local function counts(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  for i, k in ipairs(keys) do keys[i] = format("%s %d", k, t[k]) end
  return concat(keys, ", ")
end

local function pct(v, q)
  if #v == 0 then return nil end
  local s = {}
  for i, x in ipairs(v) do s[i] = x end
  sort(s)
  return s[floor(q * (#s - 1)) + 1]
end

local function ms(ns) return ns and format("%.3f ms", ns / 1e6) or "-" end

local function service_table(ctx)
  local rows = { format("%-12s %6s %10s %10s %7s %8s %6s",
                        "service", "worker", "in", "out", "errors", "dropped",
                        "queue") }
  local dropped = 0
  for _, name in ipairs(S.services) do
    local st = ctx:service_stats(name)
    if st then
      dropped = dropped + st.dropped
      rows[#rows + 1] = format("%-12s %6d %10d %10d %7d %8d %6d", name,
        st.worker, st["in"], st.out, st.errors, st.dropped, st.queue_depth)
    end
  end
  return concat(rows, "\n"), dropped
end

-- The lines row: how many, and what the stream lost or repeated.
local function lines_text(ad)
  local t = tostring(ad.lines)
  local gone = incomplete(ad)
  if gone and gone.missing then
    t = format("%s of %s expected: %s lost (%d connection(s) lost "
               .. "mid-stream), RESULTS INCOMPLETE", t, tostring(gone.expected),
               tostring(gone.missing), gone.gaps)
  elseif gone then
    t = format("%s, RESULTS INCOMPLETE: %d connection(s) lost mid-stream, "
               .. "what the node sent meanwhile is missing (how much is "
               .. "unknown)", t, gone.gaps)
  end
  if (ad.duplicates or 0) > 0 then
    t = format("%s (%d logs sent again after a reconnect, skipped as "
               .. "duplicates)", t, ad.duplicates)
  end
  if ad.subscription_id then
    t = t .. "  subscription " .. ad.subscription_id
  end
  return t
end

-- Lines the adapter passed on (as a log, a removal or a skipped record)
-- that reached no record here: lost between the stages (a stage killed
-- with messages in its mailbox, a link that dropped them). Returns their
-- number and the lines as ranges ("12-18, 20"), or 0.
local function lost_lines(ad)
  local sent = (ad.accepted or 0) + (ad.removed or 0) + (ad.skipped or 0)
  local n = sent - #S.events - #S.skipped
  if n <= 0 then return 0 end
  local seen = {}
  for _, ev in ipairs(S.events) do seen[ev.line] = true end
  for _, d in ipairs(S.skipped) do seen[d.line] = true end
  local missing = {}
  for line = 1, ad.lines or 0 do
    if not seen[line] then missing[#missing + 1] = line end
  end
  -- Line 1, the subscription reply, is a line but never a record.
  if #missing > n and missing[1] == 1 then table.remove(missing, 1) end
  local ranges, i = {}, 1
  while i <= #missing do
    local j = i
    while j < #missing and missing[j + 1] == missing[j] + 1 do j = j + 1 end
    ranges[#ranges + 1] = i == j and tostring(missing[i])
      or missing[i] .. "-" .. missing[j]
    i = j + 1
  end
  return n, concat(ranges, ", ")
end

local function lost_text(n, which)
  if n == 0 then return "" end
  return format("lost             %d lines between the adapter and the detector "
                .. "(%s): sent by the adapter, never decided downstream, "
                .. "RESULTS INCOMPLETE\n", n, which)
end

local function human(ctx, ends)
  local det, ad, md = ends.detector, ends.adapter, ends.metadata
  local lat = det.latency_ns or {}
  local ev_lat = lat.event or {}
  local table_text, dropped = service_table(ctx)
  out(format([[
== Bandit ==
lines            %s
events decoded   %d (%s), %d retracted
skipped          %d (%s)
evaluations      %d
signals          %d (%s; by trigger: %s)
latency          log arrival -> signal: p50 %s, p99 %s (%d signals)
                 log arrival -> applied: p50 %s, p99 %s (%d events)
metadata         %d enriched, %d dropped, %d lookups (%d failed), %d eth_calls
%s%s
]], lines_text(ad),
    #S.events, counts(S.by_kind), det.retracted, #S.skipped,
    counts(S.by_reason), det.evaluations, #S.signals, counts(S.by_pair),
    counts(S.by_trigger), ms(pct(S.latency, 0.5)), ms(pct(S.latency, 0.99)),
    #S.latency, ms(ev_lat.p50 or nil), ms(ev_lat.p99 or nil), ev_lat.n or 0,
    md.enriched, md.dropped, md.lookups, md.lookup_failures, md.eth_calls,
    lost_text(S.lost, S.lost_which), table_text))
  return dropped
end

--- End of stream ------------------------------------------------------------------

-- What the stages said they sent us, against what arrived.
local function complete(ends)
  local det, md, ad = ends.detector, ends.metadata, ends.adapter
  return S.n_applied >= det.events and S.n_enriched >= md.enriched and
    #S.skipped >= ad.skipped + md.dropped + det.skipped and
    #S.signals >= det.signals
end

local function finish(ctx, ends, timed_out)
  if S.finished then return end
  S.finished = true
  local files = {
    { S.opts.events, events_text }, { S.opts.skipped, skipped_text },
    { S.opts.signals, signals_text }, { S.opts.summary, function()
      return summary_text(ends) end },
  }
  local failed = false
  S.lost, S.lost_which = lost_lines(ends.adapter)
  for _, f in ipairs(files) do
    if f[1] then
      local ok, err = write(f[1], f[2]())
      if not ok then
        failed = true
        ctx.log:error("cannot write " .. f[1] .. ": " .. tostring(err))
      end
    end
  end
  local dropped = human(ctx, ends)
  for _, p in ipairs(S.problems) do ctx.log:error(p) end
  if timed_out then
    ctx.log:error("the stream ended but messages are missing", {
      applied = S.n_applied, expected_applied = ends.detector.events })
  end
  local whole = ends.adapter.complete ~= false
  S.code = (failed or timed_out or dropped > 0 or #S.problems > 0 or
            not whole or S.lost > 0) and 1 or 0
  if S.lost > 0 then
    ctx.log:error("lines were lost between the adapter and the detector: "
                  .. "the results are incomplete",
                  { lost = S.lost, lines = S.lost_which })
  end
  if not whole then
    ctx.log:error("the stream lost lines: the results are incomplete",
                  { lines = ends.adapter.lines,
                    missing = ends.adapter.missing or nil })
  end
  if dropped > 0 then
    ctx.log:error("mailboxes dropped messages: the results are incomplete",
                  { dropped = dropped })
  end
  if S.exit then ctx:shutdown(S.code) end
end

local function check_end(ctx)
  if S.ends and not S.finished and complete(S.ends) then finish(ctx, S.ends) end
end

local function on_end(ctx, msg)
  local det = msg.data
  local md = det.upstream or {}
  S.ends = { detector = det, metadata = md, adapter = md.upstream or {} }
  if complete(S.ends) then return finish(ctx, S.ends) end
  ctx:after(S.wait_ms, function(c)
    if not S.finished then finish(c, S.ends, true) end
  end)
end

--- Service --------------------------------------------------------------------------

local function with_check(fn)
  return function(ctx, msg)
    fn(ctx, msg)
    if S.ends then check_end(ctx) end
  end
end

local STATE_KINDS = { [1] = "v2_sync", [3] = "v3_swap" }
local SWAP_KINDS = { [2] = "v2_swap", [3] = "v3_swap" }

M.handlers = {
  [T.pool] = on_pool,
  [T.enriched_state] = with_check(function(_, msg)
    on_event(msg, S.State, STATE_KINDS)
  end),
  [T.enriched_swap] = with_check(function(_, msg)
    on_event(msg, S.Swap, SWAP_KINDS)
  end),
  [T.applied] = with_check(on_applied),
  [T.skipped] = with_check(on_skipped),
  [T.signal] = with_check(on_signal),
  [T.end_detector] = on_end,
}

function M.init(ctx, opts)
  local set = ctx.contracts
  if not set then
    error(format("service '%s': needs the Bandit contracts", ctx.name), 0)
  end
  S = {
    opts = opts, print = opts.print ~= false, exit = opts.exit ~= false,
    wait_ms = opts.wait_ms or 2000,
    services = opts.services or { "feeder", "polygon", "metadata", "arb",
                                  "recorder" },
    pools = {}, events = {}, prices = {}, skipped = {}, signals = {},
    retracted_by = {}, by_kind = {}, by_reason = {}, by_pair = {},
    by_trigger = {}, latency = {}, problems = {}, n_applied = 0,
    n_enriched = 0,
    State = set:type("PoolStateUpdate"), Swap = set:type("SwapEvent"),
    Applied = set:type("EventApplied"), Signal = set:type("ArbitrageSignal"),
  }
  if opts.pools then
    local reg, err = registry.load(opts.pools, opts.tokens)
    if not reg then
      error(format("service '%s': %s", ctx.name, tostring(err)), 0)
    end
    S.reg = reg
  end
end

--- The exit code it asked for (0: complete and written), for tests.
function M.result() return S.code, S end

return M
