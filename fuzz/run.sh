#!/bin/sh
# fuzz/run.sh BUILD_DIR TARGET [libFuzzer options...]
#
# Runs the libFuzzer target TARGET (built in BUILD_DIR/fuzz by `make
# build` when clang is installed) from its seed corpus fuzz/corpus/TARGET.
# New inputs go to BUILD_DIR/fuzz/corpus/TARGET, never into the seeds;
# a crashing input to BUILD_DIR/fuzz/artifacts/.  Examples:
#   fuzz/run.sh build url -runs=100000        # what ctest runs (label fuzz)
#   fuzz/run.sh build contract -runs=10000000 # a long run
set -eu
[ $# -ge 2 ] || { echo "usage: fuzz/run.sh BUILD_DIR TARGET [options...]" >&2; exit 2; }
build=$1 target=$2
shift 2
seeds="$(cd "$(dirname "$0")" && pwd)/corpus/$target"
bin="$build/fuzz/$target"
[ -x "$bin" ] || { echo "fuzz/run.sh: $bin not built (is clang installed? scripts/deps.sh)" >&2; exit 1; }
mkdir -p "$build/fuzz/corpus/$target" "$build/fuzz/artifacts"
exec "$bin" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
  -artifact_prefix="$build/fuzz/artifacts/$target-" "$@" \
  "$build/fuzz/corpus/$target" "$seeds"
