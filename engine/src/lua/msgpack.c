/* msgpack.c -- MessagePack for Lua values: the mycelium.core module (see
 * msgpack.h).
 *
 * Encoding: nil, booleans, numbers (integral values that fit in int64 as
 * integers, others as float64), strings, and tables (a sequence 1..n as an
 * array, anything else as a map; an empty table is an empty map).  Other
 * types raise an error naming the field path.  Decoding turns arrays into
 * sequences, maps into tables, bin and str into strings.
 */
#include "lua/msgpack.h"

#include "base/alloc.h"
#include "base/file.h"

#include <lauxlib.h>
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define PATH_MAX_LEN 256

typedef struct {
  lua_State *L;
  char *p;
  size_t len, cap;
} scratch;

typedef struct {
  scratch *out;
  msgpack_packer pk;
  char path[PATH_MAX_LEN];
  size_t path_len;
  const char *error;
} packer;

static int scratch_write(void *data, const char *buf, size_t len) {
  scratch *s = data;
  if (s->len + len > s->cap) {
    void *ud;
    lua_Alloc f = lua_getallocf(s->L, &ud);
    size_t cap = 2 * (s->len + len) + 64;
    char *p = f(ud, s->p, s->cap, cap);
    if (p == NULL)
      return -1;
    s->p = p;
    s->cap = cap;
  }
  memcpy(s->p + s->len, buf, len);
  s->len += len;
  return 0;
}

static int scratch_gc(lua_State *L) {
  scratch *s = lua_touserdata(L, 1);
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (s->p != NULL)
    f(ud, s->p, s->cap, 0);
  s->p = NULL;
  s->cap = s->len = 0;
  return 0;
}

static scratch *get_scratch(lua_State *L) {
  scratch *s = lua_touserdata(L, lua_upvalueindex(1));
  s->L = L;
  s->len = 0;
  return s;
}

static void path_push(packer *p, lua_State *L, int key, size_t *saved) {
  char tmp[64];
  const char *k;
  size_t n;
  *saved = p->path_len;
  if (lua_type(L, key) == LUA_TNUMBER) {
    n = (size_t)snprintf(tmp, sizeof tmp, "[%.14g]", lua_tonumber(L, key));
    k = tmp;
  } else {
    k = lua_tolstring(L, key, &n);
    if (p->path_len > 0 && p->path_len < PATH_MAX_LEN - 1)
      p->path[p->path_len++] = '.';
  }
  if (p->path_len + n >= PATH_MAX_LEN)
    n = PATH_MAX_LEN - 1 - p->path_len;
  memcpy(p->path + p->path_len, k, n);
  p->path_len += n;
  p->path[p->path_len] = '\0';
}

static int pack_value(packer *p, lua_State *L, int idx, int depth);

/* Returns n > 0 if the table at 'idx' is the sequence 1..n and nothing
 * else, 0 otherwise. */
static size_t sequence_length(lua_State *L, int idx) {
  size_t n = lua_objlen(L, idx), count = 0;
  if (n == 0)
    return 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  return count == n ? n : 0;
}

static int pack_table(packer *p, lua_State *L, int idx, int depth) {
  size_t n = sequence_length(L, idx), i, saved;
  if (depth >= MAX_DEPTH) {
    p->error = "nested too deeply (a table that contains itself?)";
    return -1;
  }
  if (n > 0) {
    msgpack_pack_array(&p->pk, n);
    for (i = 1; i <= n; i++) {
      lua_pushnumber(L, (lua_Number)i);
      path_push(p, L, lua_gettop(L), &saved);
      lua_pop(L, 1);
      lua_rawgeti(L, idx, (int)i);
      if (pack_value(p, L, lua_gettop(L), depth + 1) != 0)
        return -1;
      lua_pop(L, 1);
      p->path_len = saved;
      p->path[saved] = '\0';
    }
    return 0;
  }
  n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    n++;
    lua_pop(L, 1);
  }
  msgpack_pack_map(&p->pk, n);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int kt = lua_type(L, -2);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      p->error = "table keys must be strings or numbers";
      return -1;
    }
    path_push(p, L, lua_gettop(L) - 1, &saved);
    if (pack_value(p, L, lua_gettop(L) - 1, depth + 1) != 0 ||
        pack_value(p, L, lua_gettop(L), depth + 1) != 0)
      return -1;
    lua_pop(L, 1);
    p->path_len = saved;
    p->path[saved] = '\0';
  }
  return 0;
}

static void pack_number(packer *p, lua_Number v) {
  if (v == floor(v) && v >= -9223372036854775808.0 &&
      v < 9223372036854775808.0) {
    if (v >= 0)
      msgpack_pack_uint64(&p->pk, (uint64_t)v);
    else
      msgpack_pack_int64(&p->pk, (int64_t)v);
  } else {
    msgpack_pack_double(&p->pk, v);
  }
}

static int pack_value(packer *p, lua_State *L, int idx, int depth) {
  size_t len;
  const char *s;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    msgpack_pack_nil(&p->pk);
    return 0;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      msgpack_pack_true(&p->pk);
    else
      msgpack_pack_false(&p->pk);
    return 0;
  case LUA_TNUMBER:
    pack_number(p, lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    msgpack_pack_str_with_body(&p->pk, s, len);
    return 0;
  case LUA_TTABLE:
    return pack_table(p, L, idx, depth);
  default:
    lua_pushfstring(L, "unsupported type %s", luaL_typename(L, idx));
    p->error = lua_tostring(L, -1); /* stays on the stack until the raise */
    return -1;
  }
}

/* Encodes the value at 'idx' into the scratch; raises on failure. */
static void encode(lua_State *L, int idx, scratch *out) {
  packer p;
  int rc;
  p.out = out;
  p.path[0] = '\0';
  p.path_len = 0;
  p.error = NULL;
  msgpack_packer_init(&p.pk, out, scratch_write);
  rc = pack_value(&p, L, idx, 0);
  if (rc != 0) {
    /* lua_error, not luaL_error: the caller adds the service and topic,
     * a source position here would point into the engine. */
    lua_pushfstring(L, "cannot encode %s%s%s: %s",
                    p.path_len ? "field '" : "value", p.path,
                    p.path_len ? "'" : "", p.error);
    lua_error(L);
  }
}

/* pack(value) -> string */
static int lpack(lua_State *L) {
  scratch *s = get_scratch(L);
  luaL_checkany(L, 1);
  encode(L, 1, s);
  lua_pushlstring(L, s->p, s->len);
  return 1;
}

static void push_object(lua_State *L, const msgpack_object *o, int depth);

static void push_map(lua_State *L, const msgpack_object_map *m, int depth) {
  uint32_t i;
  lua_createtable(L, 0, (int)m->size);
  for (i = 0; i < m->size; i++) {
    push_object(L, &m->ptr[i].key, depth + 1);
    push_object(L, &m->ptr[i].val, depth + 1);
    if (lua_isnil(L, -2))
      lua_pop(L, 2);
    else
      lua_rawset(L, -3);
  }
}

static void push_object(lua_State *L, const msgpack_object *o, int depth) {
  uint32_t i;
  if (depth > MAX_DEPTH)
    luaL_error(L, "MessagePack value nested too deeply");
  luaL_checkstack(L, 4, "MessagePack decode");
  switch (o->type) {
  case MSGPACK_OBJECT_BOOLEAN:
    lua_pushboolean(L, o->via.boolean);
    break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    lua_pushnumber(L, (lua_Number)o->via.u64);
    break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    lua_pushnumber(L, (lua_Number)o->via.i64);
    break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
    lua_pushnumber(L, o->via.f64);
    break;
  case MSGPACK_OBJECT_STR:
    lua_pushlstring(L, o->via.str.ptr, o->via.str.size);
    break;
  case MSGPACK_OBJECT_BIN:
    lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size);
    break;
  case MSGPACK_OBJECT_ARRAY:
    lua_createtable(L, (int)o->via.array.size, 0);
    for (i = 0; i < o->via.array.size; i++) {
      push_object(L, &o->via.array.ptr[i], depth + 1);
      lua_rawseti(L, -2, (int)i + 1);
    }
    break;
  case MSGPACK_OBJECT_MAP:
    push_map(L, &o->via.map, depth);
    break;
  default: /* nil and extension types */
    lua_pushnil(L);
    break;
  }
}

static int push_protected(lua_State *L) {
  push_object(L, lua_touserdata(L, 1), 0);
  return 1;
}

/* Big-endian length of 'n' bytes at p[i], or SIZE_MAX past 'len'. */
static size_t be_len(const unsigned char *p, size_t i, size_t n, size_t len) {
  size_t v = 0, k;
  if (n > len - i)
    return SIZE_MAX;
  for (k = 0; k < n; k++)
    v = v << 8 | p[i + k];
  return v;
}

/* What follows the tags 0xc0..0xdf: 'fixed' bytes, then a big-endian
 * length of 'len_bytes' bytes counting bytes, or elements of an array or
 * a map. */
enum { T_BYTES, T_ARRAY, T_MAP, T_UNUSED };
static const struct {
  unsigned char fixed, len_bytes, kind;
} tags[32] = {
    {0, 0, T_BYTES},  {0, 0, T_UNUSED}, {0, 0, T_BYTES}, {0, 0, T_BYTES},
    {0, 1, T_BYTES},  {0, 2, T_BYTES},  {0, 4, T_BYTES}, /* bin */
    {1, 1, T_BYTES},  {1, 2, T_BYTES},  {1, 4, T_BYTES}, /* ext: type */
    {4, 0, T_BYTES},  {8, 0, T_BYTES},                   /* float */
    {1, 0, T_BYTES},  {2, 0, T_BYTES},  {4, 0, T_BYTES}, {8, 0, T_BYTES},
    {1, 0, T_BYTES},  {2, 0, T_BYTES},  {4, 0, T_BYTES}, {8, 0, T_BYTES},
    {2, 0, T_BYTES},  {3, 0, T_BYTES},  {5, 0, T_BYTES}, {9, 0, T_BYTES},
    {17, 0, T_BYTES},                                    /* fixext */
    {0, 1, T_BYTES},  {0, 2, T_BYTES},  {0, 4, T_BYTES}, /* str */
    {0, 2, T_ARRAY},  {0, 4, T_ARRAY},  {0, 2, T_MAP},   {0, 4, T_MAP}};

/* Whether the first value at 'p' can be what its headers say, walked
 * without building it.  msgpack-c sizes a container from its header
 * before it reads an element, so five bytes announcing 2^32 elements
 * would have it allocate 96 GiB; every element takes a byte at least, so
 * a header may not promise more elements than bytes remain. */
static int plausible(const unsigned char *p, size_t len) {
  size_t i = 0, want = 1, body, items, n;
  while (want-- > 0) {
    unsigned char b;
    if (i >= len)
      return 0;
    b = p[i++];
    body = items = 0;
    if (b >= 0x80 && b <= 0x8f) {
      items = 2 * (size_t)(b & 0x0f);
    } else if (b >= 0x90 && b <= 0x9f) {
      items = b & 0x0f;
    } else if (b >= 0xa0 && b <= 0xbf) {
      body = b & 0x1f;
    } else if (b >= 0xc0 && b <= 0xdf) {
      if (tags[b - 0xc0].kind == T_UNUSED)
        return 0;
      body = tags[b - 0xc0].fixed;
      n = be_len(p, i, tags[b - 0xc0].len_bytes, len);
      if (n == SIZE_MAX)
        return 0;
      i += tags[b - 0xc0].len_bytes;
      if (tags[b - 0xc0].kind == T_BYTES)
        body += n;
      else
        items = tags[b - 0xc0].kind == T_MAP ? 2 * n : n;
    }
    if (body > len - i)
      return 0;
    i += body;
    want += items;
    if (want > len - i)
      return 0;
  }
  return 1;
}

/* The budget of a state with the engine's counting allocator and a call
 * armed to escape to (base/alloc.h), or NULL. */
static myc__lua_budget *escaping_budget(lua_State *L) {
  void *ud;
  myc__lua_budget *b;
  if (lua_getallocf(L, &ud) != myc__lua_alloc)
    return NULL;
  b = ud;
  return b->escape != NULL ? b : NULL;
}

/* Decodes 'len' bytes at 'p'.  Returns nil, message on malformed input. */
static int decode(lua_State *L, const char *p, size_t len) {
  msgpack_unpacked u;
  size_t off = 0;
  msgpack_unpack_return rc;
  /* volatile: read again after an escape lands here */
  myc__lua_budget *volatile b = escaping_budget(L);
  myc__escape esc;
  int rc2;
  if (!plausible((const unsigned char *)p, len)) {
    lua_pushnil(L);
    lua_pushliteral(L, "malformed MessagePack payload");
    return 2;
  }
  msgpack_unpacked_init(&u);
  rc = msgpack_unpack_next(&u, p, len, &off);
  if (rc != MSGPACK_UNPACK_SUCCESS || off != len) {
    msgpack_unpacked_destroy(&u);
    lua_pushnil(L);
    lua_pushliteral(L, "malformed MessagePack payload");
    return 2;
  }
  /* Building the tables can raise (memory limit, nesting); the zone must
   * not leak then, so the conversion runs in a protected call. */
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, &u.data);
  /* An allocation past the budget jumps over lua_pcall: free the zone on
   * the way out. */
  if (b != NULL && MYC_ESCAPE_ARM(b, &esc)) {
    msgpack_unpacked_destroy(&u);
    myc__escape_rethrow(b);
  }
  rc2 = lua_pcall(L, 1, 1, 0);
  if (b != NULL)
    myc__escape_disarm(b, &esc);
  msgpack_unpacked_destroy(&u);
  if (rc2 != 0)
    lua_error(L);
  return 1;
}

/* unpack(string) or unpack(address, len) -> value */
static int lunpack(lua_State *L) {
  size_t len;
  const char *p;
  if (lua_type(L, 1) == LUA_TSTRING) {
    p = lua_tolstring(L, 1, &len);
  } else {
    p = (const char *)(uintptr_t)luaL_checknumber(L, 1);
    len = (size_t)luaL_checknumber(L, 2);
  }
  return decode(L, p, len);
}

/* core.regular(path): true when 'path' is a regular file or cannot be
 * looked at, else nil and why ("cannot read PATH: it is a FIFO, ...").
 * mycelium.config asks before io.open, which would wait on a FIFO for a
 * writer. */
static int lregular(lua_State *L) {
  char why[512];
  if (myc__regular_or_absent(luaL_checkstring(L, 1), why, sizeof why) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

/* core.call(f, ...): f(...) called from this C function, as the engine
 * calls a handler from C.  LuaJIT ends a trace that returns into a C
 * frame; one that returns through a pcall into Lua cannot be recorded
 * ("NYI: return to lower frame"), and after a few tries the exit it
 * started from goes to the interpreter for good.  The warm-up runs the
 * handlers through this, so that what it compiles serves the traffic. */
static int lcall(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

int myc__lua_core_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"pack", lpack},
                                 {"unpack", lunpack},
                                 {"regular", lregular},
                                 {"call", lcall},
                                 {NULL, NULL}};
  const luaL_Reg *f;
  scratch *s;
  lua_newtable(L);
  s = lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  lua_newtable(L);
  lua_pushcfunction(L, scratch_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  for (f = fns; f->name != NULL; f++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -3, f->name);
  }
  lua_pop(L, 1);
  return 1;
}
