-- bench bandit result: waits for the detector's end of stream and reports
-- one line on bench.result.bandit for bench/bandit.c:
--   lines events signals seconds sig_p50 sig_p99 ev_p50 ev_p99 dropped
--   sig_p99_cold sig_p99_steady sig_n_cold sig_n_steady refused
-- seconds runs from the first line (fed, or received over WebSocket) to
-- the detector's end marker (the same CLOCK_MONOTONIC in every service); latencies are the
-- detector's, log arrival (the socket read that brought it, or the
-- adapter's handler for fed lines) to the signal / EventApplied emit, in
-- ns, over the whole run and split into its first 2 s (cold: the JIT is
-- compiling) and the rest; refused sums what every service's mailbox
-- refused at the sender, dropped what was lost at a mailbox (both must
-- be 0: the adapter pauses the socket on pressure).
local M = { subscribe = { "bandit.end.detector" } }

function M.on_message(ctx, msg)
  local d = msg.data
  local md = d.upstream or {}
  local ad = md.upstream or {}
  local fd = ad.upstream or {}
  -- From the feeder's first line, or the first message off the socket.
  local seconds = (d.last_ns - (fd.t0_ns or ad.first_ns)) / 1e9
  local dropped, refused = 0, 0
  for _, name in ipairs(ctx.opts.services) do
    local st = ctx:service_stats(name)
    -- A `reject` mailbox refuses at the sender (its emit returns false);
    -- the rest of `dropped` was lost at the mailbox itself.
    refused = refused + (st and st.rejected or 0)
    dropped = dropped + (st and st.dropped - st.rejected or 0)
  end
  local s, e = d.latency_ns.signal, d.latency_ns.event
  local sc, ss = d.latency_ns.signal_cold, d.latency_ns.signal_steady
  ctx:emit("bench.result.bandit", string.format(
    "%d %d %d %.9f %.0f %.0f %.0f %.0f %d %.0f %.0f %d %d %d",
    ad.lines, d.events, d.signals, seconds, s.p50 or 0, s.p99 or 0, e.p50 or 0,
    e.p99 or 0, dropped, sc.p99 or 0, ss.p99 or 0, sc.n, ss.n, refused))
end

return M
