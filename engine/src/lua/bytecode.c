/* bytecode.c -- the runtime's modules compiled once per engine (see
 * bytecode.h).  A miss compiles the file in the state that asked and
 * dumps it; two states missing together both compile, the first to add
 * its dump keeps it.
 *
 * The dumps are stripped of debug information: line numbers and local
 * names were about a third of what the runtime's code takes in every
 * service's state (21 KB of the ~135 KB of a trivial service).  Loaded
 * with the file's name as chunk name, an error inside the runtime still
 * names its file ("/usr/share/mycelium/mycelium/ctx.lua:0: ..."), without
 * the line; errors the runtime raises about a service's call point at the
 * service's own line, which keeps its debug information.  With MYC_JIT_LOG
 * or MYC_JIT_PROFILE set (docs/TUNING.md) the dumps keep their lines: a
 * trace log or a profile that says "contract.lua:0" cannot be acted on. */
#include "lua/bytecode.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct myc__bc_entry {
  myc__bc_entry *next;
  size_t len, cap;
  char *code;
  char *chunkname; /* "@" and the file's path, in 'name' after the name */
  char name[];     /* the module's name, as required */
};

int myc__bytecode_init(myc__bytecode *c, const myc__alloc *a,
                       const char *dir) {
  c->alloc = a;
  c->dir = NULL;
  c->entries = NULL;
  c->strip = getenv("MYC_JIT_LOG") == NULL && getenv("MYC_JIT_PROFILE") == NULL;
  if (uv_mutex_init(&c->lock) != 0)
    return MYC_ENOMEM;
  c->dir = dir;
  return 0;
}

static size_t entry_size(const char *name, const char *path) {
  return sizeof(myc__bc_entry) + strlen(name) + 1 + strlen(path) + 2;
}

static void entry_free(const myc__alloc *a, myc__bc_entry *en) {
  myc__free(a, en->code, en->cap);
  myc__free(a, en, entry_size(en->name, en->chunkname + 1));
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

/* Adds 'len' bytes of bytecode at 'code' as module 'name' of file
 * 'path'.  Out of memory, nothing is added: the next state compiles it
 * again. */
static void add(myc__bytecode *c, const char *name, const char *path,
                const char *code, size_t len) {
  myc__bc_entry *en = myc__malloc(c->alloc, entry_size(name, path));
  size_t n = strlen(name);
  if (en == NULL)
    return;
  memset(en, 0, sizeof *en);
  memcpy(en->name, name, n + 1);
  en->chunkname = en->name + n + 1;
  en->chunkname[0] = '@';
  strcpy(en->chunkname + 1, path);
  en->code = myc__malloc(c->alloc, len);
  if (en->code == NULL) {
    entry_free(c->alloc, en);
    return;
  }
  memcpy(en->code, code, len);
  en->len = en->cap = len;
  uv_mutex_lock(&c->lock);
  if (find_locked(c, name) == NULL) {
    en->next = c->entries;
    c->entries = en;
    en = NULL;
  }
  uv_mutex_unlock(&c->lock);
  if (en != NULL)
    entry_free(c->alloc, en);
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
 * (the next searcher looks).  A miss compiles the file, dumps it
 * stripped (string.dump(f, true): lua_dump cannot strip) and loads that
 * dump, so that the first state runs what the others will. */
static int searcher(lua_State *L) {
  myc__bytecode *c = lua_touserdata(L, lua_upvalueindex(1));
  const char *name = luaL_checkstring(L, 1), *code;
  const myc__bc_entry *en;
  char path[4096 + 300], chunkname[4096 + 301];
  size_t len;
  uv_mutex_lock(&c->lock);
  en = find_locked(c, name);
  uv_mutex_unlock(&c->lock);
  if (en != NULL) {
    if (luaL_loadbuffer(L, en->code, en->len, en->chunkname) != 0)
      return lua_error(L);
    return 1;
  }
  if (!runtime_file(c, name, path, sizeof path))
    return 0;
  if (luaL_loadfile(L, path) != 0)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, path, lua_tostring(L, -1));
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "dump");
  lua_pushvalue(L, -3);
  lua_pushboolean(L, c->strip);
  lua_call(L, 2, 1);
  code = lua_tolstring(L, -1, &len);
  snprintf(chunkname, sizeof chunkname, "@%s", path);
  if (luaL_loadbuffer(L, code, len, chunkname) != 0)
    return lua_error(L);
  add(c, name, path, code, len);
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
