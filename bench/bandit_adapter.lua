-- bandit_adapter.lua [N] -- PolygonAdapter's own Lua work per line,
-- without the engine: the sample capture's notifications scanned
-- (bandit.abi.envelope_at into one set of positions), decoded where they
-- lie (into one event), checked against the duplicate window and filled
-- into a SwapEvent or PoolStateUpdate struct (bandit.wire), as the
-- adapter's handler does before its ctx:new and emit. ROUTE=view takes
-- the route of text in any other layout instead (a view of strings cut
-- out of the text: bandit.abi.envelope, decode, fill_sync/fill_swap).
-- Prints the CPU time per line over N lines (default 500 000) after a warm-up, with the adapter's collector pause,
-- and the Lua bytes allocated per line over 100 000 more with the
-- collector stopped (the lines repeat: their strings are found interned,
-- not allocated, as in myc-bench's replayed floods; UNIQ=1 gives them
-- hashes not seen for a while, below). Under callgrind
-- the N lines are the second dump:
--   MYCELIUM_SOURCE_DIR=$PWD MYCELIUM_LIB=build/libmycelium.so \
--     valgrind --tool=callgrind --smc-check=all-non-file \
--     --dump-before=getppid luajit bench/bandit_adapter.lua 100000
local root = os.getenv("MYCELIUM_SOURCE_DIR")
package.path = table.concat({ root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  root .. "/services/?.lua", package.path }, ";")
local ffi = require "ffi"
local bit = require "bit"
local abi = require "bandit.abi"
local wire = require "bandit.wire"
local dedup = require "bandit.dedup"
local registry = require "bandit.registry"
local contract = require "mycelium.contract"
local put_hashes, HASHES = wire.put_hashes, wire.HASHES

local set = contract.load(root .. "/services/contracts.yaml")
local SWAP, STATE = set:type("SwapEvent"), set:type("PoolStateUpdate")
-- The structs stay referenced: the pointers alone would not keep them.
local swap_buf, state_buf = ffi.new(SWAP.ctype), ffi.new(STATE.ctype)
local swap, state = ffi.cast(SWAP.ptr, swap_buf), ffi.cast(STATE.ptr, state_buf)
local data = root .. "/examples/bandit/data/"
local reg = assert(registry.load(data .. "pools.json", data .. "tokens.json"))
local lines = {}
for l in io.lines(data .. "sample_capture.jsonl") do lines[#lines + 1] = l end
local sub_id = assert(abi.subscription_reply(lines[1]))
local view, ev, window = abi.new_view(), abi.new_event(), dedup.new(10000)
local at, ev_at = abi.new_positions(), abi.new_event_at()
-- The lines fed, in turn: the capture's notifications, or with UNIQ=1
-- 250 plays of them, each play's block and transaction hashes replaced
-- by new random ones (as on a live chain, where no hash recurs): a hash
-- comes back 250 plays (12 500 logs) later, after the window (10 000
-- logs) forgot it, and a full collection every 50 plays has taken back
-- whatever string was made of it.
local uniq = os.getenv("UNIQ") == "1"
local feed = {}
for i = 2, #lines do feed[#feed + 1] = lines[i] end
local notes = #feed
local PLAYS, GC_EVERY = 250, 50 * notes
if uniq then
  local rnd = 2463534242
  local function digits()
    local out = {}
    for k = 1, 8 do
      rnd = bit.bxor(rnd, bit.lshift(rnd, 13))
      rnd = bit.bxor(rnd, bit.rshift(rnd, 17))
      rnd = bit.bxor(rnd, bit.lshift(rnd, 5))
      out[k] = bit.tohex(rnd, 8)
    end
    return table.concat(out)
  end
  local plays = {}
  for p = 1, PLAYS do
    local new = {}
    local function renamed(key, h)
      new[h] = new[h] or digits()
      return key .. new[h]
    end
    for i = 1, notes do
      plays[#plays + 1] = (feed[i]:gsub('("blockHash":"0x)(%x+)', renamed)
                                  :gsub('("transactionHash":"0x)(%x+)', renamed))
    end
  end
  feed = plays
end
local nfeed = #feed

local function run_at(n, stopped)
  for r = 1, n do
    if uniq and not stopped and r % GC_EVERY == 0 then collectgarbage("collect") end
    local s = feed[r % nfeed + 1]
    local a = abi.envelope_at(s, sub_id, at)
    local e = a == at and not a.removed and abi.decode_at(s, at, reg, ev_at)
    if e and wire.positions_fit(e) then
      put_hashes(s, at.blockHash + 3, s, at.transactionHash + 3)
      if not window:seen_bytes(HASHES, e.logIndex, false) then
        if e.kind == "v2_sync" then wire.fill_sync_at(state, s, at, e, r, 0, true)
        else wire.fill_swap_at(swap, s, at, e, r, 0, true) end
      end
    end
  end
end

local function run_view(n, stopped)
  for r = 1, n do
    if uniq and not stopped and r % GC_EVERY == 0 then collectgarbage("collect") end
    local v = abi.envelope(feed[r % nfeed + 1], sub_id, view)
    local e = v and v.removed == false and abi.decode(v, reg, ev)
    if e and wire.positions_fit(e) then
      put_hashes(e.blockHash, 3, e.txHash, 3)
      if not window:seen_bytes(HASHES, e.logIndex, false) then
        if e.kind == "v2_sync" then wire.fill_sync(state, e, r, 0, true)
        else wire.fill_swap(swap, e, r, 0, true) end
      end
    end
  end
end

local run = os.getenv("ROUTE") == "view" and run_view or run_at
local N = tonumber(arg[1] or 500000)
-- The adapter's collector pause (bandit.wire.gc_pause's default).
collectgarbage("setpause", 400)
run(200000)
-- Under callgrind with --dump-before=getppid, the N lines make a dump of
-- their own (callgrind.out.2): the warm-up's and the start's
-- instructions, which vary with the traces compiled, stay out of it.
ffi.cdef "int getppid(void);"
ffi.C.getppid()
local t0 = os.clock()
run(N)
local t = os.clock() - t0
ffi.C.getppid()
-- Allocation apart, with the collector stopped: what the collector would
-- have to take back.
collectgarbage("collect")
collectgarbage("stop")
local k0 = collectgarbage("count")
-- With UNIQ=1, no more than the collector would have taken back.
local M = uniq and GC_EVERY or 100000
run(M, true)
local k = collectgarbage("count") - k0
io.write(string.format("%.0f ns CPU per line (%d lines), %.1f Lua bytes "
                       .. "allocated per line\n", t / N * 1e9, N, k * 1024 / M))
