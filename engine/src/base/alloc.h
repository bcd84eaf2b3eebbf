/* alloc.h -- the one allocation hook every engine allocation goes through,
 * and the counting allocator that gives each service's Lua state a budget. */
#ifndef MYC_ALLOC_H
#define MYC_ALLOC_H

#include "mycelium.h"

#include <stdatomic.h>
#include <stddef.h>

typedef struct {
  myc_alloc_fn fn;
  void *ud;
} myc__alloc;

/* The default hook: realloc/free.  Thread-safe. */
void *myc__default_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Thin wrappers over the hook.  myc__free() preserves errno. */
void *myc__malloc(const myc__alloc *a, size_t n);
void *myc__calloc(const myc__alloc *a, size_t n);
void *myc__realloc(const myc__alloc *a, void *p, size_t osize, size_t nsize);
void myc__free(const myc__alloc *a, void *p, size_t n);
char *myc__strdup(const myc__alloc *a, const char *s);
void myc__strfree(const myc__alloc *a, char *s);

/* Small Lua blocks (up to 512 bytes, in 16-byte classes) freed by the
 * garbage collector are kept for the next allocation of their class: a
 * handler that makes a table or a cdata per message would otherwise pay a
 * malloc and a free for each.  512, not 256: a table of 9 to 16 named
 * fields has a 384-byte hash part (Bandit keeps one per log), and one GC
 * cycle of a busy service frees more than 1 MiB of such blocks. */
#define MYC_LUA_CLASSES 32
#define MYC_LUA_CACHE_BYTES (4u << 20) /* cached per state, at most */

/* Per-Lua-state accounting.  'used' is read by other threads (status), so
 * it is atomic; only the thread running the state writes it, and only it
 * touches the cache.  Once the limit refuses an allocation the budget is
 * 'tripped': the state may then grow by 'reserve' more, so that the error
 * can unwind and be reported, and its owner ends it (over the limit is a
 * crash of the service). */
typedef struct {
  const myc__alloc *base;
  _Atomic size_t used;
  size_t limit; /* 0: unlimited */
  size_t reserve;
  _Atomic size_t peak; /* read by status, like 'used' */
  unsigned long refused;
  int tripped;
  int poisoned;      /* refused an allocation because of 'poison' */
  _Atomic int poison; /* set by another thread: refuse the next growth */
  void *owner;        /* the service */
  void *cache[MYC_LUA_CLASSES]; /* free blocks, linked through their start */
  size_t cached;                /* bytes in the cache */
} myc__lua_budget;

/* A lua_Alloc that counts bytes in the myc__lua_budget 'ud' and refuses to
 * grow past its limit, or once when poisoned (shrinking and freeing always
 * succeed, as Lua requires).  Blocks of up to 512 bytes come from the base
 * hook in their class size and return to the cache. */
void *myc__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Returns the cached blocks to the base hook.  Call after lua_close(). */
void myc__lua_budget_drain(myc__lua_budget *b);

#endif
