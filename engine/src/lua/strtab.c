/* strtab.c -- room in a state's string table (see strtab.h).
 *
 * LuaJIT interns every string in one hash table per state, which doubles
 * when it holds as many strings as it has slots, rehashing every string
 * it holds: copying 10 000 strings into a fresh state doubles it three or
 * four times, and the rehash touches each string object again (7 % of a
 * reload's copy in instructions, more in cache misses).  The API cannot
 * size that table.  It can make it grow: interning 2 n + slack strings
 * doubles it past twice the room wanted; the full cycle that follows
 * frees them and halves a table that is at most a quarter full, once per
 * cycle, which leaves room for n more strings than the state holds.
 */
#include "lua/strtab.h"

#include <string.h>

/* More than the strings a fresh service state holds (its libraries and
 * the runtime: 2 000 to 4 000), so that the halving keeps room for
 * them too. */
#define SLACK 8192

static int intern(lua_State *L) {
  size_t n = *(const size_t *)lua_touserdata(L, 1), i;
  /* A NUL first: no Lua source writes such a string by chance. */
  char key[24] = "\0myc-strtab-reserve";
  for (i = 0; i < n; i++) {
    memcpy(key + sizeof key - sizeof i, &i, sizeof i);
    lua_pushlstring(L, key, sizeof key);
    lua_pop(L, 1);
  }
  return 0;
}

int myc__strtab_reserve(lua_State *L, size_t n) {
  size_t count = 2 * n + SLACK;
  int rc;
  if (n == 0)
    return 0;
  /* Stopped, so that no step sweeps strings while the table grows. */
  lua_gc(L, LUA_GCSTOP, 0);
  rc = lua_cpcall(L, intern, &count);
  if (rc != 0)
    lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT, 0);
  lua_gc(L, LUA_GCRESTART, 0);
  return rc;
}
