#!/usr/bin/env bash
# Builds the engine with -DMYC_WITH_NET=OFF, as an embedder who wants no
# network clients would, and checks that the library links none of their
# dependencies and exports the public API and no FFI function.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cmake -S "$src" -B "$build" -DMYC_WITH_NET=OFF -DMYC_BUILD_TESTS=OFF \
  -DMYC_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug > "$build/configure.log" 2>&1 || {
  tail -20 "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target libmycelium mycelium \
  > "$build/build.log" 2>&1 || { tail -40 "$build/build.log"; exit 1; }
if ldd "$build/libmycelium.so" | grep -E 'libssl|wslay|hiredis|libpq|http_parser'; then
  echo "no-net build still links a network library"; exit 1
fi
luajit "$src/scripts/check-symbols.lua" "$build/libmycelium.so" "$src"
if nm -D --defined-only "$build/libmycelium.so" | grep -q myc_ffi_; then
  echo "no-net build exports FFI functions"; exit 1
fi
# The engine runs a service without net/.
printf 'return { init = function(ctx) print("ran " .. ctx.name) ctx:shutdown(0) end }\n' \
  > "$build/svc.lua"
out=$(MYCELIUM_PATH="$src/lua" "$build/mycelium" run "$build/svc.lua")
[ "$out" = "ran svc" ] || { echo "no-net binary printed: $out"; exit 1; }
echo "no-net build: ok"
