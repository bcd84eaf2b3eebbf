/* inbox.c -- hand-over from other threads to a worker (see inbox.h). */
#include "runtime/inbox.h"

#include <string.h>

int myc__inbox_init(myc__inbox *ib, const myc__alloc *a) {
  memset(ib, 0, sizeof *ib);
  ib->alloc = a;
  atomic_init(&ib->nonempty, 0);
  atomic_init(&ib->idle, 1);
  atomic_init(&ib->urgent, 0);
  return uv_mutex_init(&ib->lock);
}

void myc__inbox_destroy(myc__inbox *ib) {
  myc__free(ib->alloc, ib->items, ib->cap * sizeof *ib->items);
  myc__free(ib->alloc, ib->spare, ib->spare_cap * sizeof *ib->spare);
  ib->items = ib->spare = NULL;
  ib->cap = ib->spare_cap = ib->n = 0;
  uv_mutex_destroy(&ib->lock);
}

static int grow(myc__inbox *ib, uint32_t need) {
  uint32_t c = ib->cap ? ib->cap : 256;
  myc__handoff *p;
  while (c < need)
    c *= 2;
  if (c == ib->cap)
    return 0;
  p = myc__realloc(ib->alloc, ib->items, ib->cap * sizeof *p, c * sizeof *p);
  if (p == NULL)
    return MYC_ENOMEM;
  ib->items = p;
  ib->cap = c;
  return 0;
}

/* Under the lock: something is queued; returns whether to wake. */
static int queued_locked(myc__inbox *ib) {
  int wake = !ib->signalled;
  ib->signalled = 1;
  atomic_store_explicit(&ib->nonempty, 1, memory_order_relaxed);
  atomic_store_explicit(&ib->idle, 0, memory_order_relaxed);
  return wake;
}

/* Under the lock: appends 'n' items.  0 or MYC_ENOMEM. */
static int append_locked(myc__inbox *ib, const myc__handoff *items,
                         uint32_t n) {
  if (ib->n + n > ib->cap && grow(ib, ib->n + n) != 0)
    return MYC_ENOMEM;
  memcpy(ib->items + ib->n, items, n * sizeof *items);
  ib->n += n;
  return 0;
}

int myc__inbox_put(myc__inbox *ib, const myc__handoff *items, uint32_t n) {
  int rc;
  uv_mutex_lock(&ib->lock);
  rc = append_locked(ib, items, n);
  if (rc == 0)
    rc = queued_locked(ib);
  uv_mutex_unlock(&ib->lock);
  return rc;
}

int myc__inbox_give(myc__inbox *ib, myc__handoff **items, uint32_t *cap,
                    uint32_t n) {
  myc__handoff *mine;
  uint32_t mine_cap;
  int rc = 0;
  uv_mutex_lock(&ib->lock);
  if (ib->n > 0) {
    rc = append_locked(ib, *items, n);
  } else {
    /* Empty: the sender's vector becomes the inbox's, and the sender gets
     * the (empty) one the owner gave back, instead of a copy of every
     * item. */
    mine = ib->items;
    mine_cap = ib->cap;
    ib->items = *items;
    ib->cap = *cap;
    ib->n = n;
    *items = mine;
    *cap = mine_cap;
  }
  if (rc == 0)
    rc = queued_locked(ib);
  uv_mutex_unlock(&ib->lock);
  return rc;
}

int myc__inbox_post(myc__inbox *ib, myc__job *j) {
  int wake;
  uv_mutex_lock(&ib->lock);
  myc__jobs_push(&ib->jobs, j);
  wake = queued_locked(ib);
  uv_mutex_unlock(&ib->lock);
  return wake;
}

void myc__inbox_take(myc__inbox *ib, myc__inbox_batch *b) {
  uv_mutex_lock(&ib->lock);
  b->items = ib->items;
  b->n = ib->n;
  b->cap = ib->cap;
  b->jobs = myc__jobs_take(&ib->jobs);
  ib->items = ib->spare;
  ib->cap = ib->spare_cap;
  ib->spare = NULL;
  ib->spare_cap = 0;
  ib->n = 0;
  ib->signalled = 0;
  atomic_store_explicit(&ib->nonempty, 0, memory_order_relaxed);
  uv_mutex_unlock(&ib->lock);
}

void myc__inbox_done(myc__inbox *ib, myc__inbox_batch *b) {
  /* Only the owner touches 'spare', and take() left it empty. */
  ib->spare = b->items;
  ib->spare_cap = b->cap;
  b->items = NULL;
  b->n = b->cap = 0;
}

void myc__inbox_set_idle(myc__inbox *ib, int nothing_ready) {
  uv_mutex_lock(&ib->lock);
  atomic_store_explicit(&ib->idle,
                        nothing_ready && ib->n == 0 && ib->jobs.head == NULL,
                        memory_order_release);
  uv_mutex_unlock(&ib->lock);
}
