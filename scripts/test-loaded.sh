#!/usr/bin/env bash
# Runs the whole suite of a build directory RUNS times in a row on a loaded
# machine: two busy loops keep every core of a 2-core machine busy during
# each run, as a CI machine shared with other jobs may be.  Stops at the
# first failing run.  Prints one line per run and exits 0 only when every
# run passed.
#
#   scripts/test-loaded.sh [BUILD_DIR] [RUNS]     (default: build 20)
set -uo pipefail
build=${1:-build}
runs=${2:-20}
[ -f "$build/CTestTestfile.cmake" ] || {
  echo "test-loaded: $build is not a configured build (cmake -S . -B $build)" >&2
  exit 2
}
log=$(mktemp -d)
busy=()
stop_busy() { [ ${#busy[@]} -gt 0 ] && kill "${busy[@]}" 2>/dev/null; busy=(); }
trap 'stop_busy; rm -rf "$log"' EXIT
for i in $(seq 1 "$runs"); do
  sh -c 'while :; do :; done' & busy+=($!)
  sh -c 'while :; do :; done' & busy+=($!)
  start=$(date +%s)
  (cd "$build" && CI=1 ctest -j2 --timeout 900 > "$log/run-$i.log" 2>&1)
  rc=$?
  stop_busy
  echo "run $i/$runs: exit $rc after $(( $(date +%s) - start )) s," \
       "load $(cut -d' ' -f1-3 /proc/loadavg):" \
       "$(grep -E 'tests passed|tests failed' "$log/run-$i.log")"
  if [ $rc -ne 0 ]; then
    grep -E '^\s+[0-9]+ - ' "$log/run-$i.log"
    cp "$log/run-$i.log" "$build/test-loaded-failed.log"
    echo "test-loaded: the whole log is in $build/test-loaded-failed.log"
    exit 1
  fi
done
