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
#include "base/slabs.h"
#include "core/topic.h"
#include "lua/bytecode.h"
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
  /* Everything started (what runs beside the workers too): the start
   * can no longer fail. */
  void (*started)(void *ud);
  /* The workers drained: nothing may post a job to them any more. */
  void (*quiesce)(void *ud);
  /* SIGHUP reached myc_engine_run(). */
  void (*hangup)(void *ud);
} myc__engine_hooks;

/* Worker 0 turned from a host's libuv loop (hostloop.c). */
typedef struct myc__hostloop myc__hostloop;

/* A function the engine calls when it is freed, after its services. */
typedef struct myc__cleanup {
  struct myc__cleanup *next;
  void (*fn)(void *ud);
  void *ud;
} myc__cleanup;

/* Something that runs beside the workers (the links): started after the
 * hooks' start, stopped after the hooks' quiesce (possibly several times,
 * and without a start before). */
typedef struct myc__beside {
  struct myc__beside *next;
  int (*start)(void *ud, char *err, size_t errlen);
  void (*quiesce)(void *ud);
  /* What status shows of it (NULL: nothing): a text section, or the JSON
   * members to add to the status object (",\"links\":[...]").  Returns a
   * string from the engine's allocator of '*len' + 1 bytes, or NULL.  Any
   * thread. */
  char *(*status)(void *ud, int json, size_t *len);
  /* Its families in the Prometheus text format (NULL: none), allocated
   * as 'status' returns.  Any thread; waits for nothing. */
  char *(*metrics)(void *ud, size_t *len);
  void *ud;
} myc__beside;

struct myc_engine {
  myc__alloc alloc;
  myc__alloc lua_alloc; /* base of every service's counting allocator */
  char *node;
  char *lua_path;
  /* What the Lua runtime binds through (ffi/table.h), for each state
   * (lua/state.h); set by api/, the layer that knows it. */
  const struct myc_ffi_table *ffi_table;
  /* The runtime's modules, compiled once for every service's state;
   * bytecode.dir is NULL until it is set up. */
  myc__bytecode bytecode;
  /* The slabs of every service's Lua states (lua_alloc's chunks);
   * slabs.base is NULL until it is set up. */
  myc__slabs slabs;
  myc_mailbox_config mailbox;
  int manual;
  myc__clock clock;
  myc__log log;

  myc_contract_set *contracts; /* NULL: typed messages are refused */
  int validate;                /* check rules on every typed emit */

  myc__topics topics;
  uint32_t dead_topic; /* id of "$dead" */
  uint32_t reply_topic; /* id of "$reply", the topic of every reply */
  /* Sends the reply to a request that came from another engine (link/
   * registers it; nats/ puts its own in front and passes on what did not
   * come over NATS; NULL without either).  Called on the responder's
   * worker; returns as myc__request_reply. */
  int (*reply_remote)(void *ud, myc_service *s, myc_buf *req, int kind,
                      uint16_t type, const void *data, size_t len,
                      int failed);
  void *reply_remote_ud;

  myc__sched sched; /* the workers */
  _Atomic uint32_t next_worker; /* round-robin placement */

  /* The registry: the services in the order they were added, with holes
   * (NULL) where removed ones were.  A removal clears its slot and no
   * more, so it costs the same beside 10 or 10 000 services; the holes
   * are closed in one pass, order kept, once they outnumber the services
   * (so that pass is paid for by the removals that made them: amortised
   * O(1) a removal).  Kept in order rather than keyed by a sequence
   * number and swap-removed: status lists the services as they came and
   * myc_engine_service_stats() takes the rank in that order, which a
   * scan of the slots gives without a sort.  Walk it as
   *   for (i = 0; i < e->endservices; i++) if (e->services[i] != NULL)
   * under services_lock (or alone: before the start, after the stop). */
  myc_service **services;
  uint32_t nservices;   /* services in the registry */
  uint32_t max_services; /* at most, myc_engine_config.max_services */
  uint32_t max_topics_per_service; /* myc_engine_config's, 0 replaced */
  uint32_t max_subscriptions_per_service; /* the same */
  uint32_t endservices; /* slots used, holes included */
  uint32_t capservices;
  /* Where the last rank lookup landed: the service of rank 'rank_at' is
   * in slot 'rank_slot' (valid while rank_ok; a removal or compaction
   * clears it).  A scan by rank resumes there, reading each slot once. */
  uint32_t rank_at, rank_slot;
  int rank_ok;
  uint64_t next_serial; /* of the next service registered, from 1 */
  /* Slots read or moved by removals and compactions, and by rank
   * lookups: tests bound it to prove a removal costs O(1). */
  uint64_t registry_work;
  uv_mutex_t services_lock; /* appends vs. other threads' reads */
  /* The services by name (open addressing, at most half full), so that
   * adding the ten thousandth service does not compare its name with
   * every other.  Under services_lock. */
  myc_service **by_name;
  uint32_t nby_name; /* slots, a power of two, or 0 */
  /* Services removed from the registry, not freed yet (spawn.c), under
   * services_lock; myc_engine_free() frees those still there. */
  myc_service *limbo;
  uint32_t nlimbo;
  /* Grows with every removal: a pointer to a service kept across turns
   * (request.c's asker) is good while this has not changed. */
  _Atomic uint64_t removals;
  /* myc_engine_free() runs: timers and jobs die with the workers, so a
   * service freed now forgets nothing and posts nothing. */
  int freeing;
  /* Services added and removed while running (myc_lifecycle_stats). */
  _Atomic uint64_t n_spawned, n_removed, n_removed_dropped;

  myc__engine_hooks hooks;
  myc__cleanup *cleanups;
  myc__beside *besides;
  struct myc__observe *observe; /* observe/ owns it; NULL: not attached */
  /* Where the spans of handled messages go (runtime/span.h); set by
   * observe/ before the workers start, NULL: tracing is off. */
  struct myc__tracer *tracer;
  int64_t created_ns; /* engine clock when it was created */
  /* Sections of lua/mycelium/cdefs.lua one of its Lua states checked
   * against this build (ffi/abi.c). */
  _Atomic unsigned ffi_checked;

  /* Read by a reload or the control thread while the run ends. */
  _Atomic int started;
  _Atomic int stopping;
  _Atomic int exit_code;
  char stop_reason[320]; /* why the first stop came; written once, by it */

  myc__pool host_pool; /* manual engines: the driving thread's pool */
  myc__rng host_rng;
  uint64_t host_seq;
  uv_mutex_t host_lock;

  uv_mutex_t stop_lock;
  uv_async_t *stop_async; /* set while myc_engine_run() or a host loop waits */
  /* Started with myc_engine_start_on_loop(): worker 0 is turned from the
   * host's loop and has no thread (hostloop.c). */
  myc__hostloop *hostloop;
};

/* Creates an engine with no hooks: the runtime alone (api/ attaches the
 * supervisor).  Same contract as myc_engine_new() for the fields the
 * runtime reads; the supervision fields of 'cfg' are not looked at. */
int myc__engine_create(myc_engine **out, const myc_engine_config *cfg);

/* myc_engine_stop() saying why ('why', for the log line at the stop),
 * which only the first stop records.  Any thread. */
void myc__engine_stop_why(myc_engine *e, int code, const char *why);

/* Registers 'fn(ud)' to run when the engine is freed, after its services
 * (in the order registered).  Returns 0 or MYC_ENOMEM ('fn' will not
 * run). */
int myc__engine_on_free(myc_engine *e, void (*fn)(void *ud), void *ud);

/* Registers what runs beside the workers (see myc__beside).  Before the
 * start.  Returns 0 or MYC_ENOMEM. */
int myc__engine_beside(myc_engine *e, int (*start)(void *, char *, size_t),
                       void (*quiesce)(void *),
                       char *(*status)(void *, int, size_t *), void *ud);

/* Gives the part registered with 'ud' its 'metrics' (see myc__beside).
 * Before the start.  Returns 0 or MYC_ENOENT (no such part). */
int myc__engine_beside_metrics(myc_engine *e, void *ud,
                               char *(*metrics)(void *, size_t *));

/* Adds the C service a transport hands its outgoing messages to ("_links",
 * "_nats") on 'worker' (-1: placed like any service), found in '*out'.
 * Returns 0, or myc_engine_add_c_service's error with the reason in
 * 'err': 'what' names the transport, 'key' the config key that chose
 * the worker. */
int myc__engine_add_transport(myc_engine *e, const char *name,
                              const char *pattern, myc_message_cb cb, void *ud,
                              int32_t worker, const char *what,
                              const char *key, myc_service **out, char *err,
                              size_t errlen);

/* Finds a service by name, or NULL.  A worker may use the result until
 * the end of its turn (a removed service is freed only after a job on
 * every worker), a thread without a worker within a read section of
 * e->sched.hosts; to hold it longer, pin it. */
myc_service *myc__engine_find(myc_engine *e, const char *name, size_t len);

/* The id of topic 'name' for service 's' (NULL: the engine itself),
 * created if new and within the service's max_topics_per_service.
 * Returns the id, MYC_ETOPIC, MYC_ENOMEM or MYC_ELIMIT (the service's
 * quota, or the table is full: myc__engine_topic_limit says which).  Any
 * thread. */
int64_t myc__engine_topic(myc_engine *e, myc_service *s, const char *name,
                          size_t len);

/* The message for a MYC_ELIMIT of myc__engine_topic: the table, the
 * service and the key to raise.  'err' is always NUL-terminated. */
void myc__engine_topic_limit(myc_engine *e, myc_service *s, const char *name,
                             size_t len, char *err, size_t errlen);

/* As myc__engine_find, taking a reference the caller drops with
 * myc__engine_unpin(): the service is not freed before (it may be
 * removed: s->removed).  Any thread. */
myc_service *myc__engine_pin(myc_engine *e, const char *name, size_t len);

/* Pins a service the caller holds (found this turn, or pinned).  Returns
 * 0, or MYC_ENOENT when it is removed already (not pinned). */
int myc__engine_pin_service(myc_engine *e, myc_service *s);

/* Drops a reference of 's'; the last one frees it on its worker (a job).
 * Any thread. */
void myc__engine_unpin(myc_service *s);

/* Takes 's' out of the registry (name index and list) into the list of
 * removed services.  Returns 0, or MYC_ENOENT when it is out already.
 * Any thread. */
int myc__engine_unregister(myc_engine *e, myc_service *s);

/* Counters of the service named 'name' (myc_engine_service_stats), read
 * under the registry lock.  Returns 0 or MYC_ENOENT. */
int myc__engine_stats_by_name(myc_engine *e, const char *name, size_t len,
                              myc_service_stats *out);

/* Removes service 's' (spawn.c): out of the registry at once (its name is
 * free again), then ended on its worker (myc__service_end) and freed once
 * no thread can reach it.  'why' goes to its askers and the log.  Returns
 * 0, MYC_ENOENT (removed already), MYC_ESTOPPED (the engine stops: it
 * goes with it).  Any thread. */
int myc__engine_remove(myc_engine *e, myc_service *s, const char *why);

/* myc_engine_service_stats() and myc_engine_service_drops() of service
 * 's' of the registry, for a caller that holds services_lock (status,
 * metrics) or runs alone (the stop's summary). */
void myc__engine_stats_locked(myc_engine *e, myc_service *s,
                              myc_service_stats *st);
int myc__engine_drops_locked(myc_engine *e, myc_service *s,
                             myc_drop_stats *out, uint32_t max);

/* The service in slot 'slot' of the registry if it is still there and
 * is the one registered as 'serial' (see myc_service.serial), else NULL.
 * Same lifetime rules as myc__engine_find().  Any thread. */
myc_service *myc__engine_at(myc_engine *e, uint32_t slot, uint64_t serial);

/* Checks what a new service asks for (its name valid and free, its
 * worker) and places it: '*w'.  'late_ok': it may join a running engine.
 * Returns 0 or a negative code with the reason in 'err'. */
int myc__engine_check_new(myc_engine *e, const char *name, int32_t worker,
                          myc__worker **w, char *err, size_t errlen,
                          int late_ok);

/* Adds a service just made to the registry; frees it if that fails
 * (MYC_EEXIST: its name is taken; MYC_ENOMEM), with the reason in
 * 'err'.  Any thread. */
int myc__engine_register(myc_engine *e, myc_service *s, char *err,
                         size_t errlen);

/* myc_engine_spawn() for a service spawned by 'parent' (a service's
 * name, or NULL: the host). */
int myc__engine_spawn(myc_engine *e, const myc_service_config *sc,
                      const char *parent, char *err, size_t errlen);

/* myc_engine_kill() by service 'by' (NULL: the host), which the log line
 * and the askers' failure name. */
int myc__engine_kill(myc_engine *e, const char *name, const char *by,
                     char *err, size_t errlen);

/* The number of services, read under the registry lock: services below it
 * can be used from any thread. */
uint32_t myc__engine_count(myc_engine *e);

/* How long a stop waits for mailboxes to drain before stopping anyway. */
#define MYC_DRAIN_TIMEOUT_MS 5000

/* One step of watching a drain (every worker told MYC_PHASE_DRAIN): 1
 * once every worker is idle and no message was handled since the last
 * step, twice in a row ('last', 'stable': the caller's state, zeroed at
 * the start). */
int myc__engine_drained(myc_engine *e, uint64_t *last, int *stable);

/* The drain is over: tells the layers above, then every worker to stop
 * (each runs its services' stop and closes its handles). */
void myc__engine_halt(myc_engine *e);

/* The workers stopped: joins their threads, counts what is still queued
 * as dropped at shutdown, and marks the engine not started. */
void myc__engine_finish(myc_engine *e);

/* Engines started on a host loop (hostloop.c): myc_engine_free() of one
 * that has not stopped takes worker 0 back on a thread of its own and
 * stops the engine as myc_engine_run() does.  The loop's thread. */
void myc__hostloop_abandon(myc_engine *e);

#endif
