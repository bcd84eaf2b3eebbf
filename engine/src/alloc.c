/* alloc.c -- allocation hook wrappers and the per-service counting Lua
 * allocator.  Nothing here keeps global state: the hook lives in the
 * engine and the budget in the service. */
#include "alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void *myc__default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
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

void *myc__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  myc__lua_budget *b = ud;
  size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
  void *p;

  /* Lua passes the type tag in osize when ptr is NULL. */
  if (ptr == NULL)
    osize = 0;
  if (nsize == 0) {
    b->base->fn(b->base->ud, ptr, osize, 0);
    atomic_store_explicit(&b->used, used - osize, memory_order_relaxed);
    return NULL;
  }
  if (nsize > osize) {
    /* Another thread's request to interrupt a compiled loop that the
     * hook cannot reach: fail one allocation (docs/SUPERVISION.md). */
    if (atomic_load_explicit(&b->poison, memory_order_relaxed) &&
        atomic_exchange(&b->poison, 0)) {
      b->poisoned = 1;
      b->refused++;
      return NULL;
    }
    if (b->limit != 0 &&
        used - osize + nsize > b->limit + (b->tripped ? b->reserve : 0)) {
      b->tripped = 1;
      b->refused++;
      return NULL;
    }
  }
  p = b->base->fn(b->base->ud, ptr, osize, nsize);
  if (p == NULL)
    return NULL;
  used = used - osize + nsize;
  atomic_store_explicit(&b->used, used, memory_order_relaxed);
  if (used > b->peak)
    b->peak = used;
  return p;
}
