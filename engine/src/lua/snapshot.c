/* snapshot.c -- deep copy of a value between two Lua states (see
 * snapshot.h).  The copy runs under lua_cpcall in the destination: a
 * memory limit hit there, or a value that cannot be carried, unwinds to
 * it and leaves the source untouched.
 */
#include "lua/snapshot.h"

#include <lauxlib.h>
#include <luajit.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
  lua_State *from;
  int idx;
  int ref; /* the copy, in the registry of 'to' */
  /* The keys from the root to the value being copied, for messages. */
  const char *keys[MAX_DEPTH];
  size_t key_lens[MAX_DEPTH];
  lua_Number key_nums[MAX_DEPTH];
  signed char key_bools[MAX_DEPTH]; /* -1: not a boolean key */
  int depth;
  size_t strings; /* pushed onto 'to' */
  int counter_tried; /* the counting loop was made, or could not be */
} copier;

/* Raises in 'to' with the path of the current field. */
static int fail(lua_State *to, copier *c, const char *what) {
  char path[512];
  size_t n = 0;
  int i;
  path[0] = '\0';
  for (i = 0; i < c->depth && n < sizeof path - 64; i++) {
    int w;
    if (c->keys[i] != NULL)
      w = snprintf(path + n, sizeof path - n, "%s%.*s", i ? "." : "",
                   (int)(c->key_lens[i] > 200 ? 200 : c->key_lens[i]),
                   c->keys[i]);
    else if (c->key_bools[i] >= 0)
      w = snprintf(path + n, sizeof path - n, "[%s]",
                   c->key_bools[i] ? "true" : "false");
    else
      w = snprintf(path + n, sizeof path - n, "[%.14g]", c->key_nums[i]);
    if (w > 0)
      n += (size_t)w;
  }
  if (n > 0)
    return luaL_error(to, "field '%s' %s", path, what);
  return luaL_error(to, "the value %s", what);
}

static void copy_table(lua_State *to, copier *c, int idx);

/* Pushes onto 'to' the value at 'idx' of 'from' (type 'type'). */
static void copy_typed(lua_State *to, copier *c, int idx, int type) {
  lua_State *from = c->from;
  size_t len;
  const char *s;
  char what[128];
  switch (type) {
  case LUA_TNUMBER:
    lua_pushnumber(to, lua_tonumber(from, idx));
    return;
  case LUA_TSTRING:
    s = lua_tolstring(from, idx, &len);
    lua_pushlstring(to, s, len);
    c->strings++;
    return;
  case LUA_TBOOLEAN:
    lua_pushboolean(to, lua_toboolean(from, idx));
    return;
  case LUA_TTABLE:
    copy_table(to, c, idx);
    return;
  case LUA_TNIL:
    lua_pushnil(to);
    return;
  default:
    snprintf(what, sizeof what,
             "is a %s (only nil, booleans, numbers, "
             "strings and tables can be carried)",
             lua_typename(from, type));
    fail(to, c, what);
  }
}

/* Counting a table with lua_next costs, per entry, a lookup of the key
 * it was given (lj_tab_next finds its place again): a random access into
 * the node array, about a fifth of a 10 000-entry reload's copy.  The
 * interpreter's loop over next (ITERN) walks the nodes by index instead,
 * about four times faster.  The loop lives in the source state's
 * registry; its JIT is off, or it would be compiled during the pause.
 * Its next is the one the state's pairs returns, taken when the loop is
 * made, and both must be C functions: a service that replaced them with
 * its own gets the lua_next count.  Only the new table's size rests on
 * the count. */
static const char counter_src[] =
    "local next = ...\n"
    "return function(t)\n"
    "  local n = 0\n"
    "  for _ in next, t do n = n + 1 end\n"
    "  return n\n"
    "end\n";

static const char counter_key = 0; /* its address keys the registry */

/* Below this many entries a table is counted with lua_next. */
#define SMALL_TABLE 32

/* Pushes onto L its counting loop, made if it has none, and returns 1;
 * 0 with nothing pushed when it cannot be made ('*tried' then says not
 * to try again during this copy). */
static int push_counter(lua_State *L, int *tried) {
  lua_pushlightuserdata(L, (void *)&counter_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isfunction(L, -1))
    return 1;
  lua_pop(L, 1);
  if (*tried)
    return 0;
  *tried = 1;
  return myc__snapshot_prepare(L) == 0 && push_counter(L, tried);
}

/* Makes the loop (protected: it allocates). */
static int make_counter(lua_State *L) {
  lua_getglobal(L, "pairs");
  if (!lua_iscfunction(L, -1))
    return luaL_error(L, "pairs is not the builtin");
  lua_newtable(L);
  lua_call(L, 1, 1);
  if (!lua_iscfunction(L, -1))
    return luaL_error(L, "pairs does not give the builtin next");
  if (luaL_loadbuffer(L, counter_src, sizeof counter_src - 1, "=snapshot"))
    return lua_error(L);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  luaJIT_setmode(L, -1, LUAJIT_MODE_FUNC | LUAJIT_MODE_OFF);
  lua_pushlightuserdata(L, (void *)&counter_key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

int myc__snapshot_prepare(lua_State *L) {
  if (lua_cpcall(L, make_counter, NULL) != 0) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* Entries of the table at 'idx' of 'from' by lua_next, up to 'limit'. */
static int count_next(lua_State *from, int idx, int limit) {
  int n = 0;
  lua_pushnil(from);
  while (lua_next(from, idx) != 0) {
    lua_pop(from, 1);
    if (++n == limit) {
      lua_pop(from, 1);
      break;
    }
  }
  return n;
}

/* Entries of the table at 'idx' of 'from'. */
static int count_entries(lua_State *from, copier *c, int idx) {
  int n = count_next(from, idx, SMALL_TABLE);
  if (n < SMALL_TABLE)
    return n;
  if (push_counter(from, &c->counter_tried)) {
    lua_pushvalue(from, idx);
    /* A hook the watchdog left on the old state may raise in the loop. */
    if (lua_pcall(from, 1, 1, 0) == 0) {
      n = (int)lua_tointeger(from, -1);
      lua_pop(from, 1);
      return n;
    }
    lua_pop(from, 1);
  }
  return count_next(from, idx, INT_MAX);
}

/* The hot loop of a reload's pause: one pass over the source table,
 * each key and value read once. */
static void copy_table(lua_State *to, copier *c, int idx) {
  lua_State *from = c->from;
  int narr, nall, t, d = c->depth, key = lua_gettop(from) + 1;
  if (d == MAX_DEPTH)
    fail(to, c,
         "is nested more than 64 levels (a table that contains "
         "itself?)");
  if (!lua_checkstack(from, 4))
    fail(to, c, "cannot be read: out of stack");
  luaL_checkstack(to, 4, "snapshot");
  /* Sized once: growing a table entry by entry rehashes it each time it
   * doubles, which costs more than counting. */
  narr = (int)lua_objlen(from, idx);
  nall = count_entries(from, c, idx);
  lua_createtable(to, narr, nall > narr ? nall - narr : 0);
  t = lua_gettop(to);
  c->depth = d + 1;
  lua_pushnil(from);
  while (lua_next(from, idx) != 0) {
    int kt = lua_type(from, key);
    c->keys[d] = NULL;
    c->key_bools[d] = -1;
    if (kt == LUA_TSTRING) {
      c->keys[d] = lua_tolstring(from, key, &c->key_lens[d]);
      lua_pushlstring(to, c->keys[d], c->key_lens[d]);
      c->strings++;
    } else if (kt == LUA_TNUMBER) {
      c->key_nums[d] = lua_tonumber(from, key);
      lua_pushnumber(to, c->key_nums[d]);
    } else if (kt == LUA_TBOOLEAN) {
      c->key_bools[d] = (signed char)lua_toboolean(from, key);
      lua_pushboolean(to, c->key_bools[d]);
    } else {
      fail(to, c, "has a key that is not a string, number or boolean");
    }
    copy_typed(to, c, key + 1, lua_type(from, key + 1));
    lua_rawset(to, t);
    lua_settop(from, key);
  }
  c->depth = d;
}

static int copy_root(lua_State *to) {
  copier *c = lua_touserdata(to, 1);
  lua_pop(to, 1);
  copy_typed(to, c, c->idx, lua_type(c->from, c->idx));
  c->ref = luaL_ref(to, LUA_REGISTRYINDEX);
  return 0;
}

int myc__snapshot_copy(lua_State *from, int idx, lua_State *to,
                       size_t *strings, char *err, size_t errlen) {
  copier c;
  int top = lua_gettop(from), rc;
  memset(&c, 0, sizeof c);
  c.from = from;
  c.idx = idx < 0 ? top + idx + 1 : idx;
  /* The copy only adds live objects: a collection cycle started by its
   * allocations would traverse them for nothing. */
  lua_gc(to, LUA_GCSTOP, 0);
  /* lua_cpcall allocates nothing unprotected, but drops results: the
   * copy comes back through a registry slot of 'to'. */
  rc = lua_cpcall(to, copy_root, &c);
  lua_gc(to, LUA_GCRESTART, 0);
  lua_settop(from, top);
  if (rc != 0) {
    const char *msg = lua_tostring(to, -1);
    snprintf(err, errlen, "%s", msg ? msg : "cannot carry the snapshot");
    lua_pop(to, 1);
    return rc;
  }
  lua_rawgeti(to, LUA_REGISTRYINDEX, c.ref);
  luaL_unref(to, LUA_REGISTRYINDEX, c.ref);
  if (strings != NULL)
    *strings = c.strings;
  return 0;
}
