-- bench_result.lua -- the load test's collector (./run --bench), in place
-- of the recorder: it renders nothing, it measures. For every signal it
-- keeps arrival -> signal (the adapter's CLOCK_MONOTONIC stamp at the
-- log's arrival against the detector's at the signal's emit: one clock
-- for every process of the machine); at the detector's end it prints one
-- JSON line on stdout and stops the engine:
--   {"events":N,"lines":N,"seconds":S,"events_per_s":R,"signals":N,
--    "p50_us":..,"p99_us":..,"p999_us":..,"max_us":..,"dropped":N}
-- seconds run from the adapter's first line to the detector's end
-- (every event counts; latencies skip the warm-up, below);
-- dropped sums this process's mailbox drops (./run adds the others').
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
package.path = here .. "/../../services/?.lua;" .. package.path
local ffi = require "ffi"
local wire = require "bandit.wire"

local T = wire.TOPICS
local cast, tonumber, format, sort, floor = ffi.cast, tonumber, string.format,
  table.sort, math.floor

local M = {}
local S

local function pct(v, q)
  if #v == 0 then return 0 end
  return v[floor(q * (#v - 1)) + 1] / 1e3
end

-- Signals of logs that arrived in the first opts.warmup_ms of the stream
-- are not counted: LuaJIT is still compiling the services' hot paths,
-- and a queue that builds then would be the cold start's, not the rate's.
local function on_signal(_, msg)
  local m = cast(S.Signal.ptr, (msg:bytes()))
  local arrival = tonumber(m.arrival_ns)
  S.t0 = S.t0 or arrival
  if arrival < S.t0 + S.warmup_ns then return end
  S.n = S.n + 1
  S.lat[S.n] = tonumber(m.emitted_ns) - arrival
end

local function on_end(ctx, msg)
  local det = msg.data
  local md = det.upstream or {}
  local ad = md.upstream or {}
  local seconds = (det.last_ns - (ad.first_ns or det.first_ns)) / 1e9
  local dropped = 0
  for _, name in ipairs(S.services) do
    local st = ctx:service_stats(name)
    dropped = dropped + (st and st.dropped or 0)
  end
  sort(S.lat)
  io.stdout:write(format('{"events":%d,"lines":%d,"seconds":%.6f,'
    .. '"events_per_s":%.1f,"signals":%d,"p50_us":%.1f,"p99_us":%.1f,'
    .. '"p999_us":%.1f,"max_us":%.1f,"dropped":%d}\n', det.events, ad.lines or 0,
    seconds, det.events / seconds, S.n, pct(S.lat, 0.5), pct(S.lat, 0.99),
    pct(S.lat, 0.999), pct(S.lat, 1), dropped))
  io.stdout:flush()
  ctx:shutdown(0)
end

M.handlers = { [T.signal] = on_signal, [T.end_detector] = on_end }

function M.init(ctx, opts)
  S = { n = 0, lat = {}, services = opts.services or { "arb" },
        warmup_ns = (opts.warmup_ms or 0) * 1e6,
        Signal = ctx.contracts:type("ArbitrageSignal") }
end

return M
