#!/usr/bin/env bash
# Builds and installs the rock into a throw-away luarocks tree, then checks
# that the installed pieces work without the source tree: the binary runs
# a service, and `require "mycelium.testing"` from the tree runs an engine.
set -euo pipefail
if ! command -v luarocks >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then
    echo "luarocks is not installed and CI is set: run scripts/deps.sh" >&2
    exit 1
  fi
  echo "luarocks is not installed: skipped (scripts/deps.sh installs it)" >&2
  exit 77
fi
src=$(cd "$(dirname "$0")/.." && pwd)
tree=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$tree" "$work"' EXIT
# Build from a copy: luarocks builds inside the source directory.
mkdir "$work/src"
if git -C "$src" rev-parse >/dev/null 2>&1; then
  git -C "$src" ls-files -z | (cd "$src" && xargs -0 cp --parents -t "$work/src")
else
  cp -r "$src/." "$work/src"
fi
cd "$work/src"
luarocks make --lua-version=5.1 --tree "$tree" LUA_INCDIR=/usr/include/luajit-2.1 \
  rockspec/mycelium-scm-1.rockspec > "$work/build.log" 2>&1 || {
  tail -40 "$work/build.log"; exit 1; }
cd "$work"
# Nothing may come from the sources any more.
rm -rf "$work/src"
unset MYCELIUM_PATH MYCELIUM_LIB MYCELIUM_BIN MYCELIUM_SOURCE_DIR
printf 'return { init = function(ctx) print("ran " .. ctx.name) ctx:shutdown(0) end }\n' > svc.lua
out=$("$tree/bin/mycelium" run svc.lua)
[ "$out" = "ran svc" ] || { echo "installed binary printed: $out"; exit 1; }
cat > t.lua <<'LUA'
local testing = require "mycelium.testing"
local eng = testing.engine { services = { { name = "e", module = testing.module [[
return { subscribe = { "a" }, on_message = function(ctx, m) ctx:emit("b", m.data .. "!") end }]] } } }
local c = eng:collect("b")
eng:publish("a", "hi")
eng:run()
assert(c:messages()[1].data == "hi!")
eng:close()
testing.cleanup()
print("testing ok")
LUA
LUA_PATH="$tree/share/lua/5.1/?.lua;;" LUA_CPATH="$tree/lib/lua/5.1/?.so;;" luajit t.lua
# A C host linked against the rock's library finds the Lua runtime of the
# rock by itself.
header=$(find "$tree" -name mycelium.h | head -1)
[ -n "$header" ] || { echo "the rock installed no mycelium.h"; exit 1; }
cat > host.c <<'C'
#include <mycelium.h>
#include <stdio.h>
int main(void) {
  myc_engine_config cfg;
  myc_service_config sc = {0};
  myc_engine *e;
  char err[512];
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  sc.name = "svc";
  sc.module = "svc.lua";
  sc.worker = -1;
  if (myc_engine_new(&e, &cfg) != 0 ||
      myc_engine_add_service(e, &sc, err, sizeof err) != 0 ||
      myc_engine_start(e, err, sizeof err) != 0) {
    fprintf(stderr, "host: %s\n", err);
    return 1;
  }
  return myc_engine_run(e, 0);
}
C
cc -std=c11 -o host host.c -I"$(dirname "$header")" -L"$tree/lib/lua/5.1" -lmycelium \
  -Wl,-rpath,"$tree/lib/lua/5.1"
out=$(./host)
[ "$out" = "ran svc" ] || { echo "host on the rock's library printed: $out"; exit 1; }
echo "rock: binary, mycelium.testing and an embedding host work"
