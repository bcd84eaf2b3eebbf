/* grace.h -- grace periods for readers that are not workers (host threads
 * publishing, the links' and NATS threads): a reader brackets what it
 * reads of a subscriber list (and the task pointers it keeps until it has
 * handed them over) with enter/exit, and myc__grace_wait() returns once
 * every section that began before it has ended.  Two counters and an
 * epoch, as in classic SRCU: readers never wait and share no lock, and a
 * steady stream of readers cannot keep a waiter waiting for ever.
 */
#ifndef MYC_GRACE_H
#define MYC_GRACE_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
  _Atomic uint32_t epoch;
  _Atomic int64_t readers[2];
  uv_mutex_t lock; /* one waiter at a time */
} myc__grace;

/* Returns 0 or MYC_ENOMEM. */
int myc__grace_init(myc__grace *g);
void myc__grace_destroy(myc__grace *g);

/* Begins a read section; returns what myc__grace_exit() takes.  Any
 * thread; sections of one thread may not nest. */
static inline int myc__grace_enter(myc__grace *g) {
  int i = (int)(atomic_load(&g->epoch) & 1);
  atomic_fetch_add(&g->readers[i], 1);
  return i;
}

static inline void myc__grace_exit(myc__grace *g, int i) {
  atomic_fetch_sub_explicit(&g->readers[i], 1, memory_order_release);
}

/* Waits until every read section that began before the call has ended
 * (what it read before a change published before the call is no longer
 * used).  Any thread not in a read section of 'g'. */
void myc__grace_wait(myc__grace *g);

#endif
