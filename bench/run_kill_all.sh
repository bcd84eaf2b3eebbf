#!/usr/bin/env bash
# run_kill_all.sh -- CPU time of killing N services one by one
# (bench/kill_all/kill_all.c), for each build given, alternating builds
# run by run: N = 2 000 (RUNS runs) and 10 000 (one run each).
#
#   bench/run_kill_all.sh BUILD_DIR [BUILD_DIR...]
#
# RUNS=3 by default; SIZES="2000 10000" by default.
#
# A BUILD_DIR is a configured and built tree (its libmycelium.so); the
# headers are taken from the tree above it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-3}
dir=$(mktemp -d /tmp/myc_kill_all.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp "$here/lua/trivial.lua" "$dir/trivial.lua"
k=0
for b in "$@"; do
  b=$(cd "$b" && pwd)
  cc -O2 -o "$dir/kill_all$k" "$here/kill_all/kill_all.c" \
    -I"$b/../engine/include" -L"$b" -lmycelium -Wl,-rpath,"$b" -lpthread
  k=$((k + 1))
done
for n in ${SIZES:-2000 10000}; do
  r=$([ "$n" = 2000 ] && echo "$runs" || echo 1)
  for i in $(seq 1 "$r"); do
    k=0
    for b in "$@"; do
      echo "$b: $("$dir/kill_all$k" "$n" "$dir/trivial.lua")"
      k=$((k + 1))
    done
  done
done
