/* msgpack.c -- fuzzes the MessagePack decoder services and configs go
 * through (lua/msgpack.c over msgpack-c, the "mycelium.core" module):
 * unpack(bytes) must return a value or nil and a message; a value must
 * pack again and decode to a value. */
#include "lua/msgpack.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static lua_State *L;
static int core; /* registry reference of the module table */

static void done(void) {
  lua_close(L);
}

static void init(void) {
  L = luaL_newstate();
  if (L == NULL)
    abort();
  luaL_openlibs(L);
  lua_pushcfunction(L, myc__lua_core_open);
  lua_call(L, 0, 1);
  core = luaL_ref(L, LUA_REGISTRYINDEX);
  atexit(done);
}

/* core[fn](string) in protected mode; leaves its first result on the
 * stack.  Returns lua_pcall's code. */
static int call(const char *fn, int nargs) {
  int rc;
  lua_rawgeti(L, LUA_REGISTRYINDEX, core);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  rc = lua_pcall(L, nargs, 2, 0);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned long n;
  int top;
  if (L == NULL)
    init();
  top = lua_gettop(L);
  lua_pushlstring(L, (const char *)data, size);
  /* An error (too deep, out of memory) is an answer too: a raise the
   * host turns into a message.  What must not happen is a crash. */
  if (call("unpack", 1) == 0) {
    /* nil and a message: refused; nil alone: the MessagePack nil. */
    if (!lua_isnil(L, -2)) {
      lua_pop(L, 1);
      if (call("pack", 1) == 0 && lua_isstring(L, -2)) {
        lua_pop(L, 1);
        if (call("unpack", 1) == 0 && lua_isnil(L, -2)) {
          fprintf(stderr, "a decoded value packs into bytes that do not "
                          "decode\n");
          abort();
        }
      }
    }
  }
  lua_settop(L, top);
  if (++n % 1024 == 0)
    lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
