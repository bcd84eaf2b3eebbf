local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- PolygonAdapter alone in an engine, fed raw lines on bandit.raw: what it
-- emits for every kind of log (typed messages, field by field), every
-- way a message can be wrong (a skipped record with its reason and line,
-- never a handler error), and its end-of-stream counts.
local H = require "spec.services.bandit.helper"
local testing = require "mycelium.testing"

local SUB = "0x2a"
local TOKENS = { { "AAA", 18 }, { "BBB", 6 } }
local POOLS = { { "v2a", "dexa", "v2", "AAA", "BBB", 3000 },
                { "v3a", "uni", "v3", "AAA", "BBB", 500 } }
local V2, V3 = H.addr("v2a"), H.addr("v3a")
local MAX112 = "5192296858534827628530496329220095"
local MAX160 = "1461501637330902918203684832716283019655932542975"
local MAX128 = "340282366920938463463374607431768211455"
local MIN256 = "-57896044618658097711785492504343953926634992332820282019728792003956564819968"

local function pos(o)
  local p = { sub = SUB, block = 7, tx = H.hash("t1"), txi = 2,
              bh = H.hash("b7"), li = 5 }
  for k, v in pairs(o or {}) do p[k] = v end
  return p
end

describe("PolygonAdapter", function()
  local dir, pools, tokens
  setup(function()
    dir = H.tmpdir()
    pools, tokens = H.write_registry(dir, POOLS, TOKENS)
  end)
  teardown(function() H.rmdir(dir) testing.cleanup() end)

  -- An engine with the adapter alone, fed on bandit.raw (not started).
  local function engine(opts)
    local o = { source = "topic", pools = pools, tokens = tokens }
    for k, v in pairs(opts or {}) do o[k] = v end
    return testing.engine {
      contracts = H.ROOT .. "services/contracts.yaml", start = false,
      services = { { name = "polygon", opts = o,
                     module = H.ROOT .. "services/polygon_adapter.lua" } },
    }
  end

  -- Feeds lines (the reply first unless given) and returns what came out.
  local function run(lines, opts)
    local eng = engine(opts)
    local logs, skipped, ends = eng:collect("bandit.log.*"),
      eng:collect("bandit.skipped"), eng:collect("bandit.end.adapter")
    eng:start()
    H.feed(eng, lines)
    local out = { logs = logs:messages(), skipped = skipped:messages(),
                  ["end"] = ends:messages()[1], errors = eng:stats("polygon").errors,
                  log = eng:logs(true) }
    eng:close()
    return out
  end

  it("decodes a Sync into a PoolStateUpdate, field by field", function()
    local out = run { H.reply(SUB), H.sync(pos(), V2, MAX112, "0") }
    assert.equal(0, out.errors)
    local m = out.logs[1]
    assert.equal("bandit.log.state", m.topic)
    assert.equal("PoolStateUpdate", m.type)
    local d = m.data
    assert.equal(7, d.block)
    assert.equal(2, d.tx_index)
    assert.equal(5, d.log_index)
    assert.equal(2, d.ws_seq)
    assert.equal(1, d.kind)
    assert.equal(H.hash("b7"), d.block_hash)
    assert.equal(H.hash("t1"), d.tx_hash)
    assert.equal(H.checksum(V2), d.pool)
    assert.equal(MAX112, d.reserve0)
    assert.equal("0", d.reserve1)
    assert.truthy(tonumber(d.arrival_ns) > 0)
    -- Enrichment is MetadataService's: zero here.
    assert.equal(0, d.decimals0)
    assert.equal(0, d.fee_ppm)
  end)

  it("decodes V2 and V3 swaps into SwapEvents, signed and extreme values exact",
     function()
    local out = run {
      H.reply(SUB),
      H.v2swap(pos { li = 6 }, V2, "0", "1717378049", "3308079319632838650880",
               "0", H.addr("router"), H.addr("eoa")),
      H.v3swap(pos { li = 7 }, V3, MIN256, "25", MAX160, MAX128, -282874,
               H.addr("r3"), H.addr("e3")),
    }
    assert.equal(0, out.errors)
    assert.equal(2, #out.logs)
    local a, b = out.logs[1].data, out.logs[2].data
    assert.equal("SwapEvent", out.logs[1].type)
    assert.equal(2, a.kind)
    assert.equal(H.checksum(H.addr("router")), a.sender)
    assert.equal(H.checksum(H.addr("eoa")), a.recipient)
    assert.equal("0", a.amount0_in)
    assert.equal("1717378049", a.amount1_in)
    assert.equal("3308079319632838650880", a.amount0_out)
    assert.equal("0", a.amount1_out)
    assert.equal(3, b.kind)
    assert.equal(3, b.ws_seq)
    assert.equal(MIN256, b.amount0)
    assert.equal("25", b.amount1)
    assert.equal(MAX160, b.sqrt_price_x96)
    assert.equal(MAX128, b.liquidity)
    assert.equal(-282874, b.tick)
    assert.equal(H.checksum(H.addr("r3")), b.sender)
  end)

  it("keeps positions above 2^53 exact and skips wider than 64 bits as bad_data",
     function()
    local big = H.sync(pos(), V2, "1", "2"):gsub('"blockNumber":"0x7"',
      '"blockNumber":"0xffffffffffffffff"')
    local huge = H.sync(pos(), V2, "1", "2"):gsub('"logIndex":"0x5"',
      '"logIndex":"0x10000000000000000"')
    local out = run { H.reply(SUB), big, huge }
    assert.equal(1, #out.logs)
    assert.equal("18446744073709551615", out.logs[1].data.block)
    assert.equal(1, #out.skipped)
    assert.same({ line = 3, reason = "bad_data", service = "polygon" },
                out.skipped[1].data)
  end)

  it("emits the same messages for a log in geth's layout and in any other",
     function()
    local logs = {
      H.sync(pos(), V2, MAX112, "0"),
      H.v2swap(pos { li = 6 }, V2, "0", "1717378049", "3308079319632838650880",
               "0", H.addr("router"), H.addr("eoa")),
      H.v3swap(pos { li = 7 }, V3, MIN256, "25", MAX160, MAX128, -282874,
               H.addr("r3"), H.addr("e3")),
      (H.sync(pos { li = 8 }, V2, "1", "2"):gsub('"blockNumber":"0x7"',
        '"blockNumber":"0xffffffffffffffff"')),
    }
    -- Spaces after the commas: the cjson route.
    local spaced = {}
    for i, l in ipairs(logs) do spaced[i] = (l:gsub(",", ", ")) end
    local a = run { H.reply(SUB), unpack(logs) }
    local b = run { H.reply(SUB), unpack(spaced) }
    assert.equal(#logs, #a.logs)
    assert.equal(#logs, #b.logs)
    for i = 1, #logs do
      a.logs[i].data.arrival_ns, b.logs[i].data.arrival_ns = nil, nil
      assert.same(a.logs[i].data, b.logs[i].data)
    end
  end)

  it("learns an unlisted pool's kind from each log (opts.discover)", function()
    local x = H.addr("unlisted")
    local out = run({ H.reply(SUB), H.sync(pos(), x, "1", "2"),
                      H.v3swap(pos { li = 6 }, x, "-1", "2", 2 ^ 96, 1, 5),
                      H.sync(pos { li = 7 }, x, "3", "4") },
                    { discover = true })
    assert.equal(0, #out.skipped)
    assert.same({ 1, 3, 1 }, { out.logs[1].data.kind, out.logs[2].data.kind,
                               out.logs[3].data.kind })
  end)

  it("turns a removed log into a LogRetraction naming the log", function()
    local text = H.v3swap(pos { li = 9 }, V3, "-1", "1", "1", "1", 1)
    local out = run { H.reply(SUB), text, H.removed(text) }
    assert.equal(2, #out.logs)
    local r = out.logs[2]
    assert.equal("bandit.log.removed", r.topic)
    assert.equal("LogRetraction", r.type)
    assert.equal(3, r.data.ws_seq)
    assert.equal(9, r.data.log_index)
    assert.equal(7, r.data.block)
    assert.equal(3, r.data.kind)
    assert.equal(H.hash("b7"), r.data.block_hash)
    assert.equal(H.hash("t1"), r.data.tx_hash)
    assert.equal(H.checksum(V3), r.data.pool)
  end)

  it("skips every malformed message with its reason and line, and never raises",
     function()
    local sync = H.sync(pos(), V2, "1", "2")
    local NOTE = '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x2a",'
    local cases = {
      { sync:sub(1, 80), "malformed_json" },
      { "", "malformed_json" },
      { "\0\255garbage", "malformed_json" },
      { "[1,2", "malformed_json" },
      { sync:gsub(SUB, "0x2b"), "foreign_message" },                 -- other subscription
      { '{"jsonrpc":"2.0","id":9,"result":"0x1"}', "foreign_message" }, -- another reply
      { NOTE .. '"result":[]}}', "foreign_message" },
      { "{}", "foreign_message" },
      { "[]", "foreign_message" },
      { "42", "foreign_message" },
      { H.log { sub = SUB, address = V2, topics = { H.TOPIC_TRANSFER }, data = "0x" },
        "unknown_topic" },
      { NOTE .. '"result":{}}}', "unknown_topic" },
      { H.sync(pos(), H.addr("nowhere"), "1", "2"), "unknown_pool" },
      { sync:gsub('"data":"0x', '"data":"0x00'), "bad_data" },       -- 65 bytes
      { sync:gsub('"data":"0x', '"data":"0x0'), "bad_data" },        -- odd digits
      { sync:gsub('"data":"0x0', '"data":"0xg'), "bad_data" },       -- not hex
      { H.sync(pos(), V3, "1", "2"), "bad_data" },                    -- Sync on a V3 pool
      { H.v3swap(pos(), V2, "1", "1", "1", "1", 1), "bad_data" },     -- V3 swap on V2
      { H.sync(pos(), V2, "5192296858534827628530496329220096", "1"), "bad_data" },
      { H.v3swap(pos(), V3, "1", "1", "1", "1", "8388608"), "bad_data" }, -- tick > int24
      { H.v2swap(pos(), V2, 1, 1, 1, 1):gsub('"topics":%["[^"]*","0x000000000000000000000000',
        '"topics":["' .. H.TOPIC_V2_SWAP .. '","0x000000000000000000000001'), "bad_data" },
      { sync:gsub('"blockHash":"0x', '"blockHash":"0x00'), "bad_data" },
      { sync:gsub('"transactionIndex":"0x2"', '"transactionIndex":2'), "bad_data" },
      { H.removed(sync):gsub('"logIndex":"0x5"', '"logIndex":"five"'), "removed_unmatched" },
      { H.removed(sync):gsub('"transactionHash":"[^"]*"', '"transactionHash":"0x1"'),
        "removed_unmatched" },
    }
    local lines = { H.reply(SUB) }
    for _, c in ipairs(cases) do lines[#lines + 1] = c[1] end
    local out = run(lines)
    assert.equal(0, out.errors)
    assert.equal(0, #out.logs)
    assert.equal(#cases, #out.skipped)
    for i, c in ipairs(cases) do
      local s = out.skipped[i].data
      assert.equal(i + 1, s.line)
      assert.equal(c[2], s.reason, "case " .. i .. ": " .. c[1])
    end
    local e = out["end"].data
    assert.equal(#lines, e.lines)
    assert.equal(#cases, e.skipped)
    assert.equal(4, e.by_reason.malformed_json)
    assert.equal(SUB, e.subscription_id)
  end)

  it("logs the first skip of each reason as a warning, the rest at debug", function()
    local bad = H.sync(pos(), H.addr("nowhere"), "1", "2")
    local out = run { H.reply(SUB), bad, bad, bad }
    local warn, debug = 0, 0
    for _, l in ipairs(out.log) do
      if l.msg == "skipped a message: unknown_pool" then
        if l.level == "warn" then warn = warn + 1 else debug = debug + 1 end
        assert.equal("unknown_pool", l.reason)
      end
    end
    assert.equal(1, warn)
    assert.equal(2, debug)
  end)

  it("treats every message as foreign when line 1 is no subscription reply",
     function()
    local out = run { H.sync(pos(), V2, "1", "2"), H.sync(pos(), V2, "1", "2") }
    assert.equal(0, #out.logs)
    assert.equal(1, #out.skipped)
    assert.equal("foreign_message", out.skipped[1].data.reason)
    assert.equal(false, out["end"].data.subscription_id)
    local found = false
    for _, l in ipairs(out.log) do
      if l.level == "error" and l.msg:find("not the eth_subscribe reply") then found = true end
    end
    assert.is_true(found)
  end)

  it("takes a known subscription id instead of a reply line", function()
    local out = run({ H.sync(pos(), V2, "1", "2") }, { subscription = SUB })
    assert.equal(1, #out.logs)
    assert.equal(1, out.logs[1].data.ws_seq)
  end)

  it("counts a payload that is not text as a malformed line", function()
    local eng = engine()
    local skipped = eng:collect("bandit.skipped")
    eng:start()
    eng:publish("bandit.raw", H.reply(SUB))
    eng:publish("bandit.raw", { not_a = "line" })
    eng:run()
    local s = skipped:messages()
    assert.equal(1, #s)
    assert.same({ line = 2, reason = "malformed_json", service = "polygon" }, s[1].data)
    assert.equal(0, eng:stats("polygon").errors)
    eng:close()
  end)

  it("ends the stream after opts.end_after lines", function()
    local out = run({ H.reply(SUB), H.sync(pos(), V2, "1", "2") }, { end_after = 2 })
    assert.equal(2, out["end"].data.lines)
    assert.equal("line count reached", out["end"].data.reason)
  end)

  it("says at the end whether the stream is known whole", function()
    local lines = { H.reply(SUB), H.sync(pos(), V2, "1", "2") }
    local e = run(lines)["end"].data
    assert.same({ 2, 2, 0, true, 0, 0 },
                { e.lines, e.expected, e.missing, e.complete, e.gaps, e.duplicates })
    -- The stream ended (the feeder's marker) short of opts.end_after.
    e = run(lines, { end_after = 5 })["end"].data
    assert.same({ 2, 5, 3, false }, { e.lines, e.expected, e.missing, e.complete })
    -- Lines the feeder sent that never arrived: counted, and logged.
    local eng = engine()
    local ends = eng:collect("bandit.end.adapter")
    eng:start()
    for _, l in ipairs(lines) do eng:publish("bandit.raw", l) end
    eng:publish("bandit.end.feeder", { lines = 5 })
    eng:run()
    e = ends:messages()[1].data
    assert.same({ 2, 5, 3, false }, { e.lines, e.expected, e.missing, e.complete })
    local said = {}
    for _, l in ipairs(eng:logs(true)) do said[#said + 1] = l.msg end
    assert.matches("the stream is incomplete: 3 of 5 lines were not received",
                   table.concat(said, "\n"), 1, true)
    eng:close()
  end)

  it("refuses bad options with a message naming the service", function()
    local ok, err = pcall(testing.engine, {
      contracts = H.ROOT .. "services/contracts.yaml",
      services = { { name = "p", module = H.ROOT .. "services/polygon_adapter.lua",
                     opts = { source = "carrier-pigeon", pools = pools } } } })
    assert.is_false(ok)
    assert.matches("service 'p': opts.source must be 'ws' or 'topic'", err, 1, true)
    ok, err = pcall(testing.engine, {
      contracts = H.ROOT .. "services/contracts.yaml",
      services = { { name = "p", module = H.ROOT .. "services/polygon_adapter.lua",
                     opts = { source = "topic", pools = "/nonexistent/pools.json" } } } })
    assert.is_false(ok)
    assert.matches("service 'p': cannot load the pool registry: /nonexistent/pools.json", err,
                   1, true)
    for _, bad in ipairs { 0, 2.5, "many", true } do
      ok, err = pcall(testing.engine, {
        contracts = H.ROOT .. "services/contracts.yaml",
        services = { { name = "p", module = H.ROOT .. "services/polygon_adapter.lua",
                       opts = { source = "topic", pools = pools, tokens = tokens,
                                dedup_window = bad } } } })
      assert.is_false(ok)
      assert.matches("service 'p': opts.dedup_window must be a whole number >= 1 or false, got "
                     .. tostring(bad), err, 1, true)
    end
  end)
end)
