/* bytecode.h -- the Lua runtime's modules (lua/mycelium/...) compiled
 * once per engine and loaded from that bytecode by every state the engine
 * makes: a service's state then pays no parse of host, ctx, msg and the
 * rest.  Entries are immutable once added; the cache is shared by every
 * thread that builds states (workers, the reload loader). */
#ifndef MYC_LUA_BYTECODE_H
#define MYC_LUA_BYTECODE_H

#include "base/alloc.h"

#include <lua.h>
#include <uv.h>

typedef struct myc__bc_entry myc__bc_entry;

typedef struct {
  const myc__alloc *alloc;
  const char *dir; /* the runtime's directory; not owned */
  uv_mutex_t lock; /* adding vs. finding */
  myc__bc_entry *entries;
  int strip; /* 0 while MYC_JIT_LOG is set: trace logs then name lines */
} myc__bytecode;

/* Prepares an empty cache of the modules under 'dir' (kept by the caller
 * until myc__bytecode_destroy).  Returns 0 or MYC_ENOMEM. */
int myc__bytecode_init(myc__bytecode *c, const myc__alloc *a,
                       const char *dir);

/* Frees every entry.  No state may be loading through it any more. */
void myc__bytecode_destroy(myc__bytecode *c);

/* Puts a searcher in front of package.loaders of 'L' that serves modules
 * of the runtime's directory from the cache, compiling (and adding) a
 * module the first time a state requires it; other modules fall through
 * to the usual searchers.  Compiled chunks keep their debug information,
 * so errors still read "path:line".  'c' must outlive 'L'.  May raise
 * (out of memory): call it from a protected context. */
void myc__bytecode_install(lua_State *L, myc__bytecode *c);

#endif
