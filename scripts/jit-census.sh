#!/bin/sh
# jit-census.sh DIR -- counts the traces and aborts of each service's
# MYC_JIT_LOG file in DIR (docs/TUNING.md): cold (the first 2000 ms of the
# service's Lua state) and steady (after), and the steady aborts by reason.
[ -d "${1:-}" ] || { echo "usage: $0 DIR (the MYC_JIT_LOG directory)" >&2; exit 2; }
for f in "$1"/*.jitv; do
  awk -v f="$(basename "$f" .jitv)" '
    { t = substr($1, 2) + 0 }
    /TRACE ---/ { if (t < 2000) ac++; else { as++; sub(/^.*-- /, ""); r[$0]++ } }
    /TRACE +[0-9]+ / { if (t < 2000) tc++; else ts++ }
    END {
      printf "%-10s traces %6d cold %6d steady | aborts %6d cold %6d steady\n",
             f, tc, ts, ac, as
      for (k in r) printf "    %6d  %s\n", r[k], k
    }' "$f" | { read -r head; echo "$head"; sort -rn | head -8; }
done
