-- polygon_adapter.lua -- PolygonAdapter: Polygon log notifications in,
-- typed messages out (docs/BANDIT.md; README §2 rules 1, 2, 4-7, and the
-- shape of rule 3's removed logs, whose match is the detector's).
--
-- Invariant: every message of the stream counts as one line (the
-- eth_subscribe reply is line 1) and ends as exactly one of: a typed log
-- message (PoolStateUpdate, SwapEvent, LogRetraction) or a skipped record
-- with its reason. Nothing in a message can make a handler raise.
--
-- Sources (opts.source): "ws" subscribes through mycelium.net.jsonrpc over
-- mycelium.net.ws to opts.url (default $POLYGON_WS_URL) and resubscribes
-- after every reconnect; "topic" takes raw text lines from opts.raw_topic
-- (tests, and replays fed by examples/bandit/feeder.lua).
--
-- A reconnect can lose notifications (the node keeps no cursor for us) or
-- repeat them (a restarted node replaying older blocks): logs repeated
-- are skipped as `duplicate` (bandit.dedup), and the end says whether the
-- stream is known whole (docs/BANDIT.md, "Reconnects").
local ffi = require "ffi"
local abi = require "bandit.abi"
local dedup = require "bandit.dedup"
local registry = require "bandit.registry"
local wire = require "bandit.wire"
local warmup = require "bandit.warmup"

local format, type, tostring, tonumber, pairs, ipairs =
  string.format, type, tostring, tonumber, pairs, ipairs
local gc = collectgarbage
local now_ns = wire.now_ns
local put_hashes, HASHES = wire.put_hashes, wire.HASHES
local cast = ffi.cast

local T = wire.TOPICS
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local DATA = here .. "/../examples/bandit/data/"

local M = {}

--- The skip reason of a log a reconnected node sent again (an engine
--- reason, like MetadataService's `unenriched`).
M.DUPLICATE = "duplicate"

-- Service state (one instance per Lua state).
local S

-- Skipped lines: counted by reason, published, logged (the first of each
-- reason as a warning, the rest at debug: a faulty feed must not flood
-- the log).
local function skip(ctx, line, reason)
  S.skipped = S.skipped + 1
  local n = (S.by_reason[reason] or 0) + 1
  S.by_reason[reason] = n
  S.pub_skipped { line = line, reason = reason, service = ctx.name }
  local fields = { line = line, reason = reason, count = n }
  if n == 1 then
    ctx.log:warn("skipped a message: " .. reason, fields)
  else
    ctx.log:debug("skipped a message: " .. reason, fields)
  end
end

-- Block and transaction index of a removed log say where it was, for
-- people; only the identity matters, so a strange one reads as 0.
local function informational(v)
  local n = v and tonumber(v)
  if n and n >= 0 and n < 2 ^ 53 then return n end
  return 0
end

-- Whether the log whose hashes are in wire.HASHES (wire.put_hashes) and
-- whose log index is li repeats what a connection before the last
-- reconnect delivered: then it is skipped as a duplicate. Repeating the
-- last log delivered before a gap shows that the node replayed from
-- before the gap, so nothing fell into it. Only with a window (S.dedup):
-- its callers decode the hashes for it only then.
local function repeated(ctx, line, li, removed)
  local dup, id, caught_up = S.dedup:seen_bytes(HASHES, li, removed)
  if not dup then
    S.last_log = id
    return false
  end
  local pending = caught_up and S.gap_logs[id]
  if pending then
    S.gap_logs[id], S.open_gaps = nil, S.open_gaps - pending
    S.n_gap_logs = S.n_gap_logs - 1
  end
  skip(ctx, line, M.DUPLICATE)
  return true
end

-- Rule 3: the identity of a removed log goes to the detector, which alone
-- knows whether it matches an accepted log. One that cannot identify a
-- log (malformed hashes or index) can match nothing.
local function removal(ctx, line, view, arrival)
  local bh, th, key_li = abi.log_key(view)
  local li = bh and wire.u64(key_li)
  if not li then return skip(ctx, line, "removed_unmatched") end
  if S.dedup then
    put_hashes(bh, 3, th, 3)
    if repeated(ctx, line, key_li, true) then return end
  end
  local c = abi.canonical(view)
  local m = ctx:new("LogRetraction")
  m.block, m.tx_index = informational(c.blockNumber),
    informational(c.transactionIndex)
  m.log_index, m.ws_seq, m.arrival_ns = li, line, arrival
  local layout = c.topics and c.topics[1] and abi.LAYOUT[c.topics[1]]
  m.kind = layout and wire.KIND_CODE[layout.kind] or 0
  wire.put_hex(m.block_hash, bh, 3, 32)
  wire.put_hex(m.tx_hash, th, 3, 32)
  if c.address and #c.address == 42 then wire.put_hex(m.pool, c.address, 3, 20) end
  S.removed = S.removed + 1
  S.pub_removed(m)
end

-- A decoded log, as a message. With `text`, ev came from abi.decode_at
-- and the log's hex lies in text where S.at says; else ev is abi.decode's.
local function accept(ctx, line, ev, arrival, text)
  local li = ev.logIndex
  -- Positions beyond 64 bits cannot come from a node; the contracts
  -- carry u64 (docs/BANDIT.md, engine decisions).
  if not wire.positions_fit(ev) then return skip(ctx, line, abi.BAD_DATA) end
  -- The hashes are decoded once, into wire.HASHES, where the window
  -- compares them and the fill copies them: no string per hash (each
  -- would cost an interning lookup and, on a live chain, garbage).
  local decoded = S.dedup ~= nil
  if decoded then
    if text then
      local at = S.at
      put_hashes(text, at.blockHash + 3, text, at.transactionHash + 3)
    else
      put_hashes(ev.blockHash, 3, ev.txHash, 3)
    end
    if repeated(ctx, line, li, false) then return end
  end
  -- Filled through the message's plain pointer (one cast here, in the
  -- handler that made it): the handle's checked accessors cost a
  -- metamethod, a liveness check and a boxed field reference for each of
  -- the fifteen or so fields. The handle is what is emitted.
  if ev.kind == "v2_sync" then
    local m = ctx:new("PoolStateUpdate")
    if text then
      wire.fill_sync_at(cast(S.state_ptr, m), text, S.at, ev, line, arrival,
                        decoded)
    else
      wire.fill_sync(cast(S.state_ptr, m), ev, line, arrival, decoded)
    end
    S.pub_state(m)
  else
    local m = ctx:new("SwapEvent")
    if text then
      wire.fill_swap_at(cast(S.swap_ptr, m), text, S.at, ev, line, arrival,
                        decoded)
    else
      wire.fill_swap(cast(S.swap_ptr, m), ev, line, arrival, decoded)
    end
    S.pub_swap(m)
  end
  S.accepted = S.accepted + 1
end

-- Whether the stream is known whole, and how many lines it lacks (nil:
-- unknown). `expected` counts every line, repeats included. Short of it,
-- the stream lacks lines; with no repeats the difference is their number.
-- Reaching it with no repeats proves nothing was lost (a node that went
-- on from a later block would leave it short). Once the node repeated
-- itself the count proves nothing (lines that are not logs cannot be told
-- apart when sent again): every gap must have been replayed over.
local function completeness(expected)
  local dups = S.by_reason[M.DUPLICATE] or 0
  if expected and S.line < expected then
    return false, dups == 0 and expected - S.line or nil
  end
  if (expected and dups == 0) or S.open_gaps == 0 then return true, 0 end
  return false, nil
end

local function incomplete(ctx, expected, missing)
  local fields = { lines = S.line, expected = expected, gaps = S.gaps }
  if missing then
    ctx.log:error(format("the stream is incomplete: %d of %d lines were not "
      .. "received (%d connection(s) lost mid-stream); the results lack "
      .. "them", missing, expected, S.gaps), fields)
  else
    ctx.log:error(format("the stream is not known whole: %d connection(s) "
      .. "lost mid-stream, and the node did not send again what it sent "
      .. "meanwhile; the results lack an unknown number of lines", S.gaps),
      fields)
  end
end

local function finish(ctx, why, upstream)
  if S.ended then return end
  S.ended = true
  local expected = S.end_after or
    (type(upstream) == "table" and tonumber(upstream.lines)) or nil
  local complete, missing = completeness(expected)
  ctx.log:info("end of stream: " .. why, { lines = S.line })
  if not complete then incomplete(ctx, expected, missing) end
  S.pub_end {
    service = ctx.name, lines = S.line, subscription_id = S.sub_id or false,
    accepted = S.accepted, removed = S.removed, skipped = S.skipped,
    by_reason = S.by_reason, reason = why, upstream = upstream,
    disconnects = S.disconnects, subscriptions = S.subscriptions,
    first_ns = S.first_ns or false, expected = expected or false,
    missing = missing or false, gaps = S.gaps, complete = complete,
    duplicates = S.by_reason[M.DUPLICATE] or 0,
  }
end

--- Pools not in the list (opts.discover) ------------------------------------

-- README rule 5 skips a log whose address is not in pools.json. With
-- opts.discover the adapter passes such logs on instead, with the pool
-- kind their topic0 implies, and MetadataService learns the pool from
-- the node (eth_call token0(), token1(), fee()). A registry in front of
-- the list answers for any well-formed address; the kind of the log being
-- decoded is set just before (S.want_kind). Bounded: an adversarial
-- stream of fresh addresses cannot grow it without limit.
local function discovering(reg)
  local seen, n = {}, 0
  local proxy = {}
  function proxy.pool(_, addr)
    local p = reg:pool(addr)
    if p or not S.want_kind or type(addr) ~= "string" or #addr ~= 42 then
      return p
    end
    local key = addr:lower()
    local k = key .. S.want_kind
    p = seen[k]
    if not p then
      if n >= 10000 then seen, n = {}, 0 end
      p = { key = key, kind = S.want_kind, discovered = true }
      seen[k], n = p, n + 1
    end
    return p
  end
  return proxy
end

-- The pool kind a log's topic0 implies (for discovery), or nil.
local function implied_kind(view)
  local c = abi.canonical(view)
  local layout = c.topics and c.topics[1] and abi.LAYOUT[c.topics[1]]
  return layout and layout.pool_kind
end

--- One message of the stream, exactly as received. Exposed for tests and
--- for the ws callbacks; the handler of opts.raw_topic calls it too.
--- `arrival` (CLOCK_MONOTONIC ns) is when its bytes came off the socket;
--- a line handed over on a topic arrives when its handler runs.
--- `malformed`: the text is known not to be JSON (it is not parsed again).
function M.process(ctx, text, arrival, malformed)
  -- Two trace breaks per message (a classic C call ends the trace being
  -- recorded; LuaJIT starts the next one after it, "stitch"): one here
  -- and one after the scan. A message has no loop until the duplicate
  -- window's, so without them the trace that leaves the last loop of one
  -- message's fill had to run through its emit, the delivery loop and
  -- the next message's scan and decode: too long for one trace. After a
  -- few such aborts LuaJIT sends that exit to the interpreter for good,
  -- and the emit of every later log ran interpreted.
  gc("count")
  arrival = arrival or now_ns()
  local line = S.line + 1
  S.line = line
  S.last_ns = arrival
  if not S.first_ns then S.first_ns = arrival end
  if S.expect_reply and line == 1 then
    local id, why = abi.subscription_reply(text)
    S.sub_id = id
    if not id then
      ctx.log:error("line 1 is not the eth_subscribe reply (" .. why ..
                    "): every notification will be foreign", { line = 1 })
    end
  else
    -- A log in geth's layout is decoded where it lies in the text: no
    -- string per field (each would cost an interning lookup and garbage).
    local at, reason
    -- jsonrpc's decoder failed on it: abi's, which takes fewer numbers,
    -- would fail too, after a second parse and a second unwind.
    if malformed then at, reason = nil, abi.MALFORMED_JSON
    else at, reason = abi.envelope_at(text, S.sub_id, S.at) end
    gc("count")
    if not at then
      skip(ctx, line, reason)
    elseif at.removed == true then
      removal(ctx, line, at == S.at and abi.view_at(text, at, S.view) or at,
              arrival)
    elseif at == S.at then
      if S.discover then
        local layout = abi.layout_at(text, at)
        S.want_kind = layout and layout.pool_kind
      end
      local ev
      -- One event table, overwritten per log (accept() keeps nothing).
      ev, reason = abi.decode_at(text, at, S.reg, S.ev_at)
      if ev then accept(ctx, line, ev, arrival, text)
      else skip(ctx, line, reason) end
    else
      local ev
      if S.discover then S.want_kind = implied_kind(at) end
      ev, reason = abi.decode(at, S.reg, S.ev)
      if ev then accept(ctx, line, ev, arrival) else skip(ctx, line, reason) end
    end
  end
  if S.end_after and line >= S.end_after then finish(ctx, "line count reached") end
end

--- WebSocket source ------------------------------------------------------------

-- The three topic0 filters of the README's eth_subscribe request.
local FILTER = { "logs", { topics = { { abi.TOPIC_SYNC, abi.TOPIC_V2_SWAP,
                                        abi.TOPIC_V3_SWAP } } } }
M.FILTER = FILTER

-- Pauses the socket while a consumer downstream fills up, instead of
-- letting its mailbox drop logs (which would change every later signal).
local function flow(ctx)
  local worst = 0
  for _, t in ipairs(S.watch) do
    local p = ctx:pressure(t)
    if p > worst then worst = p end
  end
  if not S.paused and worst > S.high then
    S.paused = true
    S.rpc:pause()
  elseif S.paused and worst < S.low then
    S.paused = false
    S.rpc:resume()
  end
end

-- The connection was lost while logs flowed: whatever the node sends
-- until the new subscription is lost, unless it sends it again. A node
-- that makes us reconnect without end must not grow the table of logs
-- that would close a gap: past MAX_GAP_LOGS, those gaps stay open.
local MAX_GAP_LOGS = 1024

local function gap()
  S.streaming, S.gaps, S.open_gaps = false, S.gaps + 1, S.open_gaps + 1
  local id = S.last_log
  if not id then return end
  if not S.gap_logs[id] then
    if S.n_gap_logs >= MAX_GAP_LOGS then return end
    S.n_gap_logs = S.n_gap_logs + 1
  end
  S.gap_logs[id] = (S.gap_logs[id] or 0) + 1
end

local function start_ws(ctx, opts)
  local ok, jsonrpc = pcall(require, "mycelium.net.jsonrpc")
  if not ok then
    error(format("service '%s': source 'ws' needs mycelium.net.jsonrpc, which "
                 .. "this build lacks (%s); use source = 'topic'", ctx.name,
                 tostring(jsonrpc)), 0)
  end
  local url = opts.url or os.getenv("POLYGON_WS_URL")
  if type(url) ~= "string" or url == "" then
    error(format("service '%s': opts.url or POLYGON_WS_URL must name the "
                 .. "node (ws:// or wss://)", ctx.name), 0)
  end
  S.url = url
  -- Whatever jsonrpc does not route to our subscription (malformed text,
  -- other subscriptions, stray replies) is still a line of the stream.
  local wsopts = {
    on_invalid = function(_, text, why)
      M.process(ctx, text, S.rpc.conn.arrival_ns, why == jsonrpc.MALFORMED)
    end,
    on_open = function(_, again)
      ctx.log:info(again and "reconnected, resubscribing" or "connected",
                   { url = url })
    end,
  }
  for _, k in ipairs { "ca_file", "insecure", "reconnect", "timeout_ms",
                       "open_timeout_ms", "ping_interval_ms",
                       "pong_timeout_ms", "max_message", "headers" } do
    if opts[k] ~= nil then wsopts[k] = opts[k] end
  end
  wsopts.on_close = function(_, info)
    S.disconnects = S.disconnects + 1
    local why = "connection lost: " .. tostring(info.error or info.reason)
    if S.streaming and not S.ended then
      gap()
      why = why .. "; notifications sent until the new subscription are "
        .. "lost unless the node sends them again"
    end
    ctx.log:warn(why, { url = url, reconnect_ms = info.reconnect_ms,
                        lines = S.line, gaps = S.gaps })
    -- Closed for good (reconnect = false, or its attempts are spent).
    if info.reconnect_ms == nil then finish(ctx, "connection closed") end
  end
  S.rpc = jsonrpc.connect(ctx, url, wsopts)
  S.expect_reply = false
  -- Latency starts when the bytes arrived: the socket read that brought
  -- them (a read may bring many messages, handled in one call).
  local conn = S.rpc.conn
  S.rpc:subscribe(FILTER, function(text) M.process(ctx, text, conn.arrival_ns) end, {
    raw = true,
    on_subscribed = function(_, id)
      -- The first reply is line 1 of the stream; a reconnect's reply is
      -- not a line (the node continues the same stream of logs).
      if not S.subscribed then S.line = S.line + 1 end
      if S.subscribed and S.dedup then S.dedup:reconnected() end
      S.streaming = true
      S.subscribed, S.sub_id = true, id
      S.subscriptions = S.subscriptions + 1
      ctx.log:info("subscribed to logs", { subscription = id })
    end,
    on_error = function(_, err)
      ctx.log:error("eth_subscribe failed: " .. tostring(err.message or err),
                    { url = url })
    end,
  })
  ctx:every(S.flow_ms, flow)
end

--- Service ------------------------------------------------------------------------

local function list(v, default)
  if v == nil then return default end
  if type(v) == "string" then return { v } end
  return v
end

-- The duplicate window: opts.dedup_window logs (default 10 000, as the
-- detector's reorg window: a node restarted or switched behind a balancer
-- repeats recent blocks, not history), false to let repeats through.
local function window(ctx, size)
  if size == false then return nil end
  if size == nil then size = 10000 end
  if type(size) ~= "number" or size < 1 or size % 1 ~= 0 then
    error(format("service '%s': opts.dedup_window must be a whole number "
                 .. ">= 1 or false, got %s", ctx.name, tostring(size)), 0)
  end
  return dedup.new(size)
end

function M.init(ctx, opts)
  wire.gc_pause(ctx, opts)
  local reg, err = registry.load(opts.pools or DATA .. "pools.json",
                                 opts.tokens or DATA .. "tokens.json")
  if not reg then
    error(format("service '%s': cannot load the pool registry: %s",
                 ctx.name, tostring(err)), 0)
  end
  S = {
    reg = reg, line = 0, sub_id = opts.subscription, accepted = 0,
    disconnects = 0, subscriptions = 0,
    removed = 0, skipped = 0, by_reason = {}, ended = false,
    gaps = 0, open_gaps = 0, gap_logs = {}, n_gap_logs = 0, streaming = false,
    dedup = window(ctx, opts.dedup_window),
    -- Every message is scanned into these positions (abi.envelope_at)
    -- and decoded into these events: a log is done with before the next
    -- message is read.
    at = abi.new_positions(), view = abi.new_view(), ev = abi.new_event(),
    ev_at = abi.new_event_at(),
    expect_reply = opts.subscription == nil, end_after = opts.end_after,
    last_ns = now_ns(), flow_ms = opts.flow_ms or 1,
    high = opts.pause_above or 0.5, low = opts.resume_below or 0.25,
    watch = list(opts.watch, { T.log_state, T.enriched_state, T.applied }),
    pub_state = ctx:publisher(T.log_state),
    pub_swap = ctx:publisher(T.log_swap),
    pub_removed = ctx:publisher(T.log_removed),
    pub_skipped = ctx:publisher(T.skipped),
    pub_end = ctx:publisher(T.end_adapter),
  }
  local types = ctx.contracts
  if not types then
    error(format("service '%s': needs the Bandit contracts (config "
                 .. "contracts = \"services/contracts.yaml\")", ctx.name), 0)
  end
  S.state_ptr = types:type("PoolStateUpdate").ptr
  S.swap_ptr = types:type("SwapEvent").ptr
  local source = opts.source or ((opts.url or os.getenv("POLYGON_WS_URL"))
                                 and "ws" or "topic")
  S.source = source
  if opts.discover == true then
    S.discover, S.reg = true, discovering(reg)
  end
  if source == "topic" then
    S.raw_topic = opts.raw_topic or T.raw
    ctx:subscribe(S.raw_topic)
    ctx:subscribe(T.end_feeder)
  elseif source == "ws" then
    start_ws(ctx, opts)
  else
    error(format("service '%s': opts.source must be 'ws' or 'topic', got %s",
                 ctx.name, tostring(source)), 0)
  end
  if opts.idle_end_ms then
    -- A live stream has no end; a replay ends when it falls silent.
    ctx:every(opts.idle_end_ms / 4, function()
      -- Silence while we hold the socket paused is ours, not the end.
      if S.paused then S.last_ns = now_ns() end
      -- So is silence after the subscription reply and before the first
      -- notification: a replay held until its consumers are linked (or a
      -- quiet chain) has not begun. Ending there sent the end ahead of
      -- the whole stream, to processes not yet linked: lost, unnoticed.
      local reply = (S.source == "ws" or S.expect_reply) and 1 or 0
      if S.line > reply and now_ns() - S.last_ns > opts.idle_end_ms * 1e6 then
        finish(ctx, "idle for " .. opts.idle_end_ms .. " ms")
      end
    end)
  end
end

function M.on_message(ctx, msg)
  local topic = msg.topic
  if topic == S.raw_topic then
    local data = msg.data
    if type(data) ~= "string" then
      -- Only raw text is a line; anything else is somebody's bug.
      S.line = S.line + 1
      return skip(ctx, S.line, abi.MALFORMED_JSON)
    end
    return M.process(ctx, data)
  end
  if topic == T.end_feeder then
    return finish(ctx, "the feeder ended", msg.data)
  end
end

--- Counters, for tests and the recorder's summary.
function M.stats()
  local t = {}
  for k, v in pairs(S) do
    if type(v) ~= "function" and type(v) ~= "table" then t[k] = v end
  end
  t.by_reason = S.by_reason
  return t
end

function M.stop()
  if S and S.rpc then S.rpc:close() end
end

--- Warm-up (docs/BANDIT.md): run by the engine after init, before any
--- line, with the JIT on. Synthetic notifications of the configured
--- pools (bandit.warmup) go the way real ones will (the raw topic's
--- handler, or process() as the socket's callback calls it) against
--- scratch values of the state; the engine drops what they emit.
local WARM_WINDOW = 64
function M.warmup(ctx, warm)
  local n = warmup.count(ctx.opts)
  if n == 0 then return end
  local lines = warmup.lines(warmup.load(ctx.opts, DATA), n)
  warmup.in_place(S, function()
    S.line, S.accepted, S.removed, S.skipped = 0, 0, 0, 0
    S.by_reason, S.gap_logs, S.n_gap_logs = {}, {}, 0
    S.gaps, S.open_gaps, S.ended = 0, 0, false
    S.sub_id, S.expect_reply, S.end_after = nil, true, nil
    S.first_ns, S.last_log = nil, nil
    -- A small window, so that the warm-up's logs leave it and their slots
    -- are taken again, as they will be once the real window is full.
    S.dedup = S.dedup and window(ctx, WARM_WINDOW)
    -- Over WebSocket, process() as the socket's callback calls it. Not
    -- through jsonrpc's routing (rpc:receive): that warm-up compiled
    -- the routing before the first read, and left a flood 25-34 % more
    -- CPU per event (docs/PERFORMANCE.md, "The cold start on the faster
    -- VM").
    for _, text in ipairs(lines) do
      if S.raw_topic then warm:deliver(S.raw_topic, text)
      else M.process(ctx, text) end
    end
  end)
end

return M
