-- metadata_service.lua -- MetadataService: fills each decoded log with
-- its pool's tokens, decimals and fee, and publishes what it knows of
-- pools (PoolMeta) and tokens (InstrumentMeta) before their first use.
--
-- Invariant: logs leave in the order they came (the detector's verdicts
-- depend on it), and an event leaves only complete: token0, token1, both
-- decimals and the fee set, its PoolMeta published before it. Never
-- half-filled.
--
-- Where metadata comes from, first hit wins: the bundled pool and token
-- lists (opts.pools, opts.tokens); then, per unknown token, the service's
-- memory, Redis (opts.redis: read-through, what is learned is written
-- back), then eth_call symbol()/decimals() on the node (opts.rpc) or
-- the function of opts.lookup.  With opts.postgres, the table
-- bandit_tokens (services/bandit/pg_schema.sql) is asked too; where, is
-- opts.lookup_order (default { "list", "redis", "postgres", "rpc" }).
--
-- Pools come from the list; with opts.discover (and an adapter that
-- passes unlisted pools on, its own opts.discover), a pool met in a log
-- is looked up too: token0(), token1(), fee() for V3, the same way.
--
-- The hold rule (docs/BANDIT.md): a log whose pool has a token not known
-- yet starts a lookup and waits; every later log waits behind it, so
-- order is kept. When the lookup succeeds the queue drains in order.
-- When it fails, or takes longer than opts.hold_ms (default 5000), the
-- logs of that pool are dropped (skipped, reason "unenriched"), and the
-- token is not asked for again for opts.retry_ms (default 60000): its
-- logs are dropped at once meanwhile. At most opts.hold_max (default
-- 65536) logs wait; a log beyond that is dropped the same way.
-- Retractions and the end of the stream are never dropped: they wait in
-- line and pass unchanged.
local ffi = require "ffi"
local registry = require "bandit.registry"
local wire = require "bandit.wire"
local erc20 = require "bandit.erc20"
local redis_cache = require "mycelium.net.redis_cache"
local eip55 = require "bandit.eip55"
local warmup = require "bandit.warmup"

local format, type, tostring, pairs, ipairs, floor =
  string.format, type, tostring, pairs, ipairs, math.floor
local lower = string.lower
local cast, copy, fstring = ffi.cast, ffi.copy, ffi.string

local T = wire.TOPICS
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local DATA = here .. "/../examples/bandit/data/"

-- Contract limits: decimals beyond 77 cannot price (10^78 > 2^256), names
-- beyond their String capacity cannot be published.
local MAX_DECIMALS, MAX_SYMBOL, MAX_DEX, MAX_PAIR, MAX_LABEL =
  77, 64, 64, 129, 256

local ZERO20 = ("\0"):rep(20)

local M = {}
local S -- service state

--- Skips and counters -----------------------------------------------------------

local function drop(ctx, line, why)
  S.dropped = S.dropped + 1
  S.pub_skipped { line = line, reason = "unenriched", service = ctx.name }
  local fields = { line = line, why = why, count = S.dropped }
  if S.dropped == 1 then
    ctx.log:warn("dropped a log it cannot enrich: " .. why, fields)
  else
    ctx.log:debug("dropped a log it cannot enrich: " .. why, fields)
  end
end

--- Tokens ---------------------------------------------------------------------------

-- A token: key (lowercase 0x-hex), raw (20 bytes), symbol, decimals,
-- state "known" | "unknown" | "pending" | "failed", failed_until.
local function token_of(key)
  local t = S.tokens[key]
  if t then return t end
  t = { key = key, raw = wire.address_bytes(key), state = "unknown",
        sent = false }
  if t.raw == ZERO20 then
    -- Not a contract: nothing to look up, ever.
    t.state, t.failed_until, t.why = "failed", math.huge, "address zero"
  end
  S.tokens[key] = t
  return t
end

local function usable(symbol, decimals)
  return type(symbol) == "string" and #symbol <= MAX_SYMBOL and
    type(decimals) == "number" and decimals == floor(decimals) and
    decimals >= 0 and decimals <= MAX_DECIMALS
end

local function learn(t, symbol, decimals)
  t.symbol, t.decimals, t.state = symbol, decimals, "known"
end

--- Pools ----------------------------------------------------------------------------

-- The 46 bytes every enriched message ends with: token0, token1,
-- decimals0, decimals1, fee_ppm (u32 LE), as one block to copy.
local function enrichment(p)
  local b = ffi.new("uint8_t[46]")
  copy(b, p.t0.raw, 20)
  copy(b + 20, p.t1.raw, 20)
  b[40], b[41] = p.t0.decimals, p.t1.decimals
  cast("uint32_t *", b + 42)[0] = p.fee_ppm
  return fstring(b, 46)
end

-- Makes a pool ready once both tokens are known: names, enrichment.
local function settle(ctx, p)
  if p.t0.state ~= "known" or p.t1.state ~= "known" then return false end
  local r = p.reg
  -- Symbols: the bundled list wins, then what was learned, then the pool
  -- list's own tokenN_symbol (the registry's fallback), then the address.
  local sym0 = p.t0.bundled_symbol or p.t0.symbol or r.sym0
  local sym1 = p.t1.bundled_symbol or p.t1.symbol or r.sym1
  p.sym0, p.sym1, p.pair = sym0, sym1, sym0 .. "/" .. sym1
  if #p.pair > MAX_PAIR or #r.dex > MAX_DEX then
    p.failed = "names longer than the contract's capacity"
    ctx.log:error("pool " .. r.address .. ": " .. p.failed,
                  { pair = p.pair, dex = r.dex })
    return false
  end
  p.label = (r.label or (r.dex .. " " .. p.pair)):sub(1, MAX_LABEL)
  p.tail = enrichment(p)
  p.ready = true
  return true
end

local function publish_token(ctx, t, symbol)
  if t.sent then return end
  t.sent = true
  -- The contract wants a name: a token without one goes by its address.
  if symbol == "" then symbol = t.key end
  local m = ctx:new("InstrumentMeta")
  copy(m.token_address, t.raw, 20)
  wire.set_string(m.symbol, symbol:sub(1, MAX_SYMBOL), MAX_SYMBOL)
  m.decimals, m.chain_id = t.decimals, S.chain_id
  S.pub_token(m)
end

local function publish_pool(ctx, p)
  local r = p.reg
  publish_token(ctx, p.t0, p.sym0)
  publish_token(ctx, p.t1, p.sym1)
  local m = ctx:new("PoolMeta")
  copy(m.pool, p.raw, 20)
  copy(m.token0, p.t0.raw, 20)
  copy(m.token1, p.t1.raw, 20)
  m.fee_ppm, m.pool_kind = r.fee_ppm, r.kind == "v3" and 3 or 2
  m.decimals0, m.decimals1 = p.t0.decimals, p.t1.decimals
  wire.set_string(m.dex, r.dex, MAX_DEX)
  wire.set_string(m.pair, p.pair, MAX_PAIR)
  wire.set_string(m.label, p.label, MAX_LABEL)
  S.pub_pool(m)
  p.published = true
end

--- Forwarding ---------------------------------------------------------------------

-- Types of the incoming messages by what they are.
local KINDS = { state = "PoolStateUpdate", swap = "SwapEvent" }

-- Emits the enriched copy of the log at ptr (a `what` message).
local function forward(ctx, p, what, ptr)
  if not p.published then publish_pool(ctx, p) end
  local Ty = S.types[what]
  local m = ctx:new(KINDS[what])
  copy(m, ptr, Ty.size)
  copy(cast("uint8_t *", m) + Ty.tail_at, p.tail, 46)
  S.pub[what](m)
  S.enriched = S.enriched + 1
end

--- Lookups ------------------------------------------------------------------------

local drain, fail_pool, look_up_pool

local function rpc_call(to, name, cb)
  if not S.rpc then return cb(nil, "no RPC configured (opts.rpc)") end
  S.eth_calls = S.eth_calls + 1
  S.rpc:call("eth_call", erc20.call_params(to, name), function(result, err)
    if err then
      return cb(nil, tostring(type(err) == "table" and err.message or err))
    end
    cb(result)
  end)
end

-- The loader behind the cache: symbol() and decimals() of token `key`.
-- A token without symbol() is legal ERC-20: the names fall back.
local function load_token(key, done)
  local symbol, decimals, left, failed = nil, nil, 2, nil
  local function one()
    left = left - 1
    if left > 0 then return end
    if failed then return done(nil, failed) end
    done { symbol = symbol, decimals = decimals }
  end
  rpc_call(key, "decimals", function(result, err)
    local v, why = result and erc20.uint(result, 255), err
    if result and not v then why = "decimals(): " .. tostring(why) end
    if v then decimals = v else failed = "decimals(): " .. tostring(why) end
    one()
  end)
  rpc_call(key, "symbol", function(result)
    symbol = result and erc20.text(result) or nil
    one()
  end)
end

local function fail_token(ctx, t, why)
  t.state, t.failed_until = "failed", ctx:now() + S.retry_s
  t.why = why
  S.lookup_failures = S.lookup_failures + 1
  ctx.log:warn("no metadata for token " .. t.key .. ": " .. why)
end

-- Starts the lookup of token t (once); drain() runs when it ends.
local function look_up(ctx, t)
  if t.state ~= "unknown" then return end
  t.state = "pending"
  S.lookups = S.lookups + 1
  S.cache:get(t.key, S.loader, function(v, err, source)
    if t.state ~= "pending" then return end -- gave up on it (hold_ms)
    local symbol = type(v) == "table" and v.symbol or nil
    if symbol ~= nil and type(symbol) ~= "string" then symbol = nil end
    local decimals = type(v) == "table" and v.decimals or nil
    if not usable(symbol or "", decimals) then
      if v ~= nil then S.cache:forget(t.key) end
      fail_token(ctx, t, err or "unusable metadata " .. tostring(decimals))
    else
      learn(t, symbol, decimals)
      ctx.log:info("learned token " .. t.key, { symbol = symbol,
        decimals = decimals, source = source })
    end
    drain(ctx)
  end)
end

--- Pools not in the list (opts.discover) ----------------------------------------

-- A pool met in a log but absent from the list: its tokens and fee come
-- from the node (token0(), token1(), and fee() for V3; V2 pools charge
-- 0.30 %), through the same cache as tokens (Redis key bandit:pool:...).
local function discover(ctx, raw, kind)
  if S.discovered >= S.max_discovered then return nil end
  S.discovered = S.discovered + 1
  local key = wire.key_of(raw)
  local p = { raw = raw, key = key, kind = kind, state = "unknown",
              ready = false, published = false }
  S.pools[raw] = p
  ctx.log:info("a pool not in the list: looking it up", { pool = key,
                                                          kind = kind })
  return p
end

local function load_pool(kind)
  return function(key, done)
    local got, left, failed = {}, kind == "v3" and 3 or 2, nil
    local function one(name, decode)
      rpc_call(key, name, function(result, err)
        local v, why = nil, err
        if result then v, why = decode(result) end
        if v == nil then failed = failed or (name .. "(): " .. tostring(why)) end
        got[name] = v
        left = left - 1
        if left > 0 then return end
        if failed then return done(nil, failed) end
        done { token0 = got.token0, token1 = got.token1,
               fee_ppm = got.fee or 3000 }
      end)
    end
    one("token0", erc20.address)
    one("token1", erc20.address)
    if kind == "v3" then
      one("fee", function(r) return erc20.uint(r, 999999) end)
    end
  end
end

fail_pool = function(ctx, p, why)
  p.state, p.failed_until, p.why = "failed", ctx:now() + S.retry_s, why
  S.lookup_failures = S.lookup_failures + 1
  ctx.log:warn("no metadata for pool " .. p.key .. ": " .. why)
end

-- The pool's terms from a lookup, or nil when they are not usable.
local function pool_terms(v)
  if type(v) ~= "table" then return nil end
  local t0, t1 = wire.address_bytes(v.token0), wire.address_bytes(v.token1)
  local fee = v.fee_ppm
  if not (t0 and t1 and type(fee) == "number" and fee == floor(fee) and
          fee >= 0 and fee <= 999999) then
    return nil
  end
  return lower(v.token0), lower(v.token1), fee
end

look_up_pool = function(ctx, p)
  p.state = "pending"
  S.lookups = S.lookups + 1
  S.pool_cache:get(p.key, load_pool(p.kind), function(v, err)
    if p.state ~= "pending" then return end
    local k0, k1, fee = pool_terms(v)
    if not k0 then
      if v ~= nil then S.pool_cache:forget(p.key) end
      fail_pool(ctx, p, err or "unusable pool metadata")
    else
      local address = eip55.checksum(p.key)
      p.t0, p.t1, p.fee_ppm = token_of(k0), token_of(k1), fee
      p.reg = { address = address, key = p.key, kind = p.kind,
                fee_ppm = fee, dex = S.discovered_dex,
                sym0 = eip55.checksum(k0), sym1 = eip55.checksum(k1) }
      p.state = "known"
      ctx.log:info("learned pool " .. p.key, { token0 = k0, token1 = k1,
                                               fee_ppm = fee })
    end
    drain(ctx)
  end)
end

-- What to do with a log of pool p now: "go", "wait" or "drop" (and why).
local function verdict(ctx, p)
  if p == nil then return "drop", "pool not in the registry" end
  if p.ready then return "go" end
  if p.failed then return "drop", p.failed end
  if p.state ~= "known" then
    if p.state == "failed" and ctx:now() >= p.failed_until then
      p.state = "unknown"
    end
    if p.state == "unknown" then look_up_pool(ctx, p) end -- may end at once
    if p.state == "failed" then return "drop", "pool " .. p.key .. ": " .. p.why end
    if p.state ~= "known" then return "wait" end
  end
  local wait = false
  for _, t in ipairs { p.t0, p.t1 } do
    if t.state == "failed" and ctx:now() >= t.failed_until then
      t.state = "unknown"
    end
    if t.state == "unknown" then look_up(ctx, t) end -- may end at once
    if t.state == "failed" then
      return "drop", "token " .. t.key .. ": " .. t.why
    end
    if t.state ~= "known" then wait = true end
  end
  if wait then return "wait" end
  if settle(ctx, p) then return "go" end
  return "drop", p.failed
end

--- The hold queue -------------------------------------------------------------------

local function finish(ctx, info)
  S.pub_end {
    service = ctx.name, enriched = S.enriched, dropped = S.dropped,
    lookups = S.lookups, lookup_failures = S.lookup_failures,
    eth_calls = S.eth_calls, held_max = S.held_max,
    upstream = info,
  }
end

-- Handles one held item; false when it must keep waiting.
local function release(ctx, it)
  if it.what == "end" then finish(ctx, it.info) return true end
  if it.what == "removed" then
    S.pub.removed(it.msg.data)
    return true
  end
  local v, why = verdict(ctx, it.pool)
  if v == "wait" then return false end
  if v == "go" then
    forward(ctx, it.pool, it.what, (it.msg:bytes()))
  else
    drop(ctx, it.line, why)
  end
  return true
end

-- Gives up on what the head waits for, once it has waited hold_ms.
local function arm_timeout(ctx)
  local head = S.held[S.head]
  if not head or head.timer then return end
  head.timer = ctx:after(S.hold_ms, function()
    if S.held[S.head] ~= head then return end
    local p, why = head.pool, "no answer within " .. S.hold_ms .. " ms"
    if p.state == "pending" then fail_pool(ctx, p, why) end
    for _, t in ipairs { p.t0, p.t1 } do
      if t.state == "pending" then fail_token(ctx, t, why) end
    end
    drain(ctx)
  end)
end

-- A long queue released at once could fill the detector's mailbox: every
-- 256 logs, a downstream mailbox over half full pauses the drain for a
-- millisecond (what arrives meanwhile queues behind, in order).
local function congested(ctx, n)
  if n % 256 ~= 0 or ctx:pressure(T.enriched_state) <= 0.5 then return false end
  if not S.resume then
    S.resume = ctx:after(1, function(c) S.resume = nil drain(c) end)
  end
  return true
end

-- A lookup may answer while drain() is running (a memory hit calls back
-- at once): the nested call only asks the running one to look again.
drain = function(ctx)
  if S.draining then S.again = true return end
  if S.resume then return end
  S.draining = true
  local held, n = S.held, 0
  repeat
    S.again = false
    while S.head <= S.tail do
      local it = held[S.head]
      if not release(ctx, it) then break end
      if it.timer then it.timer.cancel() end
      held[S.head] = nil
      S.head, n = S.head + 1, n + 1
      if congested(ctx, n) then break end
    end
  until not S.again or S.resume
  S.draining = false
  if S.head > S.tail then S.head, S.tail = 1, 0 else arm_timeout(ctx) end
end

local function hold(ctx, it)
  if S.tail - S.head + 1 >= S.hold_max and it.what ~= "removed" and
     it.what ~= "end" then
    return drop(ctx, it.line, "hold queue full (" .. S.hold_max .. ")")
  end
  S.tail = S.tail + 1
  S.held[S.tail] = it
  local n = S.tail - S.head + 1
  if n > S.held_max then S.held_max = n end
  arm_timeout(ctx)
end

--- Handlers ---------------------------------------------------------------------------

local function on_log(ctx, msg, what)
  local ptr = msg:bytes()
  local Ty = S.types[what]
  local raw = fstring(cast("const uint8_t *", ptr) + Ty.pool_at, 20)
  local p = S.pools[raw]
  if not p and S.discover then
    p = discover(ctx, raw, cast(Ty.ptr, ptr).kind == 3 and "v3" or "v2")
  end
  if S.head > S.tail then
    if p and p.ready then return forward(ctx, p, what, ptr) end
    local v, why = verdict(ctx, p)
    if v == "go" then return forward(ctx, p, what, ptr) end
    local line = wire.qty(cast(Ty.ptr, ptr).ws_seq)
    if v == "drop" then return drop(ctx, line, why) end
    return hold(ctx, { what = what, pool = p, msg = msg:copy(), line = line })
  end
  local line = wire.qty(cast(Ty.ptr, ptr).ws_seq)
  hold(ctx, { what = what, pool = p, msg = msg:copy(), line = line })
  drain(ctx)
end

M.handlers = {
  [T.log_state] = function(ctx, msg) on_log(ctx, msg, "state") end,
  [T.log_swap] = function(ctx, msg) on_log(ctx, msg, "swap") end,
  [T.log_removed] = function(ctx, msg)
    if S.head > S.tail then return S.pub.removed(msg.data) end
    hold(ctx, { what = "removed", msg = msg:copy() })
  end,
  [T.end_adapter] = function(ctx, msg)
    local info = msg.data
    if S.head > S.tail then return finish(ctx, info) end
    hold(ctx, { what = "end", info = info })
  end,
}

--- Setup ------------------------------------------------------------------------------

local function type_info(ctx, name)
  local Ty = ctx.contracts and ctx.contracts:type(name)
  if not Ty then
    error(format("service '%s': needs the Bandit contracts (config "
                 .. "contracts = \"services/contracts.yaml\")", ctx.name), 0)
  end
  return { size = Ty.size, ptr = Ty.ptr, pool_at = Ty.field.pool.offset,
           tail_at = Ty.field.token0 and Ty.field.token0.offset }
end

-- Pools and tokens of the bundled lists.
local function load_registry(ctx, opts)
  local reg, err = registry.load(opts.pools or DATA .. "pools.json",
                                 opts.tokens or DATA .. "tokens.json")
  if not reg then
    error(format("service '%s': cannot load the pool registry: %s",
                 ctx.name, tostring(err)), 0)
  end
  for key, tok in pairs(reg.tokens) do
    local t = token_of(key)
    t.bundled_symbol = tok.symbol
    if S.use_list and t.state == "unknown" and usable(tok.symbol, tok.decimals) then
      learn(t, tok.symbol, tok.decimals)
    end
  end
  for _, r in ipairs(reg.pools) do
    local p = { reg = r, raw = wire.address_bytes(r.address), key = r.key,
                t0 = token_of(lower(r.token0)), t1 = token_of(lower(r.token1)),
                fee_ppm = r.fee_ppm, state = "known", ready = false,
                published = false }
    S.pools[p.raw] = p
    settle(ctx, p)
  end
end

local function open_rpc(ctx, url)
  if url == nil then return nil end
  local ok, jsonrpc = pcall(require, "mycelium.net.jsonrpc")
  if not ok then
    ctx.log:error("opts.rpc is set but mycelium.net.jsonrpc is not in this "
                  .. "build: unknown tokens cannot be looked up", { rpc = url })
    return nil
  end
  if url:match("^https?://") then return jsonrpc.http(ctx, url) end
  return jsonrpc.connect(ctx, url)
end

-- opts.lookup: a Lua file returning function(ctx, address, done) that
-- answers done({symbol =, decimals =}) or done(nil, why), now or later;
-- it replaces eth_call (another source of token metadata, or a test's).
local function custom_loader(ctx, path)
  local chunk, err = loadfile(path)
  local ok, fn = chunk ~= nil, nil
  if ok then ok, fn = pcall(chunk) end
  if not ok or type(fn) ~= "function" then
    error(format("service '%s': opts.lookup %s must return a function: %s",
                 ctx.name, tostring(path), tostring(err or fn)), 0)
  end
  return function(key, done) return fn(ctx, key, done) end
end

local SOURCES = { list = 1, redis = 2, postgres = 3, rpc = 3 }

-- opts.lookup_order: which sources are asked, and in what order postgres
-- and rpc (eth_call, or opts.lookup) are.  The list is read at start and
-- Redis caches what the sources behind it answer, so they come first.
-- Returns the set of sources and the slow ones in order.
local function lookup_order(ctx, opts)
  local order = opts.lookup_order
  if order == nil then
    order = opts.postgres and { "list", "redis", "postgres", "rpc" }
            or { "list", "redis", "rpc" }
  end
  local function bad(fmt, ...)
    error(format("service '%s': opts.lookup_order " .. fmt, ctx.name, ...), 0)
  end
  if type(order) ~= "table" or #order == 0 then
    bad("must be a list of sources (list, redis, postgres, rpc), got %s", tostring(order))
  end
  local seen, slow, rank = {}, {}, 0
  for i, name in ipairs(order) do
    local r = SOURCES[name]
    if r == nil then
      bad("entry %d: unknown source '%s' (list, redis, postgres, rpc)", i, tostring(name))
    end
    if seen[name] then bad("entry %d: '%s' is there twice", i, name) end
    if r < rank then
      bad("entry %d: '%s' must come before postgres and rpc (list, then redis: "
          .. "Redis caches what the slower sources answer)", i, name)
    end
    if name == "postgres" and opts.postgres == nil then
      bad("entry %d: 'postgres' needs opts.postgres (its URL)", i)
    end
    seen[name], rank = true, r
    if r == 3 then slow[#slow + 1] = name end
  end
  return seen, slow
end

-- The loader behind the cache: each slow source in turn, until one
-- knows the token.
local function chain_loader(sources)
  return function(key, done)
    local i, why = 0, nil
    local function next_source(v, err)
      if v ~= nil then return done(v) end
      if err ~= nil then why = why and (why .. "; " .. tostring(err)) or tostring(err) end
      i = i + 1
      local src = sources[i]
      if src == nil then return done(nil, why or "no lookup source (opts.lookup_order)") end
      return src(key, next_source)
    end
    return next_source()
  end
end

function M.init(ctx, opts)
  local chain = opts.chain_id or 137
  if type(chain) ~= "number" or chain < 1 or chain ~= floor(chain) then
    error(format("service '%s': opts.chain_id must be a positive integer, "
                 .. "got %s", ctx.name, tostring(chain)), 0)
  end
  S = {
    pools = {}, tokens = {}, held = {}, head = 1, tail = 0, held_max = 0,
    enriched = 0, dropped = 0, lookups = 0, lookup_failures = 0,
    eth_calls = 0, chain_id = chain,
    discover = opts.discover == true, discovered = 0,
    max_discovered = opts.max_discovered or 10000,
    discovered_dex = opts.discovered_dex or "unknown",
    hold_ms = opts.hold_ms or 5000, hold_max = opts.hold_max or 65536,
    retry_s = (opts.retry_ms or 60000) / 1000,
    types = { state = type_info(ctx, "PoolStateUpdate"),
              swap = type_info(ctx, "SwapEvent") },
    pub = { state = ctx:publisher(T.enriched_state),
            swap = ctx:publisher(T.enriched_swap),
            removed = ctx:publisher(T.enriched_removed) },
    pub_token = ctx:publisher(T.token), pub_pool = ctx:publisher(T.pool),
    pub_skipped = ctx:publisher(T.skipped),
    pub_end = ctx:publisher(T.end_metadata),
  }
  local use, slow = lookup_order(ctx, opts)
  S.use_list = use.list == true
  load_registry(ctx, opts)
  local cache, err = redis_cache.open(ctx, use.redis and opts.redis or nil, {
    prefix = opts.redis_prefix or "bandit:token:",
    ttl = opts.cache_ttl or 7 * 86400,
  })
  if not cache then
    error(format("service '%s': opts.redis: %s", ctx.name, tostring(err)), 0)
  end
  S.cache = cache
  -- The pool cache shares the token cache's Redis client.
  S.pool_cache = redis_cache.new(ctx, { redis = cache.redis,
    prefix = opts.redis_pool_prefix or "bandit:pool:",
    ttl = opts.cache_ttl or 7 * 86400 })
  S.rpc = open_rpc(ctx, opts.rpc)
  S.loader = load_token
  if opts.lookup ~= nil then S.loader = custom_loader(ctx, opts.lookup) end
  if opts.postgres ~= nil or opts.lookup_order ~= nil then
    local sources = {}
    for i, name in ipairs(slow) do
      if name == "postgres" then
        -- Required here: a build without the network clients has no
        -- mycelium.net.postgres, and needs none without opts.postgres.
        S.pg = require("bandit.pg_source").open(ctx, opts.postgres, chain, {
          query_timeout_ms = opts.postgres_timeout_ms or 2000 })
        sources[i] = S.pg.load
      else
        sources[i] = S.loader
      end
    end
    S.loader = chain_loader(sources)
  end
end

--- Counters and what is known, for tests and the summary.
function M.stats()
  return { enriched = S.enriched, dropped = S.dropped, lookups = S.lookups,
           lookup_failures = S.lookup_failures, eth_calls = S.eth_calls,
           held = S.tail - S.head + 1, held_max = S.held_max,
           cache = S.cache.stats,
           postgres = S.pg and { hits = S.pg.hits, misses = S.pg.misses,
                                 errors = S.pg.errors } or nil }
end

function M.stop()
  if S and S.cache then S.cache:close() end
  if S and S.pg then S.pg.close() end
end

--- Warm-up (docs/BANDIT.md): run by the engine after init, before any
--- log, with the JIT on. The logs the adapter would make of synthetic
--- traffic on the configured pools go through the handlers against a
--- scratch state (its own pools and tokens, from the same lists); only
--- pools whose tokens the lists know take part, so nothing is looked up.
function M.warmup(ctx, warm)
  local n = warmup.count(ctx.opts)
  if n == 0 then return end
  local reg = warmup.load(ctx.opts, DATA)
  local topics = { state = T.log_state, swap = T.log_swap, removed = T.log_removed }
  warmup.in_place(S, function()
    S.pools, S.tokens, S.held, S.head, S.tail = {}, {}, {}, 1, 0
    S.held_max, S.enriched, S.dropped = 0, 0, 0
    S.lookups, S.lookup_failures, S.eth_calls = 0, 0, 0
    S.discover, S.draining, S.again, S.resume = false, false, false, nil
    load_registry(ctx, ctx.opts)
    for line, text in ipairs(warmup.lines(reg, n)) do
      local what, m = warmup.typed(ctx, text, reg, line)
      local p = what and what ~= "removed" and S.pools[fstring(m.pool, 20)]
      if what == "removed" or (p and p.ready) then warm:deliver(topics[what], m) end
    end
  end)
end

return M
