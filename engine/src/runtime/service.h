/* service.h -- one service: its mailbox and counters, and the instance
 * (a Lua state running one version of its code, or a C callback) that
 * handles them.  A service runs only on its worker's thread; the Lua side
 * reaches it through the FFI functions of lua_api.h.  A restart or a
 * reload builds the next instance beside the current one and swaps it in
 * between two batches: the mailbox, the batch and the subscriptions stay.
 */
#ifndef MYC_SERVICE_H
#define MYC_SERVICE_H

#include "core/mailbox.h"
#include "supervise/supervisor.h"

#include <lua.h>
#include <stdatomic.h>
#include <uv.h>

#define MYC_BATCH 256
/* Lua heaps per service: the current instance, the one a reload retired
 * (kept through its probation), an older retired one waiting to be
 * closed, one being prepared for a reload (any thread) and one for a
 * restart (the worker). */
#define MYC_SLOTS 5

struct myc__worker;

/* The part of a service the Lua dispatch loop reads and writes directly
 * (lua/mycelium/cdefs.lua declares the same struct). */
typedef struct {
  myc_buf **batch;
  int32_t cursor;   /* index of the message being handled, -1 outside */
  uint32_t batch_n;
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
  MYC_ACT_SNAPSHOT
} myc__activity;

/* How an instance ended (see myc__supervisor_terminated). */
typedef enum {
  MYC_END_ERROR,    /* a handler or init raised */
  MYC_END_MEMORY,   /* over its memory limit */
  MYC_END_TIMEOUT,  /* interrupted past its time budget */
  MYC_END_EXIT,     /* ctx:exit(): a normal exit */
  MYC_END_EXIT_ABNORMAL, /* ctx:exit(reason) */
  MYC_END_SHUTDOWN  /* stopped by its group */
} myc__end;

/* One Lua state running one version of the code. */
typedef struct {
  lua_State *L;
  int ref_dispatch, ref_timer, ref_event, ref_init, ref_stop, ref_msgh;
  int ref_snapshot, ref_live, ref_fault;
  int slot; /* its heap budget: mem[slot] of the service */
  uint64_t first_timer; /* timer ids below this are earlier instances' */
  int snap_ref;         /* retired: its snapshot, for a rollback */
  int stopped;          /* retired: its stop has run */
} myc__instance;

typedef struct myc_service myc_service;
struct myc_service {
  myc_svc_view view; /* first: Lua casts the service pointer to it */
  myc_engine *eng;
  struct myc__worker *worker;
  uint32_t index;
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
  /* Held to close or replace cur.L while another thread may set a hook
   * on it (the watchdog interrupting a handler). */
  uv_mutex_t hook_lock;
  lua_State *hook_L; /* the state running now (current or starting) */
  int hook_slot;

  myc_message_cb cb; /* C services */
  void *cb_ud;

  myc__mailbox mb;
  myc_buf *batch[MYC_BATCH];
  uint32_t batch_pos; /* next message of 'batch' to hand to the service */

  /* Trace context of the current activation when no message is being
   * handled (init, a timer, stop): a fresh root each time. */
  uint8_t act_trace[16];
  uint8_t act_span[8];

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
  _Atomic uint32_t faults; /* injected: the next handlers raise */
  /* Watchdog's view (its thread only, but 'busy_since' is published). */
  uint32_t wd_gen;
  int32_t wd_cursor;
  int wd_stage;
  _Atomic int64_t busy_since; /* monotonic ns, 0: unknown or idle */
  double timeout_ms;

  _Atomic unsigned cmds; /* MYC_CMD_* from other threads */
  myc__supervision sup;

  uint64_t seq; /* messages emitted so far */
  /* Emit routes by topic id: the topic and the frame's tail (topic name
   * then this service's name) ready to copy.  Built on first use. */
  struct myc__route **routes;
  uint32_t nroutes;
  uint64_t next_timer_id;
  _Atomic uint64_t n_in, n_out, n_errors;
  _Atomic int state;

  int queued; /* on its worker's ready list */
  myc_service *ready_next;

  myc__resource *resources; /* attached facility objects */
};

/* Creates a Lua service: state, host runtime, module, subscriptions.  On
 * failure returns a negative code, writes the reason to 'err' and leaves
 * nothing allocated. */
int myc__service_new_lua(myc_engine *e, const myc_service_config *sc,
                         struct myc__worker *w, myc_service **out, char *err,
                         size_t errlen);

/* Creates a C service calling 'cb' for each message on 'pattern'. */
int myc__service_new_c(myc_engine *e, const char *name, const char *pattern,
                       myc_message_cb cb, void *ud, struct myc__worker *w,
                       myc_service **out);

/* Runs the module's init.  Returns 0 or MYC_ELUA with the error in 'err'. */
int myc__service_init(myc_service *s, char *err, size_t errlen);

/* Hands the next batch (at most MYC_BATCH messages) to the service.
 * Returns the number of messages handled.  A handler error is logged, the
 * message goes to "$dead", and the supervisor decides what happens to the
 * instance; the rest of the batch stays queued for the next one. */
uint32_t myc__service_dispatch(myc_service *s);

/* Fires timer 'id'.  Returns 1 if a repeating timer should be rearmed. */
int myc__service_timer(myc_service *s, uint64_t id);

/* Delivers an event of a C facility (a socket, a client) to the Lua
 * function registered for 'source' through lua/mycelium/events.lua, as a
 * new activation.  'data' is passed as an address and must stay valid
 * for the call.  Worker thread only.  Returns 0, MYC_ENOENT when nothing
 * is registered for 'source' any more, or MYC_ELUA when the function
 * raised (logged and counted like a handler error). */
int myc__service_event(myc_service *s, uint64_t source, int code,
                       const void *data, size_t len);

/* Calls the module's stop (once), then stops every attached resource. */
void myc__service_stop(myc_service *s);

/* Attaches 'r' to 's' (worker thread), on behalf of the instance that
 * runs: 's' will call r->stop when it or that instance stops, unless 'r'
 * was detached first.  Cannot fail. */
void myc__service_attach(myc_service *s, myc__resource *r);
/* Detaches 'r' if it is attached.  Cannot fail. */
void myc__service_detach(myc_service *s, myc__resource *r);

/* Nonzero when messages wait (queued or the rest of a batch) and an
 * instance is there to take them. */
static inline int myc__service_pending(const myc_service *s) {
  return (s->batch_pos < s->view.batch_n ||
          atomic_load_explicit(&s->mb.len, memory_order_relaxed) > 0) &&
         atomic_load_explicit(&s->state, memory_order_relaxed) ==
             MYC_SVC_RUNNING;
}

/* Releases what is still queued for 's', counting it as lost at shutdown
 * per topic.  Worker stopped (or its thread). */
void myc__service_drop_leftovers(myc_service *s);

/* Releases what is still queued, counting it as dropped at shutdown, and
 * frees the service.  Must run on its worker (or after the workers have
 * stopped). */
void myc__service_free(myc_service *s);

/* Starts a fresh root trace for an activation outside a handler. */
void myc__service_new_activation(myc_service *s);

const char *myc__service_state_name(int state);

/* ---- instances (supervisor.c drives them) ------------------------------ */

/* Builds an instance of 's' running 'code' (the source of 'module'): a
 * fresh Lua state with the host runtime and the module loaded, its
 * subscriptions recorded but not applied.  Touches nothing the worker
 * owns, so any thread may call it while the current instance runs.
 * Returns 0, or MYC_ELUA / MYC_ENOMEM / MYC_ESTATE (no free heap slot)
 * with the reason in 'err'; then nothing is left. */
int myc__instance_load(myc_service *s, myc__instance *in, const char *module,
                       const char *code, size_t code_len, char *err,
                       size_t errlen);

/* Calls the new instance's init(ctx, opts, state) where 'state' is a copy
 * of the value registered as 'snap_ref' in state 'from' ('from' NULL or
 * the ref LUA_NOREF: nil).  Worker thread.  Returns 0, or a negative code
 * with the reason in 'err' and '*how' set to how it ended. */
int myc__instance_init(myc_service *s, myc__instance *in, lua_State *from,
                       int snap_ref, myc__end *how, char *err, size_t errlen);

/* Makes 'in' the current instance: applies its subscriptions (subscribing
 * to new topics before leaving old ones) and forgets the timers of earlier
 * instances.  A current instance still open becomes the retired one (any
 * earlier retired instance must be gone).  Worker thread.  Cannot fail: a
 * subscription that cannot be added for lack of memory is logged. */
void myc__instance_commit(myc_service *s, myc__instance *in);

/* Closes an instance that never became current, or the current one
 * ('in' == &s->cur).  Worker thread, or the thread that loaded it. */
void myc__instance_close(myc_service *s, myc__instance *in);

/* Runs the current instance's snapshot(ctx) and keeps what it returns in
 * its registry: '*ref' (LUA_NOREF without a snapshot).  Worker thread.
 * Returns 0 or MYC_ELUA with the reason. */
int myc__service_snapshot(myc_service *s, int *ref, char *err,
                          size_t errlen);

/* Calls the current instance's stop and ends it (its state is closed). */
void myc__service_end_instance(myc_service *s, int call_stop);

/* Runs the stop of 'in' (s->retired or s->dying) if it has not run; with
 * 'close', also closes it.  Worker thread. */
void myc__service_retire(myc_service *s, myc__instance *in, int close);

/* Reads 'path' into a buffer of '*len' + 1 bytes (NUL-terminated) from
 * the engine's allocator.  Returns 0, or a negative code with "cannot
 * open PATH: reason" in 'err'. */
int myc__read_file(myc_engine *e, const char *path, char **out, size_t *len,
                   char *err, size_t errlen);

/* What runs now, "" when idle ("handler TOPIC", "init", ...).  Any
 * thread: reads the worker's progress without waiting for it. */
void myc__service_running(myc_service *s, char *buf, size_t cap);

/* Sets a hook on the running state that raises in the running handler
 * if it is still activation 'gen' at message 'cursor'.  Any thread. */
void myc__service_interrupt(myc_service *s, uint32_t gen, int32_t cursor);

/* Makes the running state's next allocation fail if it is still in
 * activation 'gen': reaches compiled loops that allocate.  Any thread. */
void myc__service_poison(myc_service *s, uint32_t gen);

/* The handler at the cursor has no handler for its topic (a reload
 * dropped it): logs it and sends the message to "$dead". */
void myc__service_unhandled(myc_service *s);

#endif
