-- bandit.warmup -- synthetic traffic for the warm-ups of the Bandit
-- services (docs/BANDIT.md, "Warm-up"): log notifications made from the
-- pools a service was configured with, so that LuaJIT compiles its
-- handlers before the first real log (docs/API.md, Warm-up).
--
-- Every path real traffic takes is in it: per pool a V2 Sync and Swap or
-- a V3 Swap (each kind and fee tier the list has), rounds where the
-- venues of a pair agree (no signal) and where they do not (signals),
-- removed logs that match an earlier log and ones that match none, and
-- the lines the adapter skips (unknown topic, malformed JSON, unknown
-- pool, bad data, a foreign subscription). Nothing here comes from a
-- capture.
local abi = require "bandit.abi"
local registry = require "bandit.registry"
local wire = require "bandit.wire"
local ffi = require "ffi"

local format, rep, ceil, max = string.format, string.rep, math.ceil, math.max
local copy = ffi.copy

local M = {}

--- Lines of synthetic traffic each service's warm-up handles by default
--- (opts.warmup: a number of lines, or false for none).
M.LINES = 3000

--- The subscription id of the synthetic stream.
M.SUB = "0x5eed" .. rep("0", 27) .. "1"

-- A 32-byte hash, unique per (tag, n) by its last 8 bytes; the rest
-- pseudo-random, as real hashes are: letters among the digits, and first
-- bytes (the duplicate windows' and the detector's index keys) that
-- differ from log to log. Hashes of a fixed prefix put every warm-up log
-- on one key and left the paths of distinct keys to real traffic.
local function hash(tag, n)
  local x, parts = (tag * 1000003 + n) % 2147483647 + 1, {}
  for i = 1, 6 do
    x = x * 48271 % 2147483647
    parts[i] = format("%08x", x)
  end
  return format("0x%s%08x%08x", table.concat(parts), tag, n)
end
-- ABI words of integers below 2^52.
local function word(v)
  local h = format("%x", v)
  return rep("0", 64 - #h) .. h
end
local function neg(v) return rep("f", 51) .. format("%013x", 2 ^ 52 - v) end
-- sqrtPriceX96 of a price k^2 (before decimals).
local function q96(k)
  local h = format("%x", k) .. rep("0", 24)
  return rep("0", 64 - #h) .. h
end
local function topic_addr(a) return "0x" .. rep("0", 24) .. a:sub(3):lower() end

-- A notification in geth's compact layout (as a node sends it).
local function log(sub, address, topics, data, block, th, txi, bh, li, removed)
  return format('{"jsonrpc":"2.0","method":"eth_subscription","params":' ..
    '{"subscription":"%s","result":{"address":"%s","topics":["%s"],' ..
    '"data":"0x%s","blockNumber":"0x%x","transactionHash":"%s",' ..
    '"transactionIndex":"0x%x","blockHash":"%s","logIndex":"0x%x",' ..
    '"removed":%s}}}', sub, address, table.concat(topics, '","'), data,
    block, th, txi, bh, li, removed and "true" or "false")
end

--- The registry a service was configured with: opts.pools and
--- opts.tokens, else the lists in `data_dir` (the services' default).
function M.load(opts, data_dir)
  local reg, err = registry.load(opts.pools or data_dir .. "pools.json",
                                 opts.tokens or data_dir .. "tokens.json")
  if not reg then error("warm-up: cannot load the pool registry: " .. tostring(err), 0) end
  return reg
end

--- A registry of synthetic pools for a service that has no list (the
--- detector learns its pools from PoolMeta): V2 at 0.30 % and V3 at each
--- Uniswap fee tier, on pairs with several venues (signals), one venue
--- (no evaluation partner), tokens of 18 and 6 decimals.
function M.synthetic()
  local function addr(n) return format("0x%040x", n) end
  local A, B, C = addr(0xa11ce), addr(0xb0b), addr(0xc0ffee)
  local tokens = { { address = A, symbol = "WA", decimals = 18 },
                   { address = B, symbol = "WB", decimals = 6 },
                   { address = C, symbol = "WC", decimals = 18 } }
  local pools, n = {}, 0
  local function pool(kind, fee, t0, t1)
    n = n + 1
    pools[n] = { address = addr(0x9000 + n), kind = kind, fee_ppm = fee,
                 token0 = t0, token1 = t1, dex = "warm_" .. kind .. "_" .. n }
  end
  pool("v2", 3000, A, B) pool("v2", 3000, A, B) pool("v3", 500, A, B)
  pool("v3", 3000, A, B) pool("v3", 10000, A, B) pool("v3", 100, B, C)
  pool("v2", 3000, B, C) pool("v2", 2500, A, C)
  return assert(registry.new(pools, tokens))
end

--- How many lines opts.warmup asks for (0: none).
function M.count(opts)
  local n = opts.warmup
  if n == false then return 0 end
  if type(n) ~= "number" or n < 0 then return M.LINES end
  return n
end

--- About `target` lines of traffic on the pools of `reg` (a
--- bandit.registry), the first the eth_subscribe reply.
function M.lines(reg, target)
  local pools, sub = reg.pools, M.SUB
  local out = { format('{"jsonrpc":"2.0","id":1,"result":"%s"}', sub) }
  if #pools == 0 or target <= 0 then return out end
  local per_round = 1 + #pools / 7
  for _, p in ipairs(pools) do per_round = per_round + (p.kind == "v2" and 2 or 1) end
  local rounds = max(2, ceil(target / per_round))
  local p1 = pools[1]
  local sender, to = topic_addr(p1.token0), topic_addr(p1.token1)
  local tx = 0
  for r = 1, rounds do
    local block = 0x3000000 + r
    local bh = hash(1, block)
    -- Odd rounds: venues of a pair disagree (signals); even: agree.
    local spread = r % 2 == 1
    local li = 0
    local function add(address, topics, data, th, removed)
      out[#out + 1] = log(sub, address, topics, data, block, th, tx % 200,
                          bh, li, removed)
    end
    for i, p in ipairs(pools) do
      tx = tx + 1
      local th = hash(2, tx)
      local f = spread and 1000 + 7 * (i % 9) or 1000
      local topics, data
      if p.kind == "v2" then
        add(p.key, { abi.TOPIC_SYNC }, word(1e12) .. word(1e9 * f), th)
        li = li + 1
        topics = { abi.TOPIC_V2_SWAP, sender, to }
        data = word(0) .. word(1000 + r) .. word(990 + r) .. word(0)
      else
        topics = { abi.TOPIC_V3_SWAP, sender, to }
        data = word(1e6 + r) .. neg(990000 + i) .. q96(f) .. word(1e15) ..
          (spread and word(887) or neg(887))
      end
      add(p.key, topics, data, th)
      -- Every seventh swap is retracted by a reorg.
      if tx % 7 == 0 then add(p.key, topics, data, th, true) end
      li = li + 1
    end
    -- What the adapter skips, and a removal that matches nothing.
    local k = r % 6
    tx = tx + 1
    if k == 0 then
      add(p1.key, { hash(3, r) }, word(1), hash(2, tx))
    elseif k == 1 then
      out[#out + 1] = '{"jsonrpc":"2.0","method":"eth_subscription","params":{'
    elseif k == 2 then
      add("0x" .. rep("e", 40), { abi.TOPIC_SYNC }, word(1) .. word(2), hash(2, tx))
    elseif k == 3 then
      add(p1.key, { abi.TOPIC_SYNC }, word(1), hash(2, tx))
    elseif k == 4 then
      out[#out + 1] = log("0x" .. rep("f", 32), p1.key, { abi.TOPIC_SYNC },
                          word(1) .. word(2), block, hash(2, tx), 0, bh, li, false)
    else
      add(p1.key, { abi.TOPIC_SYNC }, word(1) .. word(2), hash(4, tx), true)
    end
    li = li + 1
  end
  return out
end

--- The typed message the adapter makes of notification `text` (line
--- `line`), built with ctx:new: "state" or "swap" with the message and
--- its decoded event, "removed" with a LogRetraction, or nil for a line
--- the adapter skips.
function M.typed(ctx, text, reg, line)
  local view = abi.envelope(text, M.SUB)
  if not view then return nil end
  local now = wire.now_ns()
  if view.removed == true then
    local bh, th, li = abi.log_key(view)
    if not bh then return nil end
    local c = abi.canonical(view)
    local m = ctx:new("LogRetraction")
    m.block, m.tx_index = tonumber(c.blockNumber) or 0,
      tonumber(c.transactionIndex) or 0
    m.log_index, m.ws_seq, m.arrival_ns = wire.u64(li), line, now
    local layout = c.topics and c.topics[1] and abi.LAYOUT[c.topics[1]]
    m.kind = layout and wire.KIND_CODE[layout.kind] or 0
    wire.put_hex(m.block_hash, bh, 3, 32)
    wire.put_hex(m.tx_hash, th, 3, 32)
    wire.put_hex(m.pool, c.address, 3, 20)
    return "removed", m
  end
  local ev = abi.decode(view, reg)
  if not ev or not wire.positions_fit(ev) then return nil end
  if ev.kind == "v2_sync" then
    local m = ctx:new("PoolStateUpdate")
    wire.fill_sync(m, ev, line, now)
    return "state", m, ev
  end
  local m = ctx:new("SwapEvent")
  wire.fill_swap(m, ev, line, now)
  return "swap", m, ev
end

-- Decimals of a side when the token list has none (MetadataService would
-- ask the node).
local function decimals(d) return d or 18 end

--- MetadataService's additions to a log message of pool `p`.
function M.enrich(m, p)
  copy(m.token0, wire.address_bytes(p.token0), 20)
  copy(m.token1, wire.address_bytes(p.token1), 20)
  m.decimals0, m.decimals1, m.fee_ppm = decimals(p.dec0), decimals(p.dec1), p.fee_ppm
end

--- The PoolMeta MetadataService publishes for pool `p`.
function M.pool_meta(ctx, p)
  local m = ctx:new("PoolMeta")
  copy(m.pool, wire.address_bytes(p.address), 20)
  copy(m.token0, wire.address_bytes(p.token0), 20)
  copy(m.token1, wire.address_bytes(p.token1), 20)
  m.fee_ppm, m.pool_kind = p.fee_ppm, p.kind == "v3" and 3 or 2
  m.decimals0, m.decimals1 = decimals(p.dec0), decimals(p.dec1)
  wire.set_string(m.dex, p.dex:sub(1, 64), 64)
  wire.set_string(m.pair, p.pair:sub(1, 129), 129)
  wire.set_string(m.label, p.label:sub(1, 256), 256)
  return m
end

--- Runs fn() against a scratch state: `set(scratch)` before, `set(real)`
--- after, even when fn raises (the error is raised again).
function M.scratch(real, scratch, set, fn)
  set(scratch)
  local ok, err = pcall(fn)
  set(real)
  if not ok then error(err, 0) end
end

--- Runs fn(), which gives the fields of `state` scratch values, then puts
--- every field of `state` back as it was, even when fn raises (the error
--- is raised again). The warm-up runs on the real state table, not on a
--- copy: a trace reads a field where it found it in the table's hash
--- part, and a copy made field by field lays the fields out otherwise,
--- so every trace compiled on the copy left at its first field read in
--- real traffic, and was compiled again then.
function M.in_place(state, fn)
  local saved = {}
  for k, v in pairs(state) do saved[k] = v end
  local ok, err = pcall(fn)
  for k in pairs(state) do
    if saved[k] == nil then state[k] = nil end
  end
  for k, v in pairs(saved) do state[k] = v end
  if not ok then error(err, 0) end
end

return M
