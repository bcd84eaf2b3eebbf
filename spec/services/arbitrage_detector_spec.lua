local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- ArbitrageDetector behind the adapter and MetadataService: the signal
-- message field by field, EventApplied prices, reorg retractions (the
-- restored state signals), removed logs that match nothing, the reorg
-- window, and a log it cannot place (no PoolMeta) never raising.
local H = require "spec.services.bandit.helper"
local testing = require "mycelium.testing"

local SUB = "0xabc"
local TOKENS = { { "WWW", 18 }, { "UUU", 6 } }
local POOLS = { { "qa", "quick", "v2", "WWW", "UUU", 3000 },
                { "sa", "sushi", "v2", "WWW", "UUU", 3000 },
                { "ua", "uni", "v3", "WWW", "UUU", 500 } }
local QA, SA, UA = H.addr("qa"), H.addr("sa"), H.addr("ua")
local E18, E6 = "1000000000000000000000", "1000000000" -- 1000 WWW, 1000 UUU

local function pos(li, o)
  local p = { sub = SUB, block = 1000 + li, tx = H.hash("tx" .. li), txi = 1,
              bh = H.hash("bk" .. li), li = li }
  for k, v in pairs(o or {}) do p[k] = v end
  return p
end

describe("ArbitrageDetector", function()
  local dir, pools, tokens
  setup(function()
    dir = H.tmpdir()
    pools, tokens = H.write_registry(dir, POOLS, TOKENS)
  end)
  teardown(function() H.rmdir(dir) testing.cleanup() end)

  local function engine(det)
    local eng = testing.engine {
      contracts = H.ROOT .. "services/contracts.yaml", start = false,
      services = {
        { name = "polygon", module = H.ROOT .. "services/polygon_adapter.lua",
          opts = { source = "topic", pools = pools, tokens = tokens } },
        { name = "metadata", module = H.ROOT .. "services/metadata_service.lua",
          opts = { pools = pools, tokens = tokens } },
        { name = "arb", module = H.ROOT .. "services/arbitrage_detector.lua",
          opts = det or {} },
      },
    }
    local c = { signal = eng:collect("bandit.signal"),
                applied = eng:collect("bandit.applied"),
                skipped = eng:collect("bandit.skipped"),
                ends = eng:collect("bandit.end.detector") }
    eng:start()
    return eng, c
  end

  it("signals a gap beating both fees, every field of the message", function()
    local eng, c = engine()
    -- quick 1.000 UUU/WWW, sushi 1.010: gross 100 bps > 60.18 bps.
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, E18, E6),
                  H.sync(pos(2), SA, E18, "1010000000") })
    local s = c.signal:messages()
    assert.equal(1, #s)
    local d = s[1].data
    assert.equal("ArbitrageSignal", s[1].type)
    assert.equal(3, d.ws_seq)
    assert.equal(1002, d.block)
    assert.equal(2, d.log_index)
    assert.equal(1, d.trigger)
    assert.equal("WWW/UUU", d.pair)
    assert.equal(H.checksum(H.addr("token:WWW")), d.token0)
    assert.equal(18, d.decimals0)
    assert.equal(6, d.decimals1)
    assert.equal(H.checksum(QA), d.buy_pool)
    assert.equal("quick", d.buy_dex)
    assert.equal(3000, d.buy_fee_ppm)
    assert.equal(1, d.buy_kind)
    assert.equal(E18, d.buy_a)
    assert.equal(E6, d.buy_b)
    assert.equal("1.00000000000", d.buy_price)
    assert.equal(H.checksum(SA), d.sell_pool)
    assert.equal("sushi", d.sell_dex)
    assert.equal("1.01000000000", d.sell_price)
    assert.equal("100.0000", d.gross_bps)
    -- 1.01 * 0.997 / 1.003 - 1
    assert.equal("39.5813", d.net_bps)
    assert.truthy(tonumber(d.emitted_ns) >= tonumber(d.arrival_ns))
    assert.equal(0, eng:stats("arb").errors)
    eng:close()
  end)

  it("answers each accepted log with its pool's state right after it", function()
    local eng, c = engine()
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, "0", "0"),
                  H.sync(pos(2), QA, E18, "2000000000"),
                  H.v2swap(pos(3), QA, "1", "0", "0", "1"),
                  H.v3swap(pos(4), UA, "-1", "1", "79228162514264337593543950336", "77", 0) })
    local a = c.applied:messages()
    assert.equal(4, #a)
    assert.equal(0, a[1].data.state_kind)             -- Sync(0,0): no price
    assert.equal(1, a[2].data.state_kind)
    assert.equal(E18, a[2].data.state_a)
    assert.equal("2000000000", a[2].data.state_b)
    assert.equal(2, a[3].data.kind)
    assert.equal(1, a[3].data.state_kind)             -- a swap: the Sync's state
    assert.equal("2000000000", a[3].data.state_b)
    assert.equal(3, a[4].data.state_kind)
    assert.equal("79228162514264337593543950336", a[4].data.state_a)
    assert.equal("77", a[4].data.state_b)
    assert.equal(5, a[4].data.ws_seq)
    assert.equal(1004, a[4].data.block)
    assert.equal(H.checksum(UA), a[4].data.pool)
    eng:close()
  end)

  it("splits its latencies into the first cold_ms of the stream and after",
     function()
    local function latencies(det)
      local eng, c = engine(det)
      H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, E18, E6),
                    H.sync(pos(2), SA, E18, "1010000000") })
      local lat = c.ends:messages()[1].data.latency_ns
      eng:close()
      return lat
    end
    -- Default 2000 ms: a stream this short is all cold start.
    local lat = latencies()
    assert.equal(1, lat.signal.n)
    assert.same({ 1, 0 }, { lat.signal_cold.n, lat.signal_steady.n })
    assert.same({ 2, 0 }, { lat.event_cold.n, lat.event_steady.n })
    assert.equal(lat.signal.p99, lat.signal_cold.p99)
    -- cold_ms = 0: nothing is cold.
    lat = latencies { cold_ms = 0 }
    assert.same({ 0, 1 }, { lat.signal_cold.n, lat.signal_steady.n })
    assert.same({ 0, 2 }, { lat.event_cold.n, lat.event_steady.n })
    assert.equal(false, lat.signal_cold.p99)
  end)

  it("undoes a retracted log, and signals on the restored state", function()
    local eng, c = engine()
    local bad = H.sync(pos(3), SA, E18, "1001000000")     -- closes the gap
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, E18, E6),
                  H.sync(pos(2), SA, E18, "1010000000"), bad, H.removed(bad),
                  H.removed(H.sync(pos(9), SA, "1", "1")) })
    local s = c.signal:messages()
    assert.equal(2, #s)
    assert.equal(3, s[1].data.ws_seq)
    assert.equal(5, s[2].data.ws_seq)
    assert.equal(2, s[2].data.trigger)
    assert.equal(1003, s[2].data.block)       -- the retracted log's position
    assert.equal(3, s[2].data.log_index)
    assert.equal("1.01000000000", s[2].data.sell_price)
    local sk = c.skipped:messages()
    assert.same({ line = 5, reason = "retraction", retracts_line = 4, service = "arb" },
                sk[1].data)
    assert.same({ line = 6, reason = "removed_unmatched", service = "arb" }, sk[2].data)
    local e = c.ends:messages()[1].data
    assert.equal(3, e.events)
    assert.equal(1, e.retracted)
    assert.equal(4, e.evaluations)   -- three Syncs and the retraction
    assert.equal(2, e.signals)
    assert.equal(2, e.latency_ns.signal.n)
    assert.equal("1.01000000000", e.pools[H.checksum(SA)].price)
    assert.equal(E18, e.pools[H.checksum(SA)].reserve0)
    eng:close()
  end)

  it("keeps positions above 2^53 exact, and retracts a log by them", function()
    local eng, c = engine()
    local function wide(line)
      return (line:gsub('"blockNumber":"0x%x+"', '"blockNumber":"0x20000000000003"')
                  :gsub('"logIndex":"0x%x+"', '"logIndex":"0x1000000000000001"'))
    end
    local l2 = wide(H.sync(pos(2), SA, E18, "1010000000"))
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, E18, E6), l2, H.removed(l2) })
    local s = c.signal:messages()
    assert.equal(1, #s) -- the retraction leaves sa without a state
    assert.equal("9007199254740995", (tostring(s[1].data.block):gsub("ULL$", "")))
    assert.equal("1152921504606846977",
                 (tostring(s[1].data.log_index):gsub("ULL$", "")))
    assert.equal("9007199254740995",
                 (tostring(c.applied:messages()[2].data.block):gsub("ULL$", "")))
    assert.same({ line = 4, reason = "retraction", retracts_line = 3, service = "arb" },
                c.skipped:messages()[1].data)
    eng:close()
  end)

  -- The detector keys its logs by a number made from the tx hash's
  -- first bytes: a retraction must tell apart, by the full bytes, logs
  -- of one tx, of another tx with the same first bytes, and of the same
  -- tx in another block.
  local T = H.hash("tx")
  local T2 = T:sub(1, 34) .. H.hash("other"):sub(35) -- same first 16 bytes
  local B, B2 = H.hash("bk"), H.hash("bk2")
  local function kin()
    return { a = H.sync(pos(2, { tx = T, bh = B }), SA, E18, "1001000000"),
             b = H.sync(pos(3, { tx = T, bh = B }), SA, E18, "1002000000"),
             c = H.sync(pos(2, { tx = T2, bh = B }), SA, E18, "1003000000"),
             d = H.sync(pos(2, { tx = T, bh = B2 }), SA, E18, "1004000000"),
             x = H.sync(pos(3, { tx = T2, bh = B }), SA, E18, "1") }
  end
  local function skips(c)
    local out = {}
    for i, m in ipairs(c.skipped:messages()) do
      out[i] = { m.data.line, m.data.reason, m.data.retracts_line }
    end
    return out
  end

  it("retracts exactly the removed log among logs sharing its tx hash's first bytes",
     function()
    local eng, c = engine()
    local k = kin()
    -- Lines: 2 sync, 3 a, 4 b, 5 c, 6 d, then the removals from 7.
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, E18, E6), k.a, k.b, k.c,
                  k.d, H.removed(k.a), H.removed(k.x), H.removed(k.c),
                  H.removed(k.d), H.removed(k.b), H.removed(k.a) })
    assert.same({ { 7, "retraction", 3 }, { 8, "removed_unmatched" },
                  { 9, "retraction", 5 }, { 10, "retraction", 6 },
                  { 11, "retraction", 4 }, { 12, "removed_unmatched" } },
                skips(c))
    local e = c.ends:messages()[1].data
    assert.equal(4, e.retracted)
    assert.is_false(e.pools[H.checksum(SA)].price) -- every sa log retracted
    eng:close()
  end)

  it("retracts a log of a shared key after its chain's oldest left the window",
     function()
    local eng, c = engine { reorg_window = 3 }
    local k = kin()
    -- Lines: 2 a, 3 b, 4 c, 5 d (a leaves the window), then the removals.
    H.feed(eng, { H.reply(SUB), k.a, k.b, k.c, k.d, H.removed(k.a),
                  H.removed(k.b), H.removed(k.d), H.removed(k.c),
                  H.removed(k.x) })
    assert.same({ { 6, "removed_unmatched" }, { 7, "retraction", 3 },
                  { 8, "retraction", 5 }, { 9, "retraction", 4 },
                  { 10, "removed_unmatched" } }, skips(c))
    eng:close()
  end)

  it("forgets logs beyond its reorg window", function()
    local eng, c = engine { reorg_window = 2 }
    local first = H.sync(pos(1), QA, E18, E6)
    H.feed(eng, { H.reply(SUB), first, H.sync(pos(2), SA, E18, E6),
                  H.sync(pos(3), SA, E18, E6), H.removed(first) })
    assert.same({ line = 5, reason = "removed_unmatched", service = "arb" },
                c.skipped:messages()[1].data)
    eng:close()
  end)

  it("gives the same results when it reuses the logs that left its window",
     function()
    -- Syncs, swaps and V3 swaps on three venues, one in five retracted
    -- right after it: a window of 2 reuses log tables (and their state
    -- buffers) from the third log on; false keeps every log, reuses none.
    local lines = { H.reply(SUB) }
    for i = 1, 40 do
      local l
      if i % 7 == 0 then
        l = H.v2swap(pos(i), i % 2 == 0 and QA or SA, "1", "0", "0", "1")
      elseif i % 3 == 0 then
        l = H.v3swap(pos(i), UA, "-1", "1",
                     "79228162514264337593543" .. (100000 + i), "77", i)
      else
        l = H.sync(pos(i), i % 2 == 0 and QA or SA, E18,
                   tostring(990000000 + i * 1000000))
      end
      lines[#lines + 1] = l
      if i % 5 == 0 then lines[#lines + 1] = H.removed(l) end
    end
    local function outputs(window)
      local eng, c = engine { reorg_window = window }
      H.feed(eng, lines)
      local out = { applied = {}, signal = {} }
      for _, k in ipairs { "applied", "signal" } do
        for i, m in ipairs(c[k]:messages()) do
          local d = {}
          for f, v in pairs(m.data) do
            if not f:find("_ns$") then d[f] = v end
          end
          out[k][i] = d
        end
      end
      local e = c.ends:messages()[1].data
      out.pools, out.events, out.retracted = e.pools, e.events, e.retracted
      out.signals, out.skipped = e.signals, {}
      for i, m in ipairs(c.skipped:messages()) do out.skipped[i] = m.data end
      eng:close()
      return out
    end
    local reused, kept = outputs(2), outputs(false)
    assert.equal(40, reused.events)
    assert.equal(8, reused.retracted)
    assert.is_true(reused.signals > 0)
    assert.same(kept, reused)
  end)

  it("signals a pool's new dex and fee once it is described again", function()
    local eng, c = engine()
    H.feed(eng, { H.reply(SUB), H.sync(pos(1), QA, E18, E6),
                  H.sync(pos(2), SA, E18, "1010000000") })
    -- The same pool described again: another dex name, a lower fee.
    local meta = eng:new("PoolMeta", {
      pool = SA, token0 = H.addr("token:WWW"), token1 = H.addr("token:UUU"),
      fee_ppm = 1000, pool_kind = 2, decimals0 = 18, decimals1 = 6,
      dex = "sushi2", pair = "WWW/UUU", label = "sa" })
    assert(eng:publish("bandit.pool", meta))
    eng:run()
    H.feed(eng, { H.sync(pos(3), SA, E18, "1020000000") })
    local s = c.signal:messages()
    assert.equal(2, #s)
    assert.equal("sushi", s[1].data.sell_dex)
    assert.equal(3000, s[1].data.sell_fee_ppm)
    assert.equal("sushi2", s[2].data.sell_dex)
    assert.equal(1000, s[2].data.sell_fee_ppm)
    assert.equal("quick", s[2].data.buy_dex)
    assert.equal(0, eng:stats("arb").errors)
    eng:close()
  end)

  it("tells apart pools whose addresses end in the same eight bytes", function()
    -- The detector keys pools by their address's last bytes; a log must
    -- still reach its own pool, and a third address of the same ending
    -- without PoolMeta none.
    local eng, c = engine()
    local tail = ("ab"):rep(8)
    local P1, P2, P3 = "0x" .. ("11"):rep(12) .. tail,
      "0x" .. ("22"):rep(12) .. tail, "0x" .. ("33"):rep(12) .. tail
    for i, p in ipairs { P1, P2 } do
      assert(eng:publish("bandit.pool", eng:new("PoolMeta", {
        pool = p, token0 = H.addr("token:WWW"), token1 = H.addr("token:UUU"),
        fee_ppm = 3000, pool_kind = 2, decimals0 = 18, decimals1 = 6,
        dex = "dex" .. i, pair = "WWW/UUU", label = "p" .. i })))
    end
    local function sync(line, p, r1)
      assert(eng:publish("bandit.enriched.state", eng:new("PoolStateUpdate", {
        block = 5, ws_seq = line, log_index = line, kind = 1, pool = p,
        reserve0 = E18, reserve1 = r1 })))
    end
    sync(1, P1, E6)
    sync(2, P2, "1010000000")
    sync(3, P3, "1")
    eng:run()
    local a = c.applied:messages()
    assert.equal(2, #a)
    assert.equal(H.checksum(P1), a[1].data.pool)
    assert.equal(H.checksum(P2), a[2].data.pool)
    local s = c.signal:messages()
    assert.equal(1, #s)
    assert.equal(H.checksum(P1), s[1].data.buy_pool)
    assert.equal(H.checksum(P2), s[1].data.sell_pool)
    assert.same({ line = 3, reason = "unenriched", service = "arb" },
                c.skipped:messages()[1].data)
    eng:close()
  end)

  it("skips, never raises on, a log of a pool it has no PoolMeta for", function()
    local eng, c = engine()
    local m = eng:new("PoolStateUpdate", { block = 5, ws_seq = 7, kind = 1,
                                           pool = H.addr("stranger"),
                                           reserve0 = "1", reserve1 = "1" })
    assert(eng:publish("bandit.enriched.state", m))
    eng:run()
    assert.same({ line = 7, reason = "unenriched", service = "arb" },
                c.skipped:messages()[1].data)
    assert.equal(0, eng:stats("arb").errors)
    eng:close()
  end)
end)
