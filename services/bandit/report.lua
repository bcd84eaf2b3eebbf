-- report.lua -- output records (events, skipped, signals, summary) and an
-- order-preserving JSON encoder, so lines diff byte for byte against the
-- expected files.
--
-- Field names, order and value formats are those of the README §5 files:
-- big quantities are decimal strings, small integers JSON integers,
-- prices and bps pre-rendered strings, absent prices JSON null. The
-- encoder writes like Python's json.dumps (ASCII only, same separators).
local ffi = require "ffi"
local cjson = require "cjson"

local byte, char, find, format, rep, sort =
  string.byte, string.char, string.find, string.format, string.rep,
  table.sort
local concat, type, pairs, ipairs, setmetatable, getmetatable, floor, error =
  table.concat, type, pairs, ipairs, setmetatable, getmetatable, math.floor,
  error

ffi.cdef "size_t strcspn(const char *, const char *);"
local C = ffi.C

local M = {}

--- JSON null, distinct from an absent field (cjson's null, so decoded
--- expected files compare equal).
M.null = cjson.null
local null = M.null

--- Ordered objects ----------------------------------------------------------

-- Stored flat, o[2i-1] = key and o[2i] = value: records are built per
-- event, so one table per object, not three.
local Object = {}
Object.__index = Object

--- A JSON object that keeps insertion order: o:put(k, v) appends a new
--- key (builders name each key once), o:set(k, v) replaces or appends.
function M.object()
  return setmetatable({ n = 0 }, Object)
end

function Object:put(k, v)
  if v == nil then v = null end
  local n = self.n + 1
  self[2 * n - 1], self[2 * n], self.n = k, v, n
  return self
end

function Object:set(k, v)
  for i = 1, self.n do
    if self[2 * i - 1] == k then
      self[2 * i] = v == nil and null or v
      return self
    end
  end
  return self:put(k, v)
end

function Object:get(k)
  for i = 1, self.n do
    if self[2 * i - 1] == k then
      local v = self[2 * i]
      if v == null then return nil end
      return v
    end
  end
  return nil
end

--- Keys in order.
function Object:keys()
  local t = {}
  for i = 1, self.n do t[i] = self[2 * i - 1] end
  return t
end

--- A plain Lua table of an ordered object (recursively), with JSON null
--- as report.null: what cjson.decode gives for the encoded text.
function M.plain(v)
  if getmetatable(v) ~= Object then return v end
  local t = {}
  for i = 1, v.n do t[v[2 * i - 1]] = M.plain(v[2 * i]) end
  return t
end

--- A plain table with string keys as an object with sorted keys.
function M.sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  local o = M.object()
  for _, k in ipairs(keys) do o:put(k, t[k]) end
  return o
end

--- Encoder ------------------------------------------------------------------

local SHORT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b",
                ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
                ["\t"] = "\\t" }

local function u_escape(cp)
  if cp < 0x10000 then return format("\\u%04x", cp) end
  cp = cp - 0x10000
  return format("\\u%04x\\u%04x", 0xD800 + floor(cp / 0x400),
                0xDC00 + cp % 0x400)
end

-- Code point and length of the UTF-8 sequence at s[i]; a byte that does
-- not start a well-formed sequence stands for itself (Latin-1).
local function utf8_at(s, i)
  local b = byte(s, i)
  local n = b >= 0xF0 and 4 or (b >= 0xE0 and 3 or (b >= 0xC2 and 2 or 1))
  if b > 0xF4 then n = 1 end
  local cp = n == 1 and b or b % 2 ^ (7 - n)
  for k = 1, n - 1 do
    local c = byte(s, i + k)
    if not c or c < 0x80 or c > 0xBF then return b, 1 end
    cp = cp * 64 + c % 64
  end
  return cp, n
end

-- Bytes that need escaping: '"', '\\', controls, DEL and non-ASCII.
local SPECIAL = { '"\\\127' }
for c = 1, 31 do SPECIAL[#SPECIAL + 1] = char(c) end
for c = 128, 255 do SPECIAL[#SPECIAL + 1] = char(c) end
SPECIAL = concat(SPECIAL)

local function quote_slow(s)
  local out, i = { '"' }, 1
  while i <= #s do
    local cp, n = utf8_at(s, i)
    local c = char(byte(s, i))
    if n == 1 and cp >= 32 and cp < 127 then
      out[#out + 1] = SHORT[c] or c
    else
      out[#out + 1] = (n == 1 and SHORT[c]) or u_escape(cp)
    end
    i = i + n
  end
  out[#out + 1] = '"'
  return concat(out)
end

local function quote(s)
  -- strcspn stops at the first special byte (or an embedded NUL, which
  -- then also takes the slow path and is escaped there).
  if C.strcspn(s, SPECIAL) == #s then return '"' .. s .. '"' end
  return quote_slow(s)
end
M.quote = quote

local function number(v)
  if v == floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then
    return format("%d", v)
  end
  if v ~= v or v == 1 / 0 or v == -1 / 0 then
    error("report.encode: NaN and infinities are not JSON", 3)
  end
  return format("%.17g", v)
end

local encode

local QKEY = setmetatable({}, { __index = function(t, k)
  local q = quote(k)
  t[k] = q
  return q
end })

local function encode_object(o, ind, depth, out)
  local n = o.n
  if n == 0 then out[#out + 1] = "{}" return end
  local nl = ind and "\n" .. rep(" ", ind * (depth + 1)) or ""
  local colon = ind and ": " or ":"
  out[#out + 1] = "{"
  for i = 1, n do
    local m = #out
    out[m + 1], out[m + 2], out[m + 3], out[m + 4] =
      i > 1 and "," or "", nl, QKEY[o[2 * i - 1]], colon
    encode(o[2 * i], ind, depth + 1, out)
  end
  out[#out + 1] = ind and "\n" .. rep(" ", ind * depth) .. "}" or "}"
end

local function encode_array(t, ind, depth, out)
  if #t == 0 then out[#out + 1] = "[]" return end
  local nl = ind and "\n" .. rep(" ", ind * (depth + 1)) or ""
  out[#out + 1] = "["
  for i = 1, #t do
    out[#out + 1] = (i > 1 and "," or "") .. nl
    encode(t[i], ind, depth + 1, out)
  end
  out[#out + 1] = ind and "\n" .. rep(" ", ind * depth) .. "]" or "]"
end

encode = function(v, ind, depth, out)
  local t = type(v)
  if t == "string" then out[#out + 1] = quote(v)
  elseif t == "number" then out[#out + 1] = number(v)
  elseif t == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif v == nil or v == null then out[#out + 1] = "null"
  elseif getmetatable(v) == Object then encode_object(v, ind, depth, out)
  elseif t == "table" then encode_array(v, ind, depth, out)
  else error("report.encode: cannot encode a " .. t, 3) end
end

--- JSON text of v (ordered objects, arrays, scalars). indent: nil for one
--- compact line, or spaces per level (like json.dumps(indent=...)).
function M.encode(v, indent)
  local out = {}
  encode(v, indent, 0, out)
  return concat(out)
end

--- Records ------------------------------------------------------------------

local KIND_FIELDS = {
  v2_sync = { "reserve0", "reserve1" },
  v2_swap = { "sender", "to", "amount0In", "amount1In", "amount0Out",
              "amount1Out" },
  v3_swap = { "sender", "recipient", "amount0", "amount1", "sqrtPriceX96",
              "liquidity", "tick" },
}
M.KIND_FIELDS = KIND_FIELDS

--- The events-file record of an accepted log (ev from abi.decode, with
--- line, price, and retracted / retracted_by_line when it was retracted).
function M.event(ev)
  local p = ev.pool
  local o = M.object()
  o:put("line", ev.line):put("block", ev.block)
  o:put("blockHash", ev.blockHash):put("txHash", ev.txHash)
  o:put("txIndex", ev.txIndex):put("logIndex", ev.logIndex)
  o:put("pool", p.address):put("dex", p.dex):put("kind", ev.kind)
  o:put("pair", p.pair):put("token0", p.token0):put("token1", p.token1)
  for _, f in ipairs(KIND_FIELDS[ev.kind]) do o:put(f, ev[f]) end
  o:put("retracted", ev.retracted_by_line ~= nil)
  o:put("price", ev.price)
  if ev.retracted_by_line then
    o:put("retracted_by_line", ev.retracted_by_line)
  end
  return o
end

-- Per pool and kind, the constant middle of an event line, from "pool"
-- to "token1" (weak keys: registries come and go).
local middles = setmetatable({}, { __mode = "k" })

local function middle(p, kind)
  local m = middles[p]
  if not m then m = {} middles[p] = m end
  local s = m[kind]
  if not s then
    s = ',"pool":' .. quote(p.address) .. ',"dex":' .. quote(p.dex) ..
      ',"kind":' .. quote(kind) .. ',"pair":' .. quote(p.pair) ..
      ',"token0":' .. quote(p.token0) .. ',"token1":' .. quote(p.token1)
    m[kind] = s
  end
  return s
end

local function scalar(v)
  if type(v) == "string" then return quote(v) end
  if v == nil or v == null then return "null" end
  return number(v)
end

--- The JSON line of M.event(ev), written directly: the same bytes as
--- M.encode(M.event(ev)) (the specs hold it to that), several times
--- faster, for writing every accepted event.
function M.event_json(ev)
  local out = { '{"line":', number(ev.line), ',"block":', scalar(ev.block),
    ',"blockHash":', quote(ev.blockHash), ',"txHash":', quote(ev.txHash),
    ',"txIndex":', scalar(ev.txIndex), ',"logIndex":', scalar(ev.logIndex),
    middle(ev.pool, ev.kind) }
  for _, f in ipairs(KIND_FIELDS[ev.kind]) do
    out[#out + 1] = ","
    out[#out + 1] = QKEY[f]
    out[#out + 1] = ":"
    out[#out + 1] = scalar(ev[f])
  end
  local by = ev.retracted_by_line
  out[#out + 1] = by and ',"retracted":true,"price":' or
    ',"retracted":false,"price":'
  out[#out + 1] = scalar(ev.price)
  if by then out[#out + 1] = ',"retracted_by_line":' .. number(by) end
  out[#out + 1] = "}"
  return concat(out)
end

function M.skipped(line, reason, retracts_line)
  local o = M.object():put("line", line):put("reason", reason)
  if retracts_line then o:put("retracts_line", retracts_line) end
  return o
end

--- The signals-file record. sig from detector:evaluate(); at: line,
--- trigger ("event" / "retraction"), block, logIndex.
function M.signal(sig, at)
  local b, s = sig.buy, sig.sell
  local o = M.object()
  o:put("line", at.line):put("trigger", at.trigger)
  o:put("block", at.block):put("logIndex", at.logIndex)
  o:put("pair", b.pair):put("token0", b.token0):put("token1", b.token1)
  o:put("buy_pool", b.address):put("buy_dex", b.dex)
  o:put("buy_fee_ppm", b.fee_ppm):put("buy_price", sig.buy_price)
  o:put("sell_pool", s.address):put("sell_dex", s.dex)
  o:put("sell_fee_ppm", s.fee_ppm):put("sell_price", sig.sell_price)
  o:put("gross_bps", sig.gross_bps):put("net_bps", sig.net_bps)
  return o
end

local STATE_FIELDS = {
  v2_sync = { "reserve0", "reserve1" },
  v3_swap = { "sqrtPriceX96", "liquidity", "tick" },
}

--- final_pool_state entry: label, price, then the state fields of the
--- pool's current log (none when its state is unknown).
function M.pool_state(pool, ev, price)
  local o = M.object():put("label", pool.label):put("price", price)
  if ev then
    for _, f in ipairs(STATE_FIELDS[ev.kind]) do o:put(f, ev[f]) end
  end
  return o
end

--- The summary object. c: counters from the pipeline (see pipeline.lua);
--- count maps list only the keys that occurred, sorted; c.incomplete
--- (expected, missing, gaps), from the engine, says what a stream lost.
function M.summary(c)
  local o = M.object()
  o:put("lines", c.lines)
  -- Only a stream not known whole says so (README §5 has no such key).
  local gone = c.incomplete
  if gone then
    o:put("incomplete", M.object():put("lines_expected", gone.expected)
      :put("lines_missing", gone.missing):put("connections_lost", gone.gaps))
  end
  o:put("subscription_id", c.subscription_id)
  o:put("events_accepted", c.events_accepted)
  o:put("events_by_kind", M.sorted(c.events_by_kind))
  o:put("events_retracted", c.events_retracted)
  o:put("skipped", c.skipped)
  o:put("skipped_by_reason", M.sorted(c.skipped_by_reason))
  o:put("evaluations", c.evaluations):put("signals", c.signals)
  o:put("signals_by_pair", M.sorted(c.signals_by_pair))
  o:put("signals_by_trigger", M.sorted(c.signals_by_trigger))
  local pools = M.object()
  for _, st in ipairs(c.pool_states) do
    pools:put(st.pool.address, M.pool_state(st.pool, st.ev, st.price))
  end
  o:put("final_pool_state", pools)
  return o
end

return M
