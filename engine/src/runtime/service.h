/* service.h -- one service: its task (mailbox and place on its worker),
 * its counters, and the instance that handles its messages: a Lua state
 * running one version of its code (instance.h), or a C callback.  A
 * service runs only on its worker's thread.  A restart or a reload builds
 * the next instance beside the current one and swaps it in between two
 * batches: the mailbox, the batch and the subscriptions stay.
 *
 * What happens when an instance ends is not decided here: the service
 * reports it to the engine's 'terminated' hook (the supervisor, above).
 */
#ifndef MYC_SERVICE_H
#define MYC_SERVICE_H

#include "base/alloc.h"
#include "base/log.h"
#include "core/job.h"
#include "core/topic.h"
#include "runtime/worker.h"

#include <stdatomic.h>
#include <uv.h>

/* No <lua.h> here: the hot path includes this header. */
typedef struct lua_State lua_State;

#define MYC_BATCH 256
/* The range of memory_limit_mb (besides 0, no limit): the service host
 * alone takes about 0.2 MB. */
#define MYC_MIN_MEMORY_MB 1.0
#define MYC_MAX_MEMORY_MB 1048576.0
/* Lua heaps per service: the current instance, the one a reload retired
 * (kept through its probation), an older retired one waiting to be
 * closed, one being prepared for a reload (any thread) and one for a
 * restart (the worker). */
#define MYC_SLOTS 5
/* The slab a state's first small blocks are cut from (base/alloc.h):
 * about what the service host and a small module take. */
#define MYC_LUA_SLAB (64u << 10)

struct myc__supervision;
struct myc__route;

/* The part of a service the Lua dispatch loop reads and writes directly
 * (lua/mycelium/cdefs.lua declares the same struct; the layout check of
 * ffi/abi.c compares them). */
typedef struct {
  myc_buf **batch;
  int32_t cursor;   /* index of the message being handled, -1 outside */
  uint32_t batch_n;
  /* mycelium.testing's injected faults: the next batches fail at their
   * first message (ffi/testing.c sets it; the Lua host counts it down). */
  uint32_t faults;
  /* Requests the current instance sent and is still waiting for (its Lua
   * side counts them): what a restart or reload of it drops. */
  uint32_t requests;
  /* While a batch with a sampled message runs (runtime/span.h): the loop
   * writes the engine clock at each handler's end in marks[i]; NULL
   * otherwise. */
  int64_t *marks;
  /* ctx:new's inline path (lua/mycelium/contract.lua): the first-class
   * free list of the service's worker pool and its count (set when the
   * service is made, never changed: its Lua state reads them once), and
   * the largest payload, padded to 8, whose frame fits a first-class
   * buffer with the room kept for topic and source (runtime/emit.c keeps
   * it current; 0 until the service's first ctx:new, which takes the C
   * path).  Signed, so that LuaJIT compares it as an integer (a uint32
   * goes through a double). */
  myc_buf **small_free;
  uint32_t *small_nfree;
  int32_t small_room;
} myc_svc_view;

typedef enum {
  MYC_SVC_LOADED,
  MYC_SVC_RUNNING,
  MYC_SVC_RESTARTING, /* terminated, waiting for its backoff */
  MYC_SVC_STOPPED,
  MYC_SVC_FAILED
} myc__svc_state;

/* Something a C facility (a WebSocket or HTTP client) holds open on the
 * service's worker loop on behalf of the service.  The service stops
 * every attached resource when it stops, so that no handle or callback
 * outlives it and a stopping worker's loop can end; an instance that ends
 * (a crash, a reload) stops those it attached. */
typedef struct myc__resource {
  struct myc__resource *next, *prev;
  void (*stop)(struct myc__resource *r); /* detached before the call */
  void *owner; /* the lua_State of the instance that attached it */
} myc__resource;

/* What the worker is doing in a service, for the watchdog and status. */
typedef enum {
  MYC_ACT_IDLE,
  MYC_ACT_HANDLER,
  MYC_ACT_INIT,
  MYC_ACT_TIMER,
  MYC_ACT_EVENT,
  MYC_ACT_STOP,
  MYC_ACT_SNAPSHOT,
  MYC_ACT_WARMUP /* the module's warmup, after init (warm.c) */
} myc__activity;

/* How an instance ended (the 'terminated' hook of engine.h). */
typedef enum {
  MYC_END_ERROR,    /* a handler or init raised */
  MYC_END_MEMORY,   /* over its memory limit */
  MYC_END_TIMEOUT,  /* interrupted past its time budget */
  MYC_END_EXIT,     /* ctx:exit(): a normal exit */
  MYC_END_EXIT_ABNORMAL, /* ctx:exit(reason) */
  MYC_END_SHUTDOWN  /* stopped by its group */
} myc__end;

/* A warm-up under way (warm.h): myc_service.warm points to it. */
typedef struct myc__warm {
  int capture;      /* the next emit is a message the warm-up delivers */
  myc_buf *frame;   /* that message, until the warm-up takes it */
  uint64_t emits;   /* emits dropped */
  uint64_t logs;    /* log records dropped */
  uint64_t handled; /* messages it delivered */
  /* The budget, also checked at every message it delivers: a compiled
   * loop of deliveries may never meet the hook. */
  int64_t deadline_ns;
  int overtime;
} myc__warm;

/* One Lua state running one version of the code. */
typedef struct {
  lua_State *L;
  int ref_dispatch, ref_timer, ref_event, ref_init, ref_stop, ref_msgh;
  int ref_warmup; /* LUA_REFNIL: the module has no warmup */
  int ref_snapshot, ref_live;
  int slot; /* its heap budget: mem[slot] of the service */
  uint64_t first_timer; /* timer ids below this are earlier instances' */
  int snap_ref;         /* retired: its snapshot, for a rollback */
  int stopped;          /* retired: its stop has run */
  /* A thread of the state made before any of its code runs: a sane
   * stack to reset the VM on before closing a state abandoned mid-call. */
  lua_State *helper;
} myc__instance;

typedef struct myc_engine myc_engine;
typedef struct myc_service myc_service;
struct myc_service {
  myc_svc_view view; /* first: Lua casts the service pointer to it */
  myc__task task;    /* mailbox, worker, ready list */
  myc_engine *eng;
  myc__topics *topics; /* the engine's routing table */
  /* Its place in the registry (myc_engine.services; moves only when the
   * registry closes its holes) and its number there, never reused: the
   * pair names it where a pointer cannot go (a NATS reply subject). */
  uint32_t slot;
  uint64_t serial;
  char *name;
  uint8_t name_len;

  /* The code of the current version: restarts run it again. */
  char *module;
  char *code;
  size_t code_len;
  void *opts; /* MessagePack, for every init */
  size_t opts_len;

  myc__instance cur; /* cur.L is NULL while no instance runs */
  myc__instance retired; /* replaced by a reload, kept for a rollback */
  myc__instance dying;   /* replaced twice: closed after the swap */
  myc__lua_budget mem[MYC_SLOTS];
  _Atomic int mem_cur;      /* slot of the current instance */
  _Atomic unsigned mem_busy; /* slots in use, one bit each */
  /* Strings the last snapshot copy made (0: none yet): the room the next
   * reload's state gets in its string table before the swap. */
  _Atomic size_t snap_strings;
  /* Held to close or replace cur.L while another thread may set a hook
   * on it (the watchdog interrupting a handler), and to change the code
   * while another thread reads it. */
  uv_mutex_t hook_lock;
  lua_State *hook_L; /* the state running now (current or starting) */
  /* Files the code loaded besides 'module' (the modules it required),
   * each with the digest of what it held then: SIGHUP and the file
   * watcher reload the service when one changes.  Under hook_lock;
   * 'files_gen' grows when a file is added or 'module' changes. */
  struct myc__dep {
    char *path;
    uint64_t digest;
  } *deps;
  uint32_t ndeps, capdeps;
  _Atomic uint32_t files_gen;
  int hook_slot;

  myc_message_cb cb; /* C services */
  void *cb_ud;
  /* What a C service adds to its mailbox's fill as producers see it on
   * 'topic' (0..1): the links' service, its peers' queues.  NULL: the
   * mailbox alone.  Any thread. */
  double (*pressure)(void *cb_ud, const myc__topic *topic);
  /* A C service that takes a message straight from an emit on its own
   * worker, its mailbox left out (the links' service with link.worker
   * queues it for its peers).  The emit calls it only while nothing
   * waits in the mailbox, so what one producer emits keeps its order.
   * Returns 0 having taken 'b' (its reference), or nonzero having left
   * it: the mailbox takes it then.  NULL: the mailbox always. */
  int (*direct)(void *cb_ud, myc__worker *from, myc_buf *b);

  myc_buf *batch[MYC_BATCH];
  uint32_t batch_pos; /* next message of 'batch' to hand to the service */

  /* Trace context of the current activation when no message is being
   * handled (init, a timer, stop): a fresh root each time. */
  uint8_t act_trace[16];
  uint8_t act_span[8];
  /* Tracing (runtime/span.c): the handlers' end times of a traced batch,
   * allocated at the first, and the batch's start. */
  int64_t *span_marks;
  int64_t span_t0;

  /* What runs, for threads that do not wait for the worker: 'act_gen'
   * changes with every activation, so (act_gen, cursor) names one
   * handler call. */
  _Atomic int act_kind;
  _Atomic uint32_t act_gen;
  /* Interruption requested by the watchdog for activation 'intr_gen' and
   * message 'intr_cursor'; 'intr_fired' once it raised. */
  _Atomic uint32_t intr_gen;
  _Atomic int32_t intr_cursor;
  _Atomic int intr_armed;
  int intr_fired;
  /* ctx:exit() in the current activation: 1 normal, 2 with a reason. */
  int exit_req;
  /* While the module's warmup runs (warm.c): what it emits goes there,
   * never to a subscriber.  NULL otherwise.  Worker thread. */
  struct myc__warm *warm;
  double timeout_ms; /* handler time budget; 0: none */
  double load_timeout_ms; /* budget of module top level and init, > 0 */

  /* The supervisor's state for this service (supervise/ owns it; set by
   * the engine's service_added hook). */
  struct myc__supervision *sup;

  uint64_t seq; /* messages emitted so far */
  /* Emit routes by topic id (emit.h).  Built on first use. */
  struct myc__route **routes;
  uint32_t nroutes;
  /* Room for topic and source kept after a ctx:new payload: the longest
   * frame tail this service has emitted a typed buffer with (0: none
   * yet), so that its next buffers fit their class without a regrow. */
  uint16_t typed_tail;
  uint64_t next_timer_id;
  uint64_t next_corr;         /* request correlation ids, from 1 */
  struct myc_service *asker;  /* who the last reply went to (request.c) */
  uint64_t asker_gen;         /* e->removals when it was found */
  _Atomic uint64_t n_requests_dropped; /* pending when an instance ended */
  _Atomic uint64_t n_replies_late;     /* came when nobody waited */
  myc__log_bucket log_bucket; /* its records' rate limit (base/log.h) */
  /* Topics it created, against the engine's max_topics_per_service
   * (changed under the topic table's lock: core/topic.h). */
  _Atomic uint32_t topics_made;
  _Atomic uint64_t n_in, n_out, n_errors;
  _Atomic uint64_t n_unrouted; /* of n_out: to a topic nobody listens to */
  _Atomic int state;
#if MYC_METRICS
  /* Handler time per message, in ns (observe/ reads it). */
  myc__hist handler_ns;
#endif

  myc__resource *resources; /* attached facility objects */

  /* Services added and removed while the engine runs (spawn.c). */
  int spawned;  /* by myc_engine_spawn/ctx:spawn: removed once it ends */
  int placed;   /* on its worker's list of tasks */
  int grouped;  /* in a supervisor group (supervise/ sets it) */
  void *kill;   /* a removal that waits for the start (spawn.c) */
  char *parent; /* the service that spawned it, or NULL */
  /* Out of the registry (killed, or a spawned service that ended): no
   * longer found by name, its struct freed once nobody can reach it. */
  _Atomic int removed;
  /* References: the registry's (dropped after the grace period of a
   * removal) and pins of threads that hold it across a wait (a reload).
   * The last one out frees it on its worker, through 'free_job'. */
  _Atomic uint32_t refs;
  myc__job free_job;
  /* In the engine's list of removed services not yet freed (under its
   * registry lock). */
  struct myc_service *limbo_next, *limbo_prev;
};

/* The service whose task is 't'. */
static inline myc_service *myc__service_of(myc__task *t) {
  return (myc_service *)((char *)t - offsetof(myc_service, task));
}

/* The worker of 's'. */
static inline myc__worker *myc__service_worker(const myc_service *s) {
  return s->task.worker;
}

/* Creates a Lua service placed on worker 'w': state, host runtime,
 * module, subscriptions.  On failure returns a negative code, writes the
 * reason to 'err' and leaves nothing allocated. */
int myc__service_new_lua(myc_engine *e, const myc_service_config *sc,
                         myc__worker *w, myc_service **out, char *err,
                         size_t errlen);

/* As myc__service_new_lua for a service added while the engine runs,
 * from any thread: the service is not placed on 'w' (its worker does it,
 * myc__service_place) and its first instance is left in 'in', loaded but
 * not committed (myc__instance_commit_first).  Same returns. */
int myc__service_new_spawned(myc_engine *e, const myc_service_config *sc,
                             myc__worker *w, myc_service **out,
                             myc__instance *in, char *err, size_t errlen);

/* The two halves of myc__service_new_spawned, for loading many at once
 * (runtime/load.c).  Prepare: the service with its name, mailbox and
 * budgets, announced to the hook (the caller's thread, one at a time);
 * on failure nothing is left.  Load_first: reads the module and loads
 * the first instance into 'in' (any thread, one per service at a time);
 * on failure 'in' holds nothing and the caller frees the service. */
int myc__service_prepare(myc_engine *e, const myc_service_config *sc,
                         myc__worker *w, myc_service **out, char *err,
                         size_t errlen);
int myc__service_load_first(myc_service *s, myc__instance *in, char *err,
                            size_t errlen);

/* Places 's' on its worker.  Thread owning the worker. */
void myc__service_place(myc_service *s);

/* Runs the init of a placed spawned service and lets it take messages;
 * when the init raises, the instance ends as a crash (the 'terminated'
 * hook decides).  Worker thread. */
void myc__service_start_spawned(myc_service *s);

/* Creates a C service on worker 'w' calling 'cb' for each message on
 * 'pattern'.  Same returns. */
int myc__service_new_c(myc_engine *e, const char *name, const char *pattern,
                       myc_message_cb cb, void *ud, myc__worker *w,
                       myc_service **out, char *err, size_t errlen);

/* Runs the module's init.  Returns 0 or MYC_ELUA with the error in 'err'.
 * Thread owning the worker (the engine's before the workers start). */
int myc__service_init(myc_service *s, char *err, size_t errlen);

/* Fires timer 'id' of the current instance (a myc__timer_fn). */
int myc__service_timer(void *s, uint64_t id);

/* Delivers an event of a C facility (a socket, a client) to the Lua
 * function registered for 'source' through lua/mycelium/events.lua, as a
 * new activation.  'data' is passed as an address and must stay valid
 * for the call.  Worker thread only.  Returns 0, MYC_ENOENT when nothing
 * is registered for 'source' any more, or MYC_ELUA when the function
 * raised (logged and counted like a handler error). */
int myc__service_event(myc_service *s, uint64_t source, int code,
                       const void *data, size_t len);

/* Calls the module's stop (once), then stops every attached resource.
 * Worker thread. */
void myc__service_stop(myc_service *s);

/* Records that the code of 's' loaded the file 'path', which held what
 * 'digest' (myc__file_digest) sums up; a path seen before gets the new
 * digest.  Returns 0 or MYC_ENOMEM (nothing recorded).  Any thread. */
int myc__service_depend(myc_service *s, const char *path, uint64_t digest);

/* Attaches 'r' to 's' (worker thread), on behalf of the instance that
 * runs: 's' will call r->stop when it or that instance stops, unless 'r'
 * was detached first.  Cannot fail. */
void myc__service_attach(myc_service *s, myc__resource *r);
/* Detaches 'r' if it is attached.  Cannot fail. */
void myc__service_detach(myc_service *s, myc__resource *r);
/* Stops the resources attached by the instance running 'owner' (NULL:
 * every one).  Worker thread. */
void myc__service_stop_resources(myc_service *s, lua_State *owner);

/* Nonzero when messages wait (queued or the rest of a batch) and an
 * instance is there to take them. */
static inline int myc__service_pending(const myc_service *s) {
  return (s->batch_pos < s->view.batch_n ||
          atomic_load_explicit(&s->task.mb.len, memory_order_relaxed) > 0) &&
         atomic_load_explicit(&s->state, memory_order_relaxed) ==
             MYC_SVC_RUNNING;
}

/* Puts 's' on its worker's ready list when messages wait for it (after a
 * restart or a reload brought an instance back).  Worker thread. */
void myc__service_wake(myc_service *s);

/* The instance ended as 'how' (already closed): hands the decision to
 * the engine's 'terminated' hook, or, without one, leaves the service
 * stopped (a normal exit) or failed.  Worker thread. */
void myc__service_terminated(myc_service *s, int how, const char *why);

/* Releases what is still queued for 's', counting it as lost at shutdown
 * per topic.  Worker stopped (or its thread). */
void myc__service_drop_leftovers(myc_service *s);

/* Ends 's' for good, on its worker, for a removal: runs the module's stop
 * (if an instance runs), closes every instance, leaves every topic, fails
 * the requests queued for it, forgets its timers, and drops what is
 * queued (counted as dropped at shutdown).  Returns the messages dropped.
 * Worker thread. */
uint64_t myc__service_end(myc_service *s, const char *why);

/* Releases what is still queued, counting it as dropped at shutdown, and
 * frees the service.  Must run on its worker (or after the workers have
 * stopped). */
void myc__service_free(myc_service *s);

/* The handler at the cursor has no handler for its topic (a reload
 * dropped it): logs it and sends the message to "$dead". */
void myc__service_unhandled(myc_service *s);

const char *myc__service_state_name(int state);

/* NULL when 'name' may name a service, else why not.  A name travels in
 * frames (the source), log lines, control requests and replies: it is 1
 * to 255 bytes of letters, digits and _ - . :, starting with a letter, a
 * digit or _ (nothing to quote, nothing a shell or a log reader would
 * split). */
const char *myc__service_name_check(const char *name);

#endif
