/* supervisor.h -- what happens when a service's instance ends (restart
 * after a backoff with jitter, restart intensity, OTP restart types and
 * group strategies, probation after a reload) and hot reload itself.
 * Decisions run on the service's worker; a group's shared history is the
 * only state two workers touch, under the group's lock.
 */
#ifndef MYC_SUPERVISOR_H
#define MYC_SUPERVISOR_H

#include "mycelium.h"

#include <stdatomic.h>
#include <stdint.h>

struct myc_service;
typedef struct myc__group myc__group;
typedef struct myc__reload myc__reload;

/* Times of recent restarts: a ring of the last max_restarts + 1. */
typedef struct {
  int64_t *t;
  uint32_t cap, n, head;
} myc__intensity;

/* A service's supervision state.  Worker thread, except the counters. */
typedef struct {
  myc_restart restart;
  myc__group *group;                /* NULL: supervised on its own */
  const myc_supervisor_config *cfg; /* the group's or the engine's */
  double probation_s;
  myc__intensity hist;
  uint32_t consecutive;    /* restarts since the backoff last reset */
  int64_t last_start;      /* engine ns of the last (re)start */
  uint64_t gen;            /* a backoff timer of an older gen is stale */
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
  uint64_t group_delay_ns; /* for MYC_CMD_GROUP_RESTART */
} myc__supervision;

/* Commands other threads leave in myc_service.cmds before handing the
 * service a marker through its worker's inbox (myc__worker_handoff with
 * a NULL buffer). */
#define MYC_CMD_RELOAD 1u        /* commit sup.pending */
#define MYC_CMD_GROUP_RESTART 2u /* end now, restart after group_delay_ns */
#define MYC_CMD_GROUP_FAIL 4u    /* end now, the group failed */

/* Timer ids with this bit are the supervisor's (the low bits: gen); with
 * MYC_SUP_RETIRE too, they end the retired instance (low bits:
 * retire_gen). */
#define MYC_SUP_TIMER (UINT64_C(1) << 63)
#define MYC_SUP_RETIRE (UINT64_C(1) << 62)
#define MYC_SUP_GEN(x) ((x) & (MYC_SUP_RETIRE - 1))

/* Sets up the supervision of 's' from its config: restart type, group
 * (which must exist), probation.  Returns 0, or MYC_EINVAL / MYC_ENOMEM
 * with the reason in 'err'. */
int myc__supervision_init(struct myc_service *s, const myc_service_config *sc,
                          char *err, size_t errlen);
void myc__supervision_destroy(struct myc_service *s);

/* The current instance ended as 'how' ('why': the error text, or NULL);
 * it is already closed.  Decides, on the worker: rollback (probation),
 * restart after a backoff, stopped or failed; for a group member, what
 * happens to its siblings. */
void myc__supervisor_terminated(struct myc_service *s, int how,
                                const char *why);

/* Replaces the current instance (which crashed within its probation)
 * with the previous version's code and snapshot.  Returns 0, or a
 * negative code when that failed too (logged). */
int myc__supervisor_rollback(struct myc_service *s, const char *why);

/* A supervisor timer ('id' with MYC_SUP_TIMER) fired: restart. */
void myc__supervisor_timer(struct myc_service *s, uint64_t id);

/* A marker reached the worker: runs the commands left in s->cmds. */
void myc__supervisor_command(struct myc_service *s);

/* Reload for the control channel and the file watcher: prepares the new
 * instance on the calling thread and hands it to the worker; 'done' runs
 * on the worker (or the calling thread, when preparing failed) with the
 * result, 'err' holding the reason.  Returns 0 when 'done' will be
 * called; otherwise 'done' is not called and the reason is in 'err'. */
typedef void (*myc__reload_cb)(void *ud, int rc, const char *err);
int myc__reload_start(myc_engine *e, struct myc_service *s, const char *module,
                      myc__reload_cb done, void *ud, char *err, size_t errlen);

/* Reloads every Lua service whose module file no longer matches the
 * code it runs (SIGHUP, the file watcher).  Any thread but a worker. */
void myc__reload_changed(myc_engine *e);

/* Frees the groups.  Engine teardown, after the services. */
void myc__groups_free(myc_engine *e);

/* Nonzero when 'c' holds usable values. */
int myc__supervisor_config_ok(const myc_supervisor_config *c);

/* Fills the supervision, memory and activity fields of 'st'.  Any thread. */
void myc__supervision_stats(struct myc_service *s, myc_service_stats *st);

#endif
