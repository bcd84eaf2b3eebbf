/* strtab_test.c -- room made ahead in a state's string table: after
 * myc__strtab_reserve(L, n), interning n new strings allocates no larger
 * string table (without it the table doubles on the way), and the
 * throw-away strings are gone again. */
#include "test.h"

#include "lua/strtab.h"

#include <lauxlib.h>
#include <lualib.h>

/* Counts the blocks of 32 KiB and more: at 8 bytes a slot, a string
 * table of 4 096 slots or more; no string or table of this test is that
 * large. */
typedef struct {
  int big;
  size_t used;
} counting;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counting *c = ud;
  if (ptr == NULL)
    osize = 0;
  if (nsize == 0) {
    c->used -= osize;
    free(ptr);
    return NULL;
  }
  if (nsize >= 32768 && nsize > osize)
    c->big++;
  c->used += nsize - osize;
  return realloc(ptr, nsize);
}

/* Interns 'n' distinct 42-byte strings (addresses, as a service's state
 * keys them) into the table on top of L's stack. */
static void intern_addresses(lua_State *L, int n) {
  char key[64];
  int i;
  for (i = 0; i < n; i++) {
    snprintf(key, sizeof key, "0x%040x", i);
    lua_pushstring(L, key);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
}

/* 'reserve': how many strings to make room for first (0: none).
 * Returns the large blocks allocated while interning 10 000 strings. */
static int grows_while_interning(size_t reserve, size_t *garbage_left) {
  counting c = {0, 0};
  lua_State *L = lua_newstate(count_alloc, &c);
  size_t before;
  int big;
  if (L == NULL)
    return -1;
  luaL_openlibs(L);
  lua_gc(L, LUA_GCCOLLECT, 0);
  before = c.used;
  if (reserve > 0 && myc__strtab_reserve(L, reserve) != 0) {
    lua_close(L);
    return -1;
  }
  /* What the throw-away strings left: the table's new slots only. */
  *garbage_left = c.used - before;
  lua_gc(L, LUA_GCSTOP, 0);
  lua_createtable(L, 0, 10000); /* a large block of its own */
  c.big = 0;
  intern_addresses(L, 10000);
  big = c.big;
  lua_close(L);
  return big;
}

static void test_no_growth_after_reserve(void) {
  size_t left = 0;
  /* The control: without room made, the table grows on the way. */
  CHECK(grows_while_interning(0, &left) > 0);
  CHECK_EQ(grows_while_interning(10000, &left), 0);
  /* 16 384 slots of 8 bytes at most, not 28 000 strings. */
  CHECK(left <= 16384 * 8);
}

static void test_more_than_reserved_still_works(void) {
  counting c = {0, 0};
  lua_State *L = lua_newstate(count_alloc, &c);
  CHECK(L != NULL);
  luaL_openlibs(L);
  CHECK_EQ(myc__strtab_reserve(L, 100), 0);
  lua_createtable(L, 0, 10000);
  intern_addresses(L, 10000);
  lua_pushstring(L, "0x0000000000000000000000000000000000002710");
  lua_pushstring(L, "0x000000000000000000000000000000000000270f");
  lua_rawget(L, -3);
  CHECK(lua_toboolean(L, -1)); /* key 9999 is there */
  lua_pop(L, 1);
  lua_rawget(L, -2);
  CHECK(lua_isnil(L, -1)); /* key 10000 is not */
  lua_close(L);
}

int main(void) {
  static const test_case cases[] = {
      {"no_growth_after_reserve", test_no_growth_after_reserve},
      {"more_than_reserved_still_works", test_more_than_reserved_still_works},
      {NULL, NULL},
  };
  return run_tests(cases);
}
