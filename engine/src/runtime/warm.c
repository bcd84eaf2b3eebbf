/* warm.c -- a service's warm-up (see warm.h). */
#include "runtime/warm.h"

#include "runtime/activation.h"
#include "runtime/engine.h"
#include "runtime/instance.h"

#include <stdio.h>
#include <string.h>

/* ---- the time budget ---------------------------------------------------- */

/* A hook would keep LuaJIT from compiling what the warm-up runs, so the
 * budget is kept by a thread that sleeps until it is spent, then hooks
 * the state (the hook raises once: deadline_ns is set), and past twice
 * the budget (compiled code the hook cannot reach) fails its next
 * allocation, as the watchdog does for a handler. */
typedef struct {
  myc_service *s;
  uint32_t gen; /* the warm-up's activation */
  int64_t start, budget_ns;
  uv_mutex_t lock;
  uv_cond_t cond;
  int done;
  uv_thread_t thread;
  int running;
} warm_watch;

static void watch_main(void *arg) {
  warm_watch *w = arg;
  int64_t next = w->start + w->budget_ns;
  int stage = 0;
  uv_mutex_lock(&w->lock);
  while (!w->done) {
    int64_t now = myc__mono_ns();
    if (now < next) {
      (void)uv_cond_timedwait(&w->cond, &w->lock, (uint64_t)(next - now));
      continue;
    }
    if (stage == 0) {
      myc__deadline_hook(w->s, w->gen);
      next = w->start + 2 * w->budget_ns + 10000000;
    } else {
      myc__service_poison(w->s, w->gen);
      next = now + 100000000;
    }
    stage = 1;
  }
  uv_mutex_unlock(&w->lock);
}

static void watch_start(warm_watch *w, myc_service *s, double ms) {
  memset(w, 0, sizeof *w);
  w->s = s;
  w->gen = atomic_load(&s->act_gen) + 1; /* myc__act_begin's next */
  w->start = myc__mono_ns();
  w->budget_ns = (int64_t)(ms * 1e6);
  if (uv_mutex_init(&w->lock) != 0)
    return;
  if (uv_cond_init(&w->cond) != 0) {
    uv_mutex_destroy(&w->lock);
    return;
  }
  w->running = uv_thread_create(&w->thread, watch_main, w) == 0;
  if (!w->running) {
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->lock);
  }
}

static void watch_stop(warm_watch *w) {
  if (!w->running)
    return;
  uv_mutex_lock(&w->lock);
  w->done = 1;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->lock);
  uv_thread_join(&w->thread);
  uv_cond_destroy(&w->cond);
  uv_mutex_destroy(&w->lock);
}

/* ---- the warm-up --------------------------------------------------------- */

static void log_done(myc_service *s, const myc__warm *w, double ms) {
  char line[300];
  snprintf(line, sizeof line,
           "warm-up: %llu messages handled in %.0f ms (%llu emits and %llu "
           "log records dropped)",
           (unsigned long long)w->handled, ms, (unsigned long long)w->emits,
           (unsigned long long)w->logs);
  myc__log_write(&s->eng->log, MYC_LOG_INFO, s->task.worker->now, s->name,
                 s->name_len, s->act_trace, s->act_span, line, strlen(line),
                 NULL, 0);
}

int myc__instance_warmup(myc_service *s, myc__instance *in, myc__end *how,
                         char *err, size_t errlen) {
  myc__lua_budget *b = &s->mem[in->slot];
  uint64_t first_timer = s->next_timer_id + 1;
  myc__warm warm;
  warm_watch watch;
  double ms;
  int64_t t0;
  int rc, h;

  /* LUA_REFNIL or LUA_NOREF (negative): the module has no warmup. */
  if (in->ref_warmup < 0)
    return 0;
  memset(&warm, 0, sizeof warm);
  s->warm = &warm;
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  t0 = myc__mono_ns();
  warm.deadline_ns = t0 + (int64_t)(s->load_timeout_ms * 1e6);
  b->deadline_ms = s->load_timeout_ms;
  b->overtime = 0;
  /* Checked by the hook only once the watch thread sets it. */
  atomic_store(&b->deadline_ns, t0 + (int64_t)(s->load_timeout_ms * 1e6));
  watch_start(&watch, s, s->load_timeout_ms);
  rc = myc__activate(s, in, MYC_ACT_WARMUP, in->ref_warmup, 0, 0);
  watch_stop(&watch);
  /* A failure the watch thread asked for and no allocation met. */
  atomic_store(&b->poison, 0);
  myc__deadline_end(b, in->L);
  s->warm = NULL;
  if (warm.frame != NULL)
    myc__buf_release(&s->task.worker->pool, s->task.worker->sched->alloc,
                     warm.frame);
  /* What the warm-up set must not fire into the real state. */
  myc__instance_forget_timers(s, first_timer, UINT64_MAX);
  ms = (double)(myc__mono_ns() - t0) / 1e6;
  h = myc__activation_end(s, in, rc);
  s->exit_req = 0;
  if (h < 0) {
    log_done(s, &warm, ms);
    return 0;
  }
  {
    char why[1200];
    const char *text = myc__call_error(in, rc);
    int dead = myc__instance_dead(in) || h == MYC_END_MEMORY;
    if (b->overtime || warm.overtime)
      snprintf(why, sizeof why,
               "warm-up timeout: still running after its "
               "budget of %g ms (load_timeout_ms), interrupted",
               s->load_timeout_ms);
    else if (h == MYC_END_TIMEOUT || dead)
      myc__end_reason(s, in, h, text, why, sizeof why);
    else
      snprintf(why, sizeof why, "%s", text ? text : "error");
    b->overtime = 0;
    if (!dead) {
      /* The instance is whole (the error was raised at a safe point):
       * it goes on, its handlers as yet uncompiled. */
      myc__log_error(s, "warm-up (the service starts without it)", why, NULL);
      myc__call_clear(in);
      return 0;
    }
    myc__name_error(s->name, why, err, errlen);
    myc__log_error(s, "warm-up", why, NULL);
    myc__call_clear(in);
    *how = h == MYC_END_MEMORY ? MYC_END_MEMORY : MYC_END_TIMEOUT;
    return MYC_ELUA;
  }
}
