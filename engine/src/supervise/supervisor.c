/* supervisor.c -- restart policy and hot reload (see supervisor.h).
 *
 * Every decision about a service runs on its worker, between batches: an
 * instance has ended, a backoff timer fired, or a marker brought a command
 * (a prepared reload, a group restart).  A group's history is shared by
 * its members' workers and guarded by the group's lock; what a decision
 * means for a member on another worker travels as a command.
 */
#include "supervise/supervisor.h"

#include "runtime/engine.h"
#include "supervise/monitor.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct myc__group {
  char *name;
  myc_strategy strategy;
  myc_supervisor_config cfg;
  myc_service **members; /* in the order they were added */
  uint32_t n, cap;
  uv_mutex_t lock;
  myc__intensity hist;
  uint32_t consecutive;
  int64_t last_start;
  int failed;
};

/* A reload on its way from the thread that prepared it to the worker. */
struct myc__reload {
  myc_service *s;
  myc__instance in;
  char *module, *code;
  size_t code_len;
  myc__reload_cb done;
  void *ud;
};

void myc_supervisor_config_init(myc_supervisor_config *sc) {
  sc->backoff_initial_ms = 10;
  sc->backoff_max_ms = 5000;
  sc->multiplier = 2;
  sc->jitter = 0.2;
  sc->max_restarts = 5;
  sc->window_s = 60;
  sc->reset_s = 30;
  sc->reload_probation_s = 5;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sup_log(myc_service *s, int level, const char *fmt, ...) {
  char line[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  myc__log_write(&s->eng->log, level, myc__clock_now(&s->eng->clock), s->name,
                 s->name_len, s->act_trace, s->act_span, line, strlen(line),
                 NULL, 0);
}

/* ---- intensity and backoff ---------------------------------------------- */

static int intensity_init(myc__intensity *h, const myc__alloc *a,
                          uint32_t max_restarts) {
  memset(h, 0, sizeof *h);
  h->cap = max_restarts + 1;
  h->t = myc__calloc(a, h->cap * sizeof *h->t);
  return h->t != NULL ? 0 : MYC_ENOMEM;
}

static void intensity_free(myc__intensity *h, const myc__alloc *a) {
  if (h->t != NULL)
    myc__free(a, h->t, h->cap * sizeof *h->t);
  h->t = NULL;
}

/* Records a restart at 'now' and returns how many fall within the last
 * 'window_s' seconds (this one included). */
static uint32_t intensity_note(myc__intensity *h, int64_t now,
                               double window_s) {
  int64_t since = now - (int64_t)(window_s * 1e9);
  uint32_t i, n = 0;
  h->t[h->head] = now;
  h->head = (h->head + 1) % h->cap;
  if (h->n < h->cap)
    h->n++;
  for (i = 0; i < h->n; i++)
    n += h->t[i] >= since;
  return n;
}

/* The next delay: initial * multiplier^consecutive, capped, then varied
 * by +- jitter.  A long quiet time since the last (re)start resets the
 * sequence. */
static int64_t backoff_ns(const myc_supervisor_config *c, uint32_t *consecutive,
                          int64_t last_start, int64_t now, myc__rng *rng) {
  double d, u;
  if (last_start != 0 && now - last_start >= (int64_t)(c->reset_s * 1e9))
    *consecutive = 0;
  d = c->backoff_initial_ms <= 0
          ? 0
          : c->backoff_initial_ms * pow(c->multiplier, (double)*consecutive);
  if (!(d <= c->backoff_max_ms)) /* also inf */
    d = c->backoff_max_ms;
  if (*consecutive < 1024)
    (*consecutive)++;
  u = (double)(myc__rng_next(rng) >> 11) / 9007199254740992.0;
  d *= 1 + c->jitter * (2 * u - 1);
  return d > 0 ? (int64_t)(d * 1e6) : 0;
}

/* ---- groups ---------------------------------------------------------------
 */

int myc__supervisor_config_ok(const myc_supervisor_config *c) {
  return c->backoff_initial_ms >= 0 && c->backoff_max_ms >= 0 &&
         c->multiplier >= 1 && c->jitter >= 0 && c->jitter <= 1 &&
         c->window_s > 0 && c->reset_s >= 0 && c->reload_probation_s >= 0 &&
         c->max_restarts <= 100000;
}

static myc__group *group_find(myc_engine *e, const char *name) {
  uint32_t i;
  for (i = 0; i < e->ngroups; i++)
    if (strcmp(e->groups[i]->name, name) == 0)
      return e->groups[i];
  return NULL;
}

static void group_free(myc_engine *e, myc__group *g) {
  intensity_free(&g->hist, &e->alloc);
  myc__free(&e->alloc, g->members, g->cap * sizeof *g->members);
  myc__strfree(&e->alloc, g->name);
  uv_mutex_destroy(&g->lock);
  myc__free(&e->alloc, g, sizeof *g);
}

int myc_engine_add_group(myc_engine *e, const char *name, myc_strategy strategy,
                         const myc_supervisor_config *sc) {
  myc__group *g, **p;
  if (name == NULL || *name == '\0' || strategy < MYC_ONE_FOR_ONE ||
      strategy > MYC_REST_FOR_ONE ||
      (sc != NULL && !myc__supervisor_config_ok(sc)) || e->started)
    return e->started ? MYC_ESTATE : MYC_EINVAL;
  if (group_find(e, name) != NULL)
    return MYC_EEXIST;
  g = myc__calloc(&e->alloc, sizeof *g);
  if (g == NULL)
    return MYC_ENOMEM;
  if (uv_mutex_init(&g->lock) != 0) {
    myc__free(&e->alloc, g, sizeof *g);
    return MYC_ENOMEM;
  }
  g->strategy = strategy;
  g->cfg = sc ? *sc : e->supervisor;
  g->name = myc__strdup(&e->alloc, name);
  p = myc__realloc(&e->alloc, e->groups, e->ngroups * sizeof *p,
                   (e->ngroups + 1) * sizeof *p);
  if (g->name == NULL || p == NULL ||
      intensity_init(&g->hist, &e->alloc, g->cfg.max_restarts) != 0) {
    if (p != NULL)
      e->groups = p;
    group_free(e, g);
    return MYC_ENOMEM;
  }
  e->groups = p;
  e->groups[e->ngroups++] = g;
  return 0;
}

void myc__groups_free(myc_engine *e) {
  uint32_t i;
  for (i = 0; i < e->ngroups; i++)
    group_free(e, e->groups[i]);
  myc__free(&e->alloc, e->groups, e->ngroups * sizeof *e->groups);
  e->groups = NULL;
  e->ngroups = 0;
}

static int group_join(myc__group *g, myc_service *s, const myc__alloc *a) {
  if (g->n == g->cap) {
    uint32_t cap = g->cap ? 2 * g->cap : 4;
    myc_service **p =
        myc__realloc(a, g->members, g->cap * sizeof *p, cap * sizeof *p);
    if (p == NULL)
      return MYC_ENOMEM;
    g->members = p;
    g->cap = cap;
  }
  g->members[g->n++] = s;
  return 0;
}

static void group_leave(myc__group *g, myc_service *s) {
  uint32_t i, n = 0;
  for (i = 0; i < g->n; i++)
    if (g->members[i] != s)
      g->members[n++] = g->members[i];
  g->n = n;
}

/* ---- set-up -------------------------------------------------------------- */

int myc__supervision_init(myc_service *s, const myc_service_config *sc,
                          char *err, size_t errlen) {
  myc_engine *e = s->eng;
  myc__supervision *sup = &s->sup;
  char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (sc->restart < MYC_RESTART_PERMANENT ||
      sc->restart > MYC_RESTART_TEMPORARY) {
    snprintf(err, errlen, "service '%s': invalid restart type", s->name);
    return MYC_EINVAL;
  }
  sup->restart = sc->restart;
  sup->cfg = &e->supervisor;
  sup->probation_s = sc->reload_probation_s > 0 ? sc->reload_probation_s
                     : sc->reload_probation_s == 0
                         ? e->supervisor.reload_probation_s
                         : 0;
  if (sc->group != NULL && *sc->group != '\0') {
    myc__group *g = group_find(e, sc->group);
    if (g == NULL) {
      snprintf(err, errlen,
               "service '%s': no supervisor group '%s' "
               "(declare it under 'supervisors')",
               s->name, sc->group);
      return MYC_EINVAL;
    }
    if (group_join(g, s, &e->alloc) != 0)
      return MYC_ENOMEM;
    sup->group = g;
    sup->cfg = &g->cfg;
    return 0;
  }
  return intensity_init(&sup->hist, &e->alloc, sup->cfg->max_restarts);
}

/* Ends the probation: the retired instance (stopped if it was not) and
 * the previous code go. */
static void free_prev(myc_service *s) {
  myc__supervision *sup = &s->sup;
  const myc__alloc *a = &s->eng->alloc;
  if (s->retired.L != NULL)
    myc__service_retire(s, &s->retired, 1);
  if (sup->prev_code != NULL)
    myc__free(a, sup->prev_code, sup->prev_code_len + 1);
  myc__strfree(a, sup->prev_module);
  sup->prev_code = sup->prev_module = NULL;
  sup->prev_code_len = 0;
  sup->probation_until = 0;
  sup->retire_gen++;
}

static void reload_free(myc_service *s, myc__reload *r) {
  const myc__alloc *a = &s->eng->alloc;
  myc__instance_close(s, &r->in);
  if (r->code != NULL)
    myc__free(a, r->code, r->code_len + 1);
  myc__strfree(a, r->module);
  myc__free(a, r, sizeof *r);
}

void myc__supervision_destroy(myc_service *s) {
  myc__supervision *sup = &s->sup;
  myc__reload *r = atomic_exchange(&sup->pending, NULL);
  if (r != NULL) {
    r->done(r->ud, MYC_ESTOPPED, "the engine stopped before the swap");
    reload_free(s, r);
  }
  if (sup->group != NULL)
    group_leave(sup->group, s);
  intensity_free(&sup->hist, &s->eng->alloc);
  free_prev(s);
}

/* ---- ending and restarting -------------------------------------------- */

static int wants_restart(myc_restart r, int how) {
  switch (r) {
  case MYC_RESTART_PERMANENT:
    return how != MYC_END_SHUTDOWN;
  case MYC_RESTART_TRANSIENT:
    return how != MYC_END_EXIT && how != MYC_END_SHUTDOWN;
  default:
    return 0;
  }
}

/* The service will not run again unless reloaded: it leaves its topics
 * (its mailbox keeps what was queued, for a reload to handle). */
static void settle(myc_service *s, int state, const char *why) {
  atomic_store(&s->state, state);
  myc__topics_unsubscribe_all(&s->eng->topics, s);
  if (state == MYC_SVC_FAILED)
    sup_log(s, MYC_LOG_ERROR, "service failed: %s", why);
  else
    sup_log(s, MYC_LOG_INFO, "service stopped: %s", why);
}

static void schedule_restart(myc_service *s, int64_t delay) {
  myc__worker *w = s->worker;
  int64_t at = myc__clock_now(&s->eng->clock) + delay;
  atomic_store(&s->state, MYC_SVC_RESTARTING);
  sup_log(s, MYC_LOG_INFO, "restarting in %.1f ms", (double)delay / 1e6);
  if (myc__worker_add_timer(w, s, at, 0,
                            MYC_SUP_TIMER | MYC_SUP_GEN(s->sup.gen)) != 0)
    myc__supervisor_timer(s, MYC_SUP_TIMER | MYC_SUP_GEN(s->sup.gen));
}

static void wake_if_pending(myc_service *s) {
  if (myc__service_pending(s) && !s->queued)
    myc__worker_schedule(s->worker, s);
}

/* Hands 'cmd' to service 'm' on its worker. */
static void post(myc_service *m, unsigned cmd) {
  atomic_fetch_or(&m->cmds, cmd);
  if (myc__worker_handoff(m->worker, m, NULL) != 0)
    sup_log(m, MYC_LOG_ERROR, "out of memory: a supervisor command is lost");
}

static void group_terminated(myc_service *s, int64_t now, const char *why) {
  myc__group *g = s->sup.group;
  uint32_t i, count, from = 0;
  int64_t delay;
  int failed;

  uv_mutex_lock(&g->lock);
  count = g->failed ? 0 : intensity_note(&g->hist, now, g->cfg.window_s);
  failed = g->failed || count > g->cfg.max_restarts;
  g->failed = failed;
  delay = failed ? 0
                 : backoff_ns(&g->cfg, &g->consecutive, g->last_start, now,
                              &s->worker->rng);
  g->last_start = now + delay;
  for (i = 0; i < g->n; i++)
    if (g->members[i] == s)
      from = i;
  if (g->strategy == MYC_ONE_FOR_ALL)
    from = 0;
  for (i = g->strategy == MYC_ONE_FOR_ONE ? g->n : from; i < g->n; i++) {
    myc_service *m = g->members[i];
    if (m == s)
      continue;
    m->sup.group_delay_ns = (uint64_t)delay;
    post(m, failed ? MYC_CMD_GROUP_FAIL : MYC_CMD_GROUP_RESTART);
  }
  uv_mutex_unlock(&g->lock);
  if (failed) {
    char text[1024];
    snprintf(text, sizeof text,
             "group '%s' reached its restart intensity "
             "(%u restarts within %g s): %s",
             g->name, g->cfg.max_restarts, g->cfg.window_s, why);
    settle(s, MYC_SVC_FAILED, text);
    return;
  }
  schedule_restart(s, delay);
}

void myc__supervisor_terminated(myc_service *s, int how, const char *why) {
  myc__supervision *sup = &s->sup;
  int64_t now = myc__clock_now(&s->eng->clock);
  int crash = how != MYC_END_EXIT && how != MYC_END_SHUTDOWN;
  uint32_t count;

  myc__timers_forget_below(&s->worker->timers, s, s->next_timer_id + 1);
  sup->gen++;
  if (atomic_load(&s->eng->stopping)) {
    settle(s, MYC_SVC_STOPPED, "the engine is stopping");
    return;
  }
  if (crash && sup->probation_until != 0 && now < sup->probation_until &&
      sup->prev_code != NULL && s->retired.L != NULL &&
      myc__supervisor_rollback(s, why) == 0)
    return;
  free_prev(s);
  if (!wants_restart(sup->restart, how)) {
    settle(s, crash ? MYC_SVC_FAILED : MYC_SVC_STOPPED, crash ? why : "exited");
    return;
  }
  if (sup->group != NULL) {
    group_terminated(s, now, why);
    return;
  }
  count = intensity_note(&sup->hist, now, sup->cfg->window_s);
  if (count > sup->cfg->max_restarts) {
    char text[1200];
    snprintf(text, sizeof text,
             "restart intensity reached (%u restarts "
             "within %g s): %s",
             sup->cfg->max_restarts, sup->cfg->window_s, why);
    settle(s, MYC_SVC_FAILED, text);
    return;
  }
  schedule_restart(s, backoff_ns(sup->cfg, &sup->consecutive, sup->last_start,
                                 now, &s->worker->rng));
}

/* Starts a fresh instance of the current code: init(ctx, opts, nil). */
static void restart(myc_service *s) {
  myc__instance in;
  myc__end how = MYC_END_ERROR;
  char err[1024];
  int rc = myc__instance_load(s, &in, s->module, s->code, s->code_len, err,
                              sizeof err);
  if (rc != 0) {
    sup_log(s, MYC_LOG_ERROR, "restart failed: %s", err);
  } else if ((rc = myc__instance_init(s, &in, NULL, LUA_NOREF, &how, err,
                                      sizeof err)) != 0) {
    myc__instance_close(s, &in);
  }
  if (rc != 0) {
    myc__supervisor_terminated(s, how, err);
    return;
  }
  myc__instance_commit(s, &in);
  s->sup.last_start = myc__clock_now(&s->eng->clock);
  atomic_fetch_add(&s->sup.restarts, 1);
  atomic_store(&s->state, MYC_SVC_RUNNING);
  sup_log(s, MYC_LOG_INFO, "restarted");
  wake_if_pending(s);
}

/* After a swap: the retired instance's stop runs once the new instance
 * has had its turn; the instance itself is kept for a rollback until the
 * probation ends. */
static void retire_timer(myc_service *s, uint64_t id) {
  myc__supervision *sup = &s->sup;
  int64_t now = myc__clock_now(&s->eng->clock);
  myc__service_retire(s, &s->dying, 1);
  if (MYC_SUP_GEN(id) != MYC_SUP_GEN(sup->retire_gen) || s->retired.L == NULL)
    return;
  if (sup->probation_until > now) {
    myc__service_retire(s, &s->retired, 0);
    if (myc__worker_add_timer(s->worker, s, sup->probation_until, 0, id) == 0)
      return;
  }
  free_prev(s);
}

void myc__supervisor_timer(myc_service *s, uint64_t id) {
  if (id & MYC_SUP_RETIRE) {
    retire_timer(s, id);
    return;
  }
  if (MYC_SUP_GEN(id) != MYC_SUP_GEN(s->sup.gen) ||
      atomic_load(&s->state) != MYC_SVC_RESTARTING)
    return;
  restart(s);
}

/* A group decision for a member on this worker: end the instance (its
 * stop runs: it did nothing wrong) and restart it after the group's delay,
 * or leave it failed. */
static void group_command(myc_service *s, unsigned cmd) {
  int state = atomic_load(&s->state);
  if (state == MYC_SVC_STOPPED || state == MYC_SVC_LOADED ||
      state == MYC_SVC_FAILED)
    return;
  myc__service_end_instance(s, 1);
  myc__timers_forget_below(&s->worker->timers, s, s->next_timer_id + 1);
  s->sup.gen++;
  if (cmd & MYC_CMD_GROUP_FAIL) {
    settle(s, MYC_SVC_FAILED, "its supervisor group failed");
    return;
  }
  if (s->sup.restart == MYC_RESTART_TEMPORARY) {
    settle(s, MYC_SVC_STOPPED,
           "its group restarted (temporary: not "
           "restarted)");
    return;
  }
  schedule_restart(s, (int64_t)s->sup.group_delay_ns);
}

/* ---- rollback (probation) ------------------------------------------------ */

int myc__supervisor_rollback(myc_service *s, const char *why) {
  myc__supervision *sup = &s->sup;
  const myc__alloc *a = &s->eng->alloc;
  myc__instance in;
  myc__end how;
  char err[1024];
  int rc = myc__instance_load(s, &in, sup->prev_module, sup->prev_code,
                              sup->prev_code_len, err, sizeof err);
  if (rc == 0 &&
      (rc = myc__instance_init(s, &in, s->retired.L, s->retired.snap_ref, &how,
                               err, sizeof err)) != 0)
    myc__instance_close(s, &in);
  if (rc != 0) {
    sup_log(s, MYC_LOG_ERROR, "rollback to the previous version failed: %s",
            err);
    return rc;
  }
  myc__instance_commit(s, &in);
  uv_mutex_lock(&s->hook_lock);
  myc__free(a, s->code, s->code_len + 1);
  myc__strfree(a, s->module);
  s->code = sup->prev_code;
  s->code_len = sup->prev_code_len;
  s->module = sup->prev_module;
  uv_mutex_unlock(&s->hook_lock);
  sup->prev_code = sup->prev_module = NULL;
  free_prev(s);
  atomic_fetch_add(&sup->rollbacks, 1);
  atomic_fetch_add(&sup->version, 1);
  sup->last_start = myc__clock_now(&s->eng->clock);
  atomic_store(&s->state, MYC_SVC_RUNNING);
  sup_log(s, MYC_LOG_WARN,
          "rolled back to the previous version: the new "
          "one crashed within its probation of %g s (%s)",
          sup->probation_s, why);
  wake_if_pending(s);
  return 0;
}

/* ---- reload -------------------------------------------------------------- */

static void reload_failed(myc_service *s, const char *err) {
  atomic_fetch_add(&s->sup.reload_failures, 1);
  sup_log(s, MYC_LOG_ERROR,
          "reload refused, the running version goes on: "
          "%s",
          err);
}

/* The swap, on the worker: old snapshot -> new init -> the new instance
 * takes the mailbox.  The old one is retired: its stop runs right after
 * (a timer, so the new instance's first turn comes first) and its state
 * is kept for a rollback until the probation ends.  Returns 0 or the
 * error in 'err'. */
static int commit_reload(myc_service *s, myc__reload *r, char *err,
                         size_t errlen) {
  myc__supervision *sup = &s->sup;
  const myc__alloc *a = &s->eng->alloc;
  int64_t t0 = mono_ns(), now;
  int state = atomic_load(&s->state), rc, ref = LUA_NOREF;
  myc__end how;

  if (atomic_load(&s->eng->stopping) || state == MYC_SVC_LOADED) {
    snprintf(err, errlen, "service '%s': the engine is %s", s->name,
             state == MYC_SVC_LOADED ? "not started" : "stopping");
    return MYC_ESTOPPED;
  }
  /* One probation at a time: an earlier retired instance goes, after
   * the swap (closing a big state is not free). */
  if (s->retired.L != NULL) {
    myc__service_retire(s, &s->dying, 1);
    s->dying = s->retired;
    s->retired.L = NULL;
    s->retired.slot = -1;
    free_prev(s);
  }
  rc = myc__service_snapshot(s, &ref, err, errlen);
  if (rc == 0)
    rc = myc__instance_init(s, &r->in, s->cur.L, ref, &how, err, errlen);
  if (rc != 0) {
    if (s->cur.L != NULL)
      luaL_unref(s->cur.L, LUA_REGISTRYINDEX, ref);
    return rc;
  }
  myc__instance_commit(s, &r->in);
  uv_mutex_lock(&s->hook_lock);
  if (s->retired.L != NULL) {
    s->retired.snap_ref = ref;
    sup->prev_code = s->code;
    sup->prev_code_len = s->code_len;
    sup->prev_module = s->module;
  } else {
    myc__free(a, s->code, s->code_len + 1);
    myc__strfree(a, s->module);
  }
  s->code = r->code;
  s->code_len = r->code_len;
  s->module = r->module;
  uv_mutex_unlock(&s->hook_lock);
  r->code = r->module = NULL;
  if (state != MYC_SVC_RUNNING) {
    /* A revived service starts its restart history afresh. */
    sup->gen++;
    sup->hist.n = 0;
    sup->consecutive = 0;
  }
  now = myc__clock_now(&s->eng->clock);
  sup->last_start = now;
  atomic_store(&s->state, MYC_SVC_RUNNING);
  atomic_store(&sup->last_pause_ns, (uint64_t)(mono_ns() - t0));
  atomic_fetch_add(&sup->reloads, 1);
  atomic_fetch_add(&sup->version, 1);
  wake_if_pending(s);
  if (s->retired.L != NULL) {
    sup->probation_until =
        sup->probation_s > 0 ? now + (int64_t)(sup->probation_s * 1e9) : 0;
    if (myc__worker_add_timer(s->worker, s, now, 0,
                              MYC_SUP_TIMER | MYC_SUP_RETIRE |
                                  MYC_SUP_GEN(sup->retire_gen)) != 0)
      free_prev(s);
  }
  sup_log(s, MYC_LOG_INFO, "reloaded %s (version %u, swap %.3f ms)", s->module,
          atomic_load(&sup->version),
          (double)atomic_load(&sup->last_pause_ns) / 1e6);
  return 0;
}

static void commit_pending(myc_service *s) {
  myc__reload *r = atomic_exchange(&s->sup.pending, NULL);
  char err[1024];
  int rc;
  if (r == NULL)
    return;
  err[0] = '\0';
  rc = commit_reload(s, r, err, sizeof err);
  if (rc == MYC_ESTOPPED)
    sup_log(s, MYC_LOG_INFO, "reload not done: %s", err);
  else if (rc != 0)
    reload_failed(s, err);
  atomic_store(&s->sup.reloading, 0);
  r->done(r->ud, rc, err);
  reload_free(s, r);
}

void myc__supervisor_command(myc_service *s) {
  unsigned cmd = atomic_exchange(&s->cmds, 0);
  if (cmd & (MYC_CMD_GROUP_FAIL | MYC_CMD_GROUP_RESTART))
    group_command(s, cmd);
  if (cmd & MYC_CMD_RELOAD)
    commit_pending(s);
}

/* Loads the new code on the calling thread.  On success '*out' waits to
 * be committed and the service's 'reloading' flag is set. */
static int prepare(myc_engine *e, myc_service *s, const char *module,
                   myc__reload **out, char *err, size_t errlen) {
  myc__reload *r;
  char why[1024];
  int rc, expected = 0;

  if (s->cb != NULL) {
    snprintf(err, errlen, "service '%s' is a C service: nothing to reload",
             s->name);
    return MYC_EINVAL;
  }
  if (!e->started || atomic_load(&e->stopping)) {
    snprintf(err, errlen, "service '%s': the engine is %s", s->name,
             e->started ? "stopping" : "not running");
    return e->started ? MYC_ESTOPPED : MYC_ESTATE;
  }
  if (!atomic_compare_exchange_strong(&s->sup.reloading, &expected, 1)) {
    snprintf(err, errlen, "service '%s': a reload is already under way",
             s->name);
    return MYC_ESTATE;
  }
  r = myc__calloc(&e->alloc, sizeof *r);
  if (r != NULL) {
    r->s = s;
    uv_mutex_lock(&s->hook_lock);
    r->module = myc__strdup(&e->alloc, module ? module : s->module);
    uv_mutex_unlock(&s->hook_lock);
  }
  if (r == NULL || r->module == NULL) {
    if (r != NULL)
      myc__free(&e->alloc, r, sizeof *r);
    atomic_store(&s->sup.reloading, 0);
    snprintf(err, errlen, "service '%s': out of memory", s->name);
    return MYC_ENOMEM;
  }
  rc = myc__read_file(e, r->module, &r->code, &r->code_len, why, sizeof why);
  if (rc != 0)
    snprintf(err, errlen, "service '%s': %s", s->name, why);
  else
    rc = myc__instance_load(s, &r->in, r->module, r->code, r->code_len, err,
                            errlen);
  if (rc != 0) {
    reload_free(s, r);
    reload_failed(s, err);
    atomic_store(&s->sup.reloading, 0);
    return rc;
  }
  *out = r;
  return 0;
}

int myc__reload_start(myc_engine *e, myc_service *s, const char *module,
                      myc__reload_cb done, void *ud, char *err, size_t errlen) {
  myc__reload *r;
  int rc = prepare(e, s, module, &r, err, errlen);
  if (rc != 0)
    return rc;
  r->done = done;
  r->ud = ud;
  atomic_store(&s->sup.pending, r);
  atomic_fetch_or(&s->cmds, MYC_CMD_RELOAD);
  rc = myc__worker_handoff(s->worker, s, NULL);
  if (rc != 0 && atomic_exchange(&s->sup.pending, NULL) == r) {
    reload_free(s, r);
    atomic_store(&s->sup.reloading, 0);
    snprintf(err, errlen, "service '%s': out of memory", s->name);
    return rc;
  }
  return 0;
}

/* ---- the blocking reload of the C API --------------------------------------
 */

typedef struct {
  uv_mutex_t lock;
  uv_cond_t cond;
  _Atomic int refs;
  int done, rc;
  char err[1024];
  const myc__alloc *alloc;
} waiter;

static void waiter_unref(waiter *w) {
  if (atomic_fetch_sub(&w->refs, 1) == 1) {
    uv_cond_destroy(&w->cond);
    uv_mutex_destroy(&w->lock);
    myc__free(w->alloc, w, sizeof *w);
  }
}

static void waiter_done(void *ud, int rc, const char *err) {
  waiter *w = ud;
  uv_mutex_lock(&w->lock);
  w->rc = rc;
  snprintf(w->err, sizeof w->err, "%s", err ? err : "");
  w->done = 1;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->lock);
  waiter_unref(w);
}

static waiter *waiter_new(myc_engine *e) {
  waiter *w = myc__calloc(&e->alloc, sizeof *w);
  if (w == NULL)
    return NULL;
  if (uv_mutex_init(&w->lock) != 0) {
    myc__free(&e->alloc, w, sizeof *w);
    return NULL;
  }
  if (uv_cond_init(&w->cond) != 0) {
    uv_mutex_destroy(&w->lock);
    myc__free(&e->alloc, w, sizeof *w);
    return NULL;
  }
  w->alloc = &e->alloc;
  atomic_init(&w->refs, 2);
  return w;
}

#define RELOAD_WAIT_NS (UINT64_C(10) * 1000000000)

int myc_engine_reload(myc_engine *e, const char *name, const char *module,
                      char *err, size_t errlen) {
  myc_service *s = name ? myc__engine_find(e, name, strlen(name)) : NULL;
  char dummy[1];
  waiter *w;
  int rc;
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (s == NULL) {
    snprintf(err, errlen, "no service named '%s'", name ? name : "");
    return MYC_ENOENT;
  }
  w = waiter_new(e);
  if (w == NULL) {
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  rc = myc__reload_start(e, s, module, waiter_done, w, err, errlen);
  if (rc != 0) {
    waiter_unref(w);
    waiter_unref(w);
    return rc;
  }
  /* A manual engine's worker is this thread: swap now. */
  if (e->manual)
    commit_pending(s);
  uv_mutex_lock(&w->lock);
  while (!w->done)
    if (uv_cond_timedwait(&w->cond, &w->lock, RELOAD_WAIT_NS) != 0)
      break;
  if (w->done) {
    rc = w->rc;
    snprintf(err, errlen, "%s", w->err);
  } else {
    rc = MYC_ETIMEDOUT;
    snprintf(err, errlen,
             "service '%s': its worker did not get to the swap "
             "within 10 s (a handler still running?); it will happen when "
             "it does",
             s->name);
  }
  uv_mutex_unlock(&w->lock);
  waiter_unref(w);
  return rc;
}

/* ---- files changed on disk --------------------------------------------- */

static void reload_logged(void *ud, int rc, const char *err) {
  (void)ud;
  (void)rc;
  (void)err; /* the worker logged the outcome */
}

/* Whether the module file of 's' differs from the code it runs. */
static int changed_on_disk(myc_engine *e, myc_service *s) {
  char path[4096], why[512], *code;
  size_t len;
  int changed;
  uv_mutex_lock(&s->hook_lock);
  snprintf(path, sizeof path, "%s", s->module);
  uv_mutex_unlock(&s->hook_lock);
  if (myc__read_file(e, path, &code, &len, why, sizeof why) != 0)
    return 0; /* being replaced: the next event will tell */
  uv_mutex_lock(&s->hook_lock);
  changed = len != s->code_len || memcmp(code, s->code, len) != 0;
  uv_mutex_unlock(&s->hook_lock);
  myc__free(&e->alloc, code, len + 1);
  return changed;
}

void myc__reload_changed(myc_engine *e) {
  uint32_t i, n;
  uv_mutex_lock(&e->services_lock);
  n = e->nservices;
  uv_mutex_unlock(&e->services_lock);
  for (i = 0; i < n; i++) {
    myc_service *s = e->services[i];
    char err[1024];
    int rc;
    if (s->cb != NULL || !changed_on_disk(e, s))
      continue;
    rc = myc__reload_start(e, s, NULL, reload_logged, NULL, err, sizeof err);
    if (rc == MYC_ESTATE)
      sup_log(s, MYC_LOG_WARN, "file changed, not reloaded: %s", err);
  }
}

/* ---- introspection ------------------------------------------------------- */

void myc__supervision_stats(myc_service *s, myc_service_stats *st) {
  static const char *types[] = {"permanent", "transient", "temporary"};
  myc__supervision *sup = &s->sup;
  int slot = atomic_load(&s->mem_cur);
  int64_t since = atomic_load(&s->busy_since);
  st->memory_bytes = s->cb ? 0 : atomic_load(&s->mem[slot].used);
  st->memory_peak = s->cb ? 0 : atomic_load(&s->mem[slot].peak);
  st->memory_limit = s->mem[0].limit;
  st->restart = types[sup->restart];
  st->group = sup->group ? sup->group->name : NULL;
  st->restarts = atomic_load(&sup->restarts);
  st->timeouts = atomic_load(&sup->timeouts);
  st->reloads = atomic_load(&sup->reloads);
  st->reload_failures = atomic_load(&sup->reload_failures);
  st->rollbacks = atomic_load(&sup->rollbacks);
  st->version = atomic_load(&sup->version);
  st->last_pause_ms = (double)atomic_load(&sup->last_pause_ns) / 1e6;
  myc__service_running(s, st->running, sizeof st->running);
  st->running_ms = st->running[0] && since != 0
                       ? (double)(myc__monitor_now() - since) / 1e6
                       : 0;
}
