/* worker.c -- worker loop: ready list, timers, inbox (see worker.h).
 *
 * The loop runs services in batches from an idle handle while any is
 * ready, so a busy pipeline polls I/O once per round of batches rather
 * than once per message, and sleeps in the kernel when nothing is ready.
 */
#include "runtime/worker.h"

#include "runtime/emit.h"
#include "runtime/engine.h"

#include <string.h>

/* Batches per idle callback: bounds the time between two I/O polls. */
#define ROUND_BATCHES 64
/* A turn on the ready list handles what was queued when it began (what a
 * service sends itself waits for its next turn, so a self-driven producer
 * cannot monopolise the worker), up to this many batches. */
#define TURN_BATCHES 16

static void on_idle(uv_idle_t *h);
static void on_wake(uv_async_t *h);
static void on_timer(uv_timer_t *h);

int myc__worker_init(myc__worker *w, myc_engine *e, uint32_t index) {
  int rc;
  memset(w, 0, sizeof *w);
  w->eng = e;
  w->index = index;
  w->timer_armed = INT64_MAX;
  if (myc__pool_init(&w->pool, &e->alloc, 16384, (uint8_t)index,
                     e->nworkers_max) != 0)
    return MYC_ENOMEM;
  myc__rng_seed(&w->rng);
  myc__timers_init(&w->timers, &e->alloc);
  atomic_init(&w->phase, MYC_PHASE_RUN);
  atomic_init(&w->idle_flag, 1);
  w->stage = myc__calloc(&e->alloc, e->nworkers_max * sizeof *w->stage);
  if (w->stage == NULL) {
    myc__pool_destroy(&w->pool);
    return MYC_ENOMEM;
  }
  rc = uv_loop_init(&w->loop);
  if (rc == 0 && (rc = uv_mutex_init(&w->inbox_lock)) != 0)
    uv_loop_close(&w->loop);
  if (rc != 0) {
    myc__free(&e->alloc, w->stage, e->nworkers_max * sizeof *w->stage);
    myc__pool_destroy(&w->pool);
    return rc;
  }
  uv_async_init(&w->loop, &w->wake, on_wake);
  uv_idle_init(&w->loop, &w->idle);
  uv_timer_init(&w->loop, &w->timer);
  w->wake.data = w->idle.data = w->timer.data = w;
  w->now = myc__clock_now(&e->clock);
  return 0;
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void close_handles(myc__worker *w) {
  if (!uv_is_closing((uv_handle_t *)&w->wake)) {
    uv_close((uv_handle_t *)&w->wake, close_cb);
    uv_close((uv_handle_t *)&w->idle, close_cb);
    uv_close((uv_handle_t *)&w->timer, close_cb);
  }
}

void myc__worker_discard_inbox(myc__worker *w) {
  uint32_t i, t;
  for (t = 0; t < w->eng->nworkers; t++) {
    myc__stage *st = &w->stage[t];
    for (i = 0; i < st->n; i++) {
      myc__mailbox_count(&st->items[i].svc->mb, MYC_DROP_SHUTDOWN,
                         st->items[i].buf->topic_id, 1);
      myc__buf_release(&w->pool, &w->eng->alloc, st->items[i].buf);
    }
    st->n = 0;
  }
  w->staged = 0;
  for (i = 0; i < w->inbox_n; i++) {
    if (w->inbox[i].buf == NULL)
      continue; /* a supervisor marker */
    myc__mailbox_count(&w->inbox[i].svc->mb, MYC_DROP_SHUTDOWN,
                       w->inbox[i].buf->topic_id, 1);
    myc__buf_release(&w->pool, &w->eng->alloc, w->inbox[i].buf);
  }
  w->inbox_n = 0;
}

void myc__worker_destroy(myc__worker *w) {
  int turns;
  close_handles(w);
  /* Facilities (ws.c, http.c) close their handles when their service
   * stops, but closing can take a few turns (a socket's close callback
   * closes a timer) and a name lookup may still be in the thread pool.
   * Bounded: a handle nobody closes must not hang the engine's free. */
  for (turns = 0; turns < 500 && uv_run(&w->loop, UV_RUN_NOWAIT) != 0; turns++)
    uv_sleep(1);
  uv_loop_close(&w->loop);
  myc__free(&w->eng->alloc, w->inbox, w->inbox_cap * sizeof *w->inbox);
  myc__free(&w->eng->alloc, w->inbox_spare, w->spare_cap * sizeof *w->inbox);
  {
    uint32_t t;
    for (t = 0; t < w->eng->nworkers_max; t++)
      myc__free(&w->eng->alloc, w->stage[t].items,
                w->stage[t].cap * sizeof *w->stage[t].items);
    myc__free(&w->eng->alloc, w->stage, w->eng->nworkers_max * sizeof *w->stage);
  }
  uv_mutex_destroy(&w->inbox_lock);
  myc__timers_destroy(&w->timers);
  myc__pool_destroy(&w->pool);
}

void myc__worker_tick(myc__worker *w) {
  w->now = myc__clock_now(&w->eng->clock);
}

void myc__worker_wake(myc__worker *w) {
  if (!w->eng->manual)
    uv_async_send(&w->wake);
}

void myc__worker_schedule(myc__worker *w, myc_service *s) {
  s->queued = 1;
  s->ready_next = NULL;
  if (w->ready_tail != NULL)
    w->ready_tail->ready_next = s;
  else
    w->ready_head = s;
  w->ready_tail = s;
  if (!w->eng->manual && !uv_is_active((uv_handle_t *)&w->idle))
    uv_idle_start(&w->idle, on_idle);
}

static myc_service *ready_pop(myc__worker *w) {
  myc_service *s = w->ready_head;
  if (s != NULL) {
    w->ready_head = s->ready_next;
    if (w->ready_head == NULL)
      w->ready_tail = NULL;
    s->queued = 0;
  }
  return s;
}

/* Counts messages on their way to each service, one atomic per run of
 * consecutive items for the same service. */
static void count_incoming(const myc__handoff *items, uint32_t n, int sign) {
  uint32_t i = 0;
  while (i < n) {
    myc_service *s = items[i].svc;
    uint32_t run = 1;
    while (i + run < n && items[i + run].svc == s)
      run++;
    if (sign > 0)
      atomic_fetch_add_explicit(&s->mb.incoming, run, memory_order_relaxed);
    else
      atomic_fetch_sub_explicit(&s->mb.incoming, run, memory_order_relaxed);
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

/* Appends 'n' items to the inbox of 'w' under its lock.  Only the first
 * message into an empty inbox pays for a wake-up. */
static int inbox_append(myc__worker *w, const myc__handoff *items, uint32_t n) {
  int signal = 0;
  uv_mutex_lock(&w->inbox_lock);
  if (grow(&w->eng->alloc, &w->inbox, &w->inbox_cap, w->inbox_n + n) != 0) {
    uv_mutex_unlock(&w->inbox_lock);
    return MYC_ENOMEM;
  }
  memcpy(w->inbox + w->inbox_n, items, n * sizeof *items);
  w->inbox_n += n;
  if (!w->inbox_signalled)
    signal = w->inbox_signalled = 1;
  atomic_store_explicit(&w->inbox_nonempty, 1, memory_order_relaxed);
  /* Under the lock, so it cannot be overtaken by update_idle_flag(). */
  atomic_store_explicit(&w->idle_flag, 0, memory_order_relaxed);
  uv_mutex_unlock(&w->inbox_lock);
  if (signal)
    myc__worker_wake(w);
  return 0;
}

int myc__worker_handoff(myc__worker *w, myc_service *s, myc_buf *b) {
  myc__handoff h;
  int rc;
  h.svc = s;
  h.buf = b;
  atomic_fetch_add_explicit(&s->mb.incoming, 1, memory_order_relaxed);
  rc = inbox_append(w, &h, 1);
  if (rc != 0)
    atomic_fetch_sub_explicit(&s->mb.incoming, 1, memory_order_relaxed);
  return rc;
}

static void stage_count(myc__stage *st) {
  if (st->run > 0)
    atomic_fetch_add_explicit(&st->run_svc->mb.incoming, st->run,
                              memory_order_relaxed);
  st->run = 0;
}

int myc__worker_stage(myc__worker *w, myc_service *s, myc_buf *b) {
  myc__stage *st = &w->stage[s->worker->index];
  uint32_t in_transit =
      atomic_load_explicit(&s->mb.incoming, memory_order_relaxed) +
      (st->run_svc == s ? st->run : 0);
  /* Two mailboxes' worth already on its way: refuse at the sender so that
   * a flood across workers cannot grow memory without bound, while a
   * consumer thread descheduled for a moment does not lose anything.  (For
   * drop_oldest this drops the newest: exact eviction would need the
   * messages in transit, which belong to no one yet.) */
  if (in_transit >= 2 * (uint64_t)s->mb.capacity) {
    myc__mailbox_count(&s->mb,
                       s->mb.policy == MYC_POLICY_REJECT ? MYC_DROP_REJECTED
                                                         : MYC_DROP_NEWEST,
                       b->topic_id, 1);
    return MYC_EFULL;
  }
  if (st->n == st->cap &&
      grow(&w->eng->alloc, &st->items, &st->cap, st->n + 1) != 0)
    return MYC_ENOMEM;
  st->items[st->n].svc = s;
  st->items[st->n].buf = b;
  st->n++;
  w->staged++;
  if (st->run_svc != s) {
    stage_count(st);
    st->run_svc = s;
  }
  if (++st->run == MYC_STAGE_RUN)
    stage_count(st);
  return 0;
}

/* Small buffers released here but born on another worker go home. */
static void flush_returns(myc__worker *w) {
  myc_engine *e = w->eng;
  uint32_t t;
  for (t = 0; t < w->pool.nreturns && t < e->nworkers; t++)
    if (w->pool.returns[t].n > 0)
      myc__pool_give_chain(&e->workers[t].pool, &w->pool.returns[t]);
  w->pool.pending_returns = 0;
}

void myc__worker_flush(myc__worker *w) {
  myc_engine *e = w->eng;
  uint32_t t, i;
  if (w->pool.pending_returns > 0)
    flush_returns(w);
  if (w->staged == 0)
    return;
  for (t = 0; t < e->nworkers; t++) {
    myc__stage *st = &w->stage[t];
    if (st->n == 0)
      continue;
    stage_count(st);
    if (inbox_append(&e->workers[t], st->items, st->n) != 0) {
      /* Out of memory: what cannot be handed over is lost, and counted. */
      count_incoming(st->items, st->n, -1);
      for (i = 0; i < st->n; i++) {
        myc__mailbox_count(&st->items[i].svc->mb, MYC_DROP_NEWEST,
                           st->items[i].buf->topic_id, 1);
        myc__buf_release(&w->pool, &e->alloc, st->items[i].buf);
      }
    }
    st->n = 0;
  }
  w->staged = 0;
}

void myc__worker_drain_inbox(myc__worker *w) {
  myc__handoff *items;
  uint32_t i, n, cap;

  uv_mutex_lock(&w->inbox_lock);
  items = w->inbox;
  n = w->inbox_n;
  cap = w->inbox_cap;
  w->inbox = w->inbox_spare;
  w->inbox_cap = w->spare_cap;
  w->inbox_n = 0;
  w->inbox_signalled = 0;
  atomic_store_explicit(&w->inbox_nonempty, 0, memory_order_relaxed);
  uv_mutex_unlock(&w->inbox_lock);

  count_incoming(items, n, -1);
  for (i = 0; i < n; i++) {
    myc_service *s = items[i].svc;
    myc_buf *evicted;
    int rc;
    if (items[i].buf == NULL) {
      /* A marker: commands for the service, between two batches. */
      myc__supervisor_command(s);
      continue;
    }
    rc = myc__mailbox_push(&s->mb, items[i].buf, &evicted);
    if (evicted != NULL)
      myc__buf_release(&w->pool, &w->eng->alloc, evicted);
    if (rc != 0)
      myc__buf_release(&w->pool, &w->eng->alloc, items[i].buf);
    else if (!s->queued)
      myc__worker_schedule(w, s);
  }
  w->inbox_spare = items;
  w->spare_cap = cap;
}

uint64_t myc__worker_run_ready(myc__worker *w, uint32_t budget) {
  uint64_t handled = 0;
  uint32_t i;
  for (i = 0; i < budget || budget == 0; i++) {
    myc_service *s;
    uint32_t turn = 0, done = 0, avail;
    /* Take what other workers handed over before every turn, not only
     * between rounds: a round of slow services can last long enough for
     * a producer elsewhere to fill a mailbox's worth of transit. */
    if (atomic_load_explicit(&w->inbox_nonempty, memory_order_relaxed))
      myc__worker_drain_inbox(w);
    s = ready_pop(w);
    if (s == NULL)
      break;
    avail = atomic_load_explicit(&s->mb.len, memory_order_relaxed) +
            (s->view.batch_n - s->batch_pos);
    do {
      myc__worker_tick(w);
      done += myc__service_dispatch(s);
    } while (++turn < TURN_BATCHES && done < avail && myc__service_pending(s));
    handled += done;
    myc__worker_flush(w);
    if (myc__service_pending(s) && !s->queued)
      myc__worker_schedule(w, s);
  }
  if (handled)
    atomic_fetch_add_explicit(&w->eng->delivered, handled,
                              memory_order_relaxed);
  return handled;
}

static void arm_timer(myc__worker *w) {
  int64_t next = myc__timers_next(&w->timers), delay_ms;
  if (w->eng->manual || next == w->timer_armed)
    return;
  w->timer_armed = next;
  if (next == INT64_MAX) {
    uv_timer_stop(&w->timer);
    return;
  }
  delay_ms = (next - myc__clock_now(&w->eng->clock) + 999999) / 1000000;
  uv_timer_start(&w->timer, on_timer, delay_ms > 0 ? (uint64_t)delay_ms : 0,
                 0);
}

int myc__worker_add_timer(myc__worker *w, myc_service *s, int64_t deadline,
                          int64_t interval, uint64_t id) {
  int rc = myc__timers_add(&w->timers, deadline, interval, s, id);
  if (rc == 0 && deadline < w->timer_armed &&
      atomic_load(&w->phase) == MYC_PHASE_RUN)
    arm_timer(w);
  return rc;
}

uint32_t myc__worker_fire_timers(myc__worker *w, int64_t now) {
  myc__timer t;
  uint32_t fired = 0;
  while (myc__timers_pop_due(&w->timers, now, &t)) {
    w->now = now;
    fired++;
    if (myc__service_timer(t.svc, t.id) && t.interval > 0) {
      int64_t next = t.deadline + t.interval;
      /* A real clock that fell behind skips the missed ticks instead of
       * firing them in a burst; a virtual clock keeps exact deadlines. */
      if (next <= now && !w->eng->clock.is_virtual)
        next = now + t.interval;
      (void)myc__timers_add(&w->timers, next, t.interval, t.svc, t.id);
    }
    myc__worker_flush(w);
  }
  return fired;
}

static void on_timer(uv_timer_t *h) {
  myc__worker *w = h->data;
  w->timer_armed = INT64_MAX;
  /* Timers stop for good once the engine starts draining. */
  if (atomic_load(&w->phase) != MYC_PHASE_RUN)
    return;
  myc__worker_fire_timers(w, myc__clock_now(&w->eng->clock));
  arm_timer(w);
}

static void update_idle_flag(myc__worker *w) {
  uv_mutex_lock(&w->inbox_lock);
  atomic_store_explicit(&w->idle_flag,
                        w->inbox_n == 0 && w->ready_head == NULL,
                        memory_order_release);
  uv_mutex_unlock(&w->inbox_lock);
}

static void stop_services(myc__worker *w) {
  myc_engine *e = w->eng;
  uint32_t i;
  for (i = 0; i < e->nservices; i++)
    if (e->services[i]->worker == w)
      myc__service_stop(e->services[i]);
  myc__worker_flush(w);
  uv_idle_stop(&w->idle);
  close_handles(w);
}

static void on_idle(uv_idle_t *h) {
  myc__worker *w = h->data;
  myc__worker_drain_inbox(w);
  myc__worker_run_ready(w, ROUND_BATCHES);
  if (w->ready_head == NULL) {
    uv_idle_stop(&w->idle);
    update_idle_flag(w);
  }
}

static void on_wake(uv_async_t *h) {
  myc__worker *w = h->data;
  int phase = atomic_load(&w->phase);
  if (phase == MYC_PHASE_STOP) {
    stop_services(w);
    return;
  }
  if (phase == MYC_PHASE_DRAIN)
    uv_timer_stop(&w->timer);
  myc__worker_drain_inbox(w);
  if (w->ready_head != NULL && !uv_is_active((uv_handle_t *)&w->idle))
    uv_idle_start(&w->idle, on_idle);
  if (w->ready_head == NULL)
    update_idle_flag(w);
}

static void worker_main(void *arg) {
  myc__worker *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

int myc__worker_start(myc__worker *w) {
  int rc = uv_thread_create(&w->thread, worker_main, w);
  if (rc == 0)
    w->started = 1;
  return rc;
}

void myc__worker_join(myc__worker *w) {
  if (w->started) {
    uv_thread_join(&w->thread);
    w->started = 0;
  }
}
