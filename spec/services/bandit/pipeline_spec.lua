local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local H = require "spec.services.bandit.helper"
local abi = require "bandit.abi"
local pipeline = require "bandit.pipeline"
local registry = require "bandit.registry"
local report = require "bandit.report"
local replay = require "bandit.replay_offline"

local SUB = "0x5eed"
local E18 = "1000000000000000000"

local REG = H.registry({
  { "A", "quickswap", "v2", "TKA", "TKB", 3000 },
  { "B", "sushiswap", "v2", "TKA", "TKB", 3000 },
  { "W", "uniswap_v3", "v3", "TKA", "TKB", 500 },
}, { { "TKA", 18 }, { "TKB", 18 } })
local A, B, W = H.addr("A"), H.addr("B"), H.addr("W")

local function at(block, li)
  return { sub = SUB, block = block, li = li, bh = H.hash("b" .. block),
           tx = H.hash("t" .. block .. ":" .. li), txi = li }
end

-- One line of every kind, in an order the sample does not use.
local SYNC_B = H.sync(at(3, 0), B, "100", "102")
local CAPTURE = {
  H.reply(SUB),                                                       -- 1
  H.sync(at(1, 0), A, E18, E18),                                      -- 2
  "{",                                                                -- 3
  (H.sync(at(1, 1), B, 1, 2):gsub(SUB, "0x5eee")),                    -- 4
  H.log { sub = SUB, address = A, topics = { H.TOPIC_TRANSFER }, data = "0x" }, -- 5
  H.sync(at(2, 0), H.addr("nowhere"), 1, 2),                          -- 6
  H.v3swap(at(2, 1), A, -1, 1, "79228162514264337593543950336", 1, 0), -- 7
  SYNC_B,                                                             -- 8
  H.log { sub = SUB, address = W, data = H.data(-1, 1, 1, 1),         -- 9
          topics = { H.TOPIC_V3_SWAP, H.topic_addr(A), H.topic_addr(A) } },
  H.removed(SYNC_B),                                                  -- 10
  H.removed(SYNC_B),                                                  -- 11
  "",                                                                 -- 12
  '{"jsonrpc":"2.0","id":2,"result":true}',                           -- 13
}

local function feed_all(p, lines)
  local kinds = {}
  for i, l in ipairs(lines) do kinds[i] = p:feed(l) end
  return kinds
end

describe("bandit.pipeline", function()
  it("classifies every line exactly once", function()
    local p = pipeline.new(REG)
    local kinds = feed_all(p, CAPTURE)
    assert.same({ "subscription", "event", "skipped", "skipped", "skipped",
                  "skipped", "skipped", "event", "skipped", "skipped",
                  "skipped", "skipped", "skipped" }, kinds)
    local reasons = {}
    for _, s in ipairs(p.skipped) do reasons[#reasons + 1] = s:get("line") .. ":" .. s:get("reason") end
    assert.same({ "3:malformed_json", "4:foreign_message", "5:unknown_topic",
                  "6:unknown_pool", "7:bad_data", "9:bad_data", "10:retraction",
                  "11:removed_unmatched", "12:malformed_json",
                  "13:foreign_message" }, reasons)
  end)

  it("signals from accepted logs only, and re-evaluates on retraction", function()
    local p = pipeline.new(REG)
    feed_all(p, CAPTURE)
    assert.equal(1, #p.signals)
    assert.equal(8, p.signals[1]:get("line"))
    assert.equal(3, p:summary():get("evaluations"))      -- lines 2, 8, 10
  end)

  it("summarises counts, sorted, and every pool's final state", function()
    local p = pipeline.new(REG)
    feed_all(p, CAPTURE)
    local s = report.plain(p:summary())
    local null = report.null
    assert.same({
      lines = 13, subscription_id = SUB, events_accepted = 2,
      events_by_kind = { v2_sync = 2 }, events_retracted = 1, skipped = 10,
      skipped_by_reason = { bad_data = 2, foreign_message = 2, malformed_json = 2,
                            removed_unmatched = 1, retraction = 1,
                            unknown_pool = 1, unknown_topic = 1 },
      evaluations = 3, signals = 1,
      signals_by_pair = { ["TKA/TKB"] = 1 }, signals_by_trigger = { event = 1 },
      final_pool_state = {
        [H.checksum(A)] = { label = "A", price = "1.00000000000",
                            reserve0 = E18, reserve1 = E18 },
        [H.checksum(B)] = { label = "B", price = null },
        [H.checksum(W)] = { label = "W", price = null },
      },
    }, s)
    local keys = p:summary():get("skipped_by_reason"):keys()
    assert.same({ "bad_data", "foreign_message", "malformed_json",
                  "removed_unmatched", "retraction", "unknown_pool",
                  "unknown_topic" }, keys)
  end)

  it("treats every message as foreign without a subscription reply", function()
    local p = pipeline.new(REG)
    feed_all(p, { CAPTURE[2], CAPTURE[2], CAPTURE[8] })
    assert.equal(0, #p.events)
    assert.equal(2, #p.skipped)
    assert.equal("foreign_message", p.skipped[1]:get("reason"))
    assert.equal(report.null, report.plain(p:summary()).subscription_id)
  end)

  it("writes event lines like the generic encoder", function()
    local p = pipeline.new(REG)
    feed_all(p, CAPTURE)
    p:feed((H.sync(at(9, 0), A, 0, 0):gsub('"blockNumber":"0x9"',
      '"blockNumber":"0x20000000000001"')))
    assert.equal(3, #p.events)
    for _, ev in ipairs(p.events) do
      assert.equal(report.encode(report.event(ev)), report.event_json(ev))
    end
    assert.truthy(report.event_json(p.events[3]):find('"block":"9007199254740993"', 1, true))
  end)

  it("takes a known subscription id instead of a reply line", function()
    local p = pipeline.new(REG, { subscription = SUB })
    assert.equal("event", (p:feed(CAPTURE[2])))
    assert.equal("skipped", (p:feed(CAPTURE[1])))     -- a reply is now foreign
  end)

  it("raises on a missing registry", function()
    assert.has_error(function() pipeline.new() end,
      "bandit.pipeline.new: registry expected")
  end)

  describe("against malformed input", function()
    local sample = H.lines(H.DATA .. "sample_capture.jsonl")
    local sample_reg = assert(registry.load(H.DATA .. "pools.json", H.DATA .. "tokens.json"))
    local sample_sub = abi.subscription_reply(sample[1])

    -- Deterministic mutations of real lines: truncations, byte flips,
    -- deletions, duplications, case changes.
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local ALPHABET = '0123456789abcdefABCDEFxX",:{}[] \\-ntrue'
    local function mutate(l)
      local k, i = rnd(6), rnd(#l)
      if k == 1 then return l:sub(1, i) end
      if k == 2 then
        local c = rnd(#ALPHABET)
        return l:sub(1, i - 1) .. ALPHABET:sub(c, c) .. l:sub(i + 1)
      end
      if k == 3 then return l:sub(1, i - 1) .. l:sub(i + 1) end
      if k == 4 then return l:sub(1, i) .. l:sub(i, math.min(#l, i + rnd(70))) .. l:sub(i + 1) end
      if k == 5 then return l:sub(1, i - 1) .. l:sub(i, i):upper() .. l:sub(i + 1) end
      return l:sub(1, i - 1) .. string.char(rnd(256) - 1) .. l:sub(i + 1)
    end

    local lines = {}
    for n = 1, 4000 do
      local l = sample[rnd(#sample - 1) + 1]
      for _ = 1, rnd(3) do l = mutate(l) end
      lines[n] = l
    end

    it("never raises and classifies every mutated line", function()
      local p = pipeline.new(sample_reg, { subscription = sample_sub })
      for _, l in ipairs(lines) do
        local kind, detail = p:feed(l)
        assert.truthy(kind == "event" or kind == "skipped", kind)
        assert.truthy(detail)
      end
      local s = p:summary()
      assert.equal(#lines, s:get("events_accepted") + s:get("skipped"))
      -- and the direct event writer matches the generic encoder on them
      for _, ev in ipairs(p.events) do
        assert.equal(report.encode(report.event(ev)), report.event_json(ev))
      end
    end)

    it("decides every mutated line alike on the fast and cjson routes", function()
      for _, l in ipairs(lines) do
        local fv, fr = abi.envelope(l, sample_sub)
        local sv, sr = abi.envelope_slow(l, sample_sub)
        assert.equal(sr, fr, l)
        if sv and sv.removed ~= true then
          local fe, fre = abi.decode(fv, sample_reg)
          local se, sre = abi.decode(sv, sample_reg)
          assert.equal(sre, fre, l)
          if se then
            assert.equal(report.encode(report.event(se)), report.encode(report.event(fe)))
          end
        elseif sv then
          assert.same({ abi.log_key(sv) }, { abi.log_key(fv) })
        end
      end
    end)
  end)
end)

describe("bandit.replay_offline", function()
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    require("spec.support.peers").run("mkdir -p '" .. dir .. "'")
  end)

  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("writes the four files from a capture", function()
    local cap = dir .. "/capture.jsonl"
    local f = assert(io.open(cap, "w"))
    f:write(table.concat(CAPTURE, "\n"), "\n")
    f:close()
    local pools = {}
    for _, p in ipairs(REG.pools) do
      pools[#pools + 1] = string.format(
        '{"address":"%s","dex":"%s","kind":"%s","token0":"%s","token1":"%s","fee_ppm":%d,"label":"%s"}',
        p.address, p.dex, p.kind, p.token0, p.token1, p.fee_ppm, p.label)
    end
    f = assert(io.open(dir .. "/pools.json", "w"))
    f:write("[", table.concat(pools, ","), "]")
    f:close()
    local toks = {}
    for _, t in pairs(REG.tokens) do
      toks[#toks + 1] = string.format('{"symbol":"%s","address":"%s","decimals":%d}',
        t.symbol, t.address, t.decimals)
    end
    f = assert(io.open(dir .. "/tokens.json", "w"))
    f:write("[", table.concat(toks, ","), "]")
    f:close()

    assert.equal(0, replay.main { cap, dir .. "/pools.json", dir .. "/tokens.json", dir })
    local events = H.lines(dir .. "/events.jsonl")
    assert.equal(2, #events)
    assert.equal(10, #H.lines(dir .. "/skipped.jsonl"))
    assert.equal(1, #H.lines(dir .. "/signals.jsonl"))
    assert.truthy(H.read(dir .. "/summary.json"):find('"lines": 13,', 1, true))
    assert.truthy(events[2]:find('"retracted":true,"price":"1.02000000000","retracted_by_line":10}', 1, true))
  end)

  it("makes the output directory when it is missing, quotes and all", function()
    local out = dir .. "/not yet/it's"
    assert.equal(0, replay.main { H.DATA .. "sample_capture.jsonl", H.DATA .. "pools.json",
                                  H.DATA .. "tokens.json", out })
    H.same_lines(H.read(H.DATA .. "sample_expected_signals.jsonl"),
                 H.read(out .. "/signals.jsonl"), "signals.jsonl")
  end)

  it("fails with a message and a non-zero status", function()
    local said = {}
    local sink = { write = function(_, ...) said[#said + 1] = table.concat { ... } end }
    assert.equal(2, replay.main({}, sink))
    assert.truthy(said[1]:find("usage: offline", 1, true))
    assert.equal(1, replay.main({ "/nonexistent", H.DATA .. "pools.json",
                                  H.DATA .. "tokens.json", dir }, sink))
    assert.truthy(said[2]:find("/nonexistent", 1, true))
    assert.is_nil((replay.run { capture = "/nonexistent", pools = H.DATA .. "pools.json" }))
    assert.has_error(function() replay.run {} end,
      "replay_offline.run: opts.capture and opts.pools are required")
  end)
end)
