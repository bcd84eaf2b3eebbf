-- bench_table.lua -- reduces the load test's runs (./bench) to one point
-- per (mode, rate): min/median/max of accepted events/s and of the
-- arrival -> signal p50/p99/p999. Prints a table and "RESULT" lines
-- (for myc-bench), writes the medians as JSON lines and a gnuplot data
-- file (one block per mode).
--   luajit bench_table.lua RUNS.jsonl OUT.jsonl OUT.dat HOST CPU
local cjson = require "cjson"
local runs_path, jsonl_path, dat_path, host, cpu = ...
local format = string.format

local MODES = { "single", "unix", "tcp" }
local RATES = { "1000", "10000", "50000", "100000", "flood" }
local KEYS = { "events_per_s", "p50_us", "p99_us", "p999_us" }

local points = {}
for line in io.lines(runs_path) do
  local r = cjson.decode(line)
  local k = r.mode .. " " .. r.rate
  points[k] = points[k] or { mode = r.mode, rate = r.rate, runs = {} }
  table.insert(points[k].runs, r)
end

-- Over the runs that measured: one whose end was lost ("end_lost", no
-- numbers) makes its point incomplete and is counted in "lost".
local function stats(runs, key)
  local v = {}
  for _, r in ipairs(runs) do
    if r[key] ~= nil then v[#v + 1] = r[key] end
  end
  if #v == 0 then return { min = 0, median = 0, max = 0 } end
  table.sort(v)
  return { min = v[1], median = v[math.floor((#v + 1) / 2)], max = v[#v] }
end

local jf = assert(io.open(jsonl_path, "w"))
local df = assert(io.open(dat_path, "w"))
print(format("host %s, cpu %s", host, cpu))
print(format("%-7s %-7s %4s %28s %26s %26s %26s %s", "mode", "rate", "runs",
             "events/s min/med/max", "p50 us", "p99 us", "p999 us",
             "complete (runs whose end was lost)"))
for mi, mode in ipairs(MODES) do
  df:write(format("# %s\n", mode))
  for ri, rate in ipairs(RATES) do
    local p = points[mode .. " " .. rate]
    if p then
      local s, complete, lost = {}, true, 0
      for _, k in ipairs(KEYS) do s[k] = stats(p.runs, k) end
      for _, r in ipairs(p.runs) do
        complete = complete and r.complete
        if r.end_lost then lost = lost + 1 end
      end
      local function mmm(k, f)
        return format(f .. "/" .. f .. "/" .. f, s[k].min, s[k].median, s[k].max)
      end
      print(format("%-7s %-7s %4d %28s %26s %26s %26s %s", mode, rate, #p.runs,
                   mmm("events_per_s", "%.0f"), mmm("p50_us", "%.0f"),
                   mmm("p99_us", "%.0f"), mmm("p999_us", "%.0f"),
                   tostring(complete) .. (lost > 0 and format(" (%d)", lost) or "")))
      print(format("RESULT %s %s %.1f %.1f %.1f %.1f %d", mode, rate,
                   s.events_per_s.median, s.p50_us.median, s.p99_us.median,
                   s.p999_us.median, complete and 1 or 0))
      jf:write(cjson.encode { bench = "pipeline", mode = mode, rate = rate,
        runs = #p.runs, events_per_s = s.events_per_s, p50_us = s.p50_us,
        p99_us = s.p99_us, p999_us = s.p999_us, complete = complete, end_lost = lost,
        host = host, cpu = cpu }, "\n")
      df:write(format("%d %s %.1f %.1f %.1f %.1f\n", ri, rate,
                      s.events_per_s.median, s.p50_us.median,
                      s.p99_us.median, s.p999_us.median))
    end
  end
  df:write(mi < #MODES and "\n\n" or "\n")
end
jf:close()
df:close()
