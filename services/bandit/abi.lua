-- abi.lua -- classify one eth_subscription websocket message and decode
-- its Uniswap log exactly (README §2 rules 1, 2 and 4–7; rule 3, the
-- retraction match, belongs to the detector, which knows accepted logs).
--
-- Invariant: every input string gets a decoded event or a skip reason;
-- nothing here raises on bad input. A hand-written scanner handles the
-- exact compact layout geth/bor send (several times faster than cjson,
-- see bench/bandit_logic.lua); any other text goes through cjson, and
-- both routes produce the same `view`. The adapter decodes a log the
-- scanner found where it lies in the text (envelope_at, decode_at), by
-- the same rules, so that the log makes no string of its own.
local ffi = require "ffi"
local bit = require "bit"
local cjson_mod = require "cjson"
local bigint = require "bandit.bigint"
local eip55 = require "bandit.eip55"

local cast, C = ffi.cast, ffi.C
local byte, sub, find, lower =
  string.byte, string.sub, string.find, string.lower
local rep = string.rep
local bxor, rol = bit.bxor, bit.rol
local type, next, pcall, tonumber, pairs, setmetatable, getmetatable, error =
  type, next, pcall, tonumber, pairs, setmetatable, getmetatable, error

ffi.cdef [[
int memcmp(const void *, const void *, size_t);
size_t strspn(const char *, const char *);
unsigned long long strtoull(const char *, char **, int);
]]

local cjson = cjson_mod.new()
-- RFC 8259 numbers only: cjson would otherwise accept 0x1f, NaN, Infinity.
cjson.decode_invalid_numbers(false)

local M = {}

--- topic0 = keccak256 of the event signature (checked in the spec).
M.TOPIC_SYNC = "0x1c411e9a96e071241c2f21f7726b17ae" ..
  "89e3cab4c78be50e062b03a9fffbbad1"
M.TOPIC_V2_SWAP = "0xd78ad95fa46c994b6551d0da85fc275f" ..
  "e613ce37657fb8d5e3d130840159d822"
M.TOPIC_V3_SWAP = "0xc42079f94a6350d7e6235f29174924f9" ..
  "28cc2ac818eb64fed8004e115fbcca67"

-- Expected layout per topic0: event kind, pool kind, topic count, data words.
local LAYOUT = {
  [M.TOPIC_SYNC] =
    { kind = "v2_sync", pool_kind = "v2", topics = 1, words = 2 },
  [M.TOPIC_V2_SWAP] =
    { kind = "v2_swap", pool_kind = "v2", topics = 3, words = 4 },
  [M.TOPIC_V3_SWAP] =
    { kind = "v3_swap", pool_kind = "v3", topics = 3, words = 5 },
}
M.LAYOUT = LAYOUT

--- Rule 1 and 2 reasons, and the rest, as named in the expected files.
M.MALFORMED_JSON = "malformed_json"
M.FOREIGN_MESSAGE = "foreign_message"
M.UNKNOWN_TOPIC = "unknown_topic"
M.UNKNOWN_POOL = "unknown_pool"
M.BAD_DATA = "bad_data"

--- Fast scanner -------------------------------------------------------------

local u8p = ffi.typeof("const uint8_t *")
local HEXV = bigint.HEXV

-- Lowercase hex digits only: geth never sends upper case, and a view the
-- scanner returns is then canonical, so decode() need not re-check or
-- lower-case anything. Anything else takes the cjson route.
local LOWHEX = "0123456789abcdef"
local cp = ffi.typeof("const char *")

local function lit(p, n, i, s)
  local m = #s
  if not i or i + m > n or C.memcmp(p + i, s, m) ~= 0 then return nil end
  return i + m
end

-- At 0-based i: "0x", lowercase hex digits, closing quote. Returns the
-- index after the quote; the value is s[i+1 .. result-1] (1-based).
local function hexstr(p, n, i)
  if not i or i + 3 > n or p[i] ~= 48 or p[i + 1] ~= 120 then return nil end
  -- libc's strspn beats a Lua byte loop and keeps traces short; it stops
  -- at the latest at the NUL every Lua string ends with.
  local j = i + 2 + tonumber(C.strspn(cast(cp, p + i + 2), LOWHEX))
  if j >= n or p[j] ~= 34 then return nil end
  return j + 1
end

-- `literal` then a hex string at j: the string's offset and length, and
-- the index after it.
local function field(p, n, j, literal)
  local i = lit(p, n, j, literal)
  local k = hexstr(p, n, i)
  if not k then return nil, nil, nil end
  return i, k - 1 - i, k
end

-- One topic at i, then either ',"' (more follow) or ']' (the last).
-- Returns the topic's length, the next index and whether another topic
-- follows.
local function topic(p, n, i)
  local j = hexstr(p, n, i)
  if not j then return nil end
  if p[j] == 93 then return j - 1 - i, j + 1, false end
  if p[j] ~= 44 or p[j + 1] ~= 34 then return nil end
  return j - 1 - i, j + 2, true
end

-- A log has at most four topics. Straight-line code rather than a loop:
-- a loop of one to four turns would split every trace through scan().
-- Returns the index after the list, or nil.
local function scan_topics(p, n, i, at)
  local len, more
  at.topic1, at.topics = i, 1
  len, i, more = topic(p, n, i)
  if not len then return nil end
  at.topic1_len = len
  if not more then return i end
  at.topic2, at.topics = i, 2
  len, i, more = topic(p, n, i)
  if not len then return nil end
  at.topic2_len = len
  if not more then return i end
  at.topic3, at.topics = i, 3
  len, i, more = topic(p, n, i)
  if not len then return nil end
  at.topic3_len = len
  if not more then return i end
  at.topic4, at.topics = i, 4
  len, i, more = topic(p, n, i)
  if not len or more then return nil end
  at.topic4_len = len
  return i
end

local P_HEAD = '{"jsonrpc":"2.0","method":"eth_subscription",' ..
               '"params":{"subscription":"'

--- Where each value of a message in geth's layout lies in its text: for
--- every field of a view, its 0-based offset (at the "0x") and its
--- length (the value is text:sub(off + 1, off + len)). Topic k is at
--- topicK, topicK_len; topics is their count.
function M.new_positions()
  return { address = 0, address_len = 0, topics = 0,
           topic1 = 0, topic1_len = 0, topic2 = 0, topic2_len = 0,
           topic3 = 0, topic3_len = 0, topic4 = 0, topic4_len = 0,
           data = 0, data_len = 0, blockNumber = 0, blockNumber_len = 0,
           transactionHash = 0, transactionHash_len = 0,
           transactionIndex = 0, transactionIndex_len = 0,
           blockHash = 0, blockHash_len = 0, logIndex = 0, logIndex_len = 0,
           removed = false }
end

-- `at` (from M.new_positions) holding where the values of a message in
-- geth's exact compact form (fields in geth's order) lie, nil if the text
-- has any other shape (then cjson decides), or false if it is such a
-- message for another subscription. Nothing is cut out of the text: each
-- string made costs an interning lookup and garbage, and a log has a
-- dozen values. Each position goes into `at` as soon as it is found:
-- held in locals, a dozen values lived across every libc call of the
-- scan, and LuaJIT failed to assemble the side exits of such traces
-- (`register coalescing too complex`), again at every pass.
local function scan_at(s, sub_id, at)
  local p, n = cast(u8p, s), #s
  local i = lit(p, n, 0, P_HEAD)
  local j = hexstr(p, n, i)
  if not j then return nil end
  local same = (sub_id ~= nil and j - 1 - i == #sub_id and
                C.memcmp(p + i, sub_id, #sub_id) == 0)
  at.address, at.address_len, j =
    field(p, n, j, ',"result":{"address":"')
  i = lit(p, n, j, ',"topics":["')
  if not i then return nil end
  j = scan_topics(p, n, i, at)
  at.data, at.data_len, j = field(p, n, j, ',"data":"')
  at.blockNumber, at.blockNumber_len, j = field(p, n, j, ',"blockNumber":"')
  at.transactionHash, at.transactionHash_len, j =
    field(p, n, j, ',"transactionHash":"')
  at.transactionIndex, at.transactionIndex_len, j =
    field(p, n, j, ',"transactionIndex":"')
  at.blockHash, at.blockHash_len, j = field(p, n, j, ',"blockHash":"')
  at.logIndex, at.logIndex_len, j = field(p, n, j, ',"logIndex":"')
  if lit(p, n, j, ',"removed":false}}}') == n then at.removed = false
  elseif lit(p, n, j, ',"removed":true}}}') == n then at.removed = true
  else return nil end
  if not same then return false end
  return at
end

-- The value at offset o, of length len, cut out of s.
local function cut(s, o, len) return sub(s, o + 1, o + len) end

-- `into` overwritten with topics t1 .. t4 (nil from the first missing on).
local function topic_list(into, t1, t2, t3, t4)
  into[1], into[2], into[3], into[4] = t1, t2, t3, t4
  return into
end

local function topic_strings(s, at, into)
  local n = at.topics
  into = into or {}
  return topic_list(into, cut(s, at.topic1, at.topic1_len),
                    n >= 2 and cut(s, at.topic2, at.topic2_len) or nil,
                    n >= 3 and cut(s, at.topic3, at.topic3_len) or nil,
                    n >= 4 and cut(s, at.topic4, at.topic4_len) or nil)
end

--- The view (M.envelope) of a message whose positions scan_at() found:
--- its values cut out of s. With `into` (a view made before), that view
--- and its topics are overwritten instead of made anew.
function M.view_at(s, at, into)
  local v = into or M.new_view()
  v.address = cut(s, at.address, at.address_len)
  v.topics = topic_strings(s, at, v.topics)
  v.data = cut(s, at.data, at.data_len)
  v.blockNumber = cut(s, at.blockNumber, at.blockNumber_len)
  v.transactionHash = cut(s, at.transactionHash, at.transactionHash_len)
  v.transactionIndex = cut(s, at.transactionIndex, at.transactionIndex_len)
  v.blockHash = cut(s, at.blockHash, at.blockHash_len)
  v.logIndex = cut(s, at.logIndex, at.logIndex_len)
  v.removed, v.canonical = at.removed, true
  return v
end

-- Scratch positions of scan() and M.envelope (the string route).
local AT = M.new_positions()

-- The view of a message in geth's layout, nil or false as scan_at()
-- says; `into` as for M.view_at().
local function scan(s, sub_id, into)
  local at = scan_at(s, sub_id, AT)
  if not at then return at end
  return M.view_at(s, at, into)
end

--- Rules 1 and 2 ------------------------------------------------------------

local function is_object(v) return type(v) == "table" and v[1] == nil end

-- cjson 2.1 decodes [] and {} to the same empty table; only the text can
-- tell an empty params.result array (foreign) from an empty object.
local function empty_array_result(text)
  return find(text, '"result"%s*:%s*%[%s*%]') ~= nil
end

local function envelope_slow(text, sub_id)
  local ok, msg = pcall(cjson.decode, text)
  if not ok then return nil, M.MALFORMED_JSON end
  local params = is_object(msg) and msg.method == "eth_subscription" and
    msg.params
  if not is_object(params) or sub_id == nil or
     params.subscription ~= sub_id then
    return nil, M.FOREIGN_MESSAGE
  end
  local r = params.result
  if not is_object(r) or (next(r) == nil and empty_array_result(text)) then
    return nil, M.FOREIGN_MESSAGE
  end
  return r
end

--- Take the hand-written scanner for geth's layout (false: cjson only;
--- the specs use it to prove both routes decide alike).
M.fast_scan = true

--- The log object (`view`) of a notification for subscription sub_id, or
--- nil, reason (malformed_json, foreign_message). A view holds raw JSON
--- values: address, topics, data, blockNumber, ... , removed.
--- `into`: optionally, a view made by M.new_view(); a message in geth's
--- compact form then overwrites it (and its topics) and it is returned,
--- which spares a flood two tables per log; other text gets a new view.
--- The caller must be done with what the view held before.
function M.envelope(text, sub_id, into)
  local r, reason = M.envelope_at(text, sub_id, AT, 3)
  if r == AT then return M.view_at(text, AT, into) end
  return r, reason
end

--- As M.envelope, but a message in geth's compact form is not cut into a
--- view: `at` (from M.new_positions) is filled with where its values lie
--- in `text` and returned, for M.decode_at. Any other text gets what
--- M.envelope gives (a new view, or nil, reason).
function M.envelope_at(text, sub_id, at, level)
  if sub_id ~= nil and type(sub_id) ~= "string" then
    error("bandit.abi.envelope: sub_id must be a string or nil", level or 2)
  end
  if type(text) ~= "string" then return nil, M.MALFORMED_JSON end
  if M.fast_scan then
    local r = scan_at(text, sub_id, at)
    if r then return r end
    if r == false then return nil, M.FOREIGN_MESSAGE end
  end
  return envelope_slow(text, sub_id)
end

--- A view for M.envelope's `into`, with every field the scanner sets.
function M.new_view()
  return { address = false, topics = {}, data = false, blockNumber = false,
           transactionHash = false, transactionIndex = false,
           blockHash = false, logIndex = false, removed = false,
           canonical = true }
end

--- The cjson route alone (for specs proving both routes agree).
M.envelope_slow = envelope_slow
M.scan = scan

--- The subscription id from the reply to eth_subscribe (capture line 1):
--- `result` of an object reply, optionally checking the request id.
function M.subscription_reply(text, request_id)
  local ok, msg = pcall(cjson.decode, text)
  if not ok or not is_object(msg) then return nil, "reply is not an object" end
  if request_id ~= nil and msg.id ~= request_id then
    return nil, "reply to another request"
  end
  if type(msg.result) ~= "string" then
    return nil, "reply has no subscription id"
  end
  return msg.result
end

--- Canonical views ----------------------------------------------------------

-- A hex value as decode() wants it: lowercase "0x"-hex, or false.
local function hexval(v)
  if type(v) ~= "string" or not find(v, "^0x%x*$") then return false end
  return lower(v)
end

-- Views from cjson may hold anything; this maps each field to a lowercase
-- 0x-hex string or false, so decode() checks only lengths and ranges.
local function canonical(view)
  if view.canonical then return view end
  local topics = false
  if type(view.topics) == "table" then
    topics = {}
    for k = 1, #view.topics do topics[k] = hexval(view.topics[k]) end
  end
  return {
    address = hexval(view.address), topics = topics, data = hexval(view.data),
    blockNumber = hexval(view.blockNumber),
    transactionHash = hexval(view.transactionHash),
    transactionIndex = hexval(view.transactionIndex),
    blockHash = hexval(view.blockHash), logIndex = hexval(view.logIndex),
    removed = view.removed, canonical = true,
  }
end

--- A view with every field a lowercase 0x-hex string or false (views of
--- the scanner are canonical already).
M.canonical = canonical

--- Field decoding (canonical values) ----------------------------------------

local tmp = bigint.new()

-- A quantity (leading zeros tolerated) of more than 13 digits, as a Lua
-- number when <= 2^53, else as its decimal string.
local function big_quantity(v)
  tmp:set_hex_range(v, 3, #v)
  return tmp:tonumber_exact() or tmp:tostring()
end

-- A quantity as a number (or decimal string), nil when it has no digits.
-- Written as one expression so call sites inline it: a small function
-- called three times per log becomes a hot trace root of its own, and
-- LuaJIT then blacklists it and every trace that runs into it.
local function quantity(v)
  -- tonumber reads "0x..." itself; up to 13 digits stay below 2^53.
  return v and #v >= 3 and (#v <= 15 and tonumber(v) or big_quantity(v))
    or nil
end

local function hash32(v)
  return v and #v == 66 and v or nil
end

local ZEROS, FFS = rep("0", 64), rep("f", 64)

-- Does the 64-digit word at s[i] hold an unsigned value of `bits` bits?
-- (its leading 64 - bits/4 digits are zero)
local function fits_unsigned(s, i, bits)
  local pad = 64 - bits / 4
  return C.memcmp(cast(u8p, s) + (i - 1), ZEROS, pad) == 0
end

-- Is the word at s[i] an int24 sign-extended to 256 bits?
local function is_int24(s, i)
  local fill = HEXV[byte(s, i + 58)] >= 8 and FFS or ZEROS
  return C.memcmp(cast(u8p, s) + (i - 1), fill, 58) == 0
end

local function is_topic_address(t)
  return t and #t == 66 and fits_unsigned(t, 3, 160)
end

local function word(k) return 3 + 64 * (k - 1) end
local W1, W2, W3, W4, W5 = word(1), word(2), word(3), word(4), word(5)

--- Word offsets of the pool state inside ev.data, for the detector.
M.WORD = word

--- Lazy fields --------------------------------------------------------------

-- Decimal strings and checksummed addresses are rendered on first read:
-- the detector needs none of them, a report needs all of them.
local function dec(i)
  return function(ev)
    tmp:load_hex(ev.data, i, i + 63)
    return tmp:tostring()
  end
end

local function signed_dec(i)
  return function(ev)
    tmp:load_word_signed(ev.data, i)
    return tmp:tostring()
  end
end

local function address(k)
  return function(ev) return eip55.checksum(sub(ev.topics[k], 27)) end
end

-- The int24 in the last six digits of the word at s[i].
local function tick_at(s, i)
  local v = 0
  for k = i + 58, i + 63 do v = v * 16 + HEXV[byte(s, k)] end
  return v >= 0x800000 and v - 0x1000000 or v
end

local function tick(ev) return tick_at(ev.data, W5) end

local LAZY = {
  v2_sync = { reserve0 = dec(W1), reserve1 = dec(W2) },
  v2_swap = { sender = address(2), to = address(3), amount0In = dec(W1),
              amount1In = dec(W2), amount0Out = dec(W3),
              amount1Out = dec(W4) },
  v3_swap = { sender = address(2), recipient = address(3),
              amount0 = signed_dec(W1), amount1 = signed_dec(W2),
              sqrtPriceX96 = dec(W3), liquidity = dec(W4), tick = tick },
}

--- The lazy fields by event kind (their getters), for specs.
M.LAZY = LAZY

local EVENT_MT = {}
-- Events made by M.new_event() to be decoded into again and again render
-- a lazy field at every read: a cached one would outlive its log.
local SCRATCH_MT, IS_SCRATCH = {}, {}
for kind, getters in pairs(LAZY) do
  EVENT_MT[kind] = { __index = function(ev, k)
    local get = getters[k]
    if not get then return nil end
    local v = get(ev)
    ev[k] = v
    return v
  end }
  SCRATCH_MT[kind] = { __index = function(ev, k)
    local get = getters[k]
    return get and get(ev)
  end }
  IS_SCRATCH[SCRATCH_MT[kind]] = true
end

--- An event for M.decode's `into`: holds nothing until decoded into.
function M.new_event()
  return setmetatable({ kind = false, pool = false, data = false,
                        topics = false, block = false, txIndex = false,
                        logIndex = false, blockHash = false, txHash = false },
                      SCRATCH_MT.v2_sync)
end

--- Rules 4–7 ----------------------------------------------------------------

-- Value ranges of the typed words: a uint112 reserve with high bits set,
-- say, does not have the layout of its event.
-- The words of data d start at d[o + W1] (o = 0 for a data string).
local RANGES = {
  v2_sync = function(d, o) return fits_unsigned(d, o + W1, 112) and
                                  fits_unsigned(d, o + W2, 112) end,
  v2_swap = function() return true end,
  v3_swap = function(d, o) return fits_unsigned(d, o + W3, 160) and
                                  fits_unsigned(d, o + W4, 128) and
                                  is_int24(d, o + W5) end,
}

local function layout_ok(layout, pool, topics, d)
  if pool.kind ~= layout.pool_kind or #topics ~= layout.topics then
    return false
  end
  if layout.topics == 3 and not (is_topic_address(topics[2]) and
                                 is_topic_address(topics[3])) then
    return false
  end
  return d and #d == 2 + 64 * layout.words and RANGES[layout.kind](d, 0)
end

--- The decoded event of an accepted log, or nil, reason (unknown_topic,
--- unknown_pool, bad_data). `view` must not be a removed log. The event
--- has kind, pool, data, topics, block, blockHash, txHash, txIndex,
--- logIndex, and its kind's fields (README §5) rendered on first read.
--- `into`: optionally, an event from M.new_event(), whose caller is done
--- with what it held: the nine fields above are overwritten and it is
--- returned instead of a new table (sharing `view.topics`); its lazy
--- fields are rendered at every read, never kept. Fields the caller
--- added stay. Untouched when the log is skipped.
function M.decode(view, registry, into)
  if into and not IS_SCRATCH[getmetatable(into)] then
    error("bandit.abi.decode: into must come from bandit.abi.new_event()", 2)
  end
  view = canonical(view)
  local topics = view.topics
  local layout = topics and topics[1] and LAYOUT[topics[1]]
  if not layout then return nil, M.UNKNOWN_TOPIC end
  local pool = view.address and registry:pool(view.address)
  if not pool then return nil, M.UNKNOWN_POOL end
  local d = view.data
  if not layout_ok(layout, pool, topics, d) then return nil, M.BAD_DATA end
  local block, txi, li = quantity(view.blockNumber),
    quantity(view.transactionIndex), quantity(view.logIndex)
  local bh, th = hash32(view.blockHash), hash32(view.transactionHash)
  if not (block and txi and li and bh and th) then return nil, M.BAD_DATA end
  if into then
    into.kind, into.pool, into.data, into.topics = layout.kind, pool, d, topics
    into.block, into.txIndex, into.logIndex = block, txi, li
    into.blockHash, into.txHash = bh, th
    -- Not a tail call of setmetatable: a trace that starts in decode (hot
    -- from the interpreter) cannot return from it to its caller after a
    -- tail-called builtin ("NYI: return to lower frame"), and LuaJIT ends
    -- up blacklisting decode, with every trace through it.
    setmetatable(into, SCRATCH_MT[layout.kind])
    return into
  end
  -- One constructor naming the fields the detector and pipeline add later
  -- sizes the table once (nil entries reserve slots); 16 fields fit the
  -- smallest hash part that holds them all.
  return setmetatable({
    kind = layout.kind, pool = pool, data = d, topics = topics,
    block = block, txIndex = txi, logIndex = li, blockHash = bh, txHash = th,
    line = nil, price = nil, retracted = nil,
    older = nil, newer = nil, prev_tx = nil, next_tx = nil,
  }, EVENT_MT[layout.kind])
end

--- Rules 4–7 on positions -------------------------------------------------

-- A message in geth's layout is decoded where it lies (M.envelope_at):
-- the same rules as M.decode, read from the text's bytes, so that a log
-- makes no string of its own.

local u32p = ffi.typeof("const uint32_t *")

-- Topic0s by their first four digits, each checked whole once found.
local TOPIC_BY_HEAD = {}
for t in pairs(LAYOUT) do TOPIC_BY_HEAD[cast(u32p, cast(u8p, t) + 2)[0]] = t end

--- The layout (M.LAYOUT) of the log whose topics lie at `at` in s, or nil.
function M.layout_at(s, at)
  if at.topic1_len ~= 66 then return nil end
  local p = cast(u8p, s) + at.topic1
  local t = TOPIC_BY_HEAD[cast(u32p, p + 2)[0]]
  return t and C.memcmp(p, t, 66) == 0 and LAYOUT[t] or nil
end

-- Registry -> { [address_hash] = pool }: pools found before, checked
-- against the digits and taken without cutting the address into a string
-- (whose interning walks the string table). A registry answers the same
-- pool for an address for its life (bandit.registry does); a discovered
-- pool is made for the kind of one log, so it is not kept.
local KNOWN = setmetatable({}, { __mode = "k" })

-- Any mix of the 40 digits of the address at p[o]: a miss costs only the
-- slow lookup.
local function address_hash(p, o)
  return bxor(cast(u32p, p + o + 2)[0], rol(cast(u32p, p + o + 22)[0], 11),
              rol(cast(u32p, p + o + 38)[0], 22))
end

local function pool_at(registry, s, o, len)
  local known = KNOWN[registry]
  if not known then
    known = {}
    KNOWN[registry] = known
  end
  local p = cast(u8p, s)
  local h = len == 42 and address_hash(p, o)
  local pool = h and known[h]
  if pool and C.memcmp(p + o, pool.key, 42) == 0 then return pool end
  local addr = sub(s, o + 1, o + len)
  pool = registry:pool(addr)
  if h and pool and not pool.discovered and pool.key == addr then
    known[h] = pool
  end
  return pool
end

-- A quantity as quantity() reads it, from its digits at s[o].
local function quantity_at(s, o, len)
  return len >= 3 and (len <= 15 and
    tonumber(C.strtoull(cast(cp, s) + o, nil, 16)) or
    big_quantity(sub(s, o + 1, o + len))) or nil
end

local function topic_address_at(s, o, len)
  return len == 66 and fits_unsigned(s, o + 3, 160)
end

local function layout_ok_at(layout, pool, s, at)
  if pool.kind ~= layout.pool_kind or at.topics ~= layout.topics then
    return false
  end
  if layout.topics == 3 and not
     (topic_address_at(s, at.topic2, at.topic2_len) and
      topic_address_at(s, at.topic3, at.topic3_len)) then
    return false
  end
  return at.data_len == 2 + 64 * layout.words and
    RANGES[layout.kind](s, at.data)
end

--- A table for M.decode_at to fill, reused from log to log.
function M.new_event_at()
  return { kind = false, pool = false, block = 0, txIndex = 0, logIndex = 0,
           tick = false }
end

--- M.decode for a message M.envelope_at found in geth's layout: `into`
--- (from M.new_event_at) gets kind, pool, block, txIndex, logIndex as
--- M.decode gives them, and tick (false but for a v3_swap), and is
--- returned; the other values stay where `at` says in s
--- (wire.fill_sync_at). Or nil,
--- reason, exactly as M.decode would decide. `at` must not be a removed
--- log; `registry` must answer the same pool for an address for its life.
function M.decode_at(s, at, registry, into)
  local layout = M.layout_at(s, at)
  if not layout then return nil, M.UNKNOWN_TOPIC end
  local pool = pool_at(registry, s, at.address, at.address_len)
  if not pool then return nil, M.UNKNOWN_POOL end
  if not layout_ok_at(layout, pool, s, at) then return nil, M.BAD_DATA end
  local block = quantity_at(s, at.blockNumber, at.blockNumber_len)
  local txi = quantity_at(s, at.transactionIndex, at.transactionIndex_len)
  local li = quantity_at(s, at.logIndex, at.logIndex_len)
  if not (block and txi and li and at.blockHash_len == 66 and
          at.transactionHash_len == 66) then
    return nil, M.BAD_DATA
  end
  into.kind, into.pool = layout.kind, pool
  into.block, into.txIndex, into.logIndex = block, txi, li
  into.tick = layout.kind == "v3_swap" and tick_at(s, at.data + W5) or false
  return into
end

--- Events between services ----------------------------------------------------

local KIND_LAYOUT = {}
for topic, layout in pairs(LAYOUT) do KIND_LAYOUT[layout.kind] = topic end

--- A plain table of a decoded event for the message bus (MessagePack can
--- carry it): kind, pool (lowercase address), data, topics, block,
--- blockHash, txHash, txIndex, logIndex. Decimal fields are not included:
--- from_message() renders them again on demand.
function M.to_message(ev)
  return { kind = ev.kind, pool = ev.pool.key, data = ev.data,
           topics = ev.topics, block = ev.block, blockHash = ev.blockHash,
           txHash = ev.txHash, txIndex = ev.txIndex, logIndex = ev.logIndex }
end

--- The decoded event of a to_message() table, re-attached to `registry`
--- (which may be another copy), or nil, reason when it does not fit.
function M.from_message(t, registry)
  local topic = type(t) == "table" and KIND_LAYOUT[t.kind]
  if not topic then return nil, M.UNKNOWN_TOPIC end
  local pool = registry:pool(t.pool)
  if not pool then return nil, M.UNKNOWN_POOL end
  local view = canonical { topics = t.topics, data = t.data }
  if view.topics and view.topics[1] ~= topic then view.topics = false end
  if not view.topics or not layout_ok(LAYOUT[topic], pool, view.topics,
                                      view.data) or
     not (t.block and t.txIndex and t.logIndex and hash32(t.blockHash) and
          hash32(t.txHash)) then
    return nil, M.BAD_DATA
  end
  return setmetatable({
    kind = t.kind, pool = pool, data = view.data, topics = view.topics,
    block = t.block, txIndex = t.txIndex, logIndex = t.logIndex,
    blockHash = t.blockHash, txHash = t.txHash,
    line = nil, price = nil, retracted = nil,
    older = nil, newer = nil, prev_tx = nil, next_tx = nil,
  }, EVENT_MT[t.kind])
end

--- The identity of a removed log: blockHash, txHash (lowercase), logIndex,
--- or nil when they are malformed (then it can match nothing).
function M.log_key(view)
  view = canonical(view)
  local bh, th = hash32(view.blockHash), hash32(view.transactionHash)
  local li = quantity(view.logIndex)
  if not (bh and th and li) then return nil end
  return bh, th, li
end

return M
