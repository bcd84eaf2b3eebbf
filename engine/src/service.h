/* service.h -- one service instance: a Lua state (or a C callback), its
 * mailbox and counters.  A service runs only on its worker's thread; the
 * Lua side reaches it through the FFI functions of lua_api.h.
 */
#ifndef MYC_SERVICE_H
#define MYC_SERVICE_H

#include "mailbox.h"

#include <lua.h>
#include <stdatomic.h>

#define MYC_BATCH 256

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
  MYC_SVC_STOPPED,
  MYC_SVC_FAILED
} myc__svc_state;

/* Something a C facility (a WebSocket or HTTP client) holds open on the
 * service's worker loop on behalf of the service.  The service stops
 * every attached resource when it stops, so that no handle or callback
 * outlives it and a stopping worker's loop can end. */
typedef struct myc__resource {
  struct myc__resource *next, *prev;
  void (*stop)(struct myc__resource *r); /* detached before the call */
} myc__resource;

typedef struct myc_service myc_service;
struct myc_service {
  myc_svc_view view; /* first: Lua casts the service pointer to it */
  myc_engine *eng;
  struct myc__worker *worker;
  uint32_t index;
  char *name;
  uint8_t name_len;
  char *module;

  lua_State *L;
  int ref_dispatch, ref_timer, ref_event, ref_init, ref_stop, ref_msgh;
  myc__lua_budget mem;

  myc_message_cb cb; /* C services */
  void *cb_ud;

  myc__mailbox mb;
  myc_buf *batch[MYC_BATCH];
  uint32_t batch_pos; /* next message of 'batch' to hand to the service */

  /* Trace context of the current activation when no message is being
   * handled (init, a timer, stop): a fresh root each time. */
  uint8_t act_trace[16];
  uint8_t act_span[8];

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
 * message goes to "$dead" and the rest of the batch stays queued. */
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

/* Attaches 'r' to 's' (worker thread): 's' will call r->stop when it
 * stops, unless 'r' was detached first.  Cannot fail. */
void myc__service_attach(myc_service *s, myc__resource *r);
/* Detaches 'r' if it is attached.  Cannot fail. */
void myc__service_detach(myc_service *s, myc__resource *r);

/* Nonzero when messages wait (queued or the rest of a batch). */
static inline int myc__service_pending(const myc_service *s) {
  return s->batch_pos < s->view.batch_n ||
         atomic_load_explicit(&s->mb.len, memory_order_relaxed) > 0;
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

#endif
