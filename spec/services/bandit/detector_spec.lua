local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local H = require "spec.services.bandit.helper"
local pipeline = require "bandit.pipeline"
local detector = require "bandit.detector"
local abi = require "bandit.abi"

-- Synthetic world: its own tokens (18 and 6 decimals), pools, and a
-- subscription id unlike the fixture's. Expected bps values were
-- computed independently with Python's Fraction.
local SUB = "0x1"
local E18, E21 = "1000000000000000000", "1000000000000000000000"

local function world(pools, tokens)
  return H.registry(pools, tokens or { { "TKA", 18 }, { "USDX", 6 }, { "TKB", 18 } })
end

-- Feed the reply and `lines`; returns the pipeline.
local function run(reg, lines, opts)
  local p = pipeline.new(reg, opts)
  p:feed(H.reply(SUB))
  for _, l in ipairs(lines) do p:feed(l) end
  return p
end

local function at(block, li, tag)
  return { sub = SUB, block = block, li = li, bh = H.hash("block" .. block),
           tx = H.hash("tx:" .. (tag or (block .. ":" .. li))), txi = li }
end

local function sig(p, i)
  local s = p.signals[i]
  return s and {
    line = s:get("line"), trigger = s:get("trigger"),
    buy = s:get("buy_pool"), sell = s:get("sell_pool"),
    gross = s:get("gross_bps"), net = s:get("net_bps"),
  }
end

local function summary(p, key) return p:summary():get(key) end

describe("bandit.detector", function()
  describe("the arbitrage rule", function()
    local reg = world {
      { "A", "quickswap", "v2", "TKA", "USDX", 3000 },
      { "B", "sushiswap", "v2", "TKA", "USDX", 3000 },
    }
    local A, B = H.addr("A"), H.addr("B")

    it("signals only when sell (1 - f) beats buy (1 + f) strictly", function()
      local p = run(reg, {
        H.sync(at(1, 0), A, E21, "997000000"),      -- 0.997
        H.sync(at(1, 1), B, E21, "1003000000"),     -- 1.003: net exactly 0
        H.sync(at(2, 0), B, E21, "1003000001"),     -- one unit more
        H.v2swap(at(2, 1), B, 0, 1, 1, 0),
        H.sync(at(3, 0), A, E21, "997000000"),      -- gap persists
      })
      assert.equal(2, #p.signals)
      assert.same({ line = 4, trigger = "event", buy = H.checksum(A),
                    sell = H.checksum(B), gross = "60.1806", net = "0.0000" },
                  sig(p, 1))
      assert.equal(6, sig(p, 2).line)                -- level-triggered
      assert.equal(4, summary(p, "evaluations"))     -- not the swap
      local ev = p.events[3]
      assert.equal("1.00300000100", ev.price)
      assert.equal("1.00300000100", p.events[4].price)   -- swap: Sync price
      local s = p.signals[1]
      assert.equal("0.997000000000", s:get("buy_price"))
      assert.equal("1.00300000100", s:get("sell_price"))
      assert.equal(3000, s:get("buy_fee_ppm"))
      assert.equal("TKA/USDX", s:get("pair"))
    end)

    it("breaks ties by lowest buy address, then lowest sell address", function()
      local tie = world {
        { "P1", "quickswap", "v2", "TKA", "USDX", 3000 },
        { "P2", "sushiswap", "v2", "TKA", "USDX", 3000 },
        { "P3", "quickswap", "v2", "TKA", "USDX", 3000 },
        { "P4", "sushiswap", "v2", "TKA", "USDX", 3000 },
      }
      local a = { H.addr("P1"), H.addr("P2"), H.addr("P3"), H.addr("P4") }
      local p = run(tie, {
        H.sync(at(1, 0), a[1], E21, "990000000"),
        H.sync(at(1, 1), a[2], E21, "990000000"),
        H.sync(at(1, 2), a[3], E21, "1010000000"),
        H.sync(at(1, 3), a[4], E21, "1010000000"),
      })
      assert.equal(2, #p.signals)
      local buy = a[1] < a[2] and a[1] or a[2]
      local sell = a[3] < a[4] and a[3] or a[4]
      assert.same({ line = 4, trigger = "event", buy = H.checksum(buy),
                    sell = H.checksum(a[3]), gross = "202.0202", net = "140.9912" },
                  sig(p, 1))
      assert.equal(H.checksum(sell), sig(p, 2).sell)
      assert.equal(H.checksum(buy), sig(p, 2).buy)
    end)

    it("ignores venues with null or unknown prices, never as zero", function()
      local w = world({
        { "N", "quickswap", "v2", "TKA", "TKB", 3000 },
        { "W", "uniswap_v3", "v3", "TKA", "TKB", 100 },
        { "Q", "sushiswap", "v2", "TKA", "TKB", 3000 },
        { "U", "sushiswap", "v2", "TKA", "TKB", 3000 },     -- never seen
      })
      local N, W, Q = H.addr("N"), H.addr("W"), H.addr("Q")
      local p = run(w, {
        H.sync(at(1, 0), N, 0, 0),
        H.v3swap(at(1, 1), W, "-5", "5", "79228162514264337593543950336", 1, 0),
        H.sync(at(1, 2), Q, E21, "1003100000000000000000"),   -- 1.0031: no
        H.sync(at(1, 3), N, 0, 5),
        H.sync(at(1, 4), Q, E21, "1003200000000000000000"),   -- 1.0032: yes
        H.sync(at(1, 5), N, 5, 0),
      })
      assert.is_nil(p.events[1].price)
      assert.equal("1.00000000000", p.events[2].price)
      -- line 7 is N's Sync(5, 0): still null, but it re-evaluates the pair
      assert.equal(2, #p.signals)
      assert.same({ line = 6, trigger = "event", buy = H.checksum(W),
                    sell = H.checksum(Q), gross = "32.0000", net = "0.9039" },
                  sig(p, 1))
      assert.equal(7, sig(p, 2).line)
      assert.equal(100, p.signals[1]:get("buy_fee_ppm"))
      assert.equal("uniswap_v3", p.signals[1]:get("buy_dex"))
    end)

    it("prices V3 exactly, rounding half to even", function()
      local w = world({ { "W", "uniswap_v3", "v3", "TKA", "TKB", 500 } })
      -- sqrtPriceX96 = 2^96 + 2^90: price (65/64)^2 = 1.031494140625
      local p = run(w, { H.v3swap(at(1, 0), H.addr("W"), 1, -1,
        "80466102553549717868443074560", 5, 309) })
      assert.equal("1.03149414062", p.events[1].price)
    end)

    it("keeps pairs apart: a gap in one pair never signals another", function()
      local w = world {
        { "A", "quickswap", "v2", "TKA", "USDX", 3000 },
        { "B", "sushiswap", "v2", "TKA", "USDX", 3000 },
        { "C", "sushiswap", "v2", "TKB", "USDX", 3000 },
      }
      local p = run(w, {
        H.sync(at(1, 0), H.addr("A"), E21, "900000000"),
        H.sync(at(1, 1), H.addr("C"), E21, "2000000000"),
      })
      assert.equal(0, #p.signals)
      assert.equal(2, summary(p, "evaluations"))
    end)
  end)

  describe("the pair search", function()
    local w = world {
      { "A", "quickswap", "v2", "TKA", "USDX", 3000 },
      { "B", "sushiswap", "v2", "TKA", "USDX", 3000 },
      { "C", "quickswap", "v2", "TKA", "USDX", 500 },
      { "D", "sushiswap", "v2", "TKA", "USDX", 100 },
    }
    local names = { "A", "B", "C", "D" }
    local function accept(det, line)
      return det:accept(abi.decode(abi.envelope(line, SUB), w))
    end

    it("compares exactly only the venue pairs that can pass", function()
      local det = detector.new(w)
      accept(det, H.sync(at(1, 0), H.addr("A"), E21, "1000000000"))  -- 1.000
      accept(det, H.sync(at(1, 1), H.addr("B"), E21, "1001000000"))  -- 1.001
      local _, s = accept(det, H.sync(at(1, 2), H.addr("C"), E21, "999500000"))
      assert.is_nil(s)
      assert.equal(3, det.evaluations)
      assert.equal(0, det.compared)
      -- B at 1.01 beats A's and C's buy price with both fees; nothing else
      _, s = accept(det, H.sync(at(2, 0), H.addr("B"), E21, "1010000000"))
      assert.equal(2, det.compared)
      assert.equal(H.addr("C"), s.buy.key)
      assert.equal(H.addr("B"), s.sell.key)
      assert.equal("105.0525", s.gross_bps) -- Python Fraction, half to even
      assert.equal("69.7025", s.net_bps)
    end)

    -- Every ordered pair compared exactly, with bigint's operators: the
    -- rule as written, against which the search's shortcut is checked.
    local bigint = require "bandit.bigint"
    local pricing = require "bandit.pricing"
    local PPM = bigint.new(1000000)
    local function reference(st)
      local best
      for _, sn in ipairs(names) do
        for _, bn in ipairs(names) do
          local s, b = st[sn], st[bn]
          if sn ~= bn and s and b then
            local x = s.r1 * (PPM - s.fee) * b.r0
            local y = s.r0 * b.r1 * (PPM + b.fee)
            local better = not best or x * best.y > best.x * y
            if best and x * best.y == best.x * y then
              better = b.key < best.b.key or (b.key == best.b.key and s.key < best.s.key)
            end
            if better then best = { x = x, y = y, s = s, b = b } end
          end
        end
      end
      if best and best.x > best.y then
        return best.b.key, best.s.key, pricing.bps(best.x, best.y)
      end
    end

    it("finds what comparing every pair exactly finds, ties and near ties", function()
      local fee = { A = 3000, B = 3000, C = 500, D = 100 }
      local det, st = detector.new(w), {}
      math.randomseed(20261207)
      for k = 1, 600 do
        local n = names[math.random(4)]
        -- Reserves r0 = 10^21 and r1 set so that this venue's sell price
        -- with its fee equals another's buy price with its fee, give or
        -- take a unit or two, or lies anywhere near them.
        local r0 = bigint.new(E21)
        local o = st[names[math.random(4)]]
        local r1
        if o and o ~= st[n] and math.random() < 0.7 then
          -- r1 (1 - f) / r0 = o.r1 (1 + f_o) / o.r0, rounded, +- 0..2
          local num = o.r1 * (PPM + o.fee) * r0
          local q, rem = bigint.new(), bigint.new()
          q:tdiv_qr(rem, num, o.r0 * (PPM - fee[n]))
          r1 = q + (math.random(0, 4) - 2)
        else
          r1 = bigint.new(math.random(990000000, 1010000000))
        end
        st[n] = { r0 = r0, r1 = r1, fee = bigint.new(fee[n]), key = H.addr(n) }
        local _, s = accept(det, H.sync(at(k, 0), H.addr(n), tostring(r0), tostring(r1)))
        local buy, sell, net = reference(st)
        assert.equal(buy, s and s.buy.key, "log " .. k)
        assert.equal(sell, s and s.sell.key, "log " .. k)
        assert.equal(net, s and s.net_bps, "log " .. k)
      end
      assert.is_true(det.compared < 6 * det.evaluations)
    end)
  end)

  describe("reorgs", function()
    local reg = world {
      { "A", "quickswap", "v2", "TKA", "TKB", 3000 },
      { "B", "sushiswap", "v2", "TKA", "TKB", 3000 },
    }
    local A, B = H.addr("A"), H.addr("B")
    local l2 = H.sync(at(10, 0), A, E18, E18)                      -- A 1.00
    local l3 = H.sync(at(10, 1), B, E18, E18)                      -- B 1.00
    local l4 = H.sync(at(11, 0, "x"), A, "100", "101")             -- A 1.01
    local l5 = H.v2swap(at(11, 1, "x"), A, 1, 0, 0, 1)
    local l6 = H.sync(at(12, 0), B, "100", "102")                  -- B 1.02

    it("restores the previous state and re-evaluates on retraction", function()
      local p = run(reg, { l2, l3, l4, l5, l6,
        H.removed(l4), H.removed(l5), H.removed(l6), H.removed(l6), H.removed(l2) })
      local lines = {}
      for i = 1, #p.signals do lines[i] = sig(p, i) end
      assert.same({
        { line = 4, trigger = "event", buy = H.checksum(B), sell = H.checksum(A),
          gross = "100.0000", net = "39.5813" },
        { line = 6, trigger = "event", buy = H.checksum(A), sell = H.checksum(B),
          gross = "99.0099", net = "38.5971" },
        -- A is back at 1.00 (l2), B still at 1.02
        { line = 7, trigger = "retraction", buy = H.checksum(A), sell = H.checksum(B),
          gross = "200.0000", net = "138.9831" },
      }, lines)
      local skipped = {}
      for i, s in ipairs(p.skipped) do
        skipped[i] = { s:get("line"), s:get("reason"), s:get("retracts_line") }
      end
      assert.same({ { 7, "retraction", 4 }, { 8, "retraction", 5 },
                    { 9, "retraction", 6 }, { 10, "removed_unmatched" },
                    { 11, "retraction", 2 } }, skipped)
      -- 4 accepted state logs + 3 retractions of state logs (not the swap)
      assert.equal(7, summary(p, "evaluations"))
      assert.equal(4, summary(p, "events_retracted"))
      local s7 = p.signals[3]
      assert.equal(11, s7:get("block"))
      assert.equal(0, s7:get("logIndex"))
      -- A has no surviving state: unknown, not a venue, price null
      local final = summary(p, "final_pool_state"):get(H.checksum(A))
      assert.is_nil(final:get("price"))
      assert.is_nil(final:get("reserve0"))
      assert.equal("1.00000000000",
        summary(p, "final_pool_state"):get(H.checksum(B)):get("price"))
    end)

    it("leaves the state alone when an older state log is retracted", function()
      local p = run(reg, { l2, l3, l4, l6, H.removed(l2) })
      -- A is still at 1.01 (l4), so the gap to B at 1.02 signals again
      assert.equal(3, #p.signals)
      assert.same({ line = 6, trigger = "retraction", buy = H.checksum(A),
                    sell = H.checksum(B), gross = "99.0099", net = "38.5971" },
                  sig(p, 3))
      assert.equal(5, summary(p, "evaluations"))
      local a = summary(p, "final_pool_state"):get(H.checksum(A))
      assert.equal("1.01000000000", a:get("price"))
      assert.equal("100", a:get("reserve0"))
    end)

    it("marks retracted events with the retracting line", function()
      local p = run(reg, { l2, l4, H.removed(l4) })
      local rec = p:event_records()[2]
      assert.is_true(rec:get("retracted"))
      assert.equal(4, rec:get("retracted_by_line"))
      assert.equal("1.01000000000", rec:get("price"))   -- price when applied
      assert.is_false(p:event_records()[1]:get("retracted"))
    end)

    it("matches removed logs case-insensitively on the full identity", function()
      local upper = H.removed(l4):gsub(H.hash("tx:x"):sub(3), H.hash("tx:x"):sub(3):upper())
      local other_block = H.removed(l4):gsub(H.hash("block11"), H.hash("block99"))
      local other_index = H.removed(l4):gsub('"logIndex":"0x0"', '"logIndex":"0x5"')
      local p = run(reg, { l2, l4, other_block, other_index, upper })
      local reasons = {}
      for i, s in ipairs(p.skipped) do reasons[i] = s:get("reason") end
      assert.same({ "removed_unmatched", "removed_unmatched", "retraction" }, reasons)
    end)

    it("retracts duplicated deliveries one at a time, newest first", function()
      local p = run(reg, { l2, l4, l4, H.removed(l4), H.removed(l4), H.removed(l4) })
      local reasons = {}
      for i, s in ipairs(p.skipped) do
        reasons[i] = s:get("reason") .. ":" .. tostring(s:get("retracts_line"))
      end
      assert.same({ "retraction:4", "retraction:3", "removed_unmatched:nil" }, reasons)
      local _, price = p.det:state(p.reg:pool(A))
      assert.equal("1.00000000000", price)
    end)

    it("honours a reorg window: expired logs stay as states, not retractable", function()
      local det = detector.new(reg, { reorg_window = 2 })
      local evs = {}
      for i, l in ipairs { l2, l4, H.sync(at(13, 0), A, "100", "103") } do
        evs[i] = abi.decode(abi.envelope(l, SUB), reg)
        det:accept(evs[i])
      end
      assert.is_nil(det:find(evs[1].blockHash, evs[1].txHash, evs[1].logIndex))
      det:retract(det:find(evs[3].blockHash, evs[3].txHash, evs[3].logIndex))
      local _, price = det:state(reg:pool(A))
      assert.equal("1.01000000000", price)
      det:retract(det:find(evs[2].blockHash, evs[2].txHash, evs[2].logIndex))
      -- the expired log is still the state under its successors
      local cur
      cur, price = det:state(reg:pool(A))
      assert.equal(evs[1], cur)
      assert.equal("1.00000000000", price)
      assert.is_nil(evs[1].older)           -- nothing older is kept
    end)

    it("finds by a caller's key with its test of what the key leaves open", function()
      -- Every log under one key (as if their tx hashes' first bytes were
      -- equal): same() alone decides among logs of the same logIndex.
      local det = detector.new(reg, { reorg_window = 2 })
      local evs = {}
      for i, l in ipairs { l2, l4, H.sync(at(13, 0), A, "100", "103") } do
        evs[i] = abi.decode(abi.envelope(l, SUB), reg)
        evs[i].id, evs[i].txHash = i, 7
        det:accept(evs[i])
      end
      local function same(ev, id) return ev.id == id end
      assert.is_nil(det:find(1, 7, evs[1].logIndex, same)) -- left the window
      assert.is_nil(det:find(2, 8, evs[2].logIndex, same)) -- another key
      assert.equal(evs[2], det:find(2, 7, evs[2].logIndex, same))
      assert.equal(evs[3], det:find(3, 7, evs[3].logIndex, same))
      det:retract(evs[3])
      assert.is_nil(det:find(3, 7, evs[3].logIndex, same))
      assert.equal(evs[2], det:find(2, 7, evs[2].logIndex, same))
    end)

    it("recycles only logs nothing refers to, with the same results", function()
      -- Syncs and swaps on A and B, every third log retracted while it is
      -- in the window of 3; one detector refills its spares, one does not.
      local plain = detector.new(reg, { reorg_window = 3 })
      local recyc = detector.new(reg, { reorg_window = 3, recycle = true })
      local reused, n, signals, last = 0, 0, 0, nil
      -- The recycling detector refills one signal table; all six fields
      -- are the plain one's.
      local function same(s1, s2)
        if not s1 then return assert.is_nil(s2) end
        signals = signals + 1
        assert.same(s1, { buy = s2.buy, sell = s2.sell, buy_price = s2.buy_price,
                          sell_price = s2.sell_price, gross_bps = s2.gross_bps,
                          net_bps = s2.net_bps })
        assert.equal(last or s2, s2)
        last = s2
      end
      for block = 20, 80 do
        local pool = block % 2 == 0 and A or B
        local l = block % 5 == 0 and H.v2swap(at(block, 0), pool, 0, 1, 1, 0)
          or H.sync(at(block, 0), pool, E21,
                    tostring((pool == A and 990000000 or 1000000000) + block * 1000))
        local ev1 = abi.decode(abi.envelope(l, SUB), reg)
        local ev2 = abi.decode(abi.envelope(l, SUB), reg)
        local spare = recyc:spare()
        if spare then
          -- A spare is no pool's state and no retractable log.
          for _, p in ipairs { A, B } do
            assert.are_not.equal(spare, (recyc:current(reg:pool(p))))
          end
          assert.are_not.equal(spare, recyc:find(spare.blockHash, spare.txHash,
                                                 spare.logIndex))
          for k in pairs(spare) do spare[k] = nil end
          for k, v in pairs(ev2) do spare[k] = v end
          ev2, reused = spare, reused + 1
        end
        n = n + 1
        local e1, s1 = plain:accept(ev1)
        local e2, s2 = recyc:accept(ev2)
        assert.equal(e1, e2)
        same(s1, s2)
        if n % 3 == 0 then
          local bh, th, li = ev1.blockHash, ev1.txHash, ev1.logIndex
          e1, s1 = plain:retract(plain:find(bh, th, li))
          e2, s2 = recyc:retract(recyc:find(bh, th, li))
          assert.equal(e1, e2)
          same(s1, s2)
        end
        for _, p in ipairs { A, B } do
          local c1, p1 = plain:state(reg:pool(p))
          local c2, p2 = recyc:state(reg:pool(p))
          assert.equal(p1, p2)
          assert.equal(c1 and c1.blockHash, c2 and c2.blockHash)
        end
      end
      assert.is_true(reused > 40)
      assert.is_true(signals > 10)
      assert.is_nil(detector.new(reg, { recycle = true }):spare()) -- no window
    end)

    it("refuses to retract twice", function()
      local det = detector.new(reg)
      local ev = abi.decode(abi.envelope(l2, SUB), reg)
      det:accept(ev)
      det:retract(ev)
      assert.has_error(function() det:retract(ev) end,
        "bandit.detector: log already retracted")
    end)
  end)

  it("raises on a missing registry or a bad window", function()
    assert.has_error(function() detector.new(nil) end,
      "bandit.detector.new: registry expected")
    assert.has_error(function() detector.new(world {}, { reorg_window = 0 }) end,
      "bandit.detector.new: reorg_window must be a positive number")
  end)
end)
