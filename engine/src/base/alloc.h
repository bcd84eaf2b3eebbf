/* alloc.h -- the one allocation hook every engine allocation goes through,
 * and the counting allocator that gives each service's Lua state a budget. */
#ifndef MYC_ALLOC_H
#define MYC_ALLOC_H

#include "mycelium.h"

#include <setjmp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  myc_alloc_fn fn;
  void *ud;
} myc__alloc;

/* The default hook: realloc/free.  Thread-safe. */
void *myc__default_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Sets the default hook's allocator up for the engine, once per process
 * (an engine calls it when created; later calls do nothing). */
void myc__default_alloc_tune(void);

/* Thin wrappers over the hook.  myc__free() preserves errno. */
void *myc__malloc(const myc__alloc *a, size_t n);
void *myc__calloc(const myc__alloc *a, size_t n);
void *myc__realloc(const myc__alloc *a, void *p, size_t osize, size_t nsize);
void myc__free(const myc__alloc *a, void *p, size_t n);
char *myc__strdup(const myc__alloc *a, const char *s);

/* Makes room for 'need' elements of 'elem' bytes in array '*v' of '*cap':
 * the capacity doubles from 'first' (when empty) until it holds them.
 * 0, or MYC_ENOMEM with '*v' and '*cap' unchanged. */
int myc__grow(const myc__alloc *a, void **v, uint32_t *cap, size_t elem,
              uint32_t need, uint32_t first);
void myc__strfree(const myc__alloc *a, char *s);

/* Small Lua blocks (up to 512 bytes, in 16-byte classes) freed by the
 * garbage collector are kept for the next allocation of their class: a
 * handler that makes a table or a cdata per message would otherwise pay a
 * malloc and a free for each.  512, not 256: a table of 9 to 16 named
 * fields has a 384-byte hash part (Bandit keeps one per log), and one GC
 * cycle of a busy service frees more than 1 MiB of such blocks. */
#define MYC_LUA_CLASSES 32
#define MYC_LUA_CACHE_BYTES (4u << 20) /* cached per state, at most, and
                                          * no more than its live heap */

/* Where an allocation past the hard ceiling jumps to: the innermost call
 * into a Lua state (activation.c arms one around each) instead of
 * returning NULL.  LuaJIT 2.1 (2022) mishandles an out-of-memory error
 * raised while a trace runs -- its stack pointers are stale there, and
 * unwinding crashes the process -- so the budget never makes LuaJIT
 * raise one: the state is abandoned instead (docs/SUPERVISION.md). */
typedef struct myc__escape {
  struct myc__escape *prev;
  sigjmp_buf jb;
} myc__escape;

/* Arms escape 'e' on budget 'b': evaluates to 0 now and to 1 when an
 * allocation escaped to it (then 'b->escape' is already 'e->prev').
 * Must be used directly in the frame that stays alive during the call,
 * as sigsetjmp requires. */
#define MYC_ESCAPE_ARM(b, e)                                                   \
  ((e)->prev = (b)->escape, (b)->escape = (e), sigsetjmp((e)->jb, 0))

/* Per-Lua-state accounting.  'used' is read by other threads (status), so
 * it is atomic; only the thread running the state writes it, and only it
 * touches the cache and the escapes.
 *
 * Two bounds: past 'limit' the budget is 'tripped' and 'on_trip' asks
 * for the state to be interrupted at a safe point (a hook, in the
 * interpreter), where raising an error is safe; allocations still succeed
 * up to 'limit + reserve', so that compiled code which does not reach a
 * safe point, the error, its traceback and its report have room.  Past
 * that ceiling (or once 'poison' is set) an allocation never returns to
 * LuaJIT: it jumps to the innermost armed escape, and the state is
 * 'escaped' (abandoned: it must never run again, only be closed).  With
 * no escape armed (the engine's own C code filling a state), it fails
 * with NULL as a plain allocator would. */
typedef struct myc__lua_budget {
  const myc__alloc *base;
  _Atomic size_t used;
  size_t limit; /* 0: unlimited */
  size_t reserve;
  size_t extra; /* added to the ceiling while the state is closed */
  _Atomic size_t peak; /* read by status, like 'used' */
  unsigned long refused;
  int tripped;
  int poisoned;      /* refused an allocation because of 'poison' */
  _Atomic int poison; /* set by another thread: refuse the next growth */
  int escaped;        /* an allocation escaped: the state is abandoned */
  myc__escape *escape; /* innermost armed call, NULL: refuse with NULL */
  /* Called (on the state's thread) by every allocation past 'limit'. */
  void (*on_trip)(struct myc__lua_budget *b);
  void *L;            /* the state, for on_trip; NULL while it is made */
  /* A deadline for the code the state runs (loading, init): monotonic
   * ns, 0 for none; the runtime's hook reads it.  Set by other threads
   * to stop a load early. */
  _Atomic int64_t deadline_ns;
  double deadline_ms; /* the budget it came from, for messages */
  int overtime;       /* the deadline interrupted the state */
  _Atomic int loading; /* being loaded: the watchdog does not hook it */
  void *owner;        /* the service */
  void *cache[MYC_LUA_CLASSES]; /* free blocks, linked through their start */
  size_t cached;                /* bytes in the cache */
  /* A state's first small blocks are cut from one slab of 'slab_size'
   * bytes (0: none) taken from 'pool' (or the base hook) when first
   * needed: making a state then costs one allocation instead of a few
   * thousand, and no per-block header.  Freed slab blocks always go to the cache; the slab
   * goes back in one piece at myc__lua_budget_drain. */
  size_t slab_size;
  /* Where the slab comes from (base/slabs.h, its size 'slab_size'), or
   * NULL: from the base hook. */
  struct myc__slabs *pool;
  char *slab;
  size_t slab_used;
  /* A region prepared for a copy into the state (a reload's snapshot)
   * by myc__lua_budget_prepare, on another thread than the one that
   * copies: blocks of any size are cut from it while it lasts, so the
   * copy neither calls the base hook nor faults a page in.  Freed small
   * blocks go to the cache as the slab's do; a freed large one stays
   * where it is until the region goes back whole at the drain. */
  char *prep;
  size_t prep_size;
  size_t prep_used;
} myc__lua_budget;

/* Removes escape 'e' of 'b' after the call returned normally. */
static inline void myc__escape_disarm(myc__lua_budget *b, myc__escape *e) {
  b->escape = e->prev;
}

/* Jumps to the innermost escape armed on 'b' (an escape caught to clean
 * up goes on outwards).  Only with one armed. */
_Noreturn void myc__escape_rethrow(myc__lua_budget *b);

/* A lua_Alloc that counts bytes in the myc__lua_budget 'ud', trips past
 * its limit and refuses to grow past limit + reserve, or once when
 * poisoned: by escaping when an escape is armed, else with NULL
 * (shrinking and freeing always succeed, as Lua requires).  Blocks of up to 512 bytes come from the base
 * hook in their class size and return to the cache. */
void *myc__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Gives 'b' a region of at least 'n' bytes for its next allocations,
 * with every page touched (faulted in) by the calling thread.  Call before
 * the thread that runs the state copies into it, while no allocation of
 * the state runs.  Returns 0, or MYC_ENOMEM (the budget is unchanged and
 * works as before).  A budget that has a region keeps it. */
int myc__lua_budget_prepare(myc__lua_budget *b, size_t n);

/* Returns the cached blocks and the prepared region to the base hook and
 * the slab to its pool.  Call after lua_close(). */
void myc__lua_budget_drain(myc__lua_budget *b);

/* Returns the cached blocks that came from the base hook to it (those of
 * the slab and the region stay cached): after a burst of garbage, so that
 * the next allocations are cut from the region, in order, and not from
 * blocks scattered over the heap.  The thread that runs the state. */
void myc__lua_budget_trim(myc__lua_budget *b);

#endif
