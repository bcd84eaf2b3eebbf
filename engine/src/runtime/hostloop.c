/* hostloop.c -- an engine whose worker 0 runs on the host's libuv loop
 * (myc_engine_start_on_loop).
 *
 * Worker 0 keeps its own loop, which the host's loop turns without
 * blocking (uv_run NOWAIT) when that loop's backend fd is readable, when
 * its next timer is due, and on every host iteration while it has work:
 * libuv's embedding API (uv_backend_fd, uv_backend_timeout).  Keeping the
 * loop means everything on it (worker handles, sockets of the services'
 * clients) stays the engine's to close and free, whatever the host does
 * with its own loop.  The stop sequence of myc_engine_run() runs here as
 * timer callbacks, so the host's loop never blocks on it.
 */
#include "runtime/engine.h"

#include <stdio.h>
#include <string.h>

enum { HL_RUN, HL_DRAIN, HL_STOP };

#define HL_HANDLES 6

struct myc__hostloop {
  myc_engine *e; /* NULL once detached */
  myc__alloc alloc;
  uv_loop_t *inner; /* worker 0's loop */
  uv_poll_t poll;   /* its backend fd */
  uv_prepare_t prepare;
  uv_idle_t idle;   /* it has work: the host's loop must not block */
  uv_timer_t due;   /* its next timer */
  uv_async_t stop;  /* myc_engine_stop() from any thread */
  uv_timer_t drain; /* watches the drain, then the stop */
  int open;         /* handles not closed yet */
  int phase;
  uint64_t drain_started, last;
  int stable;
  myc_stopped_cb on_stopped;
  void *ud;
};

static void turn(myc__hostloop *h) {
  MYC_ASSERT_OWNER(&h->e->sched.workers[0].owner);
  uv_run(h->inner, UV_RUN_NOWAIT);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  turn(p->data);
}

static void on_due(uv_timer_t *t) {
  turn(t->data);
}

static void on_idle(uv_idle_t *i) {
  turn(i->data);
}

/* Before the host's loop polls: it wakes for worker 0's next timer, and
 * does not block at all while worker 0 has ready tasks or closing
 * handles.  Done here rather than after each turn because the host's
 * thread also changes worker 0 outside them (a reload's swap schedules
 * the service). */
static void on_prepare(uv_prepare_t *p) {
  myc__hostloop *h = p->data;
  int timeout = -1;
  if (uv_loop_alive(h->inner)) {
    /* The inner loop's clock stood still since its last turn. */
    uv_update_time(h->inner);
    timeout = uv_backend_timeout(h->inner);
  }
  if (timeout == 0) {
    uv_timer_stop(&h->due);
    if (!uv_is_active((uv_handle_t *)&h->idle))
      uv_idle_start(&h->idle, on_idle);
    return;
  }
  uv_idle_stop(&h->idle);
  if (timeout < 0)
    uv_timer_stop(&h->due);
  else
    uv_timer_start(&h->due, on_due, (uint64_t)timeout, 0);
}

static void on_closed(uv_handle_t *hd) {
  myc__hostloop *h = hd->data;
  if (--h->open == 0)
    h->alloc.fn(h->alloc.ud, h, sizeof *h, 0);
}

/* The engine lets go of the host's loop: no callback of ours runs on it
 * again, and the handles free 'h' once the loop has closed them. */
static void detach(myc__hostloop *h) {
  myc_engine *e = h->e;
  uv_mutex_lock(&e->stop_lock);
  if (e->stop_async == &h->stop)
    e->stop_async = NULL;
  uv_mutex_unlock(&e->stop_lock);
  e->hostloop = NULL;
  h->e = NULL;
  uv_close((uv_handle_t *)&h->poll, on_closed);
  uv_close((uv_handle_t *)&h->prepare, on_closed);
  uv_close((uv_handle_t *)&h->idle, on_closed);
  uv_close((uv_handle_t *)&h->due, on_closed);
  uv_close((uv_handle_t *)&h->stop, on_closed);
  uv_close((uv_handle_t *)&h->drain, on_closed);
}

/* The other workers' threads are done: joining them won't block. */
static int threads_finished(myc_engine *e) {
  uint32_t i;
  for (i = 1; i < e->sched.nworkers; i++)
    if (e->sched.workers[i].started &&
        !atomic_load(&e->sched.workers[i].finished))
      return 0;
  return 1;
}

static void on_drain(uv_timer_t *t) {
  myc__hostloop *h = t->data;
  myc_engine *e = h->e;
  myc_stopped_cb cb;
  void *ud;
  if (h->phase == HL_DRAIN) {
    if (myc__engine_drained(e, &h->last, &h->stable) ||
        uv_now(t->loop) - h->drain_started > MYC_DRAIN_TIMEOUT_MS) {
      myc__engine_halt(e);
      h->phase = HL_STOP;
    }
    return;
  }
  /* Worker 0 stops in its turns (its services' stop, then its handles
   * close), the others on their threads. */
  if (uv_loop_alive(h->inner) || !threads_finished(e))
    return;
  cb = h->on_stopped;
  ud = h->ud;
  detach(h);
  myc__engine_finish(e);
  if (cb != NULL)
    cb(ud, atomic_load(&e->exit_code));
}

static void begin_drain(myc__hostloop *h) {
  if (h->phase != HL_RUN)
    return;
  h->phase = HL_DRAIN;
  h->drain_started = uv_now(h->stop.loop);
  myc__workers_set_phase(&h->e->sched, MYC_PHASE_DRAIN);
  uv_timer_start(&h->drain, on_drain, 1, 1);
}

static void on_stop(uv_async_t *a) {
  begin_drain(a->data);
}

static int attach(myc_engine *e, uv_loop_t *loop, myc__hostloop **out) {
  myc__hostloop *h = myc__calloc(&e->alloc, sizeof *h);
  int rc;
  if (h == NULL)
    return MYC_ENOMEM;
  h->e = e;
  h->alloc = e->alloc;
  h->inner = &e->sched.workers[0].loop;
  rc = uv_poll_init(loop, &h->poll, uv_backend_fd(h->inner));
  if (rc != 0) {
    myc__free(&e->alloc, h, sizeof *h);
    return rc;
  }
  h->poll.data = h;
  rc = uv_async_init(loop, &h->stop, on_stop);
  if (rc != 0) {
    /* 'h' goes when the loop has closed the poll handle. */
    h->open = 1;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    return rc;
  }
  uv_prepare_init(loop, &h->prepare);
  uv_idle_init(loop, &h->idle);
  uv_timer_init(loop, &h->due);
  uv_timer_init(loop, &h->drain);
  h->prepare.data = h->idle.data = h->due.data = h;
  h->stop.data = h->drain.data = h;
  h->open = HL_HANDLES;
  *out = h;
  return 0;
}

int myc_engine_start_on_loop(myc_engine *e, struct uv_loop_s *loop,
                             myc_stopped_cb on_stopped, void *ud, char *err,
                             size_t errlen) {
  myc__hostloop *h;
  char dummy[1];
  int rc;
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (loop == NULL) {
    snprintf(err, errlen, "myc_engine_start_on_loop: no loop given");
    return MYC_EINVAL;
  }
  if (e->manual || e->started) {
    snprintf(err, errlen, "myc_engine_start_on_loop: the engine is %s",
             e->manual ? "manual (it has no loops to run)" : "already started");
    return MYC_ESTATE;
  }
  rc = attach(e, loop, &h);
  if (rc != 0) {
    snprintf(err, errlen, "cannot watch worker 0 from the host's loop: %s",
             myc_strerror(rc));
    return rc;
  }
  h->on_stopped = on_stopped;
  h->ud = ud;
  e->hostloop = h;
  rc = myc_engine_start(e, err, errlen);
  if (rc != 0 && !e->started) {
    detach(h);
    return rc;
  }
  uv_mutex_lock(&e->stop_lock);
  e->stop_async = &h->stop;
  uv_mutex_unlock(&e->stop_lock);
  uv_poll_start(&h->poll, UV_READABLE, on_readable);
  uv_prepare_start(&h->prepare, on_prepare);
  /* A service's init may have asked for the stop already (or a worker
   * thread failed to start). */
  if (atomic_load(&e->stopping))
    begin_drain(h);
  return rc;
}

/* The host frees the engine before it stopped: the stop sequence runs
 * here, turning worker 0 on this thread while it drains and stops. */
void myc__hostloop_abandon(myc_engine *e) {
  myc__hostloop *h = e->hostloop;
  uv_loop_t *inner = h->inner;
  uint64_t last = 0, t0 = uv_hrtime();
  int stable = 0, phase = h->phase;
  detach(h);
  if (!atomic_load(&e->stopping))
    myc_engine_stop(e, 0);
  if (phase == HL_RUN)
    myc__workers_set_phase(&e->sched, MYC_PHASE_DRAIN);
  if (phase != HL_STOP) {
    for (;;) {
      uv_run(inner, UV_RUN_NOWAIT);
      if (myc__engine_drained(e, &last, &stable) ||
          (uv_hrtime() - t0) / 1000000 > MYC_DRAIN_TIMEOUT_MS)
        break;
      uv_sleep(1);
    }
    myc__engine_halt(e);
  }
  while (uv_run(inner, UV_RUN_NOWAIT) != 0 || !threads_finished(e))
    uv_sleep(1);
  myc__engine_finish(e);
}
