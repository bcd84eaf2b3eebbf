-- bandit_steady.lua WARM PLAYS -- Bandit's steady state in one thread,
-- for instruction counts: PolygonAdapter, MetadataService and the
-- detector in one mycelium.testing engine (manual mode), the sample
-- capture fed on bandit.raw one play per run(), WARM plays and then PLAYS
-- more. Prints the CPU time per event of the PLAYS and each service's
-- heap (memory_bytes, memory_peak). Under callgrind the difference
-- between two runs (PLAYS = 0 and N) is the N plays (docs/PERFORMANCE.md,
-- "Bandit flood: the collector's pause, the signal's trace"):
--   MYCELIUM_SOURCE_DIR=$PWD MYCELIUM_PATH=$PWD/lua \
--   MYCELIUM_LIB=build/libmycelium.so valgrind --tool=callgrind \
--     --smc-check=all-non-file luajit bench/bandit_steady.lua 200 400
-- P=<n> sets the adapter's and the detector's gc_pause; PA=<n> the
-- adapter's alone (PA=1000000: no collection starts in the adapter, and
-- its heap's growth over the PLAYS is what it allocated: printed as bytes
-- per event).
-- UNIQ=1 gives each play's hashes new last digits (a live chain's).
-- PROBE=alloc, cycles or cpu runs the detector under bench/bandit_probe.lua:
-- over the PLAYS, the Lua bytes it allocates per accepted log (collector
-- stopped), its collector's cycles, or its own CPU time per log.
local root = os.getenv("MYCELIUM_SOURCE_DIR")
package.path = table.concat({ root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  root .. "/services/?.lua", package.path }, ";")
local testing = require "mycelium.testing"
local bench = arg[0]:match("^(.*)/[^/]*$") or "."

local WARM, PLAYS = tonumber(arg[1] or 200), tonumber(arg[2] or 400)
local pause = tonumber(os.getenv("P"))
local adapter_pause = tonumber(os.getenv("PA")) or pause
local probe = os.getenv("PROBE")
local lines = {}
for l in io.lines(root .. "/examples/bandit/data/sample_capture.jsonl") do
  lines[#lines + 1] = l
end
-- Warm-ups take longer than their 5 s budget under valgrind.
local BUDGET = 300000
local eng = testing.engine {
  contracts = root .. "/services/contracts.yaml", start = false,
  log = { level = "error" }, mailbox = { capacity = 65536 },
  services = {
    { name = "polygon", module = root .. "/services/polygon_adapter.lua",
      load_timeout_ms = BUDGET, opts = { source = "topic", gc_pause = adapter_pause } },
    { name = "metadata", module = root .. "/services/metadata_service.lua",
      load_timeout_ms = BUDGET },
    { name = "arb", module = probe and bench .. "/bandit_probe.lua"
        or root .. "/services/arbitrage_detector.lua",
      load_timeout_ms = BUDGET,
      opts = { latency_samples = 200000, gc_pause = pause, probe = probe,
               probe_from = WARM * 50, probe_to = (WARM + PLAYS) * 50 } },
  } }
eng:start()

-- UNIQ=1: each play's block and transaction hashes end in the play's
-- number, as on a live chain where no hash recurs (else every hash of
-- the capture is found already interned from the play before).
local uniq, nplay = os.getenv("UNIQ") == "1", 0
local HASH = "(Hash\":\"0x" .. string.rep("%x", 56) .. ")%x%x%x%x%x%x%x%x"

local function play(n)
  for _ = 1, n do
    nplay = nplay + 1
    local tag = "%1" .. string.format("%08x", nplay)
    for i = 2, #lines do
      eng:publish("bandit.raw", uniq and (lines[i]:gsub(HASH, tag)) or lines[i])
    end
    eng:run()
  end
end

eng:publish("bandit.raw", lines[1]) -- the subscription reply
play(WARM)
local heap0 = eng:stats("polygon").memory_bytes
local t0 = os.clock()
play(PLAYS)
local t = os.clock() - t0
-- The sample has 50 accepted logs per play.
io.write(string.format("%.3f us CPU per event (%d plays, %d events)\n",
                       PLAYS > 0 and t / (PLAYS * 50) * 1e6 or 0, PLAYS, PLAYS * 50))
if PLAYS > 0 then
  io.write(string.format("polygon heap growth %.1f bytes per event\n",
    (eng:stats("polygon").memory_bytes - heap0) / (PLAYS * 50)))
end
for _, n in ipairs { "polygon", "arb" } do
  local st = eng:stats(n)
  io.write(string.format("%s memory %.1f MB peak %.1f MB\n", n,
                         st.memory_bytes / 2 ^ 20, st.memory_peak / 2 ^ 20))
end
eng:close()
