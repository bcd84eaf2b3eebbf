-- bench typed producer: emits opts.total swaps on opts.topic in chunks,
-- by opts.mode: a typed 96-byte SwapEvent made with ctx:new (zero copy),
-- the same from one reused Lua-owned struct (refilled, copied on emit),
-- that struct emitted as is, a raw 96-byte string, or a 6-field table.  Paced like producer.lua; reports the time
-- spent making and emitting (the cost a service pays): in all, and the
-- median over its chunks of the ns per message (a chunk takes well under
-- a scheduler's time slice, so on a loaded machine most chunks run
-- without being preempted, and their median is the cost itself).
local ffi = require "ffi"

local M = { subscribe = { "bench.go" } }

local total, chunk, sent, emit_secs = 0, 4096, 0, 0
local chunk_ns = {} -- ns per message of each chunk
local topic, mode, pub
local RAW = string.rep("s", 96)
local POOL = string.rep("\7", 20)
local POOL_HEX = "0x" .. string.rep("07", 20)
local AMOUNT_IN, AMOUNT_OUT -- U256 values, copied into each message

local function typed(ctx, n)
  for i = 1, n do
    local m = ctx:new("SwapEvent")
    m.block = sent + i
    m.tx_index = 7
    m.log_index = 3
    ffi.copy(m.pool, POOL, 20)
    m.amount_in = AMOUNT_IN
    m.amount_out = AMOUNT_OUT
    pub(m)
  end
end

-- One Lua-owned struct, refilled and emitted again and again: emit copies
-- its 96 bytes into an engine buffer (as for a raw string) and nothing
-- is allocated per message.
local reused
local function typed_reuse(_, n)
  local m = reused
  for i = 1, n do
    m.block = sent + i
    m.tx_index = 7
    m.log_index = 3
    ffi.copy(m.pool, POOL, 20)
    m.amount_in = AMOUNT_IN
    m.amount_out = AMOUNT_OUT
    pub(m)
  end
end

-- The same struct emitted again and again without refilling it: the
-- cost of the emit alone, against a raw string that is not rebuilt either.
local function typed_same(_, n)
  local m = reused
  for _ = 1, n do pub(m) end
end

local function raw(_, n)
  for _ = 1, n do pub(RAW) end
end

local function tables(_, n)
  for i = 1, n do
    pub { block = sent + i, tx_index = 7, log_index = 3, pool = POOL_HEX,
          amount_in = 1e18, amount_out = 2.5e9 }
  end
end

local emitters = { typed = typed, typed_reuse = typed_reuse,
                   typed_same = typed_same, raw = raw, table = tables }

function M.init(ctx, opts)
  total, chunk, mode, topic = opts.total, opts.chunk or 4096, opts.mode, opts.topic
  pub = ctx:publisher(topic)
  if mode:match("^typed") then
    local contract = require "mycelium.contract"
    AMOUNT_IN = contract.u256("1000000000000000000")
    AMOUNT_OUT = contract.u256("2500000000")
    assert(ctx.contracts:type("SwapEvent").size == 96)
    reused = ctx.contracts:type("SwapEvent"):new { block = 1, pool = POOL,
      tx_index = 7, log_index = 3, amount_in = AMOUNT_IN, amount_out = AMOUNT_OUT }
  end
  ctx:emit("bench.go", "")
end

function M.on_message(ctx)
  if ctx:pressure(topic) > 0.5 then
    return ctx:emit("bench.go", "")
  end
  local n = math.min(chunk, total - sent)
  local t0 = ctx:now()
  emitters[mode](ctx, n)
  local secs = ctx:now() - t0
  emit_secs = emit_secs + secs
  chunk_ns[#chunk_ns + 1] = secs * 1e9 / n
  sent = sent + n
  if sent < total then
    ctx:emit("bench.go", "")
  else
    table.sort(chunk_ns)
    ctx:emit("bench.result.producer", string.format("%d %.9f %.3f", sent,
      emit_secs, chunk_ns[math.floor((#chunk_ns + 1) / 2)]))
  end
end

return M
