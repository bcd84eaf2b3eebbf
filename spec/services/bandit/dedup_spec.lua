local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- bandit.dedup: what a node sends again after a reconnect.
local dedup = require "bandit.dedup"
local wire = require "bandit.wire"

local BH, TH = "0x" .. ("b"):rep(64), "0x" .. ("c"):rep(64)

-- s with the byte at 0-based k (hex digits 2k+1, 2k+2) spelled `hex`.
local function with_byte(s, k, hex)
  return s:sub(1, 2 + 2 * k) .. hex .. s:sub(5 + 2 * k)
end

-- The window's key of a 0x-hex tx hash.
local function key(th)
  wire.put_hashes(BH, 3, th, 3)
  return wire.hash_key(wire.HASHES + 32)
end

-- Feeds (logIndex, removed) pairs; returns which were duplicates.
local function feed(w, list)
  local out = {}
  for i, d in ipairs(list) do out[i] = (w:seen(BH, TH, d[1], d[2])) end
  return out
end

describe("bandit.dedup", function()
  it("never calls a repeat within one connection a duplicate", function()
    local w = dedup.new(10)
    assert.same({ false, false, false, false },
                feed(w, { { 1 }, { 1 }, { 1, true }, { 1, true } }))
    assert.equal(0, w.suppressed)
  end)

  it("suppresses what a reconnected node replays, and nothing after it", function()
    local w = dedup.new(10)
    feed(w, { { 1 }, { 2 }, { 2 }, { 3 }, { 3, true } })
    w:reconnected()
    -- Replayed from the start: the same deliveries in the same order,
    -- then a log never seen and a second removal of log 3.
    assert.same({ true, true, true, true, true, false, false },
                feed(w, { { 1 }, { 2 }, { 2 }, { 3 }, { 3, true }, { 4 }, { 3, true } }))
    assert.equal(5, w.suppressed)
  end)

  it("lets a removal of a log seen before the reconnect through", function()
    local w = dedup.new(10)
    feed(w, { { 7 } })
    w:reconnected()
    assert.same({ false, false }, feed(w, { { 7, true }, { 7 } }))
    -- ... and the log back in its block (a reorg undone) after it.
    w:reconnected()
    assert.same({ true, true, true, false }, feed(w, { { 7 }, { 7, true }, { 7 }, { 7 } }))
  end)

  it("says when a replay reached the last delivery of a log", function()
    local w = dedup.new(10)
    feed(w, { { 1 }, { 1, true } })
    w:reconnected()
    local _, id = w:seen(BH, TH, 2, false)
    local dup, key, caught_up = w:seen(BH, TH, 1, false)
    assert.is_true(dup)
    assert.is_number(key)
    assert.not_equal(id, key)
    assert.is_false(caught_up)
    dup, _, caught_up = w:seen(BH, TH, 1, true)
    assert.is_true(dup and caught_up)
  end)

  it("tells logs apart by block hash, tx hash and log index", function()
    local w = dedup.new(10)
    w:seen(BH, TH, 1, false)
    w:reconnected()
    assert.is_false((w:seen("0x" .. ("d"):rep(64), TH, 1, false)))
    assert.is_false((w:seen(BH, "0x" .. ("d"):rep(64), 1, false)))
    assert.is_false((w:seen(BH, TH, 2, false)))
    assert.is_false((w:seen(BH, TH, "18446744073709551615", false)))
    assert.is_true((w:seen(BH, TH, 1, false)))
    -- A log index past 13 hex digits comes as a decimal string.
    w:reconnected()
    assert.is_true((w:seen(BH, TH, "1", false)))
    assert.is_true((w:seen(BH, TH, "18446744073709551615", false)))
  end)

  it("keeps transactions whose keys collide apart", function()
    -- The key takes bytes 0-5 and the low 5 bits of byte 6: TH2 differs
    -- from TH in byte 6's high bits only, TH3 in the last byte only.
    local TH2, TH3 = with_byte(TH, 6, "2c"), with_byte(TH, 31, "cd")
    assert.equal(key(TH), key(TH2))
    assert.equal(key(TH), key(TH3))
    local w = dedup.new(10)
    w:seen(BH, TH, 1, false)
    w:seen(BH, TH3, 2, false)
    w:reconnected()
    assert.is_false((w:seen(BH, TH2, 1, false)))
    assert.is_false((w:seen(BH, TH3, 1, false)))
    assert.is_false((w:seen(BH, TH, 2, false)))
    -- Found behind the logs of the other transactions of its key.
    assert.is_true((w:seen(BH, TH, 1, false)))
    assert.is_true((w:seen(BH, TH3, 2, false)))
    assert.equal("a", w:history_of(BH, TH2, 1))
    assert.equal("a", w:history_of(BH, TH3, 1))
  end)

  it("tells block hashes apart by their last byte", function()
    local BH2 = with_byte(BH, 31, "bc")
    local w = dedup.new(10)
    w:seen(BH, TH, 1, false)
    w:reconnected()
    assert.is_false((w:seen(BH2, TH, 1, false)))
    assert.is_true((w:seen(BH, TH, 1, false)))
    w:reconnected()
    assert.is_true((w:seen(BH, TH, 1, false)))
    assert.is_true((w:seen(BH2, TH, 1, false)))
  end)

  it("forgets the oldest of colliding logs as the ring wraps", function()
    local TH2 = with_byte(TH, 31, "cd")
    local A1, B1, A2, B2, A3 = { TH, 1 }, { TH2, 1 }, { TH, 2 }, { TH2, 2 },
      { TH, 3 }
    local function deliver(w, logs)
      local out = {}
      for i, l in ipairs(logs) do out[i] = (w:seen(BH, l[1], l[2], false)) end
      return out
    end
    -- One key, one chain; slots 1, 2, 3, then 1 and 2 again, so the
    -- chain links to slots overwritten since.
    local w = dedup.new(3)
    deliver(w, { A1, B1, A2, B2, A3 })
    assert.equal(3, w.n)
    w:reconnected()
    assert.same({ true, true, true, false, false },
                deliver(w, { A2, B2, A3, A1, B1 }))
    -- A1 and B1 came back in over A2 and B2.
    w:reconnected()
    assert.same({ true, true, true, false, false },
                deliver(w, { A3, A1, B1, A2, B2 }))
    assert.equal(3, w.n)
    -- Keys of overwritten logs leave the index: it stays bounded too.
    for i = 1, 100 do w:seen(BH, with_byte(TH, i % 6, ("%02x"):format(i)), 1, false) end
    local keys = 0
    for _ in pairs(w.index) do keys = keys + 1 end
    assert.is_true(keys <= 3)
  end)

  it("reads hex digits of either case as the same bytes", function()
    -- The adapter hands it lowercase hex only (bandit.abi's scanner takes
    -- no other; its cjson route lower-cases), but a window keyed on the
    -- digits rather than the bytes would differ here.
    local w = dedup.new(10)
    w:seen(BH, TH, 1, false)
    w:reconnected()
    assert.is_true((w:seen(BH:upper():gsub("^0X", "0x"), "0xcCcC" .. TH:sub(7), 1, false)))
  end)

  it("remembers only the newest identities", function()
    local w = dedup.new(3)
    for i = 1, 5 do w:seen(BH, TH, i, false) end
    assert.equal(3, w.n)
    w:reconnected()
    assert.same({ true, true, true, false, false },
                feed(w, { { 3 }, { 4 }, { 5 }, { 1 }, { 2 } }))
    -- 1 and 2 came back in, 3 and 4 went out (the oldest first).
    w:reconnected()
    assert.same({ true, true, true, false }, feed(w, { { 5 }, { 1 }, { 2 }, { 4 } }))
    -- 4 took the place of 5.
    assert.equal(3, w.n)
    for i = 1, 5 do
      local gone = i == 3 or i == 5
      assert.equal(not gone and "a" or nil, w:history_of(BH, TH, i))
    end
  end)

  it("bounds the history of a log that flaps without end", function()
    local w = dedup.new(2)
    for _ = 1, 1000 do w:seen(BH, TH, 1, false) w:seen(BH, TH, 1, true) end
    assert.equal(32, #w:history_of(BH, TH, 1))
  end)

  it("refuses a window that is not a whole number >= 1", function()
    for _, bad in ipairs { 0, -1, 1.5, "10", false } do
      assert.has_error(function() dedup.new(bad) end,
                       "dedup.new: size must be a whole number >= 1")
    end
  end)
end)
