/* reload.c -- hot reload (see supervisor.h): the new code is read and
 * loaded into a fresh instance on the loader thread (loader.h), within
 * the service's load budget -- never on the thread that asked (the
 * control socket's, the file watcher's, the signal loop's), which must
 * keep answering -- then a job on the service's worker swaps it in
 * between two batches: the old instance's snapshot goes to the new init,
 * the new instance takes over the mailbox, and the old one is kept
 * through the probation for a rollback.
 */
#include "supervise/supervisor.h"

#include "base/file.h"
#include "runtime/instance.h"
#include "supervise/loader.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* A reload on its way: queued for the loader, then from the loader to
 * the worker. */
struct myc__reload {
  myc__job job; /* on the loader's queue */
  myc_service *s;
  myc__instance in;
  char *module, *code;
  size_t code_len;
  myc__reload_cb done;
  void *ud;
};

/* Frees 'r' and drops its pin of 's' (which may free 's'). */
static void reload_free(myc_service *s, myc__reload *r) {
  const myc__alloc *a = &s->eng->alloc;
  myc__instance_close(s, &r->in);
  if (r->code != NULL)
    myc__free(a, r->code, r->code_len + 1);
  myc__strfree(a, r->module);
  myc__free(a, r, sizeof *r);
  myc__engine_unpin(s);
}

void myc__reload_cancel(myc_service *s) {
  myc__reload *r = atomic_exchange(&s->sup->pending, NULL);
  if (r != NULL) {
    r->done(r->ud, MYC_ESTOPPED, "the engine stopped before the swap");
    reload_free(s, r);
  }
}

static void reload_failed(myc_service *s, const char *err) {
  atomic_fetch_add(&s->sup->reload_failures, 1);
  myc__sup_log(s, MYC_LOG_ERROR,
               "reload refused, the running version goes on: %s", err);
}

static int retire_timer(void *arg, uint64_t gen);

/* The old code and instance go away after a swap: kept for a rollback
 * through the probation when there is one. */
static void keep_previous(myc_service *s, int ref) {
  myc__supervision *sup = s->sup;
  sup->prev_code = s->code;
  sup->prev_code_len = s->code_len;
  sup->prev_module = s->module;
  s->retired.snap_ref = ref;
}

/* The swap, on the worker: old snapshot -> new init -> the new instance
 * takes the mailbox.  The old one is retired: its stop runs right after
 * (a timer, so the new instance's first turn comes first) and its state
 * is kept for a rollback until the probation ends.  Returns 0 or the
 * error in 'err'. */
static int swap(myc_service *s, myc__reload *r, char *err, size_t errlen) {
  myc__supervision *sup = s->sup;
  const myc__alloc *a = &s->eng->alloc;
  int64_t t0 = myc__mono_ns(), cpu0 = myc__thread_cpu_ns(), now;
  uint64_t faults0 = myc__thread_faults();
  int state = atomic_load(&s->state), rc, ref = LUA_NOREF;
  myc__end how;

  if (atomic_load(&s->eng->stopping) || state == MYC_SVC_LOADED) {
    snprintf(err, errlen, "service '%s': the engine is %s", s->name,
             state == MYC_SVC_LOADED ? "not started" : "stopping");
    return MYC_ESTOPPED;
  }
  if (atomic_load(&s->removed)) {
    snprintf(err, errlen, "service '%s' was removed (killed) before the "
             "swap", s->name);
    return MYC_ENOENT;
  }
  /* One probation at a time: an earlier retired instance goes, after
   * the swap (closing a big state is not free). */
  if (s->retired.L != NULL) {
    myc__instance_retire(s, &s->dying, 1);
    s->dying = s->retired;
    s->retired.L = NULL;
    s->retired.slot = -1;
    myc__sup_end_probation(s);
  }
  rc = myc__instance_snapshot(s, &ref, err, errlen);
  if (rc == 0)
    rc = myc__instance_init(s, &r->in, s->cur.L, ref, &how, err, errlen);
  if (rc != 0) {
    myc__instance_unref(s, ref);
    return rc;
  }
  myc__instance_commit(s, &r->in);
  uv_mutex_lock(&s->hook_lock);
  if (s->retired.L != NULL) {
    keep_previous(s, ref);
  } else {
    myc__free(a, s->code, s->code_len + 1);
    myc__strfree(a, s->module);
  }
  s->code = r->code;
  s->code_len = r->code_len;
  s->module = r->module;
  atomic_fetch_add(&s->files_gen, 1); /* maybe another file to watch */
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
  atomic_store(&sup->last_pause_ns, (uint64_t)(myc__mono_ns() - t0));
  atomic_fetch_add(&sup->reloads, 1);
  atomic_fetch_add(&sup->version, 1);
  myc__service_wake(s);
  if (s->retired.L != NULL) {
    sup->probation_until =
        sup->probation_s > 0 ? now + (int64_t)(sup->probation_s * 1e9) : 0;
    if (myc__worker_add_timer(myc__service_worker(s), retire_timer, s, now, 0,
                              sup->retire_gen) != 0)
      myc__sup_end_probation(s);
  }
  /* The CPU time and faults say whether a long swap was the copy or the
   * worker waiting for a core. */
  myc__sup_log(s, MYC_LOG_INFO,
               "reloaded %s (version %u, swap %.3f ms, cpu %.3f ms, "
               "%llu page faults)",
               s->module, atomic_load(&sup->version),
               (double)atomic_load(&sup->last_pause_ns) / 1e6,
               (double)(myc__thread_cpu_ns() - cpu0) / 1e6,
               (unsigned long long)(myc__thread_faults() - faults0));
  return 0;
}

/* After a swap: the retired instance's stop runs once the new instance
 * has had its turn; the instance itself is kept for a rollback until the
 * probation ends (a myc__timer_fn). */
static int retire_timer(void *arg, uint64_t gen) {
  myc_service *s = arg;
  myc__supervision *sup = s->sup;
  int64_t now = myc__clock_now(&s->eng->clock);
  myc__instance_retire(s, &s->dying, 1);
  if (gen != sup->retire_gen || s->retired.L == NULL)
    return 0;
  if (sup->probation_until > now) {
    myc__instance_retire(s, &s->retired, 0);
    if (myc__worker_add_timer(myc__service_worker(s), retire_timer, s,
                              sup->probation_until, 0, gen) == 0)
      return 0;
  }
  myc__sup_end_probation(s);
  return 0;
}

void myc__reload_forget_timers(myc_service *s) {
  myc__timers_forget(&myc__service_worker(s)->timers, retire_timer, s, 0,
                     UINT64_MAX);
}

void myc__reload_commit(myc_service *s) {
  myc__reload *r = atomic_exchange(&s->sup->pending, NULL);
  char err[1024];
  int rc;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (r == NULL)
    return;
  err[0] = '\0';
  rc = swap(s, r, err, sizeof err);
  if (rc == MYC_ESTOPPED)
    myc__sup_log(s, MYC_LOG_INFO, "reload not done: %s", err);
  else if (rc != 0)
    reload_failed(s, err);
  atomic_store(&s->sup->reloading, 0);
  r->done(r->ud, rc, err);
  reload_free(s, r);
}

/* Reads and loads the new code of 'r' (loader thread, or the caller of
 * a manual engine).  On success 'r' waits to be committed; otherwise the
 * refusal is logged and told, and 'r' freed. */
static void load(myc__reload *r) {
  myc_service *s = r->s;
  myc_engine *e = s->eng;
  char why[1024], err[1200];
  int rc;
  if (atomic_load(&e->stopping)) {
    rc = MYC_ESTOPPED;
    snprintf(err, sizeof err, "service '%s': the engine is stopping",
             s->name);
  } else if ((rc = myc__read_file(&e->alloc, r->module, &r->code,
                                  &r->code_len, why, sizeof why)) != 0) {
    snprintf(err, sizeof err, "service '%s': %s", s->name, why);
  } else {
    rc = myc__instance_load(s, &r->in, r->module, r->code, r->code_len, err,
                            sizeof err);
  }
  if (rc == 0) {
    myc__instance_prepare(s, &r->in);
    atomic_store(&s->sup->pending, r);
    myc__sup_post(s, MYC_CMD_RELOAD);
    return;
  }
  if (rc != MYC_ESTOPPED)
    reload_failed(s, err);
  atomic_store(&s->sup->reloading, 0);
  r->done(r->ud, rc, err);
  reload_free(s, r);
}

static void load_job(myc__job *j, int run) {
  myc__reload *r = (myc__reload *)((char *)j - offsetof(myc__reload, job));
  if (run) {
    load(r);
    return;
  }
  atomic_store(&r->s->sup->reloading, 0);
  r->done(r->ud, MYC_ESTOPPED, "the engine stopped before the new code was "
          "loaded");
  reload_free(r->s, r);
}

/* A reload of 's' from 'module' (NULL: its file) that 'done' will hear
 * of.  On success the service's 'reloading' flag is set. */
static int begin(myc_engine *e, myc_service *s, const char *module,
                 myc__reload_cb done, void *ud, myc__reload **out, char *err,
                 size_t errlen) {
  myc__reload *r;
  int expected = 0;

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
  if (!atomic_compare_exchange_strong(&s->sup->reloading, &expected, 1)) {
    snprintf(err, errlen, "service '%s': a reload is already under way",
             s->name);
    return MYC_ESTATE;
  }
  /* The reload holds the service (reload_free lets go): it may be
   * killed while its new code loads. */
  if (myc__engine_pin_service(e, s) != 0) {
    atomic_store(&s->sup->reloading, 0);
    snprintf(err, errlen, "no service named '%s' (it was removed)", s->name);
    return MYC_ENOENT;
  }
  r = myc__calloc(&e->alloc, sizeof *r);
  if (r != NULL) {
    r->s = s;
    r->done = done;
    r->ud = ud;
    r->job.fn = load_job;
    myc__instance_reset(&r->in);
    uv_mutex_lock(&s->hook_lock);
    r->module = myc__strdup(&e->alloc, module ? module : s->module);
    uv_mutex_unlock(&s->hook_lock);
  }
  if (r == NULL || r->module == NULL) {
    if (r != NULL)
      myc__free(&e->alloc, r, sizeof *r);
    myc__engine_unpin(s);
    atomic_store(&s->sup->reloading, 0);
    snprintf(err, errlen, "service '%s': out of memory", s->name);
    return MYC_ENOMEM;
  }
  *out = r;
  return 0;
}

int myc__reload_start(myc__supervise *sv, myc_service *s, const char *module,
                      int here, myc__reload_cb done, void *ud, char *err,
                      size_t errlen) {
  myc__reload *r;
  int rc = begin(sv->e, s, module, done, ud, &r, err, errlen);
  if (rc != 0)
    return rc;
  if (here)
    load(r);
  else
    myc__loader_post(sv, &r->job);
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
  myc_service *s = name ? myc__engine_pin(e, name, strlen(name)) : NULL;
  char dummy[1];
  waiter *w;
  int rc, here;
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
    myc__engine_unpin(s);
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  /* When this thread runs the service's worker (a manual engine, worker
   * 0 on a host loop), waiting for the worker would wait for ourselves:
   * load here, then swap.  Ownership alone does not say it: a threaded
   * worker that has not started yet is still owned by the thread that
   * started the engine, and takes itself over while we would swap. */
  here = e->manual ||
         (e->hostloop != NULL && myc__service_worker(s)->index == 0 &&
          myc__owner_held(&myc__service_worker(s)->owner));
  rc = myc__reload_start(myc__supervise_of(e), s, module, here, waiter_done,
                         w, err, errlen);
  if (rc != 0) {
    waiter_unref(w);
    waiter_unref(w);
    myc__engine_unpin(s);
    return rc;
  }
  if (here && rc == 0)
    myc__reload_commit(s);
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
  myc__engine_unpin(s);
  return rc;
}

/* ---- files changed on disk --------------------------------------------- */

static void reload_logged(void *ud, int rc, const char *err) {
  (void)ud;
  (void)rc;
  (void)err; /* the worker logged the outcome */
}

/* Whether file 'i' the code of 's' loaded (a module it required) holds
 * something else now. */
static int dep_changed(myc_engine *e, myc_service *s, uint32_t i) {
  char path[4096];
  uint64_t was, now;
  uv_mutex_lock(&s->hook_lock);
  if (i >= s->ndeps) {
    uv_mutex_unlock(&s->hook_lock);
    return 0;
  }
  snprintf(path, sizeof path, "%s", s->deps[i].path);
  was = s->deps[i].digest;
  uv_mutex_unlock(&s->hook_lock);
  /* A file being replaced cannot be read: the next event will tell. */
  return myc__file_digest(&e->alloc, path, &now) == 0 && now != was;
}

/* Whether the module file of 's' differs from the code it runs, or a
 * module it loaded from what it held then. */
static int changed_on_disk(myc_engine *e, myc_service *s) {
  char path[4096], why[512], *code;
  size_t len;
  uint32_t i, n;
  int changed;
  uv_mutex_lock(&s->hook_lock);
  snprintf(path, sizeof path, "%s", s->module);
  n = s->ndeps;
  uv_mutex_unlock(&s->hook_lock);
  if (myc__read_file(&e->alloc, path, &code, &len, why, sizeof why) != 0)
    return 0; /* being replaced: the next event will tell */
  uv_mutex_lock(&s->hook_lock);
  changed = len != s->code_len || memcmp(code, s->code, len) != 0;
  uv_mutex_unlock(&s->hook_lock);
  myc__free(&e->alloc, code, len + 1);
  for (i = 0; i < n && !changed; i++)
    changed = dep_changed(e, s, i);
  return changed;
}

/* The Lua services, each pinned (services come and go meanwhile), in an
 * array of '*cap' from the engine's allocator (NULL: out of memory).
 * Returns how many. */
static uint32_t pin_all(myc_engine *e, myc_service ***out, uint32_t *cap) {
  myc_service **all;
  uint32_t i, n = 0;
  uv_mutex_lock(&e->services_lock);
  *cap = e->nservices + 1;
  all = myc__calloc(&e->alloc, *cap * sizeof *all);
  for (i = 0; all != NULL && i < e->endservices; i++)
    if (e->services[i] != NULL && e->services[i]->cb == NULL) {
      all[n++] = e->services[i];
      atomic_fetch_add(&e->services[i]->refs, 1);
    }
  *out = all;
  uv_mutex_unlock(&e->services_lock);
  return n;
}

void myc__reload_changed(myc__supervise *sv) {
  myc_engine *e = sv->e;
  myc_service **all;
  uint32_t i, cap, n = pin_all(e, &all, &cap);
  for (i = 0; i < n; i++) {
    myc_service *s = all[i];
    char err[1024];
    int rc = 0;
    if (changed_on_disk(e, s))
      rc = myc__reload_start(sv, s, NULL, 0, reload_logged, NULL, err,
                             sizeof err);
    if (rc == MYC_ESTATE)
      myc__sup_log(s, MYC_LOG_WARN, "file changed, not reloaded: %s", err);
    myc__engine_unpin(s);
  }
  if (all != NULL)
    myc__free(&e->alloc, all, cap * sizeof *all);
}
