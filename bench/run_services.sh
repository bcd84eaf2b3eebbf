#!/usr/bin/env bash
# run_services.sh -- how long `mycelium run` takes to start a config of N
# trivial services (bench/lua/trivial.lua, two workers): from the exec to
# the "started" log line, the CPU time the process used by then (its
# threads: user + system), the CPU time of its main thread alone (the
# critical path when the loads run on loader threads beside it: about the
# start time on an idle machine with a core per loader) and its RSS then.  Each run is a fresh
# process; prints every run, then min / median / max.
#
#   bench/run_services.sh [MYCELIUM_BIN] [N] [RUNS]
#
# Defaults: build/mycelium, 10000 services, 5 runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/mycelium}
n=${2:-10000}
runs=${3:-5}
dir=$(mktemp -d /tmp/myc_run_services.XXXXXX)
trap 'rm -rf "$dir"' EXIT

cp "$here/lua/trivial.lua" "$dir/trivial.lua"
cat > "$dir/mycelium.lua" <<LUA
local services = {}
for i = 1, $n do
  services[i] = { name = "svc" .. i, module = "trivial.lua" }
end
return { workers = 2, reload = "off", services = services }
LUA

secs=()
cpus=()
mains=()
rss=()
for r in $(seq 1 "$runs"); do
  log="$dir/run$r.log"
  : > "$log"
  t0=$(date +%s.%N)
  "$bin" run "$dir/mycelium.lua" 2> "$log" &
  pid=$!
  until grep -q "started: " "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run_services: mycelium exited before starting:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.02
  done
  t1=$(date +%s.%N)
  kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  # utime and stime, fields 14 and 15 (after the ')' closing the name).
  ticks=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
  c=$(echo "$ticks / $(getconf CLK_TCK)" | bc -l)
  mticks=$(sed 's/^.*) //' "/proc/$pid/task/$pid/stat" | awk '{ print $12 + $13 }')
  mc=$(echo "$mticks / $(getconf CLK_TCK)" | bc -l)
  kill -TERM "$pid"
  wait "$pid" || true
  s=$(echo "$t1 - $t0" | bc -l)
  printf 'run %d: %d services started in %.2f s (CPU %.2f s, main thread %.2f s), RSS %.0f MB (%.1f KB per service)\n' \
    "$r" "$n" "$s" "$c" "$mc" "$(echo "$kb / 1024" | bc -l)" "$(echo "$kb / $n" | bc -l)"
  secs+=("$s")
  cpus+=("$c")
  mains+=("$mc")
  rss+=("$kb")
done

summary() { # name unit values...
  local name=$1 unit=$2
  shift 2
  printf '%s\n' "$@" | sort -g | awk -v name="$name" -v unit="$unit" '
    { v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%s: min %.2f, median %.2f, max %.2f %s\n", name, v[1], m, v[NR], unit }'
}
summary "start of $n services" s "${secs[@]}"
summary "CPU time to start" s "${cpus[@]}"
summary "CPU time of the main thread" s "${mains[@]}"
summary "RSS at start" KB "${rss[@]}"
echo "CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) vCPU"
