/* monitor.c -- the monitor thread (see monitor.h).
 *
 * The watchdog never waits for a worker: it samples each service's
 * (activation, cursor) pair, and a pair that stays the same across ticks
 * for longer than the service's budget is one handler running that long.
 * It then asks LuaJIT to interrupt it (a count hook), and, if compiled
 * code keeps running, makes its next allocation fail.
 */
#include "supervise/monitor.h"

#include "supervise/control.h"
#include "runtime/engine.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEBOUNCE_MS 100
#define MAX_WATCHES 64

typedef struct myc__monitor {
  myc_engine *e;
  uv_loop_t loop;
  uv_thread_t thread;
  int thread_started;
  uv_async_t wake;
  uv_timer_t tick;
  uv_timer_t debounce;
  _Atomic int quit;
  myc__control *control;
  uv_fs_event_t watches[MAX_WATCHES];
  uint32_t nwatches;

  uv_mutex_t lock; /* guards 'calls' and 'closed' */
  myc__mcall *calls, *calls_tail;
  int closed;
} myc__monitor;

int64_t myc__monitor_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wd_log(myc_service *s, int level, const char *fmt, double a,
                   double b) {
  char line[512], running[128];
  int n;
  myc__service_running(s, running, sizeof running);
  n = snprintf(line, sizeof line, "%s: ", running[0] ? running : "activation");
  snprintf(line + n, sizeof line - (size_t)n, fmt, a, b);
  myc__log_write(&s->eng->log, level, myc__clock_now(&s->eng->clock), s->name,
                 s->name_len, NULL, NULL, line, strlen(line), NULL, 0);
}

/* One service at one tick: track what runs; past the budget, report and
 * interrupt, escalating while it keeps running. */
static void watch_service(myc_service *s, int64_t now, int64_t tick_ns) {
  int kind = atomic_load_explicit(&s->act_kind, memory_order_acquire);
  uint32_t gen = atomic_load_explicit(&s->act_gen, memory_order_acquire);
  int32_t cur = kind == MYC_ACT_HANDLER
                    ? __atomic_load_n(&s->view.cursor, __ATOMIC_ACQUIRE)
                    : -1;
  int64_t since = atomic_load(&s->busy_since);
  double ms, budget = s->timeout_ms;

  if (kind == MYC_ACT_IDLE) {
    atomic_store(&s->busy_since, 0);
    return;
  }
  if (since == 0 || gen != s->wd_gen || cur != s->wd_cursor) {
    s->wd_gen = gen;
    s->wd_cursor = cur;
    s->wd_stage = 0;
    /* First seen now: it started at most one tick ago. */
    atomic_store(&s->busy_since, now - tick_ns / 2);
    return;
  }
  if (budget <= 0)
    return;
  ms = (double)(now - since) / 1e6;
  if (s->wd_stage == 0 && ms > budget) {
    atomic_fetch_add(&s->sup.timeouts, 1);
    wd_log(s, MYC_LOG_WARN,
           "running for %.0f ms, past its budget of %g ms: "
           "interrupting it",
           ms, budget);
    myc__service_interrupt(s, gen, cur);
    s->wd_stage = 1;
  } else if (s->wd_stage >= 1 && ms > 2 * budget + 10) {
    /* The hook has not fired: compiled code.  An allocation can still
     * fail; one that is refused and caught is asked for again. */
    myc__service_poison(s, gen);
    if (s->wd_stage == 1)
      wd_log(s, MYC_LOG_WARN,
             "still running after %.0f ms (budget %g ms): "
             "compiled code the hook cannot reach; failing its next "
             "allocation",
             ms, budget);
    if (s->wd_stage == 1)
      s->wd_stage = 2;
    if (s->wd_stage == 2 && ms > 4 * budget + 50) {
      wd_log(s, MYC_LOG_ERROR,
             "cannot be interrupted after %.0f ms (budget "
             "%g ms): a compiled loop that neither allocates nor leaves its "
             "trace (docs/SUPERVISION.md)",
             ms, budget);
      s->wd_stage = 3;
    }
  }
}

static void on_tick(uv_timer_t *h) {
  myc__monitor *m = h->data;
  myc_engine *e = m->e;
  int64_t now = myc__monitor_now();
  int64_t tick_ns = (int64_t)uv_timer_get_repeat(h) * 1000000;
  uint32_t i;
  uv_mutex_lock(&e->services_lock);
  for (i = 0; i < e->nservices; i++)
    if (e->services[i]->cb == NULL)
      watch_service(e->services[i], now, tick_ns);
  uv_mutex_unlock(&e->services_lock);
}

static void run_calls(myc__monitor *m) {
  myc__mcall *c;
  uv_mutex_lock(&m->lock);
  c = m->calls;
  m->calls = m->calls_tail = NULL;
  uv_mutex_unlock(&m->lock);
  while (c != NULL) {
    myc__mcall *next = c->next;
    c->fn(c, 1);
    c = next;
  }
}

static void close_all(myc__monitor *m);

static void on_wake(uv_async_t *h) {
  myc__monitor *m = h->data;
  if (atomic_load(&m->quit)) {
    close_all(m);
    return;
  }
  run_calls(m);
}

void myc__monitor_call(myc_engine *e, myc__mcall *c) {
  myc__monitor *m = e->monitor;
  int alive;
  c->next = NULL;
  if (m == NULL) {
    c->fn(c, 0);
    return;
  }
  uv_mutex_lock(&m->lock);
  alive = !m->closed;
  if (alive) {
    if (m->calls_tail != NULL)
      m->calls_tail->next = c;
    else
      m->calls = c;
    m->calls_tail = c;
  }
  uv_mutex_unlock(&m->lock);
  if (alive)
    uv_async_send(&m->wake);
  else
    c->fn(c, 0);
}

/* ---- file watcher ----------------------------------------------------- */

static void on_debounce(uv_timer_t *h) {
  myc__monitor *m = h->data;
  myc__reload_changed(m->e);
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events,
                        int status) {
  myc__monitor *m = h->data;
  size_t n = file ? strlen(file) : 0;
  (void)events;
  if (status != 0 || n < 4 || strcmp(file + n - 4, ".lua") != 0)
    return;
  /* Editors write a file in several steps: wait until they are done. */
  uv_timer_start(&m->debounce, on_debounce, DEBOUNCE_MS, 0);
}

static void watch_dir(myc__monitor *m, const char *module) {
  char dir[4096];
  const char *slash = strrchr(module, '/');
  uint32_t i;
  if (slash == NULL)
    snprintf(dir, sizeof dir, ".");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - module), module);
  if (dir[0] == '\0')
    snprintf(dir, sizeof dir, "/");
  for (i = 0; i < m->nwatches; i++) {
    char have[4096];
    size_t len = sizeof have;
    if (uv_fs_event_getpath(&m->watches[i], have, &len) == 0 &&
        strcmp(have, dir) == 0)
      return;
  }
  if (m->nwatches == MAX_WATCHES)
    return;
  uv_fs_event_init(&m->loop, &m->watches[m->nwatches]);
  m->watches[m->nwatches].data = m;
  if (uv_fs_event_start(&m->watches[m->nwatches], on_fs_event, dir, 0) != 0) {
    uv_close((uv_handle_t *)&m->watches[m->nwatches], NULL);
    myc_engine_log(m->e, MYC_LOG_WARN, NULL,
                   "reload: cannot watch a module "
                   "directory; SIGHUP and `mycelium reload` still work");
    return;
  }
  m->nwatches++;
}

static void start_watching(myc__monitor *m) {
  myc_engine *e = m->e;
  uint32_t i;
  for (i = 0; i < e->nservices; i++)
    if (e->services[i]->cb == NULL)
      watch_dir(m, e->services[i]->module);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void close_all(myc__monitor *m) {
  uint32_t i;
  if (m->control != NULL)
    myc__control_close(m->control);
  m->control = NULL;
  for (i = 0; i < m->nwatches; i++)
    uv_close((uv_handle_t *)&m->watches[i], NULL);
  m->nwatches = 0;
  if (!uv_is_closing((uv_handle_t *)&m->wake)) {
    uv_close((uv_handle_t *)&m->wake, NULL);
    uv_close((uv_handle_t *)&m->tick, NULL);
    uv_close((uv_handle_t *)&m->debounce, NULL);
  }
}

static void monitor_main(void *arg) {
  myc__monitor *m = arg;
  uv_run(&m->loop, UV_RUN_DEFAULT);
}

static int needs_monitor(myc_engine *e, double *min_budget) {
  uint32_t i;
  *min_budget = 0;
  for (i = 0; i < e->nservices; i++) {
    double t = e->services[i]->timeout_ms;
    if (t > 0 && (*min_budget == 0 || t < *min_budget))
      *min_budget = t;
  }
  return *min_budget > 0 || e->control != NULL ||
         (e->reload == MYC_RELOAD_WATCH && !e->manual);
}

int myc__monitor_start(myc_engine *e, char *err, size_t errlen) {
  myc__monitor *m;
  double budget;
  uint64_t tick;
  int rc;
  if (!needs_monitor(e, &budget) || e->monitor != NULL)
    return 0;
  m = myc__calloc(&e->alloc, sizeof *m);
  if (m == NULL || uv_mutex_init(&m->lock) != 0) {
    if (m != NULL)
      myc__free(&e->alloc, m, sizeof *m);
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  m->e = e;
  uv_loop_init(&m->loop);
  uv_async_init(&m->loop, &m->wake, on_wake);
  uv_timer_init(&m->loop, &m->tick);
  uv_timer_init(&m->loop, &m->debounce);
  m->wake.data = m->tick.data = m->debounce.data = m;
  e->monitor = m;
  rc = e->control ? myc__control_open(e, &m->loop, e->control, &m->control, err,
                                      errlen)
                  : 0;
  if (rc == 0 && e->reload == MYC_RELOAD_WATCH && !e->manual)
    start_watching(m);
  /* Ticks fine enough to catch a budget within a quarter of it. */
  tick = budget > 0 ? (uint64_t)(budget / 4) : 50;
  tick = tick < 1 ? 1 : tick > 50 ? 50 : tick;
  uv_timer_start(&m->tick, on_tick, tick, tick);
  if (rc == 0 && (rc = uv_thread_create(&m->thread, monitor_main, m)) != 0)
    snprintf(err, errlen, "cannot start the monitor thread: %s",
             myc_strerror(rc));
  m->thread_started = rc == 0;
  if (rc != 0) {
    myc__monitor_stop(e);
    myc__monitor_free(e);
  }
  return rc;
}

void myc__monitor_stop(myc_engine *e) {
  myc__monitor *m = e->monitor;
  myc__mcall *c;
  if (m == NULL)
    return;
  uv_mutex_lock(&m->lock);
  if (m->closed) {
    uv_mutex_unlock(&m->lock);
    return;
  }
  m->closed = 1;
  uv_mutex_unlock(&m->lock);
  atomic_store(&m->quit, 1);
  if (m->thread_started) {
    uv_async_send(&m->wake);
    uv_thread_join(&m->thread);
    m->thread_started = 0;
  } else {
    close_all(m);
  }
  uv_run(&m->loop, UV_RUN_DEFAULT); /* the close callbacks */
  uv_loop_close(&m->loop);
  c = m->calls;
  m->calls = m->calls_tail = NULL;
  while (c != NULL) {
    myc__mcall *next = c->next;
    c->fn(c, 0);
    c = next;
  }
}

void myc__monitor_free(myc_engine *e) {
  myc__monitor *m = e->monitor;
  if (m == NULL)
    return;
  myc__monitor_stop(e);
  uv_mutex_destroy(&m->lock);
  e->monitor = NULL;
  myc__free(&e->alloc, m, sizeof *m);
}
