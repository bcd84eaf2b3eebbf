/* supervisor.c -- restart policy (see supervisor.h).
 *
 * Every decision about a service runs on its worker, between batches: an
 * instance has ended, a backoff timer fired, or a job brought a command
 * (a prepared reload, a group restart).  A group's history is shared by
 * its members' workers and guarded by the group's lock; what a decision
 * means for a member on another worker travels as a command.
 */
#include "supervise/supervisor.h"

#include "base/backoff.h"
#include "runtime/instance.h"
#include "runtime/request.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

static myc__backoff backoff_of(const myc_supervisor_config *c) {
  myc__backoff b;
  b.initial_ms = c->backoff_initial_ms;
  b.max_ms = c->backoff_max_ms;
  b.multiplier = c->multiplier;
  b.jitter = c->jitter;
  return b;
}

int myc__supervisor_config_ok(const myc_supervisor_config *c) {
  myc__backoff b = backoff_of(c);
  /* Bounded so that seconds converted to ns never overflow (an infinite
   * reset_s used to make every restart the first). */
  return myc__backoff_ok(&b) && c->window_s > 0 && c->window_s <= MYC_MAX_S &&
         c->reset_s >= 0 && c->reset_s <= MYC_MAX_S &&
         c->reload_probation_s >= 0 && c->reload_probation_s <= MYC_MAX_S &&
         c->max_restarts <= 100000;
}

void myc__sup_log(myc_service *s, int level, const char *fmt, ...) {
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

/* The next restart delay (base/backoff.h) after '*consecutive' restarts
 * in a row; a long quiet time since the last (re)start resets the
 * sequence. */
static int64_t backoff_ns(const myc_supervisor_config *c, uint32_t *consecutive,
                          int64_t last_start, int64_t now, myc__rng *rng) {
  myc__backoff b = backoff_of(c);
  double ms;
  if (last_start != 0 && now - last_start >= (int64_t)(c->reset_s * 1e9))
    *consecutive = 0;
  ms = myc__backoff_ms(&b, *consecutive, rng);
  if (*consecutive < 1024)
    (*consecutive)++;
  return (int64_t)(ms * 1e6);
}

/* ---- groups ------------------------------------------------------------ */

static myc__group *group_find(myc__supervise *sv, const char *name) {
  uint32_t i;
  for (i = 0; i < sv->ngroups; i++)
    if (strcmp(sv->groups[i]->name, name) == 0)
      return sv->groups[i];
  return NULL;
}

static void group_free(const myc__alloc *a, myc__group *g) {
  intensity_free(&g->hist, a);
  myc__free(a, g->members, g->cap * sizeof *g->members);
  myc__strfree(a, g->name);
  uv_mutex_destroy(&g->lock);
  myc__free(a, g, sizeof *g);
}

int myc_engine_add_group(myc_engine *e, const char *name, myc_strategy strategy,
                         const myc_supervisor_config *sc) {
  myc__supervise *sv = myc__supervise_of(e);
  const myc__alloc *a = &e->alloc;
  myc__group *g, **p;
  /* Group names go where service names go (status, logs): same rule. */
  if (name == NULL || myc__service_name_check(name) != NULL ||
      strategy < MYC_ONE_FOR_ONE ||
      strategy > MYC_REST_FOR_ONE ||
      (sc != NULL && !myc__supervisor_config_ok(sc)) || e->started)
    return e->started ? MYC_ESTATE : MYC_EINVAL;
  if (group_find(sv, name) != NULL)
    return MYC_EEXIST;
  g = myc__calloc(a, sizeof *g);
  if (g == NULL)
    return MYC_ENOMEM;
  if (uv_mutex_init(&g->lock) != 0) {
    myc__free(a, g, sizeof *g);
    return MYC_ENOMEM;
  }
  g->strategy = strategy;
  g->cfg = sc ? *sc : sv->cfg;
  g->name = myc__strdup(a, name);
  p = myc__realloc(a, sv->groups, sv->ngroups * sizeof *p,
                   (sv->ngroups + 1) * sizeof *p);
  if (p != NULL)
    sv->groups = p;
  if (g->name == NULL || p == NULL ||
      intensity_init(&g->hist, a, g->cfg.max_restarts) != 0) {
    group_free(a, g);
    return MYC_ENOMEM;
  }
  sv->groups[sv->ngroups++] = g;
  return 0;
}

void myc__groups_free(myc__supervise *sv) {
  const myc__alloc *a = &sv->e->alloc;
  uint32_t i;
  for (i = 0; i < sv->ngroups; i++)
    group_free(a, sv->groups[i]);
  myc__free(a, sv->groups, sv->ngroups * sizeof *sv->groups);
  sv->groups = NULL;
  sv->ngroups = 0;
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

/* ---- commands (the control channel) -------------------------------------- */

static void group_command(myc_service *s, unsigned cmd);

/* The job that runs a service's commands on its worker. */
static void run_commands(myc__job *j, int run) {
  myc__supervision *sup =
      (myc__supervision *)((char *)j - offsetof(myc__supervision, job));
  unsigned cmd;
  /* Before taking the commands: one posted from now on queues the job
   * again rather than being lost. */
  atomic_store(&sup->job_queued, 0);
  if (!run)
    return;
  cmd = atomic_exchange(&sup->cmds, 0);
  if (cmd & (MYC_CMD_GROUP_FAIL | MYC_CMD_GROUP_RESTART))
    group_command(sup->s, cmd);
  if (cmd & MYC_CMD_RELOAD)
    myc__reload_commit(sup->s);
}

void myc__sup_post(myc_service *s, unsigned cmd) {
  myc__supervision *sup = s->sup;
  atomic_fetch_or(&sup->cmds, cmd);
  if (!atomic_exchange(&sup->job_queued, 1))
    myc__worker_post(myc__service_worker(s), &sup->job);
}

/* ---- set-up -------------------------------------------------------------- */

int myc__supervision_init(myc__supervise *sv, myc_service *s,
                          const myc_service_config *sc, char *err,
                          size_t errlen) {
  const myc__alloc *a = &sv->e->alloc;
  myc__supervision *sup;
  char dummy[1];
  int rc;
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (sc->restart < MYC_RESTART_PERMANENT ||
      sc->restart > MYC_RESTART_TEMPORARY) {
    snprintf(err, errlen, "service '%s': invalid restart type", s->name);
    return MYC_EINVAL;
  }
  if (!(sc->reload_probation_s <= MYC_MAX_S)) {
    snprintf(err, errlen, "service '%s': reload_probation_s must be at most "
             "%g seconds, got %g", s->name, MYC_MAX_S, sc->reload_probation_s);
    return MYC_EINVAL;
  }
  sup = myc__calloc(a, sizeof *sup);
  if (sup == NULL) {
    snprintf(err, errlen, "service '%s': out of memory", s->name);
    return MYC_ENOMEM;
  }
  sup->sv = sv;
  sup->s = s;
  sup->job.fn = run_commands;
  sup->restart = sc->restart;
  sup->cfg = &sv->cfg;
  sup->probation_s = sc->reload_probation_s > 0 ? sc->reload_probation_s
                     : sc->reload_probation_s == 0 ? sv->cfg.reload_probation_s
                                                   : 0;
  /* Lua services start at version 1; C services have no code. */
  atomic_init(&sup->version, s->cb == NULL ? 1 : 0);
  s->sup = sup;
  if (sc->group != NULL && *sc->group != '\0') {
    myc__group *g = group_find(sv, sc->group);
    if (g == NULL) {
      snprintf(err, errlen,
               "service '%s': no supervisor group '%s' "
               "(declare it under 'supervisors')",
               s->name, sc->group);
      return MYC_EINVAL;
    }
    if (group_join(g, s, a) != 0)
      return MYC_ENOMEM;
    sup->group = g;
    s->grouped = 1;
    sup->cfg = &g->cfg;
    return 0;
  }
  rc = intensity_init(&sup->hist, a, sup->cfg->max_restarts);
  if (rc != 0)
    snprintf(err, errlen, "service '%s': out of memory", s->name);
  return rc;
}

void myc__sup_end_probation(myc_service *s) {
  myc__supervision *sup = s->sup;
  const myc__alloc *a = &s->eng->alloc;
  if (s->retired.L != NULL)
    myc__instance_retire(s, &s->retired, 1);
  if (sup->prev_code != NULL)
    myc__free(a, sup->prev_code, sup->prev_code_len + 1);
  myc__strfree(a, sup->prev_module);
  sup->prev_code = sup->prev_module = NULL;
  sup->prev_code_len = 0;
  sup->probation_until = 0;
  sup->retire_gen++;
}

static int restart_timer(void *arg, uint64_t gen);

void myc__supervision_destroy(myc_service *s) {
  myc__supervision *sup = s->sup;
  if (sup == NULL)
    return;
  myc__reload_cancel(s);
  /* A removed service is freed while the engine runs: its timers must
   * not fire into freed memory.  One never placed has none. */
  if (s->placed && !s->eng->freeing) {
    myc__timers_forget(&myc__service_worker(s)->timers, restart_timer, s, 0,
                       UINT64_MAX);
    myc__reload_forget_timers(s);
  }
  if (sup->group != NULL)
    group_leave(sup->group, s);
  intensity_free(&sup->hist, &s->eng->alloc);
  myc__sup_end_probation(s);
  s->sup = NULL;
  myc__free(&s->eng->alloc, sup, sizeof *sup);
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
  char text[320];
  atomic_store(&s->state, state);
  myc__topics_unsubscribe_all(&s->eng->topics, s);
  /* Its askers hear now rather than at their deadlines; not while the
   * engine stops, when they stop too. */
  if (!atomic_load(&s->eng->stopping)) {
    snprintf(text, sizeof text, "service '%s' %s: %s", s->name,
             state == MYC_SVC_FAILED ? "failed" : "stopped", why);
    myc__request_fail_queued(s, text);
  }
  if (state == MYC_SVC_FAILED)
    myc__sup_log(s, MYC_LOG_ERROR, "service failed: %s", why);
  else
    myc__sup_log(s, MYC_LOG_INFO, "service stopped: %s", why);
  /* A spawned service that ends for good leaves the engine (as an Erlang
   * child under a supervisor that will not restart it): nothing would
   * ever run it again, and its name is free for the next spawn. */
  if (s->spawned)
    (void)myc__engine_remove(s->eng, s, state == MYC_SVC_FAILED ? "failed"
                                                               : "exited");
}

static int restart_timer(void *arg, uint64_t gen);

static void schedule_restart(myc_service *s, int64_t delay) {
  uint64_t gen = s->sup->gen;
  int64_t at = myc__clock_now(&s->eng->clock) + delay;
  atomic_store(&s->state, MYC_SVC_RESTARTING);
  myc__sup_log(s, MYC_LOG_INFO, "restarting in %.1f ms", (double)delay / 1e6);
  if (myc__worker_add_timer(myc__service_worker(s), restart_timer, s, at, 0,
                            gen) != 0)
    restart_timer(s, gen);
}

static void group_terminated(myc_service *s, int64_t now, const char *why) {
  myc__group *g = s->sup->group;
  uint32_t i, count, from = 0;
  int64_t delay;
  int failed;

  uv_mutex_lock(&g->lock);
  count = g->failed ? 0 : intensity_note(&g->hist, now, g->cfg.window_s);
  failed = g->failed || count > g->cfg.max_restarts;
  g->failed = failed;
  delay = failed ? 0
                 : backoff_ns(&g->cfg, &g->consecutive, g->last_start, now,
                              &myc__service_worker(s)->rng);
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
    m->sup->group_delay_ns = (uint64_t)delay;
    myc__sup_post(m, failed ? MYC_CMD_GROUP_FAIL : MYC_CMD_GROUP_RESTART);
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
  myc__supervision *sup = s->sup;
  int64_t now = myc__clock_now(&s->eng->clock);
  int crash = how != MYC_END_EXIT && how != MYC_END_SHUTDOWN;
  uint32_t count;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);

  myc__instance_forget_timers(s, 0, s->next_timer_id + 1);
  sup->gen++;
  /* Killed (by itself, often): its removal ends it, nothing restarts. */
  if (atomic_load(&s->removed)) {
    atomic_store(&s->state, MYC_SVC_STOPPED);
    return;
  }
  if (atomic_load(&s->eng->stopping)) {
    settle(s, MYC_SVC_STOPPED, "the engine is stopping");
    return;
  }
  if (crash && sup->probation_until != 0 && now < sup->probation_until &&
      sup->prev_code != NULL && s->retired.L != NULL &&
      myc__supervisor_rollback(s, why) == 0)
    return;
  myc__sup_end_probation(s);
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
                                 now, &myc__service_worker(s)->rng));
}

/* Starts a fresh instance of the current code: init(ctx, opts, nil). */
static void restart(myc_service *s) {
  myc__instance in;
  myc__end how = MYC_END_ERROR;
  char err[1024];
  int rc = myc__instance_load(s, &in, s->module, s->code, s->code_len, err,
                              sizeof err);
  if (rc != 0) {
    myc__sup_log(s, MYC_LOG_ERROR, "restart failed: %s", err);
  } else if ((rc = myc__instance_init(s, &in, NULL, LUA_NOREF, &how, err,
                                      sizeof err)) != 0) {
    myc__instance_close(s, &in);
  }
  if (rc != 0) {
    myc__supervisor_terminated(s, how, err);
    return;
  }
  myc__instance_commit(s, &in);
  s->sup->last_start = myc__clock_now(&s->eng->clock);
  atomic_fetch_add(&s->sup->restarts, 1);
  atomic_store(&s->state, MYC_SVC_RUNNING);
  myc__sup_log(s, MYC_LOG_INFO, "restarted");
  myc__service_wake(s);
}

/* The backoff of restart 'gen' ran out (a myc__timer_fn). */
static int restart_timer(void *arg, uint64_t gen) {
  myc_service *s = arg;
  if (gen == s->sup->gen && atomic_load(&s->state) == MYC_SVC_RESTARTING)
    restart(s);
  return 0;
}

/* A group decision for a member on this worker: end the instance (its
 * stop runs: it did nothing wrong) and restart it after the group's delay,
 * or leave it failed. */
static void group_command(myc_service *s, unsigned cmd) {
  int state = atomic_load(&s->state);
  if (state == MYC_SVC_STOPPED || state == MYC_SVC_LOADED ||
      state == MYC_SVC_FAILED)
    return;
  myc__instance_end(s, 1);
  myc__instance_forget_timers(s, 0, s->next_timer_id + 1);
  s->sup->gen++;
  if (cmd & MYC_CMD_GROUP_FAIL) {
    settle(s, MYC_SVC_FAILED, "its supervisor group failed");
    return;
  }
  if (s->sup->restart == MYC_RESTART_TEMPORARY) {
    settle(s, MYC_SVC_STOPPED,
           "its group restarted (temporary: not restarted)");
    return;
  }
  schedule_restart(s, (int64_t)s->sup->group_delay_ns);
}

/* ---- rollback (probation) ------------------------------------------------ */

int myc__supervisor_rollback(myc_service *s, const char *why) {
  myc__supervision *sup = s->sup;
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
    myc__sup_log(s, MYC_LOG_ERROR,
                 "rollback to the previous version failed: %s", err);
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
  myc__sup_end_probation(s);
  atomic_fetch_add(&sup->rollbacks, 1);
  atomic_fetch_add(&sup->version, 1);
  sup->last_start = myc__clock_now(&s->eng->clock);
  atomic_store(&s->state, MYC_SVC_RUNNING);
  myc__sup_log(s, MYC_LOG_WARN,
               "rolled back to the previous version: the new "
               "one crashed within its probation of %g s (%s)",
               sup->probation_s, why);
  myc__service_wake(s);
  return 0;
}

/* ---- introspection ------------------------------------------------------- */

void myc__supervision_stats(myc_service *s, myc_service_stats *st) {
  static const char *types[] = {"permanent", "transient", "temporary"};
  myc__supervision *sup = s->sup;
  int64_t since = atomic_load(&sup->busy_since);
  st->restart = types[sup->restart];
  st->group = sup->group ? sup->group->name : NULL;
  st->restarts = atomic_load(&sup->restarts);
  st->timeouts = atomic_load(&sup->timeouts);
  st->reloads = atomic_load(&sup->reloads);
  st->reload_failures = atomic_load(&sup->reload_failures);
  st->rollbacks = atomic_load(&sup->rollbacks);
  st->version = atomic_load(&sup->version);
  st->last_pause_ms = (double)atomic_load(&sup->last_pause_ns) / 1e6;
  st->running_ms = st->running[0] && since != 0
                       ? (double)(myc__mono_ns() - since) / 1e6
                       : 0;
}
