/* jsonrpc.c -- fuzzes JSON-RPC message handling, which is Lua
 * (lua/mycelium/net/jsonrpc.lua, lua-cjson underneath): the target embeds
 * LuaJIT and runs the real module through jsonrpc.lua beside this file.
 * Any Lua error is a finding: a message from a node must never raise in
 * the service that reads it.
 *
 * Neither LuaJIT nor lua-cjson is built with coverage, so libFuzzer would
 * be blind here: a line hook counts which Lua lines ran into libFuzzer's
 * extra counters, which guides it through the module's branches (JIT
 * off, as hooks do not run in compiled code). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LINES 8192

__attribute__((
    used, section("__libfuzzer_extra_counters"))) static uint8_t lines[LINES];

static lua_State *L;
static int handler;

static void on_line(lua_State *S, lua_Debug *ar) {
  uintptr_t h;
  if (lua_getinfo(S, "S", ar) == 0)
    return;
  h = ((uintptr_t)ar->source >> 4) * 2654435761u + (uintptr_t)ar->currentline;
  if (lines[h % LINES] < 255)
    lines[h % LINES]++;
}

/* lua-cjson's buffers (one per cjson instance, 1023 bytes at first) are
 * malloc'ed and held by userdata in LuaJIT's heap, which LuaJIT maps
 * itself and LeakSanitizer does not scan: once an input makes libFuzzer
 * look for leaks (more mallocs than frees), they would look unreachable. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:strbuf_init\n";
}

/* What the state holds is no leak: libFuzzer's leak check runs at exit. */
static void done(void) {
  lua_close(L);
}

static void init(void) {
  L = luaL_newstate();
  if (L == NULL)
    abort();
  luaL_openlibs(L);
  if (luaL_dostring(L,
                    "require('jit').off(); package.path = '" LUA_DIR
                    "/?.lua;' .. package.path") != 0 ||
      luaL_loadfile(L, FUZZ_DIR "/jsonrpc.lua") != 0 ||
      lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "jsonrpc fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  handler = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, on_line, LUA_MASKLINE, 0);
  atexit(done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned long n;
  if (L == NULL)
    init();
  lua_rawgeti(L, LUA_REGISTRYINDEX, handler);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "jsonrpc raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pop(L, 1);
  if (++n % 1024 == 0)
    lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
