local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local H = require "spec.services.bandit.helper"
local abi = require "bandit.abi"
local report = require "bandit.report"

-- A registry unlike the fixture's: other tokens, decimals and fee tiers.
local REG = H.registry({
  { "pool:v2:AAA/BBB", "quickswap", "v2", "AAA", "BBB", 3000 },
  { "pool:v3:AAA/BBB", "uniswap_v3", "v3", "AAA", "BBB", 100 },
}, { { "AAA", 8 }, { "BBB", 18 } })
local V2 = H.addr("pool:v2:AAA/BBB")
local V3 = H.addr("pool:v3:AAA/BBB")
local SUB = "0xabc123"          -- not the fixture's subscription id
local POS = { sub = SUB, block = 1000, tx = H.hash("t1"), txi = 4,
              bh = H.hash("b1000"), li = 7 }

local U112_MAX = "5192296858534827628530496329220095"
local U160_MAX = "1461501637330902918203684832716283019655932542975"
local U128_MAX = "340282366920938463463374607431768211455"

local function classify(text, sub_id, reg)
  local view, reason = abi.envelope(text, sub_id or SUB)
  if not view then return nil, reason end
  if view.removed == true then return nil, "removed" end
  return abi.decode(view, reg or REG)
end

local function reason_of(text, sub_id)
  local ev, reason = classify(text, sub_id)
  assert.is_nil(ev)
  return reason
end

-- Every report field of a decoded event, for comparisons.
local function fields(ev)
  local t = { kind = ev.kind, pool = ev.pool.address, block = ev.block,
              blockHash = ev.blockHash, txHash = ev.txHash,
              txIndex = ev.txIndex, logIndex = ev.logIndex }
  for _, f in ipairs(report.KIND_FIELDS[ev.kind]) do t[f] = ev[f] end
  return t
end

-- A sync line with one JSON field replaced by raw JSON text.
local function sync_with(field, raw)
  local text = H.sync(POS, V2, 1, 2)
  local out, n = text:gsub('"' .. field .. '":"[^"]*"', '"' .. field .. '":' .. raw, 1)
  assert(n == 1, field)
  return out
end

describe("bandit.abi", function()
  describe("subscription reply (line 1)", function()
    it("returns the id, optionally checking the request id", function()
      assert.equal("0xabc123", abi.subscription_reply(H.reply("0xabc123")))
      assert.equal("0xabc123", abi.subscription_reply(H.reply("0xabc123", 3), 3))
      assert.is_nil(abi.subscription_reply(H.reply("0xabc123", 3), 1))
      assert.is_nil(abi.subscription_reply('{"jsonrpc":"2.0","id":1,"error":{}}'))
      assert.is_nil(abi.subscription_reply("[1]"))
      assert.is_nil(abi.subscription_reply("{"))
    end)
  end)

  describe("rule 1: malformed_json", function()
    it("classifies text that is not JSON", function()
      local good = H.sync(POS, V2, 1, 2)
      for _, text in ipairs { "", " ", "{", "not json", good:sub(1, 100),
                              good .. "}", good .. " x", "[1,0x10]", "[NaN]",
                              "{'a':1}", "\0" } do
        assert.equal("malformed_json", reason_of(text))
      end
    end)

    it("never raises on non-string input", function()
      assert.equal("malformed_json", reason_of(nil))
    end)
  end)

  describe("rule 2: foreign_message", function()
    it("classifies JSON that is not a notification of our subscription", function()
      local other = H.sync(POS, V2, 1, 2):gsub(SUB, "0x8f28e02024fb031838268bf467cba603")
      for _, text in ipairs {
        "{}", "[]", "42", '"str"', "null", "true",
        '{"jsonrpc":"2.0","id":7,"result":"0x1"}',
        '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xabc123"}}',
        '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xabc123","result":"0x1"}}',
        '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xabc123","result":[1,2]}}',
        '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xabc123","result":[]}}',
        '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xABC123","result":{}}}',
        '{"jsonrpc":"2.0","method":"eth_unsubscribe","params":{"subscription":"0xabc123","result":{}}}',
        '{"method":"eth_subscription","params":[{"subscription":"0xabc123"}]}',
        other,
      } do
        assert.equal("foreign_message", reason_of(text))
      end
    end)

    it("treats everything as foreign before a subscription id is known", function()
      local view, reason = abi.envelope(H.sync(POS, V2, 1, 2), nil)
      assert.is_nil(view)
      assert.equal("foreign_message", reason)
    end)

    it("accepts an empty result object (then the topic is unknown)", function()
      assert.equal("unknown_topic", reason_of(
        '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xabc123","result":{}}}'))
    end)
  end)

  describe("rule 4: unknown_topic", function()
    it("classifies logs whose topic0 is not one of the three", function()
      local transfer = H.log { sub = SUB, address = V2, data = H.data(5),
        topics = { H.TOPIC_TRANSFER, H.topic_addr(V2), H.topic_addr(V3) } }
      assert.equal("unknown_topic", reason_of(transfer))
      assert.equal("unknown_topic", reason_of(H.log { sub = SUB, address = V2,
        topics = {}, data = H.data(1, 2) }))
      assert.equal("unknown_topic", reason_of((sync_with("data", '"0x"')
        :gsub('"topics":%[[^%]]*%]', '"topics":"' .. H.TOPIC_SYNC .. '"'))))
      assert.equal("unknown_topic", reason_of((H.sync(POS, V2, 1, 2)
        :gsub('"topics":%["', '"topics":[5,"'))))
    end)

    it("checks the topic before the pool", function()
      local text = H.log { sub = SUB, address = H.addr("nowhere"),
        topics = { H.TOPIC_TRANSFER }, data = "0x" }
      assert.equal("unknown_topic", reason_of(text))
    end)

    it("compares topic0 case-insensitively", function()
      local text = H.sync(POS, V2, 1, 2):gsub(H.TOPIC_SYNC:sub(3), H.TOPIC_SYNC:sub(3):upper())
      assert.equal("v2_sync", classify(text).kind)
    end)
  end)

  describe("rule 5: unknown_pool", function()
    it("classifies logs from pools not in the registry", function()
      assert.equal("unknown_pool", reason_of(H.sync(POS, H.addr("elsewhere"), 1, 2)))
      assert.equal("unknown_pool", reason_of(sync_with("address", "null")))
      assert.equal("unknown_pool", reason_of(sync_with("address", '"0x1"')))
    end)

    it("looks pools up case-insensitively", function()
      local ev = classify(H.sync(POS, H.checksum(V2), 1, 2))
      assert.equal(H.checksum(V2), ev.pool.address)
      ev = classify(H.sync(POS, "0x" .. V2:sub(3):upper(), 1, 2))
      assert.equal(H.checksum(V2), ev.pool.address)
    end)
  end)

  describe("rule 6: bad_data", function()
    it("refuses the wrong pool kind for the event", function()
      assert.equal("bad_data", reason_of(H.sync(POS, V3, 1, 2)))
      assert.equal("bad_data", reason_of(H.v2swap(POS, V3, 1, 0, 0, 1)))
      assert.equal("bad_data", reason_of(H.v3swap(POS, V2, -1, 1, 2 ^ 96, 1, 0)))
    end)

    it("refuses wrong topic counts", function()
      local extra = H.log { sub = SUB, address = V2, data = H.data(1, 2),
        topics = { H.TOPIC_SYNC, H.topic_addr(V2) } }
      assert.equal("bad_data", reason_of(extra))
      local short = H.log { sub = SUB, address = V2, data = H.data(1, 0, 0, 1),
        topics = { H.TOPIC_V2_SWAP, H.topic_addr(V2) } }
      assert.equal("bad_data", reason_of(short))
      local four = H.log { sub = SUB, address = V3, data = H.data(-1, 1, 1, 1, 0),
        topics = { H.TOPIC_V3_SWAP, H.topic_addr(V2), H.topic_addr(V2), H.topic_addr(V2) } }
      assert.equal("bad_data", reason_of(four))
    end)

    it("refuses data that is not even-length 0x hex of the exact size", function()
      local words = H.data(1, 2):sub(3)
      for _, d in ipairs {
        "0x" .. words:sub(1, 127),            -- odd digit count
        "0x" .. words:sub(1, 126),            -- 63 bytes
        "0x" .. words .. "00",                -- 65 bytes
        "0x" .. words .. words,               -- 128 bytes
        "0x",                                 -- empty
        "0x" .. words:sub(1, 127) .. "g",     -- not hex
        words,                                -- no 0x
        "0X" .. words,
      } do
        assert.equal("bad_data", reason_of(sync_with("data", '"' .. d .. '"')), d)
      end
      assert.equal("bad_data", reason_of(sync_with("data", "null")))
      assert.equal("bad_data", reason_of(sync_with("data", "12")))
      local v3_short = H.log { sub = SUB, address = V3, data = H.data(-1, 1, 1, 1),
        topics = { H.TOPIC_V3_SWAP, H.topic_addr(V2), H.topic_addr(V2) } }
      assert.equal("bad_data", reason_of(v3_short))
    end)

    it("refuses values outside their ABI type", function()
      assert.equal("bad_data", reason_of(H.sync(POS, V2, "5192296858534827628530496329220096", 1)))
      assert.equal("bad_data", reason_of(H.sync(POS, V2, 1, "5192296858534827628530496329220096")))
      assert.equal("bad_data", reason_of(H.v3swap(POS, V3, -1, 1,
        "1461501637330902918203684832716283019655932542976", 1, 0)))
      assert.equal("bad_data", reason_of(H.v3swap(POS, V3, -1, 1, 1,
        "340282366920938463463374607431768211456", 0)))
      assert.equal("bad_data", reason_of(H.v3swap(POS, V3, -1, 1, 1, 1, 8388608)))
      assert.equal("bad_data", reason_of(H.v3swap(POS, V3, -1, 1, 1, 1, -8388609)))
      -- -1 as int24 without sign extension: 0x...00ffffff
      assert.equal("bad_data", reason_of(H.v3swap(POS, V3, -1, 1, 1, 1, 16777215)))
    end)

    it("refuses topics that are not clean 32-byte addresses", function()
      local dirty = H.v2swap(POS, V2, 1, 0, 0, 1):gsub(H.topic_addr(H.addr("eoa")),
        "0x01" .. H.topic_addr(H.addr("eoa")):sub(5))
      assert.equal("bad_data", reason_of(dirty))
      local short = H.v2swap(POS, V2, 1, 0, 0, 1):gsub(H.topic_addr(H.addr("eoa")),
        "0x" .. H.addr("eoa"):sub(3))
      assert.equal("bad_data", reason_of(short))
    end)

    it("refuses logs without a valid block position", function()
      for field, raw in pairs {
        blockNumber = "null", transactionIndex = '"0x"', logIndex = '"7"',
        blockHash = '"0x1234"', transactionHash = '"' .. H.hash("t"):sub(1, 65) .. '"',
      } do
        assert.equal("bad_data", reason_of(sync_with(field, raw)), field)
      end
    end)
  end)

  describe("rule 7: decoding", function()
    it("decodes a Sync exactly, up to uint112 max", function()
      local ev = classify(H.sync(POS, V2, U112_MAX, "5192296858534827628530496329220094"))
      assert.same({
        kind = "v2_sync", pool = H.checksum(V2), block = 1000,
        blockHash = H.hash("b1000"), txHash = H.hash("t1"), txIndex = 4,
        logIndex = 7, reserve0 = U112_MAX,
        reserve1 = "5192296858534827628530496329220094",
      }, fields(ev))
    end)

    it("decodes a V2 Swap with checksummed sender and to", function()
      local ev = classify(H.v2swap(POS, V2, "0", "123456789012345678901234567890",
        "115792089237316195423570985008687907853269984665640564039457584007913129639935", "1",
        H.addr("sender"), H.addr("to")))
      assert.equal(H.checksum(H.addr("sender")), ev.sender)
      assert.equal(H.checksum(H.addr("to")), ev.to)
      assert.equal("0", ev.amount0In)
      assert.equal("123456789012345678901234567890", ev.amount1In)
      assert.equal("115792089237316195423570985008687907853269984665640564039457584007913129639935",
        ev.amount0Out)
      assert.equal("1", ev.amount1Out)
    end)

    it("decodes V3 signed amounts and sign-extended ticks", function()
      for _, c in ipairs {
        { "-1", "1", 0 }, { "-4946376646243496073224", "2569000000", -282874 },
        { "5", "-57896044618658097711785492504343953926634992332820282019728792003956564819968", 887272 },
        { "57896044618658097711785492504343953926634992332820282019728792003956564819967", "-3", -887272 },
        { "0", "0", -8388608 }, { "0", "0", 8388607 }, { "0", "0", -1 },
      } do
        local ev = classify(H.v3swap(POS, V3, c[1], c[2], U160_MAX, U128_MAX, c[3]))
        assert.equal("v3_swap", ev.kind)
        assert.equal(c[1], ev.amount0)
        assert.equal(c[2], ev.amount1)
        assert.equal(c[3], ev.tick)
        assert.equal(U160_MAX, ev.sqrtPriceX96)
        assert.equal(U128_MAX, ev.liquidity)
      end
    end)

    it("keeps block numbers above 2^53 exact as decimal strings", function()
      local text = sync_with("blockNumber", '"0x20000000000001"')
      assert.equal("9007199254740993", classify(text).block)
      text = sync_with("blockNumber", '"0x1fffffffffffff"')
      assert.equal(9007199254740991, classify(text).block)
    end)

    it("tolerates leading zeros in quantities", function()
      local ev = classify(sync_with("logIndex", '"0x0007"'))
      assert.equal(7, ev.logIndex)
    end)
  end)

  describe("the fast scanner", function()
    local samples = H.lines(H.DATA .. "sample_capture.jsonl")
    local sample_sub = abi.subscription_reply(samples[1])
    local sample_reg = assert(require("bandit.registry").load(
      H.DATA .. "pools.json", H.DATA .. "tokens.json"))

    local function same_outcome(text, sub_id, reg)
      local slow, slow_reason = abi.envelope_slow(text, sub_id)
      local fast, fast_reason = abi.envelope(text, sub_id)
      assert.equal(slow_reason, fast_reason)
      assert.equal(slow == nil, fast == nil)
      if not slow then return end
      assert.equal(slow.removed, fast.removed)
      if slow.removed == true then
        assert.same({ abi.log_key(slow) }, { abi.log_key(fast) })
        return
      end
      local a, ra = abi.decode(slow, reg)
      local b, rb = abi.decode(fast, reg)
      assert.equal(ra, rb)
      if a then assert.same(fields(a), fields(b)) end
    end

    it("agrees with cjson on every sample line", function()
      local hits = 0
      for i = 2, #samples do
        same_outcome(samples[i], sample_sub, sample_reg)
        if abi.scan(samples[i], sample_sub) then hits = hits + 1 end
      end
      assert.is_true(hits >= 50)    -- it does take the fast route
    end)

    it("agrees with cjson on synthetic and reshaped lines", function()
      local lines = {
        H.sync(POS, V2, U112_MAX, 0),
        H.v2swap(POS, V2, 1, 0, 0, 1),
        H.v3swap(POS, V3, -5, 5, 2 ^ 96, 1, -887272),
        H.removed(H.sync(POS, V2, 1, 2)),
        sync_with("data", '"0xZZ"'),
      }
      local n = #lines
      for i = 1, n do
        local l = lines[i]
        lines[#lines + 1] = l:gsub(",", ", ")                  -- spaces
        lines[#lines + 1] = l:gsub("0x(%x+)", function(h) return "0x" .. h:upper() end)
        lines[#lines + 1] = l:gsub('"removed":(%a+)}', '"removed":%1,"extra":1}')
        lines[#lines + 1] = l:gsub('"address":"([^"]*)",', "", 1)
          :gsub('"result":{', '"result":{"address":"' .. V2 .. '",', 1)
        lines[#lines + 1] = l:gsub("0x", "\\u0030x", 1)        -- escaped
        lines[#lines + 1] = l .. "\r"
      end
      for _, l in ipairs(lines) do same_outcome(l, SUB, REG) end
    end)

    -- Lines of every kind, each route and outcome, and the samples.
    local function mixed_lines()
      local big = sync_with("blockNumber", '"0x20000000000001"')
      local lines = {
        H.v3swap(POS, V3, -5, 5, 2 ^ 96, 1, -887272),
        H.sync(POS, V2, U112_MAX, 0),
        H.v3swap(POS, V3, "57896044618658097711785492504343953926634992332820282019728792003956564819967",
          "-57896044618658097711785492504343953926634992332820282019728792003956564819968",
          U160_MAX, U128_MAX, 887272),
        H.v2swap(POS, V2, 1, 0, "115792089237316195423570985008687907853269984665640564039457584007913129639935",
          1, H.addr("sender"), H.addr("to")),
        sync_with("logIndex", '"0x0007"'),
        H.removed(H.v3swap(POS, V3, 1, -1, 2 ^ 96, 1, -1)),
        H.sync(POS, V2, 0, 0),
        big,
        H.removed(big),
        H.log { sub = SUB, address = V2, data = H.data(5),
                topics = { H.TOPIC_TRANSFER, H.topic_addr(V2), H.topic_addr(V3),
                           H.topic_addr(V2) } },
        H.v3swap(POS, V3, 0, 0, 1, 0, -1),
        H.log { sub = SUB, address = V2, topics = {}, data = H.data(1, 2) },
        H.sync(POS, H.addr("elsewhere"), 1, 2),
        sync_with("data", '"0xZZ"'),
        H.sync(POS, V2, 1, 2):gsub(",", ", "),                -- the cjson route
        H.sync(POS, V2, 3, 4):gsub(SUB, "0xdef"),             -- foreign
        "{",
      }
      for i = 2, #samples do lines[#lines + 1] = samples[i] end
      return lines
    end

    local function subscription(l)
      return l:find(sample_sub, 1, true) and sample_sub or SUB
    end
    local function reg_of(l)
      return l:find(sample_sub, 1, true) and sample_reg or REG
    end

    -- Every line twice, the second time backwards (every line after every
    -- kind), with the subscription id and registry it is decoded with.
    local function both_ways(lines, fn)
      for pass = 1, 2 do
        for k = 1, #lines do
          local l = lines[pass == 1 and k or #lines + 1 - k]
          fn(l, subscription(l), reg_of(l))
        end
      end
    end

    -- The adapter scans every message into one view and decodes every
    -- log into one event (abi.envelope's and abi.decode's `into`): each
    -- outcome must be what fresh tables give, whatever came before.
    it("gives into reused tables what it gives into fresh ones", function()
      local lines = mixed_lines()
      local view, ev = abi.new_view(), abi.new_event()
      both_ways(lines, function(l, sub_id, reg)
        local fresh, why = abi.envelope(l, sub_id)
        local got, got_why = abi.envelope(l, sub_id, view)
        assert.equal(why, got_why)
        assert.equal(fresh == nil, got == nil)
        if fresh then
          for _, f in ipairs { "address", "data", "blockNumber", "transactionHash",
                               "transactionIndex", "blockHash", "logIndex",
                               "removed" } do
            assert.equal(fresh[f], got[f], f)
          end
          assert.same(fresh.topics, got.topics)
          assert.equal(#fresh.topics, #got.topics)
          if fresh.removed == true then
            assert.same({ abi.log_key(fresh) }, { abi.log_key(got) })
          else
            local a, ra = abi.decode(fresh, reg)
            local b, rb = abi.decode(got, reg, ev)
            assert.equal(ra, rb)
            assert.equal(a == nil, b == nil)
            if a then
              assert.equal(ev, b)
              assert.same(fields(a), fields(b))
              -- Read every lazy field of every kind before the next log
              -- is decoded into it: none may be kept.
              for _, getters in pairs(abi.LAZY) do
                for f in pairs(getters) do local _ = b[f] end
              end
            end
          end
        end
      end)
    end)

    -- The adapter decodes a log in geth's layout where it lies in the
    -- text (abi.envelope_at, abi.decode_at): each outcome must be what
    -- abi.envelope and abi.decode give, whatever came before.
    it("decodes a log where it lies in the text as from its view", function()
      local lines = mixed_lines()
      local at, ev = abi.new_positions(), {}
      local positional = 0
      both_ways(lines, function(l, sub_id, reg)
        local view, why = abi.envelope(l, sub_id)
        local got, got_why = abi.envelope_at(l, sub_id, at)
        assert.equal(why, got_why)
        assert.equal(view == nil, got == nil)
        if got == at then
          positional = positional + 1
          local v = abi.view_at(l, at)
          assert.same(view, v)
          if not v.removed then
            local a, ra = abi.decode(view, reg)
            local b, rb = abi.decode_at(l, at, reg, ev)
            assert.equal(ra, rb)
            assert.equal(a == nil, b == nil)
            if a then
              assert.equal(ev, b)
              for _, f in ipairs { "kind", "pool", "block", "txIndex",
                                   "logIndex" } do
                assert.equal(a[f], b[f], f)
              end
              assert.equal(a.kind == "v3_swap" and a.tick, b.tick)
              assert.equal(a.blockHash, l:sub(at.blockHash + 1, at.blockHash + 66))
              assert.equal(a.txHash,
                           l:sub(at.transactionHash + 1, at.transactionHash + 66))
            end
          end
        elseif got then
          assert.same(view, got)      -- the cjson route's view
        end
      end)
      assert.is_true(positional >= 100)
    end)

    it("cuts no string out of a log it decodes where it lies", function()
      -- A copy of the module that counts string.sub calls.
      local real, cuts = string.sub, 0
      package.loaded["bandit.abi"] = nil
      string.sub = function(...) cuts = cuts + 1 return real(...) end
      local ok, counted = pcall(require, "bandit.abi")
      string.sub = real
      package.loaded["bandit.abi"] = abi
      assert(ok, counted)
      local lines = { H.sync(POS, V2, 10, 20), H.v2swap(POS, V2, 1, 0, 0, 1),
                      H.v3swap(POS, V3, -5, 5, 2 ^ 96, 1, -887272) }
      local at, ev = counted.new_positions(), {}
      for pass = 1, 2 do
        -- The first time, each pool is looked up by its address.
        if pass == 2 then cuts = 0 end
        for _, l in ipairs(lines) do
          assert.equal(at, counted.envelope_at(l, SUB, at))
          assert(counted.decode_at(l, at, REG, ev))
        end
      end
      assert.equal(0, cuts)
    end)

    it("takes a pool it found before only for the same address", function()
      -- Addresses alike in the digits the pool cache hashes: only the
      -- comparison of all 40 tells them apart.
      local other = V2:sub(1, 12) .. (V2:sub(13, 13) == "0" and "1" or "0") ..
        V2:sub(14)
      local at, ev = abi.new_positions(), {}
      local function decode(l)
        local got = abi.envelope_at(l, SUB, at)
        assert.equal(at, got)
        return abi.decode_at(l, at, REG, ev)
      end
      assert.equal(REG:pool(V2), decode(H.sync(POS, V2, 1, 2)).pool)
      assert.same({ nil, abi.UNKNOWN_POOL },
                  { decode(H.sync(POS, other, 1, 2)) })
      -- Another registry answers for itself.
      local reg2 = H.registry({
        { "pool:v2:AAA/BBB", "sushiswap", "v2", "AAA", "BBB", 3000 },
      }, { { "AAA", 8 }, { "BBB", 18 } })
      local l = H.sync(POS, V2, 1, 2)
      local got = abi.envelope_at(l, SUB, at)
      assert.equal(reg2:pool(V2), abi.decode_at(l, got, reg2, ev).pool)
      assert.are_not.equal(REG:pool(V2), reg2:pool(V2))
    end)

    it("decodes into an event in a trace that returns to its caller", function()
      -- decode() is hot from interpreted callers (a handler's first
      -- messages), so LuaJIT starts root traces at it; one that ends in a
      -- tail call to a builtin cannot return to the caller and aborts
      -- ("NYI: return to lower frame"; "JIT compilation disabled" under
      -- this caller), until decode and every trace through it is
      -- blacklisted.
      local jit = require "jit"
      local view = abi.envelope(H.sync(POS, V2, 10, 20), SUB)
      local ev = abi.new_event()
      local aborts = {}
      local jutil, vmdef = require "jit.util", require "jit.vmdef"
      local function on_trace(what, _, func, pc, err, info)
        if what ~= "abort" then return end
        local fi = jutil.funcinfo(func, pc)
        if type(err) == "number" then err = vmdef.traceerr[err]:format(info) end
        aborts[#aborts + 1] = tostring(fi.loc) .. ": " .. tostring(err)
      end
      local function calls()
        for _ = 1, 3000 do assert(abi.decode(view, REG, ev)) end
      end
      jit.off(calls)
      jit.flush()
      jit.attach(on_trace, "trace")
      local ok, e = pcall(calls)
      jit.attach(on_trace)
      jit.on(calls)
      assert(ok, e)
      for _, a in ipairs(aborts) do
        assert.is_falsy(a:find("return to lower frame", 1, true), a)
        assert.is_falsy(a:find("JIT compilation disabled", 1, true), a)
      end
    end)

    it("decodes only into an event of new_event()", function()
      local view = abi.envelope(H.v3swap(POS, V3, -5, 5, 2 ^ 96, 1, -887272), SUB)
      local ev = abi.decode(view, REG)
      assert.equal(-887272, ev.tick)
      assert.has_error(function() abi.decode(view, REG, ev) end,
        "bandit.abi.decode: into must come from bandit.abi.new_event()")
      assert.has_error(function() abi.decode(view, REG, {}) end)
    end)

    it("decodes reordered keys the same way", function()
      local a = classify(H.sync(POS, V2, 10, 20))
      local text = '{"params":{"result":{"removed":false,"logIndex":"0x7",' ..
        '"blockHash":"' .. H.hash("b1000") .. '","transactionIndex":"0x4",' ..
        '"transactionHash":"' .. H.hash("t1") .. '","blockNumber":"0x3e8",' ..
        '"data":"' .. H.data(10, 20) .. '","topics":["' .. H.TOPIC_SYNC ..
        '"],"address":"' .. V2 .. '"},"subscription":"' .. SUB ..
        '"},"method":"eth_subscription","jsonrpc":"2.0"}'
      assert.is_nil(abi.scan(text, SUB))
      assert.same(fields(a), fields(classify(text)))
    end)
  end)

  describe("log_key", function()
    it("normalises a removed log's identity", function()
      local view = abi.envelope(H.removed(H.sync(POS, V2, 1, 2)):gsub(H.hash("t1"):sub(3),
        H.hash("t1"):sub(3):upper()), SUB)
      assert.same({ H.hash("b1000"), H.hash("t1"), 7 }, { abi.log_key(view) })
    end)

    it("returns nil for a malformed identity", function()
      local text = H.removed(sync_with("logIndex", "null"))
      assert.is_nil(abi.log_key(abi.envelope(text, SUB)))
    end)
  end)
end)

describe("bandit.abi messages between services", function()
  local reg = H.registry({
    { "pool:v3:X/Y", "uniswap_v3", "v3", "XX", "YY", 500 },
  }, { { "XX", 6 }, { "YY", 18 } })
  local pool = H.addr("pool:v3:X/Y")
  local pos = { sub = "0x77", block = 5, tx = H.hash("t"), bh = H.hash("b"), li = 2 }

  it("round-trips a decoded event through a plain table", function()
    local ev = abi.decode(abi.envelope(H.v3swap(pos, pool, "-7", "9",
      "79228162514264337593543950336", 3, -5), "0x77"), reg)
    local msg = abi.to_message(ev)
    assert.is_nil(getmetatable(msg))
    local back = assert(abi.from_message(msg, reg))
    for _, f in ipairs(report.KIND_FIELDS.v3_swap) do
      assert.equal(ev[f], back[f], f)
    end
    assert.equal(ev.pool, back.pool)
    assert.equal(ev.logIndex, back.logIndex)
  end)

  it("refuses tables that are not events of the registry", function()
    local ev = abi.decode(abi.envelope(H.v3swap(pos, pool, "-7", "9", 1, 3, -5), "0x77"), reg)
    local function broken(k, v)
      local m = abi.to_message(ev)
      m[k] = v
      return select(2, abi.from_message(m, reg))
    end
    assert.equal("unknown_topic", broken("kind", "v4_swap"))
    assert.equal("unknown_pool", broken("pool", H.addr("other")))
    assert.equal("bad_data", broken("data", "0x12"))
    assert.equal("bad_data", broken("topics", { H.TOPIC_SYNC }))
    assert.equal("bad_data", broken("blockHash", "0x1"))
    assert.equal("unknown_topic", select(2, abi.from_message(nil, reg)))
  end)
end)
