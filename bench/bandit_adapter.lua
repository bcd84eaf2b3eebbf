-- bandit_adapter.lua [N] -- PolygonAdapter's own Lua work per line,
-- without the engine: the sample capture's notifications scanned
-- (bandit.abi.envelope_at into one set of positions), decoded where they
-- lie (into one event), checked against the duplicate window and filled
-- into a SwapEvent or PoolStateUpdate struct (bandit.wire), as the
-- adapter's handler does before its ctx:new and emit. ROUTE=view takes
-- the route of text in any other layout instead (a view of strings cut
-- out of the text: bandit.abi.envelope, decode, fill_sync/fill_swap). Prints the CPU time per line over N lines
-- (default 500 000) after a warm-up, with the adapter's collector pause,
-- and the Lua bytes allocated per line over 100 000 more with the
-- collector stopped (the lines repeat: their strings are found interned,
-- not allocated, as in myc-bench's replayed floods). Under callgrind the
-- difference between N = 0 and N is the N lines:
--   MYCELIUM_SOURCE_DIR=$PWD MYCELIUM_LIB=build/libmycelium.so \
--     luajit bench/bandit_adapter.lua
local root = os.getenv("MYCELIUM_SOURCE_DIR")
package.path = table.concat({ root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  root .. "/services/?.lua", package.path }, ";")
local ffi = require "ffi"
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
local notes = #lines - 1

local function run_at(n)
  for r = 1, n do
    local s = lines[r % notes + 2]
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

local function run_view(n)
  for r = 1, n do
    local v = abi.envelope(lines[r % notes + 2], sub_id, view)
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
local t0 = os.clock()
run(N)
local t = os.clock() - t0
-- Allocation apart, with the collector stopped: what the collector would
-- have to take back.
collectgarbage("collect")
collectgarbage("stop")
local k0 = collectgarbage("count")
run(100000)
local k = collectgarbage("count") - k0
io.write(string.format("%.0f ns CPU per line (%d lines), %.1f Lua bytes "
                       .. "allocated per line\n", t / N * 1e9, N, k * 1024 / 100000))
