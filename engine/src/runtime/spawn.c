/* spawn.c -- services added to and removed from a running engine.
 *
 * A removed service leaves the registry at once (its name is free again),
 * ends on its worker between two batches, and is freed only when no
 * thread can reach it any more: after a job on every other worker (a
 * worker holds subscriber lists and staged task pointers only within a
 * turn), a grace period of the threads without a worker (core/grace.h),
 * and the last pin dropped.  Until then it stays in the engine's limbo
 * list, which myc_engine_free() empties.
 */
#include "runtime/engine.h"

#include "runtime/instance.h"
#include "runtime/request.h"

#include <stdio.h>
#include <string.h>

/* ---- freeing --------------------------------------------------------- */

static void limbo_leave(myc_engine *e, myc_service *s) {
  uv_mutex_lock(&e->services_lock);
  if (s->limbo_prev != NULL)
    s->limbo_prev->limbo_next = s->limbo_next;
  else
    e->limbo = s->limbo_next;
  if (s->limbo_next != NULL)
    s->limbo_next->limbo_prev = s->limbo_prev;
  e->nlimbo--;
  uv_mutex_unlock(&e->services_lock);
}

/* The last reference is gone (a job on the service's worker).  Cancelled,
 * the service stays in limbo for myc_engine_free(). */
static void free_run(myc__job *j, int run) {
  myc_service *s = (myc_service *)((char *)j - offsetof(myc_service, free_job));
  myc_engine *e = s->eng;
  uint64_t late;
  if (!run)
    return;
  limbo_leave(e, s);
  /* Messages that were on their way when it ended: their senders' asks
   * fail now, and they count with the removal's drops. */
  late = (s->view.batch_n - s->batch_pos) +
         atomic_load_explicit(&s->task.mb.len, memory_order_relaxed);
  if (late > 0) {
    myc__request_fail_queued(s, "the service was removed");
    atomic_fetch_add(&e->n_removed_dropped, late);
  }
  myc__service_free(s);
}

void myc__engine_unpin(myc_service *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1 && !s->eng->freeing) {
    s->free_job.fn = free_run;
    myc__worker_post(myc__service_worker(s), &s->free_job);
  }
}

/* ---- removal --------------------------------------------------------- */

typedef struct kill_op kill_op;
typedef struct {
  myc__job job;
  kill_op *op;
} op_job;

/* One removal: its end on the service's worker (jobs[0]), then a job on
 * each other worker (the grace period). */
struct kill_op {
  myc_service *s;
  /* Subscriber lists replaced before the end (its own and any other):
   * nobody reads them once the grace period is over. */
  myc__sublist *retired;
  _Atomic uint32_t left;
  _Atomic int cancelled;
  uint32_t n; /* jobs */
  char why[320];
  op_job jobs[];
};

static size_t op_size(uint32_t n) {
  return sizeof(kill_op) + n * sizeof(op_job);
}

static void op_free(kill_op *op) {
  myc__free(&op->s->eng->alloc, op, op_size(op->n));
}

/* Every worker passed a turn boundary since the end: nothing holds the
 * service but pins.  Drops the registry's reference. */
static void grace_over(kill_op *op) {
  myc_service *s = op->s;
  int cancelled = atomic_load(&op->cancelled);
  /* Cancelled too: the workers are stopped then, nobody reads them. */
  myc__topics_free_retired(&s->eng->topics, op->retired);
  op_free(op);
  if (!cancelled)
    myc__engine_unpin(s);
}

/* On worker i (jobs[1 + i]): between two turns, it holds no subscriber
 * list; what it staged for the service is handed over, before the free
 * job that comes after this one. */
static void grace_run(myc__job *j, int run) {
  kill_op *op = ((op_job *)j)->op;
  uint32_t i = (uint32_t)((op_job *)j - op->jobs) - 1;
  if (run)
    myc__worker_flush(&op->s->eng->sched.workers[i]);
  else
    atomic_store(&op->cancelled, 1);
  if (atomic_fetch_sub(&op->left, 1) == 1)
    grace_over(op);
}

static void log_removed(myc_service *s, const char *why, uint64_t dropped) {
  char line[512];
  snprintf(line, sizeof line,
           "service removed (%s); %llu queued message%s dropped", why,
           (unsigned long long)dropped, dropped == 1 ? "" : "s");
  myc_engine_log(s->eng, MYC_LOG_INFO, s->name, line);
}

/* The end, on the service's worker: then the grace period. */
static void end_now(kill_op *op) {
  myc_service *s = op->s;
  myc_engine *e = s->eng;
  myc__sched *sc = &e->sched;
  uint32_t i, me = myc__service_worker(s)->index;
  uint64_t dropped = myc__service_end(s, op->why);
  op->retired = myc__topics_take_retired(&e->topics);
  atomic_fetch_add(&e->n_removed, 1);
  atomic_fetch_add(&e->n_removed_dropped, dropped);
  log_removed(s, op->why, dropped);
  /* The host threads' sections that may have read it in a subscriber
   * list, before the jobs: a section hands over to a worker's inbox,
   * which that worker's job comes after. */
  if (!e->manual)
    myc__grace_wait(&sc->hosts);
  if (e->manual || sc->nworkers == 1) {
    grace_over(op);
    return;
  }
  atomic_store(&op->left, sc->nworkers - 1);
  for (i = 0; i < sc->nworkers; i++)
    if (i != me)
      myc__worker_post(&sc->workers[i], &op->jobs[1 + i].job);
}

static void end_run(myc__job *j, int run) {
  kill_op *op = ((op_job *)j)->op;
  myc_service *s = op->s;
  if (!run) {
    /* The engine stopped first: the service stays in limbo, freed with
     * the engine. */
    op_free(op);
    return;
  }
  /* Not started yet (its start job comes later): the start ends it. */
  if (!s->placed) {
    s->kill = op;
    return;
  }
  end_now(op);
}

int myc__engine_remove(myc_engine *e, myc_service *s, const char *why) {
  uint32_t i, n = e->sched.nworkers + 1;
  kill_op *op;
  int rc;
  if (atomic_load(&e->stopping))
    return MYC_ESTOPPED;
  op = myc__calloc(&e->alloc, op_size(n));
  if (op == NULL)
    return MYC_ENOMEM;
  op->s = s;
  op->n = n;
  snprintf(op->why, sizeof op->why, "%s", why);
  for (i = 0; i < n; i++) {
    op->jobs[i].op = op;
    op->jobs[i].job.fn = i == 0 ? end_run : grace_run;
  }
  rc = myc__engine_unregister(e, s);
  if (rc != 0) {
    op_free(op);
    return rc;
  }
  myc__worker_post(myc__service_worker(s), &op->jobs[0].job);
  return 0;
}

/* ---- the public calls -------------------------------------------------- */

/* The first start of a spawned service, on its worker.  Holds a pin. */
typedef struct {
  myc__job job;
  myc_service *s;
} start_job;

static void start_run(myc__job *j, int run) {
  myc_service *s = ((start_job *)j)->s;
  myc__free(&s->eng->alloc, j, sizeof(start_job));
  if (!run && s->kill != NULL)
    op_free(s->kill); /* the service goes with the engine */
  if (run) {
    myc__service_place(s);
    if (s->kill != NULL)
      end_now(s->kill);
    else
      myc__service_start_spawned(s);
  }
  myc__engine_unpin(s);
}

static int spawn_checks(myc_engine *e, const myc_service_config *sc,
                        char *err, size_t errlen) {
  if (sc->name == NULL || sc->module == NULL) {
    snprintf(err, errlen, "spawn: a service needs a name and a module");
    return MYC_EINVAL;
  }
  if (sc->group != NULL) {
    snprintf(err, errlen, "spawn of '%s': a spawned service cannot join a "
             "supervisor group (groups are fixed in the config)", sc->name);
    return MYC_EINVAL;
  }
  if (atomic_load(&e->stopping)) {
    snprintf(err, errlen, "spawn of '%s': the engine is stopping", sc->name);
    return MYC_ESTOPPED;
  }
  return 0;
}

/* Before the start (an init spawning, or the host before
 * myc_engine_start): an ordinary service that is removed once it ends. */
static int spawn_early(myc_engine *e, const myc_service_config *sc,
                       const char *parent, char *err, size_t errlen) {
  int rc = myc_engine_add_service(e, sc, err, errlen);
  myc_service *s;
  if (rc != 0)
    return rc;
  s = myc__engine_find(e, sc->name, strlen(sc->name));
  s->spawned = 1;
  s->parent = parent ? myc__strdup(&e->alloc, parent) : NULL;
  atomic_fetch_add(&e->n_spawned, 1);
  return 0;
}

int myc__engine_spawn(myc_engine *e, const myc_service_config *sc,
                      const char *parent, char *err, size_t errlen) {
  myc__instance in;
  myc__worker *w;
  myc_service *s;
  start_job *j;
  int rc = spawn_checks(e, sc, err, errlen);
  if (rc == 0 && !e->started)
    return spawn_early(e, sc, parent, err, errlen);
  if (rc == 0)
    rc = myc__engine_check_new(e, sc->name, sc->worker, &w, err, errlen, 1);
  if (rc != 0)
    return rc;
  j = myc__malloc(&e->alloc, sizeof *j);
  if (j == NULL) {
    snprintf(err, errlen, "spawn of '%s': out of memory", sc->name);
    return MYC_ENOMEM;
  }
  rc = myc__service_new_spawned(e, sc, w, &s, &in, err, errlen);
  if (rc == 0 && parent != NULL &&
      (s->parent = myc__strdup(&e->alloc, parent)) == NULL) {
    myc__instance_close(s, &in);
    myc__service_free(s);
    snprintf(err, errlen, "spawn of '%s': out of memory", sc->name);
    rc = MYC_ENOMEM;
  }
  if (rc != 0) {
    myc__free(&e->alloc, j, sizeof *j);
    return rc;
  }
  s->spawned = 1;
  atomic_store(&s->refs, 2); /* the registry's and the start job's */
  /* The name first: subscribing before would let messages in for a
   * service that may yet be refused (a name taken meanwhile). */
  if ((rc = myc__engine_register(e, s, err, errlen)) != 0) {
    myc__free(&e->alloc, j, sizeof *j);
    return rc;
  }
  /* Its subscriptions now, so that what is sent to it once this returns
   * waits in its mailbox for its init. */
  myc__instance_commit_first(s, &in);
  atomic_fetch_add(&e->n_spawned, 1);
  j->job.fn = start_run;
  j->s = s;
  myc__worker_post(w, &j->job);
  return 0;
}

int myc_engine_spawn(myc_engine *e, const myc_service_config *sc, char *err,
                     size_t errlen) {
  char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  return myc__engine_spawn(e, sc, NULL, err, errlen);
}

int myc__engine_kill(myc_engine *e, const char *name, const char *by,
                     char *err, size_t errlen) {
  const char *bad = myc__service_name_check(name);
  char why[300];
  myc_service *s;
  int rc;
  if (bad != NULL) {
    snprintf(err, errlen, "kill: invalid service name: %s", bad);
    return MYC_EINVAL;
  }
  if (!e->started || atomic_load(&e->stopping)) {
    snprintf(err, errlen, "kill of '%s': the engine is %s", name,
             e->started ? "stopping" : "not running");
    return e->started ? MYC_ESTOPPED : MYC_ESTATE;
  }
  s = myc__engine_pin(e, name, strlen(name));
  if (s == NULL) {
    snprintf(err, errlen, "kill: no service named '%s'", name);
    return MYC_ENOENT;
  }
  rc = s->cb != NULL ? MYC_EINVAL : s->grouped ? MYC_ESTATE : 0;
  if (rc != 0) {
    snprintf(err, errlen, s->cb != NULL
             ? "kill of '%s': a C service of the engine, not killable"
             : "kill of '%s': a member of a supervisor group (stop or "
               "restart it through its group)", name);
  } else {
    snprintf(why, sizeof why, "killed by %s", by ? by : "the host");
    rc = myc__engine_remove(e, s, why);
    if (rc == MYC_ENOENT)
      snprintf(err, errlen, "kill: no service named '%s'", name);
    else if (rc != 0)
      snprintf(err, errlen, "kill of '%s': %s", name, myc_strerror(rc));
  }
  myc__engine_unpin(s);
  return rc;
}

int myc_engine_kill(myc_engine *e, const char *name, char *err,
                    size_t errlen) {
  char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (name == NULL) {
    snprintf(err, errlen, "kill: no name");
    return MYC_EINVAL;
  }
  return myc__engine_kill(e, name, NULL, err, errlen);
}

void myc_engine_lifecycle_stats(myc_engine *e, myc_lifecycle_stats *out) {
  memset(out, 0, sizeof *out);
  out->spawned = atomic_load(&e->n_spawned);
  out->removed = atomic_load(&e->n_removed);
  out->dropped = atomic_load(&e->n_removed_dropped);
  uv_mutex_lock(&e->services_lock);
  out->services = e->nservices;
  out->pending_free = e->nlimbo;
  uv_mutex_unlock(&e->services_lock);
}
