/* worker.c -- worker loop: ready list, timers, inbox (see worker.h).
 *
 * The loop runs tasks in turns from an idle handle while any is ready, so
 * a busy pipeline polls I/O once per round of turns rather than once per
 * message, and sleeps in the kernel when nothing is ready.
 */
#include "runtime/worker.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Turns per idle callback: bounds the time between two I/O polls. */
#define ROUND_TURNS 64
/* Batches per turn (see myc__task_ops.run). */
#define TURN_BATCHES 16

static void on_idle(uv_idle_t *h);
static void on_wake(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *h);

int myc__worker_init(myc__worker *w, myc__sched *sched, uint32_t index) {
  const myc__alloc *a = sched->alloc;
  int rc;
  memset(w, 0, sizeof *w);
  w->sched = sched;
  w->index = index;
  w->timer_armed = INT64_MAX;
  myc__owner_take(&w->owner);
  /* One more return chain: the aux pool's (flush_returns). */
  if (myc__pool_init(&w->pool, a, 16384, (uint8_t)index,
                     sched->nworkers_max + 1) != 0)
    return MYC_ENOMEM;
  myc__rng_seed(&w->rng);
  myc__timers_init(&w->timers, a);
  atomic_init(&w->phase, MYC_PHASE_RUN);
  w->stage = myc__calloc(a, sched->nworkers_max * sizeof *w->stage);
  if (w->stage == NULL)
    goto fail_stage;
  rc = uv_loop_init(&w->loop);
  if (rc != 0)
    goto fail_loop;
  rc = myc__inbox_init(&w->inbox, a);
  if (rc != 0)
    goto fail_inbox;
  w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->wake_fd < 0 ||
      (rc = uv_poll_init(&w->loop, &w->wake, w->wake_fd)) != 0) {
    rc = rc ? rc : MYC_ENOMEM;
    goto fail_wake;
  }
  uv_poll_start(&w->wake, UV_READABLE, on_wake);
  uv_idle_init(&w->loop, &w->idle);
  uv_timer_init(&w->loop, &w->timer);
  w->wake.data = w->idle.data = w->timer.data = w;
  w->now = myc__clock_now(sched->clock);
  return 0;
fail_wake:
  if (w->wake_fd >= 0)
    close(w->wake_fd);
  myc__inbox_destroy(&w->inbox);
fail_inbox:
  uv_loop_close(&w->loop);
fail_loop:
  myc__free(a, w->stage, sched->nworkers_max * sizeof *w->stage);
  rc = rc ? rc : MYC_ENOMEM;
  myc__pool_destroy(&w->pool);
  return rc;
fail_stage:
  myc__pool_destroy(&w->pool);
  return MYC_ENOMEM;
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void close_handles(myc__worker *w) {
  if (!uv_is_closing((uv_handle_t *)&w->wake)) {
    uv_close((uv_handle_t *)&w->wake, close_cb);
    uv_close((uv_handle_t *)&w->idle, close_cb);
    uv_close((uv_handle_t *)&w->timer, close_cb);
  }
}

static void release(myc__worker *w, myc_buf *b) {
  myc__buf_release(&w->pool, w->sched->alloc, b);
}

/* Counts items lost at shutdown (or for lack of memory) and releases
 * them. */
static void drop_items(myc__worker *w, const myc__handoff *items, uint32_t n,
                       int reason) {
  uint32_t i;
  for (i = 0; i < n; i++) {
    myc__mailbox_count(&items[i].task->mb, reason, items[i].buf->topic_id, 1);
    release(w, items[i].buf);
  }
}

void myc__worker_discard_inbox(myc__worker *w) {
  myc__inbox_batch b;
  uint32_t t;
  MYC_ASSERT_OWNER(&w->owner);
  for (t = 0; t < w->sched->nworkers; t++) {
    myc__stage *st = &w->stage[t];
    drop_items(w, st->items, st->n, MYC_DROP_SHUTDOWN);
    st->n = 0;
  }
  w->staged = 0;
  myc__inbox_take(&w->inbox, &b);
  drop_items(w, b.items, b.n, MYC_DROP_SHUTDOWN);
  myc__inbox_done(&w->inbox, &b);
  myc__jobs_run(b.jobs, 0);
}

void myc__worker_destroy(myc__worker *w) {
  const myc__alloc *a = w->sched->alloc;
  uint32_t t;
  int turns;
  close_handles(w);
  /* Facilities (net/) close their handles when their service stops, but
   * closing can take a few turns (a socket's close callback closes a
   * timer) and a name lookup may still be in the thread pool.  Bounded:
   * a handle nobody closes must not hang the engine's free. */
  for (turns = 0; turns < 500 && uv_run(&w->loop, UV_RUN_NOWAIT) != 0; turns++)
    uv_sleep(1);
  uv_loop_close(&w->loop);
  close(w->wake_fd);
  myc__inbox_destroy(&w->inbox);
  for (t = 0; t < w->sched->nworkers_max; t++)
    myc__free(a, w->stage[t].items, w->stage[t].cap * sizeof *w->stage[t].items);
  myc__free(a, w->stage, w->sched->nworkers_max * sizeof *w->stage);
  myc__timers_destroy(&w->timers);
  myc__pool_destroy(&w->pool);
}

void myc__worker_place(myc__worker *w, myc__task *t, const myc__task_ops *ops) {
  /* The ready list is left alone, and 'worker' and 'ops' are written
   * only when they change: a spawned task is set up on another thread,
   * and emitters on other workers read its 'worker' before it is placed
   * (messages may even be waiting on the ready list). */
  if (t->worker != w)
    t->worker = w;
  if (t->ops != ops)
    t->ops = ops;
  t->next = NULL;
  t->prev = w->tasks_tail;
  if (w->tasks_tail != NULL)
    w->tasks_tail->next = t;
  else
    w->tasks = t;
  w->tasks_tail = t;
}

void myc__worker_unplace(myc__worker *w, myc__task *t) {
  myc__task **p, *prev = NULL;
  if (t->prev != NULL || w->tasks == t) {
    if (t->prev != NULL)
      t->prev->next = t->next;
    else
      w->tasks = t->next;
    if (t->next != NULL)
      t->next->prev = t->prev;
    else
      w->tasks_tail = t->prev;
    t->next = t->prev = NULL;
  }
  if (!t->queued)
    return;
  for (p = &w->ready_head; *p != NULL; prev = *p, p = &(*p)->ready_next)
    if (*p == t) {
      *p = t->ready_next;
      if (w->ready_tail == t)
        w->ready_tail = prev;
      break;
    }
  t->queued = 0;
}

/* Makes the wake-up descriptor of 'w' readable.  Any thread.  EAGAIN
 * (the counter full) still leaves it readable. */
static void signal_fd(myc__worker *w) {
  uint64_t one = 1;
  ssize_t n;
  do
    n = write(w->wake_fd, &one, sizeof one);
  while (n < 0 && errno == EINTR);
}

void myc__worker_wake(myc__worker *w) {
  if (!w->sched->manual)
    signal_fd(w);
}

void myc__workers_set_phase(myc__sched *sched, int phase) {
  uint32_t i;
  for (i = 0; i < sched->nworkers; i++) {
    myc__worker *w = &sched->workers[i];
    atomic_store(&w->phase, phase);
    if (phase == MYC_PHASE_DRAIN)
      atomic_store(&w->inbox.idle, 0);
    signal_fd(w);
  }
}

void myc__worker_schedule(myc__worker *w, myc__task *t) {
  MYC_ASSERT_OWNER(&w->owner);
  t->queued = 1;
  t->ready_next = NULL;
  if (w->ready_tail != NULL)
    w->ready_tail->ready_next = t;
  else
    w->ready_head = t;
  w->ready_tail = t;
  if (!w->sched->manual && !uv_is_active((uv_handle_t *)&w->idle))
    uv_idle_start(&w->idle, on_idle);
}

static myc__task *ready_pop(myc__worker *w) {
  myc__task *t = w->ready_head;
  if (t != NULL) {
    w->ready_head = t->ready_next;
    if (w->ready_head == NULL)
      w->ready_tail = NULL;
    t->queued = 0;
  }
  return t;
}

/* Counts messages (and their bytes) as no longer on their way to their
 * tasks, one atomic per run of consecutive items for the same task. */
static void uncount_incoming(const myc__handoff *items, uint32_t n) {
  uint32_t i = 0;
  while (i < n) {
    myc__task *t = items[i].task;
    uint64_t bytes = items[i].len;
    uint32_t run = 1;
    while (i + run < n && items[i + run].task == t)
      bytes += items[i + run++].len;
    atomic_fetch_sub_explicit(&t->mb.incoming, run, memory_order_relaxed);
    atomic_fetch_sub_explicit(&t->mb.incoming_bytes, bytes,
                              memory_order_relaxed);
    i += run;
  }
}

static int grow(const myc__alloc *a, myc__handoff **items, uint32_t *cap,
                uint32_t need) {
  uint32_t c = *cap ? *cap : 256;
  myc__handoff *p;
  while (c < need)
    c *= 2;
  if (c == *cap)
    return 0;
  p = myc__realloc(a, *items, *cap * sizeof *p, c * sizeof *p);
  if (p == NULL)
    return MYC_ENOMEM;
  *items = p;
  *cap = c;
  return 0;
}

/* Appends to the inbox of 'w'; only the first hand-over into an empty
 * inbox pays for a wake-up. */
static int inbox_put(myc__worker *w, const myc__handoff *items, uint32_t n) {
  int rc = myc__inbox_put(&w->inbox, items, n);
  if (rc > 0)
    myc__worker_wake(w);
  return rc < 0 ? rc : 0;
}

/* Hands the staged items of 'st' to 'w' (the vector itself when its
 * inbox is empty: see myc__inbox_give); 'st' is then empty, or on
 * MYC_ENOMEM unchanged. */
static int inbox_give(myc__worker *w, myc__stage *st) {
  int rc = myc__inbox_give(&w->inbox, &st->items, &st->cap, st->n);
  if (rc > 0)
    myc__worker_wake(w);
  if (rc >= 0)
    st->n = 0;
  return rc < 0 ? rc : 0;
}

/* A loss at the sender, counted; MYC_ETOOBIG or MYC_EFULL. */
static int refuse(myc__task *t, int why, myc_buf *b) {
  myc__mailbox_count(&t->mb, why, b->topic_id, 1);
  return why == MYC_DROP_TOO_LARGE ? MYC_ETOOBIG : MYC_EFULL;
}

int myc__worker_handoff(myc__worker *w, myc__task *t, myc_buf *b) {
  uint64_t len = b->hdr.payload_len;
  myc__handoff h;
  int rc, why;
  /* Bytes only: a host publishing many small messages was never bounded
   * in transit, and the mailbox still drops what does not fit. */
  if ((why = myc__mailbox_transit_refusal(&t->mb, len, 0, 0)) >= 0)
    return refuse(t, why, b);
  h.task = t;
  h.buf = b;
  h.len = (uint32_t)len;
  atomic_fetch_add_explicit(&t->mb.incoming, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&t->mb.incoming_bytes, len, memory_order_relaxed);
  rc = inbox_put(w, &h, 1);
  if (rc != 0) {
    atomic_fetch_sub_explicit(&t->mb.incoming, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&t->mb.incoming_bytes, len,
                              memory_order_relaxed);
  }
  return rc;
}

void myc__worker_post(myc__worker *w, myc__job *j) {
  if (myc__inbox_post(&w->inbox, j) > 0)
    myc__worker_wake(w);
}

/* Counts run 'r' in its task's 'incoming' and empties it. */
static void run_count(myc__stage_run *r) {
  if (r->n > 0) {
    atomic_fetch_add_explicit(&r->task->mb.incoming, r->n,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&r->task->mb.incoming_bytes, r->bytes,
                              memory_order_relaxed);
  }
  r->n = 0;
  r->bytes = 0;
}

/* Counts every open run of 'st' (before it is handed over). */
static void stage_count(myc__stage *st) {
  int i;
  for (i = 0; i < MYC_STAGE_OPEN; i++)
    run_count(&st->runs[i]);
}

/* The open run of 'st' for 't', opened (counting and replacing another
 * one if none is free) when there is none. */
static myc__stage_run *run_open(myc__stage *st, myc__task *t) {
  myc__stage_run *r = myc__stage_run_of(st, t);
  int i;
  if (r != NULL)
    return r;
  for (i = 0; i < MYC_STAGE_OPEN; i++)
    if (st->runs[i].n == 0) {
      r = &st->runs[i];
      break;
    }
  if (r == NULL) {
    r = &st->runs[st->evict++ % MYC_STAGE_OPEN];
    run_count(r);
  }
  r->task = t;
  return r;
}

/* Appends 'b' for 't' to 'st', counting runs as they fill (a worker's
 * staging and a host's share it).  0 or MYC_ENOMEM. */
static int stage_push(myc__stage *st, const myc__alloc *a, myc__task *t,
                      myc_buf *b, uint32_t len) {
  myc__stage_run *r;
  if (st->n == st->cap && grow(a, &st->items, &st->cap, st->n + 1) != 0)
    return MYC_ENOMEM;
  st->items[st->n].task = t;
  st->items[st->n].buf = b;
  st->items[st->n].len = len;
  st->n++;
  r = run_open(st, t);
  st->hot = (uint32_t)(r - st->runs);
  r->bytes += len;
  if (++r->n == MYC_STAGE_RUN)
    run_count(r);
  return 0;
}

int myc__worker_stage_any(myc__worker *w, myc__task *t, myc_buf *b) {
  myc__stage *st = &w->stage[t->worker->index];
  myc__stage_run *r = myc__stage_run_of(st, t);
  uint32_t len = b->hdr.payload_len, in_transit;
  int why;
  MYC_ASSERT_OWNER(&w->owner);
  /* The run not counted yet is ours: flushing it first makes the check
   * below see every message and byte on its way. */
  if (r != NULL && r->bytes + len > MYC_STAGE_RUN_BYTES)
    run_count(r);
  in_transit = atomic_load_explicit(&t->mb.incoming, memory_order_relaxed) +
               (r != NULL ? r->n : 0);
  /* Two mailboxes' worth already on its way: refuse at the sender so that
   * a flood across workers cannot grow memory without bound, while a
   * consumer thread descheduled for a moment does not lose anything. */
  if (!myc__mailbox_transit_ok(&t->mb, len, in_transit) &&
      (why = myc__mailbox_transit_refusal(&t->mb, len, in_transit, 1)) >= 0)
    return refuse(t, why, b);
  if (stage_push(st, w->sched->alloc, t, b, len) != 0)
    return MYC_ENOMEM;
  w->staged++;
  return 0;
}

/* Small buffers released here but born on another worker go home. */
static void flush_returns(myc__worker *w) {
  myc__sched *s = w->sched;
  uint32_t t;
  for (t = 0; t < w->pool.nreturns && t < s->nworkers; t++)
    if (w->pool.returns[t].n > 0)
      myc__pool_give_chain(&s->workers[t].pool, &w->pool.returns[t]);
  if (s->aux_pool != NULL && s->nworkers_max < w->pool.nreturns &&
      w->pool.returns[s->nworkers_max].n > 0)
    myc__pool_give_chain(s->aux_pool, &w->pool.returns[s->nworkers_max]);
  w->pool.pending_returns = 0;
}

void myc__worker_after(myc__worker *w) {
  MYC_ASSERT_OWNER(&w->owner);
  if (w->after_due)
    return;
  w->after_due = 1;
  /* An emit outside a task's turn or a timer (a job's) is flushed by
   * nobody else: the idle callback flushes. */
  if (!w->sched->manual && !uv_is_active((uv_handle_t *)&w->idle))
    uv_idle_start(&w->idle, on_idle);
}

void myc__worker_flush(myc__worker *w) {
  myc__sched *s = w->sched;
  uint32_t t;
  MYC_ASSERT_OWNER(&w->owner);
  if (w->after_due) {
    w->after_due = 0;
    w->after(w->after_ud);
  }
  if (w->pool.pending_returns > 0)
    flush_returns(w);
  if (w->hurried) {
    for (t = 0; t < s->nworkers; t++)
      w->stage[t].hurried = 0;
    w->hurried = 0;
  }
  if (w->staged == 0)
    return;
  for (t = 0; t < s->nworkers; t++) {
    myc__stage *st = &w->stage[t];
    if (st->n == 0)
      continue;
    stage_count(st);
    if (inbox_give(&s->workers[t], st) != 0) {
      /* Out of memory: what cannot be handed over is lost, and counted. */
      uncount_incoming(st->items, st->n);
      drop_items(w, st->items, st->n, MYC_DROP_NEWEST);
      st->n = 0;
    }
  }
  w->staged = 0;
}

void myc__worker_hurry(myc__worker *w) {
  myc__sched *s = w->sched;
  uint32_t t;
  MYC_ASSERT_OWNER(&w->owner);
  if (s->manual || w->staged == 0)
    return;
  for (t = 0; t < s->nworkers; t++) {
    myc__stage *st = &w->stage[t];
    myc__worker *to = &s->workers[t];
    uint32_t n = st->n;
    /* Read without the lock: a stale answer only moves the hand-over to
     * the end of the turn, or makes one early that did not need to be. */
    if (n == 0 || st->hurried ||
        !atomic_load_explicit(&to->inbox.idle, memory_order_relaxed))
      continue;
    st->hurried = 1;
    w->hurried = 1;
    stage_count(st);
    /* Before the hand-over: its lock publishes the flag with the items. */
    atomic_store_explicit(&to->inbox.urgent, 1, memory_order_relaxed);
    /* Out of memory: still staged, and myc__worker_flush deals with it. */
    if (inbox_give(to, st) == 0)
      w->staged -= n;
  }
}

int myc__host_stage_init(myc__host_stage *h, myc__sched *sched) {
  memset(h, 0, sizeof *h);
  h->sched = sched;
  h->section = -1;
  h->nstage = sched->nworkers;
  h->stage = myc__calloc(sched->alloc, (h->nstage + 1) * sizeof *h->stage);
  return h->stage == NULL ? MYC_ENOMEM : 0;
}

static void host_drop(myc__host_stage *h, myc__stage *st, int reason) {
  uint32_t i;
  for (i = 0; i < st->n; i++) {
    myc__mailbox_count(&st->items[i].task->mb, reason,
                       st->items[i].buf->topic_id, 1);
    myc__buf_release(NULL, h->sched->alloc, st->items[i].buf);
  }
}

void myc__host_enter(myc__host_stage *h) {
  if (h->section < 0)
    h->section = myc__grace_enter(&h->sched->hosts);
}

static void host_leave(myc__host_stage *h) {
  if (h->section >= 0)
    myc__grace_exit(&h->sched->hosts, h->section);
  h->section = -1;
}

void myc__host_stage_free(myc__host_stage *h) {
  uint32_t t;
  if (h->stage == NULL)
    return;
  for (t = 0; t < h->nstage; t++) {
    myc__stage *st = &h->stage[t];
    stage_count(st);
    uncount_incoming(st->items, st->n);
    host_drop(h, st, MYC_DROP_SHUTDOWN);
    myc__free(h->sched->alloc, st->items, st->cap * sizeof *st->items);
  }
  myc__free(h->sched->alloc, h->stage, (h->nstage + 1) * sizeof *h->stage);
  h->stage = NULL;
  host_leave(h);
}

int myc__host_stage_put(myc__host_stage *h, myc__task *t, myc_buf *b) {
  myc__stage *st;
  myc__stage_run *r;
  uint32_t len = b->hdr.payload_len;
  int why;
  if (t->worker->index >= h->nstage)
    return myc__worker_handoff(t->worker, t, b);
  st = &h->stage[t->worker->index];
  r = myc__stage_run_of(st, t);
  if (r != NULL && r->bytes + len > MYC_STAGE_RUN_BYTES)
    run_count(r);
  /* Bytes only, as a host publishing (myc__worker_handoff): the mailbox
   * still drops what does not fit when it arrives. */
  if ((why = myc__mailbox_transit_refusal(&t->mb, len, 0, 0)) >= 0)
    return refuse(t, why, b);
  if (stage_push(st, h->sched->alloc, t, b, len) != 0)
    return MYC_ENOMEM;
  h->staged++;
  return 0;
}

void myc__host_flush(myc__host_stage *h) {
  uint32_t t;
  if (h->staged == 0) {
    host_leave(h);
    return;
  }
  for (t = 0; t < h->nstage; t++) {
    myc__stage *st = &h->stage[t];
    if (st->n == 0)
      continue;
    stage_count(st);
    if (inbox_give(&h->sched->workers[t], st) != 0) {
      uncount_incoming(st->items, st->n);
      host_drop(h, st, MYC_DROP_NEWEST);
      st->n = 0;
    }
  }
  h->staged = 0;
  host_leave(h);
}

/* Counts what 'r' sums as no longer on its way to its task, and empties
 * it. */
static void uncount(myc__stage_run *r) {
  if (r->n > 0) {
    /* After the mailbox counted them (push_run): whoever sees them gone
     * from here sees them queued (a link gauging the room). */
    atomic_fetch_sub_explicit(&r->task->mb.incoming, r->n,
                              memory_order_release);
    atomic_fetch_sub_explicit(&r->task->mb.incoming_bytes, r->bytes,
                              memory_order_release);
  }
  r->task = NULL;
  r->n = 0;
  r->bytes = 0;
}

/* Queues the 'k' hand-overs 'items' for task 't', of 'bytes' payload
 * bytes in all, none over 'longest': in one go when they fit as they
 * are, else one by one (evicting, growing the ring or dropping as each
 * one's push decides). */
static void push_run(myc__worker *w, myc__task *t, const myc__handoff *items,
                     uint32_t k, uint64_t bytes, uint32_t longest) {
  myc__mailbox *mb = &t->mb;
  uint32_t j, accepted = 0;
  if (myc__mailbox_fits_n(mb, k, bytes, longest)) {
    uint32_t at = myc__mailbox_tail(mb);
    for (j = 0; j < k; j++)
      myc__mailbox_put(mb, at + j, items[j].buf, items[j].len);
    myc__mailbox_commit(mb, k, bytes);
    accepted = k;
  } else {
    for (j = 0; j < k; j++)
      if (myc__mailbox_push(mb, items[j].buf, items[j].len, &w->pool,
                            w->sched->alloc) == 0)
        accepted++;
      else
        release(w, items[j].buf);
  }
  if (accepted > 0 && !t->queued)
    myc__worker_schedule(w, t);
}

void myc__worker_drain_inbox(myc__worker *w) {
  myc__inbox_batch b;
  myc__stage_run out[MYC_STAGE_OPEN] = {{NULL, 0, 0}}, *last = &out[0];
  uint32_t i = 0, evict = 0;
  int k;
  MYC_ASSERT_OWNER(&w->owner);
  myc__inbox_take(&w->inbox, &b);
  /* A run of consecutive items for one task (a sender's staging keeps
   * them together) costs one check and one schedule; the uncounting of
   * what arrived is summed per task over a few tasks at once (a fan-out
   * interleaves them) and done in one atomic each. */
  while (i < b.n) {
    myc__task *t = b.items[i].task;
    myc__stage_run *r = last->task == t ? last : NULL;
    uint32_t run = 1, longest = b.items[i].len;
    uint64_t bytes = b.items[i].len;
    while (i + run < b.n && b.items[i + run].task == t) {
      uint32_t len = b.items[i + run++].len;
      bytes += len;
      longest = len > longest ? len : longest;
    }
    for (k = 0; k < MYC_STAGE_OPEN && r == NULL; k++)
      if (out[k].task == t || out[k].task == NULL)
        r = &out[k];
    if (r == NULL) {
      r = &out[evict++ % MYC_STAGE_OPEN];
      uncount(r);
    }
    r->task = t;
    r->n += run;
    r->bytes += bytes;
    last = r;
    push_run(w, t, b.items + i, run, bytes, longest);
    i += run;
  }
  for (k = 0; k < MYC_STAGE_OPEN; k++)
    uncount(&out[k]);
  myc__inbox_done(&w->inbox, &b);
  /* Control after data: a job sees the mailboxes as the senders left
   * them. */
  myc__jobs_run(b.jobs, 1);
}

uint64_t myc__worker_run_ready(myc__worker *w, uint32_t budget) {
  uint64_t handled = 0;
  uint32_t i;
  MYC_ASSERT_OWNER(&w->owner);
  for (i = 0; i < budget || budget == 0; i++) {
    myc__task *t;
    /* Take what other workers handed over before every turn, not only
     * between rounds: a round of slow tasks can last long enough for a
     * producer elsewhere to fill a mailbox's worth of transit. */
    if (atomic_load_explicit(&w->inbox.nonempty, memory_order_relaxed))
      myc__worker_drain_inbox(w);
    t = ready_pop(w);
    if (t == NULL)
      break;
    handled += t->ops->run(t, TURN_BATCHES);
    myc__worker_flush(w);
    if (!t->queued && t->ops->pending(t))
      myc__worker_schedule(w, t);
  }
  if (handled)
    atomic_fetch_add_explicit(&w->sched->delivered, handled,
                              memory_order_relaxed);
  return handled;
}

static void arm_timer(myc__worker *w) {
  int64_t next = myc__timers_next(&w->timers), delay_ms;
  if (w->sched->manual || next == w->timer_armed)
    return;
  w->timer_armed = next;
  if (next == INT64_MAX) {
    uv_timer_stop(&w->timer);
    return;
  }
  delay_ms = (next - myc__clock_now(w->sched->clock) + 999999) / 1000000;
  uv_timer_start(&w->timer, on_timer, delay_ms > 0 ? (uint64_t)delay_ms : 0,
                 0);
}

int myc__worker_add_timer(myc__worker *w, myc__timer_fn fn, void *arg,
                          int64_t deadline, int64_t interval, uint64_t id) {
  int rc;
  MYC_ASSERT_OWNER(&w->owner);
  rc = myc__timers_add(&w->timers, deadline, interval, fn, arg, id);
  if (rc == 0 && deadline < w->timer_armed &&
      atomic_load(&w->phase) == MYC_PHASE_RUN)
    arm_timer(w);
  return rc;
}

uint32_t myc__worker_fire_timers(myc__worker *w, int64_t now) {
  myc__timer t;
  uint32_t fired = 0;
  MYC_ASSERT_OWNER(&w->owner);
  while (myc__timers_pop_due(&w->timers, now, &t)) {
    w->now = now;
    fired++;
    if (t.fn(t.arg, t.id) && t.interval > 0) {
      int64_t next = t.deadline + t.interval;
      /* A real clock that fell behind skips the missed ticks instead of
       * firing them in a burst; a virtual clock keeps exact deadlines. */
      if (next <= now && !w->sched->clock->is_virtual)
        next = now + t.interval;
      (void)myc__timers_add(&w->timers, next, t.interval, t.fn, t.arg, t.id);
    }
    myc__worker_flush(w);
  }
  return fired;
}

/* A round: one callback of the loop, the time during which it polls no
 * I/O and fires no timer (what the loop's lag is made of). */
static void round_begin(myc__worker *w) {
#if MYC_METRICS
  atomic_store_explicit(&w->round_start, myc__mono_ns(), memory_order_relaxed);
#else
  (void)w;
#endif
}

static void round_end(myc__worker *w) {
#if MYC_METRICS
  int64_t t0 = atomic_load_explicit(&w->round_start, memory_order_relaxed);
  atomic_store_explicit(&w->round_start, 0, memory_order_relaxed);
  myc__hist_add(&w->rounds, &myc__hist_round_ns,
                (uint64_t)(myc__mono_ns() - t0), 1);
#else
  (void)w;
#endif
}

static void on_timer(uv_timer_t *h) {
  myc__worker *w = h->data;
  w->timer_armed = INT64_MAX;
  /* Timers stop for good once the engine starts draining. */
  if (atomic_load(&w->phase) != MYC_PHASE_RUN)
    return;
  round_begin(w);
  myc__worker_fire_timers(w, myc__clock_now(w->sched->clock));
  arm_timer(w);
  round_end(w);
}

static void stop_tasks(myc__worker *w) {
  myc__task *t;
  for (t = w->tasks; t != NULL; t = t->next)
    t->ops->stop(t);
  myc__worker_flush(w);
  uv_idle_stop(&w->idle);
  close_handles(w);
}

/* Turns for what is ready, and what they put off. */
static void run_round(myc__worker *w) {
  myc__worker_run_ready(w, ROUND_TURNS);
  if (w->after_due)
    myc__worker_flush(w);
}

static void on_idle(uv_idle_t *h) {
  myc__worker *w = h->data;
  round_begin(w);
  myc__worker_drain_inbox(w);
  run_round(w);
  if (w->ready_head == NULL) {
    uv_idle_stop(&w->idle);
    myc__inbox_set_idle(&w->inbox, 1);
  }
  round_end(w);
}

static void on_wake(uv_poll_t *h, int status, int events) {
  myc__worker *w = h->data;
  uint64_t count;
  int phase;
  (void)status;
  (void)events;
  /* Cleared before the inbox is read: a hand-over after this read makes
   * it readable again, and the loop comes back. */
  while (read(w->wake_fd, &count, sizeof count) < 0 && errno == EINTR)
    ;
  phase = atomic_load(&w->phase);
  if (phase == MYC_PHASE_STOP) {
    stop_tasks(w);
    return;
  }
  if (phase == MYC_PHASE_DRAIN)
    uv_timer_stop(&w->timer);
  round_begin(w);
  myc__worker_drain_inbox(w);
  /* A request or a reply handed over early (myc__worker_hurry) runs now:
   * the idle callback would come one loop iteration later (timers,
   * pending callbacks, another look at the inbox), and somebody waits
   * for it.  After the drain: the flag was set before the items it came
   * with were handed over. */
  if (atomic_exchange_explicit(&w->inbox.urgent, 0, memory_order_relaxed) &&
      phase == MYC_PHASE_RUN && w->ready_head != NULL)
    run_round(w);
  if (w->ready_head != NULL && !uv_is_active((uv_handle_t *)&w->idle))
    uv_idle_start(&w->idle, on_idle);
  if (w->ready_head == NULL)
    myc__inbox_set_idle(&w->inbox, 1);
  round_end(w);
}

static void worker_main(void *arg) {
  myc__worker *w = arg;
  myc__owner_take(&w->owner);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  atomic_store(&w->finished, 1);
}

int myc__worker_start(myc__worker *w) {
  int rc;
  atomic_store(&w->finished, 0);
  rc = uv_thread_create(&w->thread, worker_main, w);
  if (rc == 0)
    w->started = 1;
  return rc;
}

void myc__worker_join(myc__worker *w) {
  if (w->started) {
    uv_thread_join(&w->thread);
    w->started = 0;
  }
  myc__owner_take(&w->owner);
}
