/* redis_client.h -- an asynchronous Redis client on a worker's libuv loop
 * (hiredis's async API and its libuv adapter), for services (through
 * lua/mycelium/net/redis.lua and ffi/) and for C code.
 *
 * Every command accepted has exactly one outcome, a reply or a failure,
 * delivered as an event in the order the commands were issued.  Nothing
 * is delivered from inside a call into this API: the Lua side calls in
 * through the FFI, which must never re-enter the Lua state.
 */
#ifndef MYC_REDIS_CLIENT_H
#define MYC_REDIS_CLIENT_H

#include "base/alloc.h"
#include "net/redis_url.h"
#include "runtime/service.h"

#include <stdint.h>
#include <uv.h>

typedef struct myc_redis myc_redis;

/* Events (the 'code' of myc__service_event for a service's client). */
enum {
  MYC_REDIS_EV_REPLY = 1, /* a command's outcome */
  MYC_REDIS_EV_UP = 2,    /* connected (and authenticated, db selected) */
  MYC_REDIS_EV_DOWN = 3,  /* a connection or an attempt failed */
  MYC_REDIS_EV_CLOSED = 4 /* after myc__redis_close(): the last event */
};

typedef struct {
  uint64_t id;       /* REPLY: the id myc__redis_command() returned */
  int32_t status;    /* 0, or a negative code (failed command, DOWN) */
  int32_t retry_ms;  /* DOWN: the next attempt starts in this many ms */
  const void *reply; /* REPLY with status 0: see myc__redis_reply_view() */
  const char *error; /* status < 0: the reason, naming the server */
} myc_redis_event;

/* Reply types (the same numbers as hiredis's RESP2 types). */
enum {
  MYC_REDIS_STRING = 1,
  MYC_REDIS_ARRAY = 2,
  MYC_REDIS_INTEGER = 3,
  MYC_REDIS_NIL = 4,
  MYC_REDIS_STATUS = 5,
  MYC_REDIS_ERROR = 6
};

/* One node of a reply, valid during the event that carries it. */
typedef struct {
  int32_t type;    /* MYC_REDIS_* */
  int64_t integer; /* INTEGER */
  const char *str; /* STRING, STATUS, ERROR (binary-safe: use len) */
  size_t len;
  size_t elements; /* ARRAY: myc__redis_reply_element(r, 0..elements-1) */
} myc_redis_value;

/* Zero fields take the defaults shown. */
typedef struct {
  const char *password;        /* NULL: the URL's, if any */
  uint32_t connect_timeout_ms; /* 1000: one attempt (lookup + connect) */
  uint32_t command_timeout_ms; /* 1000: oldest reply outstanding */
  uint32_t reconnect_min_ms;   /* 100: first retry after a failure */
  uint32_t reconnect_max_ms;   /* 5000: backoff doubles up to this */
  uint32_t max_pending;        /* 65536: commands without an outcome */
} myc_redis_options;

/* Receives the client's events; 'ev' is valid during the call.  The sink
 * may issue commands, close the client, or free it on CLOSED. */
typedef void (*myc__redis_sink)(void *ud, int code, const myc_redis_event *ev);

/* Creates a client on 'loop' and starts connecting.  Must be called on
 * the loop's thread (or before it runs).  On success '*out' owns a
 * connection that reconnects until myc__redis_close() or myc__redis_free();
 * events go to 'sink'.  On failure (MYC_EINVAL: a bad URL or option,
 * MYC_ENOMEM) '*out' is NULL, the reason is in 'err' and the sink is
 * never called.  Its handles do not keep the loop alive. */
int myc__redis_new(uv_loop_t *loop, const myc__alloc *alloc, const char *url,
                   const myc_redis_options *opt, myc__redis_sink sink, void *ud,
                   myc_redis **out, char *err, size_t errlen);

/* Like myc__redis_new() on the worker of service 's', delivering events
 * to the Lua function registered for 'source' (lua/mycelium/events.lua). */
int myc__redis_open(myc_service *s, uint64_t source, const char *url,
                              const myc_redis_options *opt, myc_redis **out,
                              char *err, size_t errlen);

/* Issues a command of 'argc' binary-safe arguments (copied).  Returns its
 * id (> 0), whose outcome comes later as a REPLY event, or a negative code
 * with the reason in myc__redis_error(): UV_ENOTCONN between connection
 * attempts (commands fail fast rather than queue while the server is
 * away), MYC_ELIMIT with max_pending commands outstanding, MYC_ESTATE once
 * closing, MYC_EINVAL for no argument or a command that would change the
 * reply stream ((P)SUBSCRIBE, (P)UNSUBSCRIBE, MONITOR), MYC_ENOMEM.  While
 * an attempt is in progress commands are accepted and go out when it
 * succeeds (or fail with its error). */
int64_t myc__redis_command(myc_redis *c, int argc,
                                     const char *const *argv,
                                     const size_t *lens);

/* Closes gracefully: new commands are refused, those already sent get
 * their replies (within the command timeout), then the connection closes
 * and a CLOSED event follows.  Commands not sent yet (waiting for an
 * address) fail.  Idempotent. */
void myc__redis_close(myc_redis *c);

/* A reply may hold at most this many bytes not yet parsed (one bulk
 * string and its framing, in practice); past it the connection is dropped
 * with MYC_ELIMIT, since a hostile server could otherwise fill the
 * engine's memory before the command timeout.  Redis's own bulk limit
 * (proto-max-bulk-len) is 512 MiB. */
#define MYC_REDIS_MAX_REPLY ((size_t)512 << 20)

/* Lowers that bound for client 'c' (tests).  Cannot fail. */
void myc__redis_set_max_reply(myc_redis *c, size_t bytes);

/* The owner lets go of 'c': no event is delivered any more, outstanding
 * commands are abandoned, and the memory is released once libuv has
 * closed the handles (the next turn of the loop).  Call it on CLOSED, or
 * at any time to drop the client at once.  After myc__redis_close(), what
 * was issued on a connected client is still written to the server (not
 * awaited) before the connection goes.  'c' must not be used after. */
void myc__redis_free(myc_redis *c);

/* "connecting", "up", "down", "closing" or "closed". */
const char *myc__redis_state(const myc_redis *c);

/* "host:port" as given in the URL. */
const char *myc__redis_server(const myc_redis *c);

/* The message of the latest failure (empty when none); it names the
 * server.  Valid until the next call on 'c'. */
const char *myc__redis_error(const myc_redis *c);

/* Commands issued whose outcome has not been delivered yet. */
uint32_t myc__redis_pending(const myc_redis *c);

/* Describes reply node 'r' in 'out'. */
void myc__redis_reply_view(const void *r, myc_redis_value *out);

/* Element 'i' of array node 'r' (i < elements), or NULL. */
const void *myc__redis_reply_element(const void *r, size_t i);

#endif
