-- bandit_probe.lua -- a service module that runs the detector
-- ($MYCELIUM_SOURCE_DIR/services/arbitrage_detector.lua) and counts, in
-- its own Lua state, what its handlers allocate: from its
-- opts.probe_from-th accepted log after the warm-up to its
-- opts.probe_to-th (retractions between them included), the Lua heap grown
-- with the collector stopped (opts.probe = "alloc") or the collector's
-- cycles completed with it running as the service set it
-- (opts.probe = "cycles"), or the CPU time spent in its handlers
-- (opts.probe = "cpu", os.clock: the detector's own, apart from the
-- services it shares the thread with in a mycelium.testing engine);
-- printed on stdout once, at probe_to.
-- bench/bandit_steady.lua runs the detector under it with PROBE=alloc,
-- PROBE=cycles or PROBE=cpu.
local format, write, clock = string.format, io.write, os.clock

local cpu, timing = 0, false

local M = {}
local src = os.getenv("MYCELIUM_SOURCE_DIR")
-- The engine puts a module's own directory on package.path: this one's
-- is bench/, the detector's modules are in services/.
package.path = src .. "/services/?.lua;" .. package.path
local mod = dofile(src .. "/services/arbitrage_detector.lua")
local mode, from, to
local seen, warm = 0, false
local kb0, cycles = 0, 0

-- A finaliser that re-arms itself counts the cycles that completed.
local function sentinel()
  local p = newproxy(true)
  getmetatable(p).__gc = function()
    cycles = cycles + 1
    sentinel()
  end
end

local function count()
  if not warm then return end
  seen = seen + 1
  if seen == from then
    cpu, timing = 0, mode == "cpu"
    if mode == "alloc" then
      collectgarbage("collect")
      collectgarbage("stop")
    else
      cycles = 0
    end
    kb0 = collectgarbage("count")
  elseif seen == to then
    local n = to - from
    timing = false
    if mode == "cpu" then
      write(format("probe: %d logs, %.3f us of the detector's CPU per log\n",
                   n, cpu / n * 1e6))
    elseif mode == "alloc" then
      write(format("probe: %d logs, %.1f bytes allocated per log\n",
                   n, (collectgarbage("count") - kb0) * 1024 / n))
      collectgarbage("restart")
    else
      write(format("probe: %d logs, %d GC cycles (%.2f per 10 000)\n",
                   n, cycles, cycles * 1e4 / n))
    end
  end
end

local T = require("bandit.wire").TOPICS
M.handlers = {}
for topic, fn in pairs(mod.handlers) do
  local log = topic == T.enriched_state or topic == T.enriched_swap
  M.handlers[topic] = function(c, msg)
    if timing then
      local t = clock()
      fn(c, msg)
      cpu = cpu + clock() - t
    else
      fn(c, msg)
    end
    if log then count() end
  end
end

function M.init(ctx, opts)
  mode, from, to = opts.probe, opts.probe_from, opts.probe_to
  if mode == "cycles" then sentinel() end
  return mod.init(ctx, opts)
end

function M.warmup(ctx, w)
  if mod.warmup then mod.warmup(ctx, w) end
  warm = true
end

return M
