/* supervisor.h -- supervision: what happens when a service's instance
 * ends (restart after a backoff with jitter, restart intensity, OTP
 * restart types and group strategies, probation after a reload), hot
 * reload (reload.c), and the monitor thread (monitor.c: watchdog, control
 * socket, file watcher).
 *
 * The layer attaches to an engine through the runtime's hooks
 * (myc__supervise_attach); the runtime never calls it directly.
 * Decisions about a service run on its worker, between batches; other
 * threads reach it through jobs on its worker's control channel.  A
 * group's shared history is the only state two workers touch, under the
 * group's lock.
 */
#ifndef MYC_SUPERVISOR_H
#define MYC_SUPERVISOR_H

#include "core/job.h"
#include "runtime/engine.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct myc__group myc__group;
typedef struct myc__reload myc__reload;
typedef struct myc__monitor myc__monitor;
typedef struct myc__loader myc__loader;

/* The supervision of one engine. */
typedef struct myc__supervise {
  myc_engine *e;
  myc_supervisor_config cfg; /* the default of every service */
  myc__group **groups;
  uint32_t ngroups;
  char *control; /* "unix:///path" or NULL */
  myc_reload_mode reload;
  myc__monitor *monitor; /* NULL: no monitor thread */
  myc__loader *loader;   /* made by the first threaded reload */
  uv_mutex_t loader_lock; /* guards 'loader' and 'loader_stopped' */
  int loader_stopped;
} myc__supervise;

/* Times of recent restarts: a ring of the last max_restarts + 1. */
typedef struct {
  int64_t *t;
  uint32_t cap, n, head;
} myc__intensity;

/* Commands other threads leave for a service (myc__sup_post). */
#define MYC_CMD_RELOAD 1u        /* commit sup->pending */
#define MYC_CMD_GROUP_RESTART 2u /* end now, restart after group_delay_ns */
#define MYC_CMD_GROUP_FAIL 4u    /* end now, the group failed */

/* A service's supervision state.  Worker thread, except the counters,
 * the commands and what the watchdog keeps. */
typedef struct myc__supervision {
  myc__supervise *sv;
  myc_service *s;
  myc_restart restart;
  myc__group *group;                /* NULL: supervised on its own */
  const myc_supervisor_config *cfg; /* the group's or the engine's */
  double probation_s;
  myc__intensity hist;
  uint32_t consecutive;    /* restarts since the backoff last reset */
  int64_t last_start;      /* engine ns of the last (re)start */
  uint64_t gen;            /* a restart timer of an older gen is stale */
  int64_t probation_until; /* engine ns; 0: no probation running */
  /* What a rollback restores: the previous code (its snapshot stays in
   * the retired instance, service.h). */
  char *prev_module, *prev_code;
  size_t prev_code_len;
  uint64_t retire_gen;            /* a retire timer of an older gen is stale */
  _Atomic(myc__reload *) pending; /* prepared, waiting for the worker */
  _Atomic int reloading;          /* a reload is under way */
  _Atomic uint64_t restarts, timeouts, reloads, reload_failures, rollbacks;
  _Atomic uint32_t version;
  _Atomic uint64_t last_pause_ns;
  /* The control channel: commands (MYC_CMD_*) run on the service's
   * worker by 'job', queued at most once at a time. */
  _Atomic unsigned cmds;
  _Atomic int job_queued;
  myc__job job;
  uint64_t group_delay_ns; /* for MYC_CMD_GROUP_RESTART */
  /* The watchdog's view (monitor thread; 'busy_since' is published). */
  uint32_t wd_gen;
  int32_t wd_cursor;
  int wd_stage;
  _Atomic int64_t busy_since; /* monotonic ns, 0: unknown or idle */
} myc__supervision;

/* Supervises engine 'e' from now on, with the supervision settings of
 * 'cfg' (supervisor, control, reload): sets its hooks and frees what it
 * keeps when 'e' is freed.  Before any service is added.  Returns 0,
 * MYC_EINVAL (bad settings) or MYC_ENOMEM; on error 'e' is unchanged. */
int myc__supervise_attach(myc_engine *e, const myc_engine_config *cfg);

/* The supervision of an engine made by myc_engine_new(). */
static inline myc__supervise *myc__supervise_of(myc_engine *e) {
  return (myc__supervise *)e->hooks.ud;
}

/* Nonzero when 'c' holds usable values. */
int myc__supervisor_config_ok(const myc_supervisor_config *c);

/* ---- hooks (supervise.c wires them) ------------------------------------ */

int myc__supervision_init(myc__supervise *sv, myc_service *s,
                          const myc_service_config *sc, char *err,
                          size_t errlen);
void myc__supervision_destroy(myc_service *s);
void myc__supervisor_terminated(myc_service *s, int how, const char *why);
void myc__supervision_stats(myc_service *s, myc_service_stats *st);
void myc__groups_free(myc__supervise *sv);

/* ---- shared by supervisor.c and reload.c ------------------------------- */

/* Logs 'fmt' for service 's' in its activation's trace. */
void myc__sup_log(myc_service *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Leaves command(s) 'cmd' for 's', run on its worker.  Any thread. */
void myc__sup_post(myc_service *s, unsigned cmd);

/* Ends the probation: the retired instance (stopped if it was not) and
 * the previous code go.  Worker thread. */
void myc__sup_end_probation(myc_service *s);

/* Replaces the current instance (which crashed within its probation)
 * with the previous version's code and snapshot.  Returns 0, or a
 * negative code when that failed too (logged). */
int myc__supervisor_rollback(myc_service *s, const char *why);

/* ---- reload (reload.c) --------------------------------------------------- */

/* Reloads 's' from 'module' (NULL: its file): the new code is loaded on
 * the loader thread ('here' nonzero: on the calling thread, for a manual
 * engine) and handed to the worker; 'done' runs on the worker, or on the
 * thread that loaded it when loading failed or the engine stopped first,
 * with the result, 'err' holding the reason.  Returns 0 when 'done' will
 * be called (or was); otherwise 'done' is not called and the reason is
 * in 'err'. */
typedef void (*myc__reload_cb)(void *ud, int rc, const char *err);
int myc__reload_start(myc__supervise *sv, myc_service *s, const char *module,
                      int here, myc__reload_cb done, void *ud, char *err,
                      size_t errlen);

/* Commits the reload prepared for 's' (MYC_CMD_RELOAD).  Worker thread. */
void myc__reload_commit(myc_service *s);

/* Frees a prepared reload that will not be committed, telling its
 * caller (MYC_ESTOPPED).  Any thread. */
void myc__reload_cancel(myc_service *s);

/* Forgets the timers of 's' a reload set (its probation).  Worker
 * thread. */
void myc__reload_forget_timers(myc_service *s);

/* Reloads every Lua service whose module file no longer matches the
 * code it runs (SIGHUP, the file watcher).  Any thread but a worker. */
void myc__reload_changed(myc__supervise *sv);

#endif
