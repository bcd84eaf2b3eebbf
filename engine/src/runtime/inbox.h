/* inbox.h -- what other threads hand a worker: messages for its tasks,
 * in a vector the owner swaps out whole (one lock per hand-over and one
 * per drain, never one per message), and jobs, on a queue of their own
 * (the control channel: a job never rides among messages).  Per producer,
 * messages keep their order.
 */
#ifndef MYC_INBOX_H
#define MYC_INBOX_H

#include "base/alloc.h"
#include "core/buf.h"
#include "core/job.h"

#include <stdatomic.h>
#include <uv.h>

struct myc__task;

/* One message on its way to a task: the item carries one reference, and
 * its payload length (so that the receiver accounts for it without
 * reading a buffer another core wrote). */
typedef struct {
  struct myc__task *task;
  myc_buf *buf;
  uint32_t len;
} myc__handoff;

typedef struct {
  const myc__alloc *alloc;
  uv_mutex_t lock;
  myc__handoff *items, *spare;
  uint32_t n, cap, spare_cap;
  myc__jobs jobs;
  int signalled; /* a wake-up is on its way for what is queued */
  /* Mirrors "something queued" for the owner to peek at without the
   * lock. */
  _Atomic int nonempty;
  /* The owner had nothing to do when the inbox was last empty; any
   * hand-over clears it (under the lock, so it cannot be lost). */
  _Atomic int idle;
  /* Set by a sender that handed a request or a reply over before the end
   * of its turn (myc__worker_hurry): the owner runs its tasks in the
   * wake-up itself instead of a loop iteration later. */
  _Atomic int urgent;
} myc__inbox;

/* What the owner took in one go (myc__inbox_take). */
typedef struct {
  myc__handoff *items;
  uint32_t n, cap;
  myc__job *jobs;
} myc__inbox_batch;

/* Returns 0 or a libuv error (the lock could not be made). */
int myc__inbox_init(myc__inbox *ib, const myc__alloc *a);

/* Frees the vectors.  Nothing may be queued (see myc__inbox_take). */
void myc__inbox_destroy(myc__inbox *ib);

/* Appends 'n' items (any thread).  Returns 1 when the owner must be
 * woken (the first hand-over since it last took), 0, or MYC_ENOMEM:
 * then nothing was queued and the caller keeps the references. */
int myc__inbox_put(myc__inbox *ib, const myc__handoff *items, uint32_t n);

/* As myc__inbox_put for the 'n' items of the vector '*items' of '*cap'
 * slots (allocated from the inbox's allocator): into an empty inbox the
 * vector itself is handed over, and '*items' and '*cap' are then an empty
 * vector of the inbox's (possibly none) instead.  On MYC_ENOMEM, nothing
 * was queued and the vector is unchanged. */
int myc__inbox_give(myc__inbox *ib, myc__handoff **items, uint32_t *cap,
                    uint32_t n);

/* Queues job 'j' (any thread).  Returns 1 when the owner must be woken,
 * else 0.  Cannot fail. */
int myc__inbox_post(myc__inbox *ib, myc__job *j);

/* Owner only: takes every queued item and job into 'b'.  The items stay
 * valid until myc__inbox_done(b). */
void myc__inbox_take(myc__inbox *ib, myc__inbox_batch *b);

/* Owner only: the items of 'b' are handled; their vector is kept for the
 * next swap. */
void myc__inbox_done(myc__inbox *ib, myc__inbox_batch *b);

/* Owner only: records that it is idle ('nothing_ready'), which holds only
 * while the inbox stays empty. */
void myc__inbox_set_idle(myc__inbox *ib, int nothing_ready);

#endif
