/* monitor.c -- the monitor thread (see monitor.h).
 *
 * The watchdog never waits for a worker: it samples each service's
 * (activation, cursor) pair, and a pair that stays the same across ticks
 * for longer than the service's budget is one handler running that long.
 * It then asks LuaJIT to interrupt it (a count hook), and, if compiled
 * code keeps running, makes its next allocation fail.
 */
#include "supervise/monitor.h"

#include "runtime/activation.h"
#include "supervise/control.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEBOUNCE_MS 100
#define MAX_WATCHES 64

struct myc__monitor {
  myc__supervise *sv;
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
  uint64_t files_seen; /* sum of the services' files_gen when watched */

  uv_mutex_t lock; /* guards 'jobs' and 'closed' */
  myc__jobs jobs;
  int closed;
};

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
  myc__supervision *w = s->sup;
  int kind = atomic_load_explicit(&s->act_kind, memory_order_acquire);
  uint32_t gen = atomic_load_explicit(&s->act_gen, memory_order_acquire);
  int32_t cur = kind == MYC_ACT_HANDLER
                    ? __atomic_load_n(&s->view.cursor, __ATOMIC_ACQUIRE)
                    : -1;
  int64_t since = atomic_load(&w->busy_since);
  double ms, budget = kind == MYC_ACT_INIT || kind == MYC_ACT_WARMUP
                          ? s->load_timeout_ms
                          : s->timeout_ms;

  if (kind == MYC_ACT_IDLE) {
    atomic_store(&w->busy_since, 0);
    return;
  }
  if (since == 0 || gen != w->wd_gen || cur != w->wd_cursor) {
    w->wd_gen = gen;
    w->wd_cursor = cur;
    w->wd_stage = 0;
    /* First seen now: it started at most one tick ago. */
    atomic_store(&w->busy_since, now - tick_ns / 2);
    return;
  }
  if (budget <= 0)
    return;
  ms = (double)(now - since) / 1e6;
  if (w->wd_stage == 0 && ms > budget) {
    atomic_fetch_add(&w->timeouts, 1);
    wd_log(s, MYC_LOG_WARN,
           "running for %.0f ms, past its budget of %g ms: "
           "interrupting it",
           ms, budget);
    /* An init runs interpreted under its own deadline, which raises as
     * this would (instance.c); two raisers would race for the reason. */
    if (kind != MYC_ACT_INIT && kind != MYC_ACT_WARMUP)
      myc__service_interrupt(s, gen, cur);
    w->wd_stage = 1;
  } else if (w->wd_stage >= 1 && ms > 2 * budget + 10) {
    /* The hook has not fired: compiled code.  An allocation can still
     * fail; one that is refused and caught is asked for again. */
    myc__service_poison(s, gen);
    if (w->wd_stage == 1)
      wd_log(s, MYC_LOG_WARN,
             "still running after %.0f ms (budget %g ms): "
             "compiled code the hook cannot reach; failing its next "
             "allocation",
             ms, budget);
    if (w->wd_stage == 1)
      w->wd_stage = 2;
    if (w->wd_stage == 2 && ms > 4 * budget + 50) {
      wd_log(s, MYC_LOG_ERROR,
             "cannot be interrupted after %.0f ms (budget "
             "%g ms): a compiled loop that neither allocates nor leaves its "
             "trace (docs/SUPERVISION.md)",
             ms, budget);
      w->wd_stage = 3;
    }
  }
}

static void start_watching(myc__monitor *m);
static uint64_t files_gen(myc_engine *e);

static void on_tick(uv_timer_t *h) {
  myc__monitor *m = h->data;
  myc_engine *e = m->sv->e;
  int64_t now = myc__mono_ns();
  int64_t tick_ns = (int64_t)uv_timer_get_repeat(h) * 1000000;
  uint32_t i;
  uv_mutex_lock(&e->services_lock);
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL && e->services[i]->cb == NULL)
      watch_service(e->services[i], now, tick_ns);
  if (m->sv->reload == MYC_RELOAD_WATCH && !e->manual &&
      files_gen(e) != m->files_seen) {
    m->files_seen = files_gen(e);
    start_watching(m);
  }
  uv_mutex_unlock(&e->services_lock);
}

static void run_jobs(myc__monitor *m) {
  myc__job *list;
  uv_mutex_lock(&m->lock);
  list = myc__jobs_take(&m->jobs);
  uv_mutex_unlock(&m->lock);
  myc__jobs_run(list, 1);
}

static void close_all(myc__monitor *m);

static void on_wake(uv_async_t *h) {
  myc__monitor *m = h->data;
  if (atomic_load(&m->quit)) {
    close_all(m);
    return;
  }
  run_jobs(m);
}

void myc__monitor_post(myc__supervise *sv, myc__job *j) {
  myc__monitor *m = sv->monitor;
  int alive;
  if (m == NULL) {
    j->fn(j, 0);
    return;
  }
  uv_mutex_lock(&m->lock);
  alive = !m->closed;
  if (alive)
    myc__jobs_push(&m->jobs, j);
  uv_mutex_unlock(&m->lock);
  if (alive)
    uv_async_send(&m->wake);
  else
    j->fn(j, 0);
}

/* ---- file watcher ----------------------------------------------------- */

static void on_debounce(uv_timer_t *h) {
  myc__monitor *m = h->data;
  myc__reload_changed(m->sv);
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
    myc_engine_log(m->sv->e, MYC_LOG_WARN, NULL,
                   "reload: cannot watch a module "
                   "directory; SIGHUP and `mycelium reload` still work");
    return;
  }
  m->nwatches++;
}

/* Watches the directory of every file a Lua service runs: its module
 * and the modules it loaded (which it records as it requires them, so
 * this runs again when their number grows). */
static void start_watching(myc__monitor *m) {
  myc_engine *e = m->sv->e;
  uint32_t i, k;
  char path[4096];
  for (i = 0; i < e->endservices; i++) {
    myc_service *s = e->services[i];
    if (s == NULL || s->cb != NULL)
      continue;
    for (k = 0;; k++) {
      uv_mutex_lock(&s->hook_lock);
      if (k > s->ndeps) {
        uv_mutex_unlock(&s->hook_lock);
        break;
      }
      snprintf(path, sizeof path, "%s",
               k == 0 ? s->module : s->deps[k - 1].path);
      uv_mutex_unlock(&s->hook_lock);
      watch_dir(m, path);
    }
  }
}

static uint64_t files_gen(myc_engine *e) {
  uint64_t sum = 0;
  uint32_t i;
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL)
      sum += atomic_load(&e->services[i]->files_gen);
  return sum;
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

static int needs_monitor(myc__supervise *sv, double *min_budget) {
  myc_engine *e = sv->e;
  uint32_t i;
  *min_budget = 0;
  for (i = 0; i < e->endservices; i++) {
    double t = e->services[i] ? e->services[i]->timeout_ms : 0;
    if (t > 0 && (*min_budget == 0 || t < *min_budget))
      *min_budget = t;
  }
  return *min_budget > 0 || sv->control != NULL ||
         (sv->reload == MYC_RELOAD_WATCH && !e->manual);
}

int myc__monitor_start(myc__supervise *sv, char *err, size_t errlen) {
  myc_engine *e = sv->e;
  myc__monitor *m;
  double budget;
  uint64_t tick;
  int rc;
  if (!needs_monitor(sv, &budget) || sv->monitor != NULL)
    return 0;
  m = myc__calloc(&e->alloc, sizeof *m);
  if (m == NULL || uv_mutex_init(&m->lock) != 0) {
    if (m != NULL)
      myc__free(&e->alloc, m, sizeof *m);
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  m->sv = sv;
  uv_loop_init(&m->loop);
  uv_async_init(&m->loop, &m->wake, on_wake);
  uv_timer_init(&m->loop, &m->tick);
  uv_timer_init(&m->loop, &m->debounce);
  m->wake.data = m->tick.data = m->debounce.data = m;
  sv->monitor = m;
  rc = sv->control ? myc__control_open(sv, &m->loop, sv->control, &m->control,
                                       err, errlen)
                   : 0;
  if (rc == 0 && sv->reload == MYC_RELOAD_WATCH && !e->manual) {
    m->files_seen = files_gen(e);
    start_watching(m);
  }
  /* Ticks fine enough to catch a budget within a quarter of it. */
  tick = budget > 0 ? (uint64_t)(budget / 4) : 50;
  tick = tick < 1 ? 1 : tick > 50 ? 50 : tick;
  uv_timer_start(&m->tick, on_tick, tick, tick);
  if (rc == 0 && (rc = uv_thread_create(&m->thread, monitor_main, m)) != 0)
    snprintf(err, errlen, "cannot start the monitor thread: %s",
             myc_strerror(rc));
  m->thread_started = rc == 0;
  if (rc != 0) {
    myc__monitor_stop(sv);
    myc__monitor_free(sv);
  }
  return rc;
}

void myc__monitor_stop(myc__supervise *sv) {
  myc__monitor *m = sv->monitor;
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
  myc__jobs_run(myc__jobs_take(&m->jobs), 0);
}

void myc__monitor_free(myc__supervise *sv) {
  myc__monitor *m = sv->monitor;
  if (m == NULL)
    return;
  myc__monitor_stop(sv);
  uv_mutex_destroy(&m->lock);
  sv->monitor = NULL;
  myc__free(&sv->e->alloc, m, sizeof *m);
}
