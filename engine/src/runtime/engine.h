/* engine.h -- the engine object: its configuration and shared facilities
 * (allocator, clock, log, topics, contracts), its workers and services,
 * and the hooks through which the layers above the runtime (supervise/,
 * ffi/, and what api/ attaches) hear about what happens in it.
 * Everything hangs off it; there is no global mutable state.
 */
#ifndef MYC_ENGINE_H
#define MYC_ENGINE_H

#include "base/clock.h"
#include "base/log.h"
#include "base/rng.h"
#include "core/topic.h"
#include "runtime/service.h"
#include "runtime/worker.h"

/* What the layers above the runtime ask to be told.  Each may be NULL.
 * The runtime calls them; they never make the runtime call up. */
typedef struct {
  void *ud;
  /* A service was created (its name, mailbox and worker are set, no
   * instance yet): set up what is kept for it.  Nonzero refuses the
   * service, with the reason in 'err'. */
  int (*service_added)(void *ud, myc_service *s, const myc_service_config *sc,
                       char *err, size_t errlen);
  /* A service is being freed (after its instances are closed). */
  void (*service_freed)(void *ud, myc_service *s);
  /* The current instance of 's' ended as 'how' (myc__end; 'why': the
   * reason) and is closed.  Worker thread of 's'. */
  void (*terminated)(void *ud, myc_service *s, int how, const char *why);
  /* Fills the fields of 'st' the hook owns.  Any thread. */
  void (*stats)(void *ud, myc_service *s, myc_service_stats *st);
  /* The inits ran and the threads are about to start: start what runs
   * beside the workers.  Nonzero fails the start, with the reason. */
  int (*start)(void *ud, char *err, size_t errlen);
  /* The workers drained: nothing may post a job to them any more. */
  void (*quiesce)(void *ud);
  /* SIGHUP reached myc_engine_run(). */
  void (*hangup)(void *ud);
} myc__engine_hooks;

/* A function the engine calls when it is freed, after its services. */
typedef struct myc__cleanup {
  struct myc__cleanup *next;
  void (*fn)(void *ud);
  void *ud;
} myc__cleanup;

/* What a layer runs beside the workers (observe/'s metrics listener),
 * apart from the hooks so that several layers can attach: started just
 * before the hooks' start (threaded engines only), stopped when the
 * engine quiesces, before the hooks' quiesce. */
typedef struct myc__sidecar {
  struct myc__sidecar *next;
  /* Nonzero fails the start, with the reason in 'err'. */
  int (*start)(void *ud, char *err, size_t errlen);
  void (*stop)(void *ud); /* may be called when not started */
  void *ud;
} myc__sidecar;

struct myc_engine {
  myc__alloc alloc;
  myc__alloc lua_alloc; /* base of every service's counting allocator */
  char *node;
  char *lua_path;
  myc_mailbox_config mailbox;
  int manual;
  myc__clock clock;
  myc__log log;

  myc_contract_set *contracts; /* NULL: typed messages are refused */
  int validate;                /* check rules on every typed emit */

  myc__topics topics;
  uint32_t dead_topic; /* id of "$dead" */

  myc__sched sched; /* the workers */
  uint32_t next_worker; /* round-robin placement */

  myc_service **services;
  uint32_t nservices, capservices;
  uv_mutex_t services_lock; /* appends vs. other threads' reads */

  myc__engine_hooks hooks;
  myc__cleanup *cleanups;
  myc__sidecar *sidecars;
  struct myc__observe *observe; /* observe/ owns it; NULL: not attached */
  int64_t created_ns; /* engine clock when it was created */
  /* Sections of lua/mycelium/cdefs.lua one of its Lua states checked
   * against this build (ffi/abi.c). */
  _Atomic unsigned ffi_checked;

  int started;
  _Atomic int stopping;
  _Atomic int exit_code;

  myc__pool host_pool; /* manual engines: the driving thread's pool */
  myc__rng host_rng;
  uint64_t host_seq;
  uv_mutex_t host_lock;

  uv_mutex_t stop_lock;
  uv_async_t *stop_async; /* set while myc_engine_run() waits */
};

/* Creates an engine with no hooks: the runtime alone (api/ attaches the
 * supervisor).  Same contract as myc_engine_new() for the fields the
 * runtime reads; the supervision fields of 'cfg' are not looked at. */
int myc__engine_create(myc_engine **out, const myc_engine_config *cfg);

/* Registers 'fn(ud)' to run when the engine is freed, after its services
 * (in the order registered).  Returns 0 or MYC_ENOMEM ('fn' will not
 * run). */
int myc__engine_on_free(myc_engine *e, void (*fn)(void *ud), void *ud);

/* Adds 'sc' (which must outlive the engine, or be freed by a cleanup of
 * myc__engine_on_free) to what starts beside the workers.  Before the
 * engine starts.  Cannot fail. */
void myc__engine_add_sidecar(myc_engine *e, myc__sidecar *sc);

/* Finds a service by name, or NULL.  Any thread (services are only ever
 * appended). */
myc_service *myc__engine_find(myc_engine *e, const char *name, size_t len);

/* The number of services, read under the registry lock: services below it
 * can be used from any thread. */
uint32_t myc__engine_count(myc_engine *e);

#endif
