/* slabs.h -- the slabs Lua states cut their first blocks from
 * (myc__lua_budget.slab), all of one size, carved from large chunks of
 * the Lua allocation hook that the kernel is asked to back with huge
 * pages.  Making a small service's state then touches a few huge pages
 * instead of faulting in a few dozen small ones (about half its start
 * time went to page faults), and a closed state's slab goes to the next
 * state instead of back to the hook.  Thread-safe: states are made on
 * workers and on the reload loader. */
#ifndef MYC_SLABS_H
#define MYC_SLABS_H

#include "base/alloc.h"

#include <uv.h>

typedef struct myc__slabs {
  const myc__alloc *base; /* where chunks come from; not owned */
  size_t slab_size;
  uv_mutex_t lock;
  void *free;    /* slabs given back, linked through their first word */
  void *chunks;  /* chunks taken, linked through their first word */
  char *next;    /* the unused rest of the newest chunk */
  size_t left;
} myc__slabs;

/* Prepares an empty pool of 'slab_size' slabs (a multiple of 16) from
 * 'base' (kept by the caller until myc__slabs_destroy).  Returns 0 or
 * MYC_ENOMEM. */
int myc__slabs_init(myc__slabs *p, const myc__alloc *base, size_t slab_size);

/* Gives every chunk back to the hook.  No slab may be in use any more. */
void myc__slabs_destroy(myc__slabs *p);

/* A slab of p->slab_size bytes (its content undefined), or NULL when the
 * hook refuses a new chunk. */
void *myc__slabs_take(myc__slabs *p);

/* Returns 'slab' (from myc__slabs_take) to the pool. */
void myc__slabs_give(myc__slabs *p, void *slab);

#endif
