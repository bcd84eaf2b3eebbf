-- abi.lua -- classify one eth_subscription websocket message and decode
-- its Uniswap log exactly (README §2 rules 1, 2 and 4–7; rule 3, the
-- retraction match, belongs to the detector, which knows accepted logs).
--
-- Invariant: every input string gets a decoded event or a skip reason;
-- nothing here raises on bad input. A hand-written scanner handles the
-- exact compact layout geth/bor send (3x faster than cjson); any other
-- text goes through cjson, and both routes produce the same `view`.
local ffi = require "ffi"
local cjson_mod = require "cjson"
local bigint = require "mycelium.bigint"
local eip55 = require "mycelium.eip55"

local cast, C = ffi.cast, ffi.C
local byte, sub, find, lower, format =
  string.byte, string.sub, string.find, string.lower, string.format
local rep = string.rep
local type, next, pcall, tonumber, ipairs, setmetatable =
  type, next, pcall, tonumber, ipairs, setmetatable

ffi.cdef "int memcmp(const void *, const void *, size_t);"

local cjson = cjson_mod.new()
-- RFC 8259 numbers only: cjson would otherwise accept 0x1f, NaN, Infinity.
cjson.decode_invalid_numbers(false)
local NULL = cjson.null

local M = {}

--- topic0 = keccak256 of the event signature (checked in the spec).
M.TOPIC_SYNC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
M.TOPIC_V2_SWAP = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
M.TOPIC_V3_SWAP = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"

-- Expected layout per topic0: event kind, pool kind, topic count, data words.
local LAYOUT = {
  [M.TOPIC_SYNC] = { kind = "v2_sync", pool_kind = "v2", topics = 1, words = 2 },
  [M.TOPIC_V2_SWAP] = { kind = "v2_swap", pool_kind = "v2", topics = 3, words = 4 },
  [M.TOPIC_V3_SWAP] = { kind = "v3_swap", pool_kind = "v3", topics = 3, words = 5 },
}
M.LAYOUT = LAYOUT

--- Rule 1 and 2 reasons, and the rest, as named in the expected files.
M.MALFORMED_JSON = "malformed_json"
M.FOREIGN_MESSAGE = "foreign_message"
M.UNKNOWN_TOPIC = "unknown_topic"
M.UNKNOWN_POOL = "unknown_pool"
M.BAD_DATA = "bad_data"

--- Fast scanner ------------------------------------------------------------

local u8p = ffi.typeof("const uint8_t *")
local HEXV = bigint.HEXV

local function lit(p, n, i, s)
  local m = #s
  if i + m > n or C.memcmp(p + i, s, m) ~= 0 then return nil end
  return i + m
end

-- At 0-based i: "0x", hex digits, closing quote. Returns the index after
-- the quote; the value is s[i+1 .. result-1] in 1-based terms.
local function hexstr(p, n, i)
  if i + 3 > n or p[i] ~= 48 or p[i + 1] ~= 120 then return nil end
  local j = i + 2
  while j < n and HEXV[p[j]] >= 0 do j = j + 1 end
  if j >= n or p[j] ~= 34 then return nil end
  return j + 1
end

local FIELDS = { "blockNumber", "transactionHash", "transactionIndex",
                 "blockHash", "logIndex" }
local FIELD_LIT = {}
for k, f in ipairs(FIELDS) do FIELD_LIT[k] = ',"' .. f .. '":"' end

local P_HEAD = '{"jsonrpc":"2.0","method":"eth_subscription",' ..
               '"params":{"subscription":"'
local P_ADDR = ',"result":{"address":"'
local P_TAIL_F, P_TAIL_T = ',"removed":false}}}', ',"removed":true}}}'

local function scan_topics(s, p, n, i, view)
  local topics, k = {}, 0
  while true do
    local j = hexstr(p, n, i)
    if not j then return nil end
    k = k + 1
    topics[k] = sub(s, i + 1, j - 1)
    if p[j] == 93 then view.topics = topics return j + 1 end
    if p[j] ~= 44 or p[j + 1] ~= 34 then return nil end
    i = j + 2
  end
end

-- The view of a message in geth's exact compact form, nil if the text
-- has any other shape (then cjson decides), or false if it is such a
-- message for another subscription.
local function scan(s, sub_id)
  local p, n = cast(u8p, s), #s
  local i = lit(p, n, 0, P_HEAD)
  local j = i and hexstr(p, n, i)
  if not j then return nil end
  local same = (sub_id ~= nil and j - 1 - i == #sub_id and
                C.memcmp(p + i, sub_id, #sub_id) == 0)
  i = lit(p, n, j, P_ADDR)
  j = i and hexstr(p, n, i)
  if not j then return nil end
  local view = { address = sub(s, i + 1, j - 1) }
  i = lit(p, n, j, ',"topics":["')
  i = i and scan_topics(s, p, n, i, view)
  i = i and lit(p, n, i, ',"data":"')
  j = i and hexstr(p, n, i)
  if not j then return nil end
  view.data = sub(s, i + 1, j - 1)
  for k = 1, #FIELDS do
    i = lit(p, n, j, FIELD_LIT[k])
    j = i and hexstr(p, n, i)
    if not j then return nil end
    view[FIELDS[k]] = sub(s, i + 1, j - 1)
  end
  if lit(p, n, j, P_TAIL_F) == n then view.removed = false
  elseif lit(p, n, j, P_TAIL_T) == n then view.removed = true
  else return nil end
  return same and view or false
end

--- Rules 1 and 2 --------------------------------------------------------------

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

--- The log object (`view`) of a notification for subscription sub_id, or
--- nil, reason (malformed_json, foreign_message). A view holds raw JSON
--- values: address, topics, data, blockNumber, ... , removed.
function M.envelope(text, sub_id)
  if type(text) ~= "string" then return nil, M.MALFORMED_JSON end
  local view = scan(text, sub_id)
  if view then return view end
  if view == false then return nil, M.FOREIGN_MESSAGE end
  return envelope_slow(text, sub_id)
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

--- Field decoding ------------------------------------------------------------

local tmp = bigint.new()

-- A hex quantity ("0x" + 1..n digits; leading zeros tolerated) as a Lua
-- number when <= 2^53, else its decimal string; nil if not a quantity.
local function quantity(v)
  if type(v) ~= "string" or not find(v, "^0x%x+$") then return nil end
  if #v <= 15 then return tonumber(sub(v, 3), 16) end
  tmp:set_hex_range(v, 3, #v)
  return tmp:tonumber_exact() or tmp:tostring()
end
M.quantity = quantity

local function hash32(v)
  if type(v) ~= "string" or #v ~= 66 or not find(v, "^0x%x+$") then
    return nil
  end
  return lower(v)
end

-- ZEROS[n]: pattern for n zero digits at the init position.
local ZEROS = setmetatable({}, { __index = function(t, n)
  local z = "^" .. rep("0", n)
  t[n] = z
  return z
end })
local FS58 = "^" .. rep("[fF]", 58)

-- Does the 64-digit word at s[i] hold an unsigned value of `bits` bits?
local function fits_unsigned(s, i, bits)
  local pad = 64 - bits / 4
  return pad == 0 or find(s, ZEROS[pad], i) ~= nil
end

-- Is the word at s[i] an int24 sign-extended to 256 bits?
local function is_int24(s, i)
  local negative = HEXV[byte(s, i + 58)] >= 8
  return find(s, negative and FS58 or ZEROS[58], i) ~= nil
end

local function word_dec(s, i)
  tmp:set_hex_range(s, i, i + 63)
  return tmp:tostring()
end

local function word_signed_dec(s, i)
  tmp:set_word_signed(s, i)
  return tmp:tostring()
end

local function int24(s, i)
  local v = tonumber(sub(s, i + 58, i + 63), 16)
  return v >= 0x800000 and v - 0x1000000 or v
end

-- Address in a 32-byte topic, EIP-55, or nil if it is not a clean uint160.
local function topic_address(t)
  if type(t) ~= "string" or #t ~= 66 or not find(t, "^0x%x+$") or
     not fits_unsigned(t, 3, 160) then
    return nil
  end
  return eip55.checksum(sub(t, 27))
end

--- Per-kind decoders: fill ev from data words (w = index of word 1) ---------

local function word(k) return 3 + 64 * (k - 1) end

local function decode_v2_sync(ev, d)
  if not fits_unsigned(d, word(1), 112) or not fits_unsigned(d, word(2), 112) then
    return nil
  end
  ev.reserve0, ev.reserve1 = word_dec(d, word(1)), word_dec(d, word(2))
  return ev
end

local function decode_v2_swap(ev, d, topics)
  ev.sender, ev.to = topic_address(topics[2]), topic_address(topics[3])
  if not ev.sender or not ev.to then return nil end
  ev.amount0In, ev.amount1In = word_dec(d, word(1)), word_dec(d, word(2))
  ev.amount0Out, ev.amount1Out = word_dec(d, word(3)), word_dec(d, word(4))
  return ev
end

local function decode_v3_swap(ev, d, topics)
  ev.sender, ev.recipient = topic_address(topics[2]), topic_address(topics[3])
  if not ev.sender or not ev.recipient or
     not fits_unsigned(d, word(3), 160) or
     not fits_unsigned(d, word(4), 128) or not is_int24(d, word(5)) then
    return nil
  end
  ev.amount0, ev.amount1 = word_signed_dec(d, word(1)), word_signed_dec(d, word(2))
  ev.sqrtPriceX96, ev.liquidity = word_dec(d, word(3)), word_dec(d, word(4))
  ev.tick = int24(d, word(5))
  return ev
end

local DECODE = { v2_sync = decode_v2_sync, v2_swap = decode_v2_swap,
                 v3_swap = decode_v3_swap }

--- Word offsets of the pool state inside ev.data, for the detector.
M.WORD = word

--- Rules 4–7 -------------------------------------------------------------------

local function layout_of(topics)
  local t0 = type(topics) == "table" and topics[1]
  if type(t0) ~= "string" then return nil end
  return LAYOUT[t0] or LAYOUT[lower(t0)]
end

-- The block position fields every accepted log must carry.
local function position(ev, view)
  ev.block = quantity(view.blockNumber)
  ev.txIndex = quantity(view.transactionIndex)
  ev.logIndex = quantity(view.logIndex)
  ev.blockHash = hash32(view.blockHash)
  ev.txHash = hash32(view.transactionHash)
  return ev.block and ev.txIndex and ev.logIndex and ev.blockHash and ev.txHash
end

local function valid_data(d, words)
  return type(d) == "string" and #d == 2 + 64 * words and find(d, "^0x%x*$")
end

--- The decoded event of an accepted log, or nil, reason (unknown_topic,
--- unknown_pool, bad_data). `view` must not be a removed log.
function M.decode(view, registry)
  local layout = layout_of(view.topics)
  if not layout then return nil, M.UNKNOWN_TOPIC end
  local pool = registry:pool(view.address)
  if not pool then return nil, M.UNKNOWN_POOL end
  local topics, d = view.topics, view.data
  if pool.kind ~= layout.pool_kind or #topics ~= layout.topics or
     not valid_data(d, layout.words) then
    return nil, M.BAD_DATA
  end
  local ev = { kind = layout.kind, pool = pool, data = d }
  if not position(ev, view) or not DECODE[layout.kind](ev, d, topics) then
    return nil, M.BAD_DATA
  end
  return ev
end

--- The identity of a removed log: blockHash, txHash (lowercase), logIndex,
--- or nil when they are malformed (then it can match nothing).
function M.log_key(view)
  local bh, th = hash32(view.blockHash), hash32(view.transactionHash)
  local li = quantity(view.logIndex)
  if not (bh and th and li) then return nil end
  return bh, th, li
end

return M
