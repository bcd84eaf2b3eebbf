/* bytecode.c -- the runtime's modules compiled once per engine (see
 * bytecode.h).  A miss compiles the file in the state that asked and
 * dumps it; two states missing together both compile, the first to add
 * its dump keeps it. */
#include "lua/bytecode.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct myc__bc_entry {
  myc__bc_entry *next;
  size_t len, cap;
  char *code;
  char name[]; /* the module's name, as required */
};

int myc__bytecode_init(myc__bytecode *c, const myc__alloc *a,
                       const char *dir) {
  c->alloc = a;
  c->dir = NULL;
  c->entries = NULL;
  if (uv_mutex_init(&c->lock) != 0)
    return MYC_ENOMEM;
  c->dir = dir;
  return 0;
}

static size_t entry_size(const char *name) {
  return sizeof(myc__bc_entry) + strlen(name) + 1;
}

static void entry_free(const myc__alloc *a, myc__bc_entry *en) {
  myc__free(a, en->code, en->cap);
  myc__free(a, en, entry_size(en->name));
}

void myc__bytecode_destroy(myc__bytecode *c) {
  while (c->entries != NULL) {
    myc__bc_entry *en = c->entries;
    c->entries = en->next;
    entry_free(c->alloc, en);
  }
  uv_mutex_destroy(&c->lock);
}

static myc__bc_entry *find_locked(myc__bytecode *c, const char *name) {
  myc__bc_entry *en;
  for (en = c->entries; en != NULL && strcmp(en->name, name) != 0;
       en = en->next)
    ;
  return en;
}

typedef struct {
  const myc__alloc *alloc;
  myc__bc_entry *en;
  int failed;
} dump_ctx;

/* lua_dump's writer: appends to the entry; nonzero stops the dump. */
static int collect(lua_State *L, const void *p, size_t n, void *ud) {
  dump_ctx *d = ud;
  myc__bc_entry *en = d->en;
  (void)L;
  if (en->len + n > en->cap) {
    size_t cap = en->cap ? en->cap : 4096;
    char *grown;
    while (cap < en->len + n)
      cap *= 2;
    grown = myc__realloc(d->alloc, en->code, en->cap, cap);
    if (grown == NULL) {
      d->failed = 1;
      return 1;
    }
    en->code = grown;
    en->cap = cap;
  }
  memcpy(en->code + en->len, p, n);
  en->len += n;
  return 0;
}

/* Adds the dump of the function on top of 'L' as module 'name'.  Out of
 * memory, nothing is added: the next state compiles it again. */
static void add(myc__bytecode *c, lua_State *L, const char *name) {
  dump_ctx d = {c->alloc, NULL, 0};
  d.en = myc__malloc(c->alloc, entry_size(name));
  if (d.en == NULL)
    return;
  memset(d.en, 0, sizeof *d.en);
  strcpy(d.en->name, name);
  if (lua_dump(L, collect, &d) != 0 || d.failed) {
    entry_free(c->alloc, d.en);
    return;
  }
  uv_mutex_lock(&c->lock);
  if (find_locked(c, name) == NULL) {
    d.en->next = c->entries;
    c->entries = d.en;
    d.en = NULL;
  }
  uv_mutex_unlock(&c->lock);
  if (d.en != NULL)
    entry_free(c->alloc, d.en);
}

/* The file of module 'name' in the runtime's directory, into 'path';
 * 0 when there is none (the module is not the runtime's). */
static int runtime_file(const myc__bytecode *c, const char *name, char *path,
                        size_t len) {
  static const char *const forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
  char rel[256];
  size_t i, n = strlen(name);
  if (n == 0 || n >= sizeof rel)
    return 0;
  for (i = 0; i <= n; i++)
    rel[i] = name[i] == '.' ? '/' : name[i];
  for (i = 0; i < sizeof forms / sizeof *forms; i++) {
    int w = snprintf(path, len, forms[i], c->dir, rel);
    if (w > 0 && (size_t)w < len && access(path, R_OK) == 0)
      return 1;
  }
  return 0;
}

/* package.loaders entry: the cached chunk of a runtime module, or nothing
 * (the next searcher looks). */
static int searcher(lua_State *L) {
  myc__bytecode *c = lua_touserdata(L, lua_upvalueindex(1));
  const char *name = luaL_checkstring(L, 1);
  const myc__bc_entry *en;
  char path[4096 + 300];
  uv_mutex_lock(&c->lock);
  en = find_locked(c, name);
  uv_mutex_unlock(&c->lock);
  if (en != NULL) {
    /* The dump carries its chunk name ("@path"): this one is unused. */
    if (luaL_loadbuffer(L, en->code, en->len, name) != 0)
      return lua_error(L);
    return 1;
  }
  if (!runtime_file(c, name, path, sizeof path))
    return 0;
  if (luaL_loadfile(L, path) != 0)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, path, lua_tostring(L, -1));
  add(c, L, name);
  return 1;
}

void myc__bytecode_install(lua_State *L, myc__bytecode *c) {
  int i, n;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaders");
  /* After the preload searcher, before the file searchers. */
  n = (int)lua_objlen(L, -1);
  for (i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushlightuserdata(L, c);
  lua_pushcclosure(L, searcher, 1);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}
