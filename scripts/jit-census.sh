#!/bin/sh
# jit-census.sh DIR -- counts the traces and aborts of each service's
# MYC_JIT_LOG file in DIR (docs/TUNING.md): cold (the first 2000 ms of the
# service's Lua state, or after its warm-up when it has one: of its
# traffic) and steady (after), the warm-up's own, the milliseconds spent
# recording and compiling in each part (what a handler that met a hot
# path paid between two messages), and the steady aborts by reason.
[ -d "${1:-}" ] || { echo "usage: $0 DIR (the MYC_JIT_LOG directory)" >&2; exit 2; }
for f in "$1"/*.jitv; do
  awk -v f="$(basename "$f" .jitv)" '
    { t = substr($1, 2) + 0; d = ($4 == "us") ? $3 / 1000 : 0 }
    /\[MARK warm-up\]/ { w = 1; next }
    /\[MARK traffic\]/ { w = 0; next }
    /TRACE/ && w { dw += d }
    /TRACE/ && !w { if (t < 2000) dc += d; else ds += d }
    /TRACE ---/ && w { aw++; next }
    /TRACE +[0-9]+ / && w { tw++; next }
    /TRACE ---/ { if (t < 2000) ac++; else { as++; sub(/^.*-- /, ""); r[$0]++ } }
    /TRACE +[0-9]+ / { if (t < 2000) tc++; else ts++ }
    END {
      printf "%-10s traces %6d cold %6d steady | aborts %6d cold %6d steady",
             f, tc, ts, ac, as
      printf " | compiling %.1f ms cold %.1f ms steady", dc, ds
      if (tw + aw > 0) printf " | warm-up: traces %d aborts %d, %.1f ms", tw, aw, dw
      printf "\n"
      for (k in r) printf "    %6d  %s\n", r[k], k
    }' "$f" | { read -r head; echo "$head"; sort -rn | head -8; }
done
