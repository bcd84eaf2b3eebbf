/* deadline.c -- a time limit on a plain Lua state (see deadline.h): a
 * count hook compares the clock with the deadline every thousand
 * instructions.  The deadline is found through the registry, under the
 * address of a constant, so the hook needs no global. */
#include "lua/deadline.h"

#include "base/clock.h"

#include <lauxlib.h>
#include <luajit.h>

static const char key = 0;

static void deadline_hook(lua_State *L, lua_Debug *ar) {
  myc__lua_deadline *d;
  (void)ar;
  lua_pushlightuserdata(L, (void *)&key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  d = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (d == NULL || myc__mono_ns() < d->at_ns)
    return;
  d->fired = 1;
  lua_pushfstring(L, "still running after its budget of %d ms", (int)d->ms);
  lua_error(L);
}

void myc__lua_deadline_set(lua_State *L, myc__lua_deadline *d, double ms) {
  d->ms = ms;
  d->fired = 0;
  d->at_ns = myc__mono_ns() + (int64_t)(ms * 1e6);
  lua_pushlightuserdata(L, (void *)&key);
  lua_pushlightuserdata(L, d);
  lua_rawset(L, LUA_REGISTRYINDEX);
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_sethook(L, deadline_hook, LUA_MASKCOUNT, 1000);
}
