/* alloc.c -- allocation hook wrappers and the per-service counting Lua
 * allocator.  Nothing here keeps global state but the allocator's options,
 * set once: the hook lives in the engine and the budget in the service. */
#include "base/alloc.h"

#include "base/slabs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef MYC_MIMALLOC
#include <mimalloc.h>
#include <pthread.h>
#endif

/* mimalloc when built with it: glibc grows a worker thread's arena a page
 * at a time (one mprotect each) and trims it back as soon as its top is
 * free, so a service's heap faults the same pages in again and again;
 * mimalloc's per-thread pages are reused without it (docs/PERFORMANCE.md).
 * Nothing else in the engine calls malloc or free, so no pointer crosses
 * from one allocator to the other. */
void *myc__default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
#ifdef MYC_MIMALLOC
  if (nsize == 0) {
    mi_free(ptr);
    return NULL;
  }
  return mi_realloc(ptr, nsize);
#else
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
#endif
}

#ifdef MYC_MIMALLOC
/* mimalloc gives the pages of a free span back to the OS (madvise) 25 ms
 * after they fell free.  A busy service's Lua heap frees most of what it
 * allocated at every GC cycle, further apart than that under a flood, so
 * the same pages were given back and faulted in again, cycle after cycle
 * (a second instead: 30 % fewer page faults in a Bandit flood;
 * docs/PERFORMANCE.md, "Where a Bandit event's CPU goes").  A second
 * keeps them across cycles and still returns what a burst left.
 * MIMALLOC_DECOMMIT_DELAY, when set, is the user's choice and wins. */
static void tune_once(void) {
  if (getenv("MIMALLOC_DECOMMIT_DELAY") == NULL)
    mi_option_set(mi_option_decommit_delay, 1000);
}
#endif

void myc__default_alloc_tune(void) {
#ifdef MYC_MIMALLOC
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, tune_once);
#endif
}

void *myc__malloc(const myc__alloc *a, size_t n) {
  return a->fn(a->ud, NULL, 0, n ? n : 1);
}

void *myc__calloc(const myc__alloc *a, size_t n) {
  void *p = myc__malloc(a, n);
  if (p != NULL)
    memset(p, 0, n);
  return p;
}

void *myc__realloc(const myc__alloc *a, void *p, size_t osize, size_t nsize) {
  return a->fn(a->ud, p, osize, nsize ? nsize : 1);
}

void myc__free(const myc__alloc *a, void *p, size_t n) {
  int saved = errno;
  if (p != NULL)
    a->fn(a->ud, p, n, 0);
  errno = saved;
}

int myc__grow(const myc__alloc *a, void **v, uint32_t *cap, size_t elem,
              uint32_t need, uint32_t first) {
  uint32_t ncap = *cap ? *cap : first;
  void *nv;
  if (need <= *cap)
    return 0;
  while (ncap < need)
    ncap *= 2;
  nv = myc__realloc(a, *v, (size_t)*cap * elem, (size_t)ncap * elem);
  if (nv == NULL)
    return MYC_ENOMEM;
  *v = nv;
  *cap = ncap;
  return 0;
}

char *myc__strdup(const myc__alloc *a, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = myc__malloc(a, n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

void myc__strfree(const myc__alloc *a, char *s) {
  if (s != NULL)
    myc__free(a, s, strlen(s) + 1);
}

/* Class of a small block (0 for 1..16 bytes), or -1 above 512 bytes. */
static int lua_class(size_t n) {
  return n <= 16 * MYC_LUA_CLASSES ? (int)((n + 15) / 16) - 1 : -1;
}

static size_t class_bytes(size_t n) {
  int c = lua_class(n);
  return c < 0 ? n : (size_t)(c + 1) * 16;
}

/* A block of 'n' bytes (as the base hook sees it: the class size for a
 * small block), or NULL. */
static int in_slab(const myc__lua_budget *b, const void *p) {
  return b->slab != NULL && (const char *)p >= b->slab &&
         (const char *)p < b->slab + b->slab_size;
}

/* 'n' bytes (a class size) from the slab, or NULL when it is used up or
 * cannot be had. */
static void *slab_cut(myc__lua_budget *b, size_t n) {
  void *p;
  if (b->slab == NULL) {
    if (b->slab_size == 0)
      return NULL;
    b->slab = b->pool != NULL ? myc__slabs_take(b->pool)
                              : b->base->fn(b->base->ud, NULL, 0, b->slab_size);
    if (b->slab == NULL)
      return NULL;
  }
  if (b->slab_used + n > b->slab_size)
    return NULL;
  p = b->slab + b->slab_used;
  b->slab_used += n;
  return p;
}

static int in_prep(const myc__lua_budget *b, const void *p) {
  return b->prep != NULL && (const char *)p >= b->prep &&
         (const char *)p < b->prep + b->prep_size;
}

/* 'n' bytes (16-aligned) from the prepared region, or NULL. */
static void *prep_cut(myc__lua_budget *b, size_t n) {
  void *p;
  n = (n + 15) & ~(size_t)15;
  if (b->prep == NULL || b->prep_size - b->prep_used < n)
    return NULL;
  p = b->prep + b->prep_used;
  b->prep_used += n;
  return p;
}

static void *block_get(myc__lua_budget *b, size_t n) {
  int c = lua_class(n);
  void *p;
  if (c >= 0) {
    if ((p = b->cache[c]) != NULL) {
      b->cache[c] = *(void **)p;
      /* Slab and region blocks were never counted (block_put): taking
       * one off 'cached' wrapped it below zero, and a wrapped count
       * sent every later block back to the base hook. */
      if (!in_slab(b, p) && !in_prep(b, p))
        b->cached -= (size_t)(c + 1) * 16;
      return p;
    }
    if ((p = slab_cut(b, class_bytes(n))) != NULL)
      return p;
  }
  if ((p = prep_cut(b, class_bytes(n))) != NULL)
    return p;
  return b->base->fn(b->base->ud, NULL, 0, class_bytes(n));
}

static void block_put(myc__lua_budget *b, void *p, size_t n) {
  int c = lua_class(n);
  if (in_prep(b, p) && c < 0)
    return; /* its room comes back with the region */
  if (c >= 0 && (in_slab(b, p) || in_prep(b, p))) {
    /* Not counted in 'cached': the slab is held whatever its blocks do. */
    *(void **)p = b->cache[c];
    b->cache[c] = p;
    return;
  }
  /* No more than the state's live heap either: a small service (most of
   * ten thousand) would otherwise keep up to the whole cap of what it
   * once freed, beyond its memory limit, which counts live bytes.  While
   * the heap shrinks below the cache, each free also gives back one
   * cached block of its class, so the cache follows the heap down. */
  size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
  if (c >= 0 && b->cached < MYC_LUA_CACHE_BYTES && b->cached < used) {
    *(void **)p = b->cache[c];
    b->cache[c] = p;
    b->cached += (size_t)(c + 1) * 16;
    return;
  }
  if (c >= 0 && b->cached >= used && b->cache[c] != NULL &&
      !in_slab(b, b->cache[c]) && !in_prep(b, b->cache[c])) {
    void *q = b->cache[c];
    b->cache[c] = *(void **)q;
    b->cached -= (size_t)(c + 1) * 16;
    b->base->fn(b->base->ud, q, (size_t)(c + 1) * 16, 0);
  }
  b->base->fn(b->base->ud, p, class_bytes(n), 0);
}

/* Moves a block between sizes.  A small block that keeps its class stays
 * where it is; two large ones go to the base hook's realloc.  A shrink
 * that cannot allocate keeps the old block (Lua requires shrinking to
 * succeed); it is then accounted in the smaller class, which only makes
 * the cache hand out more room than asked. */
static void *block_resize(myc__lua_budget *b, void *ptr, size_t osize,
                          size_t nsize) {
  int oc = lua_class(osize), nc = lua_class(nsize);
  void *p;
  if (oc >= 0 && oc == nc)
    return ptr;
  /* A large block moves into the prepared region while it has room (a
   * string table or an array doubling during a copy): a realloc would
   * fault fresh pages in. */
  if (oc < 0 && nc < 0 && !in_prep(b, ptr) &&
      (b->prep == NULL || b->prep_size - b->prep_used < nsize))
    return b->base->fn(b->base->ud, ptr, osize, nsize);
  p = block_get(b, nsize);
  if (p == NULL)
    return nsize < osize ? ptr : NULL;
  memcpy(p, ptr, osize < nsize ? osize : nsize);
  block_put(b, ptr, osize);
  return p;
}

void myc__lua_budget_drain(myc__lua_budget *b) {
  int c;
  for (c = 0; c < MYC_LUA_CLASSES; c++) {
    while (b->cache[c] != NULL) {
      void *p = b->cache[c];
      b->cache[c] = *(void **)p;
      if (!in_slab(b, p) && !in_prep(b, p))
        b->base->fn(b->base->ud, p, (size_t)(c + 1) * 16, 0);
    }
  }
  b->cached = 0;
  if (b->slab != NULL && b->pool != NULL)
    myc__slabs_give(b->pool, b->slab);
  else if (b->slab != NULL)
    b->base->fn(b->base->ud, b->slab, b->slab_size, 0);
  b->slab = NULL;
  b->slab_used = 0;
  if (b->prep != NULL)
    b->base->fn(b->base->ud, b->prep, b->prep_size, 0);
  b->prep = NULL;
  b->prep_size = b->prep_used = 0;
}

void myc__lua_budget_trim(myc__lua_budget *b) {
  int c;
  for (c = 0; c < MYC_LUA_CLASSES; c++) {
    void **link = &b->cache[c];
    while (*link != NULL) {
      void *p = *link;
      if (in_slab(b, p) || in_prep(b, p)) {
        link = (void **)p;
        continue;
      }
      *link = *(void **)p;
      b->base->fn(b->base->ud, p, (size_t)(c + 1) * 16, 0);
    }
  }
  b->cached = 0; /* it counts the base hook's blocks only */
}

#define PAGE 4096

int myc__lua_budget_prepare(myc__lua_budget *b, size_t n) {
  volatile char *p;
  size_t i;
  if (b->prep != NULL)
    return 0;
  n = (n + PAGE - 1) & ~(size_t)(PAGE - 1);
  p = b->base->fn(b->base->ud, NULL, 0, n);
  if (p == NULL)
    return MYC_ENOMEM;
  /* The first write to a page is what costs (a fault, and for a fresh
   * heap an mprotect): done here, not on the thread that copies. */
  for (i = 0; i < n; i += PAGE)
    p[i] = 0;
  b->prep = (char *)p;
  b->prep_size = n;
  b->prep_used = 0;
  return 0;
}

_Noreturn void myc__escape_rethrow(myc__lua_budget *b) {
  myc__escape *e = b->escape;
  b->escape = e->prev;
  siglongjmp(e->jb, 1);
}

/* A growth the budget does not allow. */
static void *refuse(myc__lua_budget *b) {
  b->refused++;
  if (b->escape != NULL) {
    b->escaped = 1;
    myc__escape_rethrow(b);
  }
  return NULL;
}

void *myc__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  myc__lua_budget *b = ud;
  size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
  void *p;

  /* Lua passes the type tag in osize when ptr is NULL. */
  if (ptr == NULL)
    osize = 0;
  if (nsize == 0) {
    if (ptr != NULL)
      block_put(b, ptr, osize);
    atomic_store_explicit(&b->used, used - osize, memory_order_relaxed);
    return NULL;
  }
  if (nsize > osize) {
    /* Another thread's request to interrupt a compiled loop that the
     * hook cannot reach (docs/SUPERVISION.md). */
    if (atomic_load_explicit(&b->poison, memory_order_relaxed) &&
        atomic_exchange(&b->poison, 0)) {
      b->poisoned = 1;
      return refuse(b);
    }
    if (b->limit != 0 && used - osize + nsize > b->limit) {
      b->tripped = 1;
      if (used - osize + nsize > b->limit + b->reserve + b->extra)
        return refuse(b);
      if (b->on_trip != NULL)
        b->on_trip(b);
    }
  }
  p = ptr == NULL ? block_get(b, nsize) : block_resize(b, ptr, osize, nsize);
  if (p == NULL) {
    /* The process (or the embedder's hook) is out of memory: the same
     * hazard as the ceiling when compiled code asked. */
    b->tripped = 1;
    return refuse(b);
  }
  used = used - osize + nsize;
  atomic_store_explicit(&b->used, used, memory_order_relaxed);
  if (used > atomic_load_explicit(&b->peak, memory_order_relaxed))
    atomic_store_explicit(&b->peak, used, memory_order_relaxed);
  return p;
}
