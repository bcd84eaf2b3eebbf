-- wire.lua -- Bandit events <-> the typed contract messages the engine
-- services exchange (services/contracts.yaml), and the topic names.
--
-- Invariant: a message carries exactly what abi.decode read (same bits,
-- same positions), so every service downstream of the adapter renders
-- the same fields and prices as the offline oracle. Hex goes to bytes
-- through a 64 KiB pair table (one load per byte), bytes go back to hex
-- or decimal only where something is written for people.
local ffi = require "ffi"
local bit = require "bit"
local bigint = require "bandit.bigint"
local eip55 = require "bandit.eip55"
local contract = require "mycelium.contract"

local cast, fstring, copy, fill = ffi.cast, ffi.string, ffi.copy, ffi.fill
local band = bit.band
local byte, format, find, sub = string.byte, string.format, string.find,
  string.sub
local type, tonumber, tostring, concat = type, tonumber, tostring,
  table.concat

local M = {}

-- Bandit's addresses are EIP-55 checksummed wherever they are written;
-- registering the codec makes mycelium.contract agree (T:totable, and
-- T:new / ctx:new from hex check mixed case) in every Lua state that
-- loads this module: each Bandit service, the feeder and the recorder.
contract.set_address_codec(eip55)

--- Topics -------------------------------------------------------------------

--- Every topic of the pipeline, in flow order. Services take these names;
--- only tests and tools should ever need another set.
M.TOPICS = {
  raw = "bandit.raw",                      -- raw text lines (injected)
  log_state = "bandit.log.state",          -- adapter: PoolStateUpdate
  log_swap = "bandit.log.swap",            -- adapter: SwapEvent
  log_removed = "bandit.log.removed",      -- adapter: LogRetraction
  token = "bandit.token",                  -- metadata: InstrumentMeta
  pool = "bandit.pool",                    -- metadata: PoolMeta
  enriched_state = "bandit.enriched.state",
  enriched_swap = "bandit.enriched.swap",
  enriched_removed = "bandit.enriched.removed",
  applied = "bandit.applied",              -- detector: EventApplied
  signal = "bandit.signal",                -- detector: ArbitrageSignal
  skipped = "bandit.skipped",              -- everyone: {line, reason, ...}
  -- End of a finite stream, forwarded stage by stage behind everything
  -- the stage emitted before it (a table with that stage's counts).
  end_feeder = "bandit.end.feeder",
  end_adapter = "bandit.end.adapter",
  end_metadata = "bandit.end.metadata",
  end_detector = "bandit.end.detector",
}

--- Event kinds as numbered in the contracts.
M.KIND_CODE = { v2_sync = 1, v2_swap = 2, v3_swap = 3 }
M.KIND_NAME = { "v2_sync", "v2_swap", "v3_swap" }

--- Clock --------------------------------------------------------------------

-- The engine clock is virtual under mycelium.testing; latencies need the
-- real one. clock_gettime may already be declared in this Lua state (by
-- mycelium.testing, with its own struct), so call it through a pointer.
if not pcall(function() return ffi.C.clock_gettime end) then
  ffi.cdef "int clock_gettime(int, void *);"
end
local gettime = cast("int (*)(int, void *)", ffi.C.clock_gettime)
local ts = ffi.new("int64_t[2]")
local CLOCK_MONOTONIC = 1

--- CLOCK_MONOTONIC in nanoseconds (a double: exact for 104 days of uptime).
function M.now_ns()
  gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts[0]) * 1e9 + tonumber(ts[1])
end

--- Collector ----------------------------------------------------------------

--- The collector's pause of a Bandit service's Lua state: opts.gc_pause
--- (default 400: a cycle starts when the heap reaches four times what
--- the last one left live; Lua's default is 200). The adapter and the
--- detector make garbage with every log while keeping a window of the
--- newest logs alive, which every cycle marks and sweeps again: a cycle
--- after three times the live heap is allocated rather than once makes
--- that part a third, for a higher peak heap
--- (docs/TUNING.md, "The collector's pause").
function M.gc_pause(ctx, opts)
  local p = opts.gc_pause
  if p == nil then p = 400 end
  if type(p) ~= "number" or p < 100 or p % 1 ~= 0 then
    error(format("service '%s': opts.gc_pause must be a whole number >= "
                 .. "100, got %s", ctx.name, tostring(p)), 0)
  end
  collectgarbage("setpause", p)
end

--- Hex -> bytes -------------------------------------------------------------

local u8p, u16p = ffi.typeof("uint8_t *"), ffi.typeof("const uint16_t *")

-- PAIR[two ASCII hex digits read as one little-endian u16] = their byte.
-- Callers pass validated hex only (abi.decode checked every digit).
local PAIR = ffi.new("uint8_t[65536]")
do
  local HEXV = bigint.HEXV
  for hi = 0, 255 do
    for lo = 0, 255 do
      if HEXV[hi] >= 0 and HEXV[lo] >= 0 then
        PAIR[hi + 256 * lo] = HEXV[hi] * 16 + HEXV[lo]
      end
    end
  end
end

-- Each hex loop below is a trace of its own, which the handler's trace
-- enters at every call and leaves at its end: every cdata value live in
-- any frame at that point (a pointer argument, a field reference, a cast)
-- is boxed there, one allocation each. Called with pointers, the ten or
-- so loops of a log message boxed some thirty values, 460 of the
-- adapter's 680 bytes of garbage per event (docs/PERFORMANCE.md, "Bandit
-- flood: the fill's boxed pointers"). So the loops take only a string and
-- numbers, and find their destination in DST, set just before the call.
local DST = ffi.new("uint8_t *[1]")
local cp = ffi.typeof("const char *")

-- The n bytes spelled by the 2n hex digits of s at 1-based position i,
-- in order, into DST[0].
local function hex_to_dst(s, i, n)
  for k = 0, n - 1 do
    DST[0][k] = PAIR[cast(u16p, cast(cp, s) + (i - 1))[k]]
  end
end

-- The 32-byte ABI word at 1-based position i of s, little-endian, into
-- DST[0].
local function word_to_dst(s, i)
  for k = 0, 31 do
    DST[0][31 - k] = PAIR[cast(u16p, cast(cp, s) + (i - 1))[k]]
  end
end

--- Writes the n bytes spelled by the 2n hex digits of s at 1-based
--- position i into dst, in order (hashes, addresses).
function M.put_hex(dst, s, i, n)
  DST[0] = cast(u8p, dst)
  hex_to_dst(s, i, n)
end
local put_hex = M.put_hex

--- The block and transaction hash of the log being handled, as bytes
--- (32 + 32): the duplicate window reads them and the fill copies them,
--- so that a log's hashes are decoded once and never made into strings.
M.HASHES = ffi.new("uint8_t[64]")
local HASHES = M.HASHES
local HASHES_TX = HASHES + 32

--- Writes the block hash spelled at 1-based position b of bs and the
--- transaction hash at t of ts (64 validated hex digits each) into
--- M.HASHES.
function M.put_hashes(bs, b, ts, t)
  DST[0] = HASHES
  hex_to_dst(bs, b, 32)
  DST[0] = HASHES_TX
  hex_to_dst(ts, t, 32)
end

local u32p = ffi.typeof("const uint32_t *")

--- A number from 53 bits of the 32 hash bytes at p (any bits of a
--- keccak hash are as good as any other): an index key that makes no
--- string. Keys of different hashes may collide; whoever indexes by it
--- compares the full bytes.
function M.hash_key(p)
  local w = cast(u32p, p)
  return w[0] + band(w[1], 0x1FFFFF) * 4294967296
end

--- Writes the 32-byte ABI word at 1-based position i of s into dst
--- little-endian (the U256 / I256 layout: the same bits reversed).
function M.put_word_le(dst, s, i)
  DST[0] = cast(u8p, dst)
  word_to_dst(s, i)
end

--- u64 quantities -----------------------------------------------------------

local U64_MAX = "18446744073709551615"

--- A quantity as abi.decode returns it (a number, or a decimal string
--- above 2^53) as a value for a u64 field, or nil when it needs more
--- than 64 bits.
function M.u64(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" or not find(v, "^%d+$") then return nil end
  v = v:gsub("^0+(%d)", "%1")
  if #v > 20 or (#v == 20 and v > U64_MAX) then return nil end
  local x = 0ULL
  for k = 1, #v do x = x * 10 + (byte(v, k) - 48) end
  return x
end

--- A u64 field read back as the decoder gives quantities: a Lua number
--- up to 2^53, else its decimal string.
function M.qty(x)
  if x <= 9007199254740992ULL then return tonumber(x) end
  return (tostring(x):gsub("ULL$", ""))
end

--- Adapter: decoded event -> message ---------------------------------------

local W = {}
for k = 1, 5 do W[k] = 3 + 64 * (k - 1) end

-- The hex the fields are filled from: block hash, transaction hash and
-- data each in a string, at a 1-based position (the first digit of a
-- hash, or d such that word k starts at ds[d + W[k]]); either the
-- decoded event's own strings or the message text they lie in.

-- Position fields shared by every log message. bs false: the hashes
-- are in HASHES already (M.put_hashes).
local function put_position(m, ev, line, arrival, bs, b, ts, t)
  m.block, m.tx_index, m.log_index = ev.block, ev.txIndex, ev.logIndex
  m.ws_seq, m.arrival_ns = line, arrival
  if bs then
    DST[0] = cast(u8p, m.block_hash)
    hex_to_dst(bs, b, 32)
    DST[0] = cast(u8p, m.tx_hash)
    hex_to_dst(ts, t, 32)
  else
    copy(m.block_hash, HASHES, 32)
    copy(m.tx_hash, HASHES_TX, 32)
  end
  DST[0] = cast(u8p, m.pool)
  hex_to_dst(ev.pool.key, 3, 20)
end

local function sync(m, ev, line, arrival, bs, b, ts, t, ds, d)
  put_position(m, ev, line, arrival, bs, b, ts, t)
  m.kind = 1
  DST[0] = cast(u8p, m.reserve0)
  word_to_dst(ds, d + W[1])
  DST[0] = cast(u8p, m.reserve1)
  word_to_dst(ds, d + W[2])
end

--- Fills a zeroed PoolStateUpdate from a decoded v2_sync. Positions must
--- fit u64 (M.positions_fit). `decoded`: the log's hashes are in
--- M.HASHES (M.put_hashes), copied instead of decoded again.
function M.fill_sync(m, ev, line, arrival, decoded)
  sync(m, ev, line, arrival, not decoded and ev.blockHash, 3, ev.txHash, 3,
       ev.data, 0)
end

--- M.fill_sync for a log abi.decode_at decoded into ev, whose hex lies
--- in s where `at` says.
function M.fill_sync_at(m, s, at, ev, line, arrival, decoded)
  sync(m, ev, line, arrival, not decoded and s, at.blockHash + 3, s,
       at.transactionHash + 3, s, at.data)
end

-- The first four 32-byte words of ds (at d, as above) into fields a, b,
-- c and e of m (the field names are constants where this is inlined).
local function four_words(m, ds, d, a, b, c, e)
  DST[0] = cast(u8p, m[a])
  word_to_dst(ds, d + W[1])
  DST[0] = cast(u8p, m[b])
  word_to_dst(ds, d + W[2])
  DST[0] = cast(u8p, m[c])
  word_to_dst(ds, d + W[3])
  DST[0] = cast(u8p, m[e])
  word_to_dst(ds, d + W[4])
end

-- Address topics: the address is the last 20 of 32 bytes, at the 1-based
-- positions s2 and s3 of strings t2 and t3.
local function swap(m, ev, line, arrival, bs, b, ts, t, ds, d, t2, s2, t3, s3)
  put_position(m, ev, line, arrival, bs, b, ts, t)
  DST[0] = cast(u8p, m.sender)
  hex_to_dst(t2, s2, 20)
  DST[0] = cast(u8p, m.recipient)
  hex_to_dst(t3, s3, 20)
  if ev.kind == "v2_swap" then
    m.kind = 2
    four_words(m, ds, d, "amount0_in", "amount1_in", "amount0_out",
               "amount1_out")
    return
  end
  m.kind = 3
  four_words(m, ds, d, "amount0", "amount1", "sqrt_price_x96", "liquidity")
  m.tick = ev.tick
end

--- Fills a zeroed SwapEvent from a decoded v2_swap or v3_swap
--- (`decoded` as for M.fill_sync).
function M.fill_swap(m, ev, line, arrival, decoded)
  local t = ev.topics
  swap(m, ev, line, arrival, not decoded and ev.blockHash, 3, ev.txHash, 3,
       ev.data, 0, t[2], 27, t[3], 27)
end

--- M.fill_swap for a log abi.decode_at decoded into ev, whose hex lies
--- in s where `at` says.
function M.fill_swap_at(m, s, at, ev, line, arrival, decoded)
  swap(m, ev, line, arrival, not decoded and s, at.blockHash + 3, s,
       at.transactionHash + 3, s, at.data, s, at.topic2 + 27, s,
       at.topic3 + 27)
end

--- Converts an event's positions for the u64 fields in place; false when
--- one needs more than 64 bits (the adapter then skips it as bad_data).
function M.positions_fit(ev)
  local b, t, l = ev.block, ev.txIndex, ev.logIndex
  if type(b) == "number" and type(t) == "number" and type(l) == "number" then
    return true
  end
  b, t, l = M.u64(b), M.u64(t), M.u64(l)
  if not (b and t and l) then return false end
  ev.block, ev.txIndex, ev.logIndex = b, t, l
  return true
end

--- Detector and recorder: message -> fields --------------------------------

--- The raw bytes of a byte-array field as a Lua string (table keys).
function M.bytes(field, n) return fstring(field, n) end

local HEX = {}
for i = 0, 255 do HEX[i] = format("%02x", i) end

--- Lowercase 0x-hex of n bytes at p.
function M.hex(p, n)
  p = cast("const uint8_t *", p)
  local out = {}
  for i = 0, n - 1 do out[i + 1] = HEX[p[i]] end
  return "0x" .. concat(out)
end

--- EIP-55 form of a 20-byte address field.
function M.address(p) return (eip55.checksum(M.hex(p, 20))) end

local tmp = bigint.new()

--- Decimal text of a 32-byte little-endian U256 (signed: an I256).
function M.dec(p, signed)
  tmp:set_bytes_le(p, 32, signed)
  return tmp:tostring()
end

--- Copies a Lua string into a String field of capacity cap; false when it
--- does not fit (the caller decides what that means).
function M.set_string(field, s, cap)
  local n = #s
  if n > cap then return false end
  copy(field.data, s, n)
  if n < cap then fill(field.data + n, cap - n) end
  field.len = n
  return true
end

--- The text of a String field.
function M.string(field) return fstring(field.data, field.len) end

--- 20 raw bytes of a 0x address in any case, or nil.
function M.address_bytes(s)
  if type(s) ~= "string" or #s ~= 42 or not find(s, "^0[xX]%x+$") then
    return nil
  end
  local b = ffi.new("uint8_t[20]")
  put_hex(b, s, 3, 20)
  return fstring(b, 20)
end

--- Lowercase 0x-hex key of 20 raw address bytes (registry keys).
function M.key_of(raw) return M.hex(raw, #raw) end

M.sub = sub
return M
