local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "spec/?.lua", root .. "?.lua",
  package.path }, ";")

-- MetadataService behind a PolygonAdapter: enrichment, what it publishes
-- before a pool's first log, the hold rule for a token it must look up
-- (order kept, drop after hold_ms, retry_ms, hold_max), and the Redis
-- read-through cache against a real redis-server.
local H = require "spec.services.bandit.helper"
local testing = require "mycelium.testing"
local cjson = require "cjson"

local SUB = "0x77"
local TOKENS = { { "AAA", 18 }, { "BBB", 6 }, { "CCC", 8 } }
local POOLS = { { "p1", "dexa", "v2", "AAA", "BBB", 3000 },
                { "p2", "dexb", "v2", "AAA", "CCC", 3000 },
                { "p3", "dexc", "v3", "AAA", "BBB", 500 } }
local P1, P2, P3 = H.addr("p1"), H.addr("p2"), H.addr("p3")
local CCC = H.checksum(H.addr("token:CCC"))

-- The lookup a test plugs in instead of eth_call (opts.lookup).
local LOOKUP = [[
return function(ctx, address, done)
  local mode = ctx.opts.lookup_mode
  ctx:emit("test.lookup", address)
  if mode == "later" then
    ctx:after(50, function() done({ symbol = "CCC", decimals = 8 }) end)
  elseif mode == "fail" then done(nil, "no such token")
  elseif mode == "bad" then done({ symbol = "CCC", decimals = 99 })
  elseif mode ~= "never" then done({ symbol = "CCC", decimals = 8 }) end
end
]]

local function pos(li, o)
  local p = { sub = SUB, block = 100 + li, tx = H.hash("t" .. li), txi = 0,
              bh = H.hash("b" .. li), li = li }
  for k, v in pairs(o or {}) do p[k] = v end
  return p
end

describe("MetadataService", function()
  local dir, pools, tokens, lookup
  setup(function()
    dir = H.tmpdir()
    -- CCC is in no token list: its decimals must be looked up.
    pools, tokens = H.write_registry(dir, POOLS, TOKENS, function(_, toks)
      toks[3] = nil
    end)
    lookup = testing.module(LOOKUP)
  end)
  teardown(function() H.rmdir(dir) testing.cleanup() end)

  local function engine(meta_opts)
    local o = { pools = pools, tokens = tokens }
    for k, v in pairs(meta_opts or {}) do o[k] = v end
    local eng = testing.engine {
      contracts = H.ROOT .. "services/contracts.yaml", start = false,
      log = { level = "debug", format = "json" },
      services = {
        { name = "polygon", module = H.ROOT .. "services/polygon_adapter.lua",
          opts = { source = "topic", pools = pools, tokens = tokens } },
        { name = "metadata", module = H.ROOT .. "services/metadata_service.lua",
          opts = o },
      },
    }
    local c = {
      all = eng:collect("bandit.*"), enriched = eng:collect("bandit.enriched.*"),
      pool = eng:collect("bandit.pool"), token = eng:collect("bandit.token"),
      skipped = eng:collect("bandit.skipped"), ends = eng:collect("bandit.end.metadata"),
      lookups = eng:collect("test.lookup"),
    }
    eng:start()
    return eng, c
  end

  -- Moves what arrived into each collector's .all.
  local function drain(c)
    for k, col in pairs(c) do if k ~= "all" then col:messages() end end
  end

  -- Topic and ws_seq (or pool) of what MetadataService emitted, in order.
  local function trail(c)
    drain(c)
    local out = {}
    for _, m in ipairs(c.all:messages()) do
      if m.source == "metadata" then
        local d = m.data
        local what = m.topic:gsub("^bandit%.", "")
        if m.type == "PoolMeta" then what = what .. ":" .. d.pair
        elseif m.type == "InstrumentMeta" then what = what .. ":" .. d.symbol
        elseif type(d) == "table" and d.ws_seq then what = what .. ":" .. d.ws_seq
        elseif type(d) == "table" and d.line then
          what = what .. ":" .. d.reason .. ":" .. d.line
        end
        out[#out + 1] = what
      end
    end
    return out
  end

  it("fills token0, token1, decimals and fee, after the pool's PoolMeta", function()
    local eng, c = engine()
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P1, "1000", "2000"),
                  H.v3swap(pos(2), P3, "-5", "7", "79228162514264337593543950336",
                           "10", 0),
                  H.sync(pos(3), P1, "1001", "2000") })
    assert.same({ "token:AAA", "token:BBB", "pool:AAA/BBB", "enriched.state:2",
                  "pool:AAA/BBB", "enriched.swap:3", "enriched.state:4", "end.metadata" },
                trail(c))
    local e = c.enriched.all
    assert.equal(H.checksum(H.addr("token:AAA")), e[1].data.token0)
    assert.equal(H.checksum(H.addr("token:BBB")), e[1].data.token1)
    assert.equal(18, e[1].data.decimals0)
    assert.equal(6, e[1].data.decimals1)
    assert.equal(3000, e[1].data.fee_ppm)
    assert.equal("1000", e[1].data.reserve0) -- the log itself unchanged
    assert.equal(500, e[2].data.fee_ppm)
    assert.equal("-5", e[2].data.amount0)
    local p = c.pool.all[1].data
    assert.equal(H.checksum(P1), p.pool)
    assert.equal("dexa", p.dex)
    assert.equal(2, p.pool_kind)
    assert.equal("p1", p.label)
    assert.equal(3, c.pool.all[2].data.pool_kind)
    local t = c.token.all[1].data
    assert.equal("AAA", t.symbol)
    assert.equal(18, t.decimals)
    assert.equal(137, t.chain_id)
    eng:close()
  end)

  it("drops the logs of a pool whose token it cannot learn, and forwards the rest in order",
     function()
    local eng, c = engine() -- no Redis, no RPC: nowhere to learn CCC
    local s2 = H.sync(pos(2), P2, "5", "6")
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P1, "1", "2"), s2,
                  H.sync(pos(3), P1, "1", "3"), H.removed(s2) })
    assert.same({ "token:AAA", "token:BBB", "pool:AAA/BBB", "enriched.state:2",
                  "skipped:unenriched:3", "enriched.state:4", "enriched.removed:5",
                  "end.metadata" }, trail(c))
    local e = c.ends.all[1].data
    assert.equal(1, e.dropped)
    assert.equal(1, e.lookup_failures)
    local warned = false
    for _, l in ipairs(eng:logs(true)) do
      if l.level == "warn" and l.msg:find("no metadata for token", 1, true) then
        warned = l.msg:find("no RPC configured", 1, true) ~= nil
      end
    end
    assert.is_true(warned)
    eng:close()
  end)

  it("asks again for a failed token only after retry_ms", function()
    local eng, c = engine { lookup = lookup, lookup_mode = "fail", retry_ms = 1000 }
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "1", "2"),
                  H.sync(pos(2), P2, "1", "2") }, nil, true)
    drain(c)
    assert.equal(1, #c.lookups.all)
    assert.equal(2, #c.skipped.all)
    eng:advance(1.001)
    H.feed(eng, { H.sync(pos(3), P2, "1", "2") }, nil, true)
    drain(c)
    assert.equal(2, #c.lookups.all)
    eng:close()
  end)

  it("holds every later log behind a lookup and releases them in order", function()
    local eng, c = engine { lookup = lookup, lookup_mode = "later" }
    local s3 = H.sync(pos(3), P1, "1", "3")
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P1, "1", "2"),
                  H.sync(pos(2), P2, "5", "6"), s3, H.removed(s3),
                  H.v2swap(pos(4), P2, "1", "0", "0", "1") })
    -- Only what came before the unknown token went through.
    assert.same({ "token:AAA", "token:BBB", "pool:AAA/BBB", "enriched.state:2" },
                trail(c))
    assert.equal(1, #c.lookups.all)
    assert.equal(H.addr("token:CCC"), c.lookups.all[1].data)
    eng:advance(0.05)
    assert.same({ "token:CCC", "pool:AAA/CCC", "enriched.state:3", "enriched.state:4",
                  "enriched.removed:5", "enriched.swap:6", "end.metadata" }, trail(c))
    local e = c.enriched.all
    assert.equal(CCC, e[2].data.token1)
    assert.equal(8, e[2].data.decimals1)
    local ccc = c.token.all[3].data
    assert.equal("CCC", ccc.symbol)
    assert.equal(8, ccc.decimals)
    assert.equal(5, c.ends.all[1].data.held_max) -- 4 logs and the end
    eng:close()
  end)

  it("gives up after hold_ms, drops that pool's logs and lets the others go",
     function()
    local eng, c = engine { lookup = lookup, lookup_mode = "never", hold_ms = 2000 }
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6"),
                  H.sync(pos(2), P1, "1", "3"), H.sync(pos(3), P2, "5", "7") })
    assert.same({}, trail(c))
    eng:advance(1.9)
    assert.same({}, trail(c))
    eng:advance(0.2)
    assert.same({ "skipped:unenriched:2", "token:AAA", "token:BBB", "pool:AAA/BBB",
                  "enriched.state:3", "skipped:unenriched:4", "end.metadata" }, trail(c))
    eng:close()
  end)

  it("drops what does not fit the hold queue, never a retraction or the end",
     function()
    local eng, c = engine { lookup = lookup, lookup_mode = "later", hold_max = 2 }
    local s = H.sync(pos(3), P1, "1", "3")
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6"), H.sync(pos(2), P1, "1", "2"),
                  s, H.removed(s) })
    eng:advance(0.05)
    assert.same({ "skipped:unenriched:4", "token:AAA", "token:CCC", "pool:AAA/CCC",
                  "enriched.state:2", "token:BBB", "pool:AAA/BBB", "enriched.state:3",
                  "enriched.removed:5", "end.metadata" }, trail(c))
    eng:close()
  end)

  it("releases a long queue no faster than the detector's mailbox takes it", function()
    local eng = testing.engine {
      contracts = H.ROOT .. "services/contracts.yaml", start = false,
      mailbox = { capacity = 4096, policy = "reject" },
      services = {
        { name = "polygon", module = H.ROOT .. "services/polygon_adapter.lua",
          opts = { source = "topic", pools = pools, tokens = tokens } },
        { name = "metadata", module = H.ROOT .. "services/metadata_service.lua",
          opts = { pools = pools, tokens = tokens, lookup = lookup, lookup_mode = "later" } },
        { name = "arb", module = H.ROOT .. "services/arbitrage_detector.lua",
          mailbox = { capacity = 400, policy = "reject" } },
      },
    }
    eng:start()
    local lines = { H.reply(SUB), H.sync(pos(1), P2, "5", "6") }
    for i = 2, 1000 do lines[#lines + 1] = H.sync(pos(i), P1, "1", tostring(i)) end
    H.feed(eng, lines)
    for _ = 1, 50 do eng:advance(0.05) end
    local arb = eng:stats("arb")
    assert.equal(0, arb.dropped)
    assert.equal(1000 + 2 + 1, arb["in"]) -- the logs, two PoolMetas, the end
    eng:close()
  end)

  it("refuses token metadata it cannot use (decimals beyond 77)", function()
    local eng, c = engine { lookup = lookup, lookup_mode = "bad" }
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
    assert.same({ "skipped:unenriched:2", "end.metadata" }, trail(c))
    eng:close()
  end)

  it("raises at init on a lookup file that returns no function", function()
    local ok, err = pcall(testing.engine, {
      contracts = H.ROOT .. "services/contracts.yaml",
      services = { { name = "m", module = H.ROOT .. "services/metadata_service.lua",
                     opts = { pools = pools, tokens = tokens,
                              lookup = testing.module("return 42") } } } })
    assert.is_false(ok)
    assert.matches("service 'm': opts.lookup .* must return a function", err)
  end)

  describe("with Redis", function()
    local redis_server = require "support.redis_server"
    local server
    setup(function() server = redis_server.start() end)
    teardown(function() if server then server:stop() end end)

    local function cli(...)
      local args = { "redis-cli", "-p", tostring(server.port) }
      for _, a in ipairs { ... } do args[#args + 1] = "'" .. a .. "'" end
      local p = io.popen(table.concat(args, " "))
      local out = p:read("*a")
      p:close()
      return (out:gsub("\n$", ""))
    end

    it("reads what another instance learned", function()
      local key = "bandit:token:" .. H.addr("token:CCC")
      cli("SET", key, cjson.encode { symbol = "CCC", decimals = 8 })
      local eng, c = engine { redis = server.url }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      assert.same({ "token:AAA", "token:CCC", "pool:AAA/CCC", "enriched.state:2",
                    "end.metadata" }, trail(c))
      assert.equal(8, c.enriched.all[1].data.decimals1)
      eng:close()
    end)

    it("writes back what its lookup learned", function()
      local key = "bandit:token:" .. H.addr("token:CCC")
      cli("DEL", key)
      local eng, c = engine { redis = server.url, lookup = lookup, lookup_mode = "now" }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      drain(c)
      assert.equal(1, #c.lookups.all)
      assert.is_true(eng:run_for(5, function() return cli("GET", key) ~= "" end))
      assert.same({ symbol = "CCC", decimals = 8 }, cjson.decode(cli("GET", key)))
      eng:close()
    end)

    it("ignores garbage in Redis and asks its lookup", function()
      local key = "bandit:token:" .. H.addr("token:CCC")
      cli("SET", key, cjson.encode { symbol = 5, decimals = "x" })
      local eng, c = engine { redis = server.url, lookup = lookup, lookup_mode = "fail" }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      drain(c)
      assert.equal(1, #c.skipped.all)
      assert.equal("unenriched", c.skipped.all[1].data.reason)
      -- The unusable value was forgotten, not kept.
      assert.is_true(eng:run_for(5, function() return cli("GET", key) == "" end))
      eng:close()
    end)

    it("goes on without Redis when it is down", function()
      local port, release = redis_server.refusing_port()
      finally(release)
      local eng, c = engine { redis = "redis://127.0.0.1:" .. port,
                              lookup = lookup, lookup_mode = "now" }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      drain(c)
      assert.equal(1, #c.enriched.all)
      eng:close()
    end)
  end)
  describe("with Postgres", function()
    local pg_server = require "support.pg_server"
    local server
    setup(function()
      server = pg_server.start()
      local f = assert(io.open(H.ROOT .. "services/bandit/pg_schema.sql"))
      server:psql(f:read("*a"))
      f:close()
      server:psql(string.format("INSERT INTO bandit_tokens VALUES (137, '%s', 'CCC', 8, 'C')",
                                H.addr("token:CCC"):lower()))
    end)
    teardown(function() if server then server:stop() end end)

    it("finds a token missing from its list in bandit_tokens, before its lookup", function()
      local eng, c = engine { postgres = server.url, lookup = lookup, lookup_mode = "fail" }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      assert.same({ "token:AAA", "token:CCC", "pool:AAA/CCC", "enriched.state:2",
                    "end.metadata" }, trail(c))
      assert.equal(8, c.enriched.all[1].data.decimals1)
      assert.equal(0, #c.lookups.all)
      eng:close()
    end)

    it("asks its lookup first with lookup_order = { list, rpc, postgres }", function()
      local eng, c = engine { postgres = server.url, lookup = lookup, lookup_mode = "fail",
                              lookup_order = { "list", "rpc", "postgres" } }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      drain(c)
      assert.equal(1, #c.lookups.all) -- asked, failed, then Postgres answered
      assert.equal(1, #c.enriched.all)
      assert.equal(8, c.enriched.all[1].data.decimals1)
      eng:close()
    end)

    it("goes on to its lookup when Postgres is down", function()
      local port, release = require("support.redis_server").refusing_port()
      finally(release)
      local eng, c = engine { postgres = "postgresql://u@127.0.0.1:" .. port .. "/db",
                              lookup = lookup, lookup_mode = "now" }
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), P2, "5", "6") })
      assert.is_true(eng:run_for(5, function() return #c.ends:messages() > 0 end))
      drain(c)
      assert.equal(1, #c.lookups.all)
      assert.equal(1, #c.enriched.all)
      eng:close()
    end)

    it("raises at init on a bad lookup_order, naming the entry", function()
      local cases = {
        { { "list", "pg" }, "entry 2: unknown source 'pg'" },
        { { "postgres", "redis" }, "entry 2: 'redis' must come before postgres and rpc" },
        { { "list", "postgres" }, "entry 2: 'postgres' needs opts.postgres", true },
      }
      for _, case in ipairs(cases) do
        local o = { pools = pools, tokens = tokens, lookup_order = case[1],
                    postgres = (not case[3]) and server.url or nil }
        local ok, err = pcall(testing.engine, {
          contracts = H.ROOT .. "services/contracts.yaml",
          services = { { name = "m", module = H.ROOT .. "services/metadata_service.lua",
                         opts = o } } })
        assert.is_false(ok)
        assert.matches("service 'm': opts.lookup_order " .. case[2]:gsub("%p", "%%%0"), err)
      end
    end)
  end)
end)
