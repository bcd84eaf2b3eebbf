#!/bin/sh
# bench/callgrind_ws_flood.sh MYC_BENCH OUT -- the WebSocket flood of
# `myc-bench bandit` (its first scenario) under callgrind, dumped and
# stopped as soon as the flood's rows are printed (the paced rows cannot
# keep their pace under valgrind).  BENCH_SCALE=0.01: 3 runs of 200 plays
# of the capture, 35 400 notifications.  Writes OUT.txt (the rows),
# OUT.err and OUT.cg.1; then, e.g.:
#   callgrind_annotate --inclusive=yes --threshold=100 OUT.cg.1 |
#     grep -E 'wslay_event_recv|myc__ws_recv_feed|utf8_check|on_stream_data'
# On a loaded machine the adapter's load may pass its 5 s budget under
# callgrind: the bench then says so and this script waits; rerun.
set -u
[ $# -eq 2 ] || { echo "usage: $0 MYC_BENCH OUT" >&2; exit 2; }
BENCH=$1 OUT=$2
BENCH_TIMEOUT_S=0 BENCH_SCALE=0.01 valgrind --tool=callgrind --callgrind-out-file="$OUT.cg" \
  "$BENCH" bandit > "$OUT.txt" 2> "$OUT.err" &
PID=$!
while ! grep -q ws_flood_signal_latency_p99 "$OUT.txt" 2>/dev/null; do
  sleep 2
  kill -0 $PID 2>/dev/null || exit 1
done
callgrind_control -d $PID > /dev/null
sleep 2
for c in $(pgrep -P $PID); do kill $c; done
kill -9 $PID
