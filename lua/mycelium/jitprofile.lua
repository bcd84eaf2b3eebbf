-- mycelium.jitprofile -- LuaJIT's sampling profiler (jit.profile) in one
-- service's Lua state, its samples counted by function and by line and
-- written to a file when the state closes (docs/TUNING.md). Started by the
-- host when MYC_JIT_PROFILE is set.
--
-- LuaJIT has one profiler per process: its timer (SIGPROF, the process's
-- CPU time) and its state are global, and a second state's start does
-- nothing. So one service is profiled per run (MYC_JIT_PROFILE_SERVICE),
-- and the timer keeps ticking while the process runs anything else: such
-- a sample is taken when this state next runs, with the VM state the
-- state had when it last left (C), at the first line it runs then. Only
-- the samples in compiled code (N), the interpreter (I), the collector
-- (G) and the compiler (J) are this service's own time; the report keeps
-- C apart.
local profile = require "jit.profile"

local format, sort, concat, pairs, ipairs = string.format, table.sort,
  table.concat, pairs, ipairs
local dumpstack = profile.dumpstack

local M = {}

-- Frames a sample's inclusive counts look at: deep enough for a handler
-- under the host's dispatch, shallow enough to stay cheap per sample.
local DEPTH = 16

local STATES = { "N", "I", "G", "J", "C" }

-- Counts: key -> { [vmstate] = samples, total = samples }.
local function bump(t, key, vmstate, n)
  local c = t[key]
  if not c then
    c = { total = 0 }
    t[key] = c
  end
  c.total = c.total + n
  c[vmstate] = (c[vmstate] or 0) + n
end

local function top(t, limit)
  local rows = {}
  for k, c in pairs(t) do rows[#rows + 1] = { key = k, c = c } end
  sort(rows, function(a, b)
    if a.c.total ~= b.c.total then return a.c.total > b.c.total end
    return a.key < b.key
  end)
  local out = {}
  for i = 1, limit < #rows and limit or #rows do out[i] = rows[i] end
  return out
end

local function split(c)
  local parts = {}
  for _, s in ipairs(STATES) do
    if c[s] then parts[#parts + 1] = s .. " " .. c[s] end
  end
  return concat(parts, ", ")
end

--- Samples this state's code every `interval_ms` of process CPU time and
--- writes the counts to `path` when the state closes (or at M.stop()).
--- A state started after another one of the process gets no samples (its
--- file then says 0).
function M.start(path, interval_ms)
  local by_state, own, total = {}, 0, 0
  local self_fn, self_line, incl = {}, {}, {}
  profile.start(format("fli%d", interval_ms or 1), function(th, n, vmstate)
    total = total + n
    by_state[vmstate] = (by_state[vmstate] or 0) + n
    if vmstate ~= "C" then own = own + n end
    bump(self_line, dumpstack(th, "pl", 1), vmstate, n)
    bump(self_fn, dumpstack(th, "pF", 1), vmstate, n)
    -- Each function once per sample, however deep it recurses.
    local seen = {}
    for f in dumpstack(th, "pF\n", DEPTH):gmatch("[^\n]+") do
      if not seen[f] then
        seen[f] = true
        bump(incl, f, vmstate, n)
      end
    end
  end)
  local function write()
    profile.stop()
    local f = io.open(path, "w")
    if not f then return end
    f:write(format("# samples %d (asked every %d ms of the process's CPU "
                   .. "time); "
                   .. "this state's own (N, I, G, J) %d\n", total,
                   interval_ms or 1, own))
    local states = {}
    for _, s in ipairs(STATES) do
      states[#states + 1] = s .. " " .. (by_state[s] or 0)
    end
    f:write("# by VM state: " .. concat(states, ", ") .. "\n")
    local function section(title, t, limit)
      f:write("## " .. title .. "\n")
      for _, r in ipairs(top(t, limit)) do
        f:write(format("%8d  %5.1f%%  %s  (%s)\n", r.c.total,
                       total > 0 and 100 * r.c.total / total or 0, r.key,
                       split(r.c)))
      end
    end
    section("self, by function", self_fn, 60)
    section("inclusive, by function", incl, 60)
    section("self, by line", self_line, 80)
    f:close()
  end
  M.stop = function()
    M.stop = function() end
    write()
  end
  -- Written when the state closes: a userdata's finaliser runs then.
  local sentinel = newproxy(true)
  getmetatable(sentinel).__gc = function() M.stop() end
  M._sentinel = sentinel
end

--- Stops sampling and writes the file now (nothing once written).
function M.stop() end

return M
