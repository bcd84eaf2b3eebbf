#!/usr/bin/env bash
# Installs the engine from a copy of the tree with `cmake --install --prefix`,
# removes the sources and the build, moves the installed tree elsewhere, and
# checks that what an embedder uses still works there: a host program
# built with pkg-config, one built with CMake's find_package, and the
# `mycelium` binary, none of them told where the Lua runtime is.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
if git -C "$src" rev-parse >/dev/null 2>&1; then
  git -C "$src" ls-files -z | (cd "$src" && xargs -0 cp --parents -t "$work/src")
else
  cp -r "$src/." "$work/src"
fi
cmake -S "$work/src" -B "$work/build" -DMYC_BUILD_TESTS=OFF -DMYC_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=Release > "$work/configure.log" 2>&1 || {
  tail -20 "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j "$(nproc)" --target libmycelium mycelium \
  > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
cmake --install "$work/build" --prefix "$work/prefix" > "$work/install.log" 2>&1 || {
  tail -20 "$work/install.log"; exit 1; }
# Everything went under the prefix.
if grep -v "^$work/prefix/" "$work/build/install_manifest.txt"; then
  echo "install wrote outside the prefix (above)"; exit 1
fi
# The embedding example, to build against the install as docs/EMBEDDING.md
# says.
cp -r "$work/src/examples/embed" "$work/embed"
rm -rf "$work/src" "$work/build"
mv "$work/prefix" "$work/moved"
unset MYCELIUM_PATH MYCELIUM_LIB MYCELIUM_BIN MYCELIUM_SOURCE_DIR
export PKG_CONFIG_PATH="$work/moved/lib/pkgconfig"

mkdir "$work/host"
cd "$work/host"
cat > echo.lua <<'LUA'
return { subscribe = { "in" },
         on_message = function(ctx, msg) ctx:emit("out", msg.data .. "!") end }
LUA
cat > host.c <<'C'
#include <mycelium.h>
#include <stdio.h>
#include <string.h>

static char got[64];

static void on_out(void *ud, const myc_message *m) {
  (void)ud;
  snprintf(got, sizeof got, "%.*s", (int)m->len, (const char *)m->data);
}

int main(void) {
  myc_engine_config cfg;
  myc_service_config sc;
  myc_engine *e;
  char err[512];
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  memset(&sc, 0, sizeof sc);
  sc.name = "echo";
  sc.module = "echo.lua";
  sc.worker = -1;
  if (myc_engine_new(&e, &cfg) != 0 ||
      myc_engine_add_service(e, &sc, err, sizeof err) != 0 ||
      myc_engine_add_c_service(e, "sink", "out", on_out, NULL, -1) != 0 ||
      myc_engine_start(e, err, sizeof err) != 0) {
    fprintf(stderr, "host: %s\n", err);
    return 1;
  }
  myc_publish(e, "in", MYC_KIND_RAW, 0, "hi", 2);
  myc_engine_stop(e, 0);
  myc_engine_run(e, 0);
  myc_engine_free(e);
  printf("%s\n", got);
  return strcmp(got, "hi!") != 0;
}
C
# shellcheck disable=SC2046
cc -std=c11 -Wall -o host_pc host.c $(pkg-config --cflags --libs mycelium) \
  -Wl,-rpath,"$(pkg-config --variable=libdir mycelium)"
out=$(./host_pc)
[ "$out" = "hi!" ] || { echo "pkg-config host printed: $out"; exit 1; }

# examples/embed against the install, with pkg-config then with its own
# CMakeLists.txt (find_package).
(
  cd "$work/embed"
  # shellcheck disable=SC2046
  cc -Wall -o embed_host host.c \
    $(pkg-config --cflags --libs mycelium libuv msgpack) \
    -Wl,-rpath,"$(pkg-config --variable=libdir mycelium)"
  ./embed_host > embed.out || { cat embed.out; exit 1; }
  cmake -S . -B b -DCMAKE_PREFIX_PATH="$work/moved" > cmake.log 2>&1 || {
    tail -20 cmake.log; exit 1; }
  cmake --build b > build.log 2>&1 || { tail -20 build.log; exit 1; }
  ./b/embed_host > embed-cmake.out || { cat embed-cmake.out; exit 1; }
)

cat > CMakeLists.txt <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(host C)
find_package(mycelium 0.2 REQUIRED)
add_executable(host_cmake host.c)
target_link_libraries(host_cmake PRIVATE mycelium::mycelium)
CMAKE
cmake -S . -B b -DCMAKE_PREFIX_PATH="$work/moved" > cmake.log 2>&1 || {
  tail -20 cmake.log; exit 1; }
cmake --build b > cmake-build.log 2>&1 || { tail -20 cmake-build.log; exit 1; }
out=$(./b/host_cmake)
[ "$out" = "hi!" ] || { echo "find_package host printed: $out"; exit 1; }

printf 'return { init = function(ctx) print("ran " .. ctx.name) ctx:shutdown(0) end }\n' > svc.lua
out=$("$work/moved/bin/mycelium" run svc.lua)
[ "$out" = "ran svc" ] || { echo "installed binary printed: $out"; exit 1; }
echo "install: prefix-only, relocatable; pkg-config, find_package, examples/embed and the binary work"
