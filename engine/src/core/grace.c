/* grace.c -- grace periods for non-worker readers (see grace.h). */
#include "core/grace.h"

#include "base/alloc.h"

#include <sched.h>

int myc__grace_init(myc__grace *g) {
  atomic_init(&g->epoch, 0);
  atomic_init(&g->readers[0], 0);
  atomic_init(&g->readers[1], 0);
  return uv_mutex_init(&g->lock) == 0 ? 0 : MYC_ENOMEM;
}

void myc__grace_destroy(myc__grace *g) { uv_mutex_destroy(&g->lock); }

/* Flips the epoch and waits for the readers of the old one.  Sections
 * are short (a delivery, a hand-over), so yielding beats sleeping. */
static void flip_and_drain(myc__grace *g) {
  int old = (int)(atomic_fetch_add(&g->epoch, 1) & 1);
  while (atomic_load(&g->readers[old]) != 0)
    sched_yield();
}

void myc__grace_wait(myc__grace *g) {
  uv_mutex_lock(&g->lock);
  /* Twice: a reader that read the epoch just before the first flip
   * counts itself in the old counter after we looked at it, and would
   * be missed by the next waiter, which drains the other one. */
  flip_and_drain(g);
  flip_and_drain(g);
  uv_mutex_unlock(&g->lock);
}
