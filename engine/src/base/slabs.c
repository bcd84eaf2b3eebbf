/* slabs.c -- Lua slabs cut from huge-page chunks (see slabs.h).  A chunk
 * is never returned before the pool is destroyed: its slabs are reused
 * through the free list. */
#include "base/slabs.h"

#include <stdint.h>
#include <sys/mman.h>

/* Two huge pages of x86-64 and arm64 (4 KiB granule) and room for the
 * alignment: a chunk holds at least one aligned 2 MiB run whatever
 * address the hook returns. */
#define CHUNK_BYTES (6u << 20)
#define HUGE_BYTES ((uintptr_t)2 << 20)
#define HEADER 64 /* the chunk's link, then slabs on a 64-byte boundary */

int myc__slabs_init(myc__slabs *p, const myc__alloc *base, size_t slab_size) {
  p->base = NULL;
  p->slab_size = slab_size;
  p->free = p->chunks = NULL;
  p->next = NULL;
  p->left = 0;
  if (uv_mutex_init(&p->lock) != 0)
    return MYC_ENOMEM;
  p->base = base;
  return 0;
}

void myc__slabs_destroy(myc__slabs *p) {
  while (p->chunks != NULL) {
    void *c = p->chunks;
    p->chunks = *(void **)c;
    p->base->fn(p->base->ud, c, CHUNK_BYTES, 0);
  }
  uv_mutex_destroy(&p->lock);
}

/* Asks for huge pages over the aligned runs of 'c'.  Only advice: a
 * kernel without transparent huge pages (or with them off) refuses, and
 * the chunk works with small pages. */
static void advise(char *c) {
#ifdef MADV_HUGEPAGE
  uintptr_t lo = ((uintptr_t)c + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
  uintptr_t hi = ((uintptr_t)c + CHUNK_BYTES) & ~(HUGE_BYTES - 1);
  if (hi > lo)
    (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
  (void)c;
#endif
}

/* A new chunk as the rest to cut from.  Under the lock. */
static int add_chunk(myc__slabs *p) {
  char *c = p->base->fn(p->base->ud, NULL, 0, CHUNK_BYTES);
  if (c == NULL)
    return MYC_ENOMEM;
  advise(c);
  *(void **)c = p->chunks;
  p->chunks = c;
  p->next = c + HEADER;
  p->left = CHUNK_BYTES - HEADER;
  return 0;
}

void *myc__slabs_take(myc__slabs *p) {
  void *s = NULL;
  uv_mutex_lock(&p->lock);
  if (p->free != NULL) {
    s = p->free;
    p->free = *(void **)s;
  } else if (p->left >= p->slab_size || add_chunk(p) == 0) {
    s = p->next;
    p->next += p->slab_size;
    p->left -= p->slab_size;
  }
  uv_mutex_unlock(&p->lock);
  return s;
}

void myc__slabs_give(myc__slabs *p, void *slab) {
  uv_mutex_lock(&p->lock);
  *(void **)slab = p->free;
  p->free = slab;
  uv_mutex_unlock(&p->lock);
}
