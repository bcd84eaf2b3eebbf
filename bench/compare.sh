#!/usr/bin/env bash
# Compares two builds of myc-bench on the same machine, alternating them
# so that both see the same background load:
#   bench/compare.sh OLD/bench/myc-bench NEW/bench/myc-bench [ROUNDS] [SCENARIO...]
# Prints, per metric, min / median / max of each build over the rounds and
# the ratio of the medians (new / old).
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
shift 2; [ $# -gt 0 ] && shift
scenarios=${*:-emit workers typed reload bandit}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for which in old new; do
    bin=$old; [ $which = new ] && bin=$new
    # shellcheck disable=SC2086
    BENCH_RESULTS=$out/${which}_$r.jsonl "$bin" $scenarios > "$out/${which}_$r.txt" 2>&1
  done
done
luajit "$(dirname "$0")/compare.lua" "$out" "$rounds"
