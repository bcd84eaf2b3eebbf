/* reconnect.h -- the connection lifecycle shared by the Redis and the
 * PostgreSQL clients: look the host up (uv_getaddrinfo), attempt a
 * connection within a deadline, up, lost with a reason, retry after a
 * backoff with jitter, close gracefully, and free the client once every
 * handle it started is closed.
 *
 * A client embeds a myc__reconnect and supplies what differs through
 * myc__reconnect_ops: how its library connects, what its requests
 * become when a connection ends, which deadline its oldest request has.
 * One timer serves every deadline, the retries and the notifications;
 * lifecycle events (DOWN, UP, CLOSED) are delivered from it, never from
 * inside a call from the owner: the Lua side calls in through the FFI,
 * which must never re-enter the Lua state.
 *
 * Every failure text names the server: "KIND HOST:PORT: reason".
 */
#ifndef MYC_NET_RECONNECT_H
#define MYC_NET_RECONNECT_H

#include "base/rng.h"
#include "runtime/service.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum {
  MYC__RC_DOWN,       /* between attempts (or closed before CLOSED) */
  MYC__RC_RESOLVING,  /* looking the host name up */
  MYC__RC_CONNECTING, /* the library's connection is being set up */
  MYC__RC_HANDSHAKE,  /* connected; the client's own requests go first */
  MYC__RC_UP,
  MYC__RC_CLOSED
};

/* The lifecycle events, with the numbers both clients' events use. */
enum { MYC__RC_EV_UP = 2, MYC__RC_EV_DOWN = 3, MYC__RC_EV_CLOSED = 4 };

/* Notifications pending for the timer; the client may add its own bits
 * from MYC__RC_N_CLIENT up (myc__reconnect_ops.notified). */
enum {
  MYC__RC_N_DOWN = 1,
  MYC__RC_N_UP = 2,
  MYC__RC_N_CLOSED = 4,
  MYC__RC_N_CLIENT = 8
};

/* A timer firing this late means the loop was not watching (handlers ran
 * long, or the process waited for a CPU). */
#define MYC__RC_STALL_MS 100

typedef struct myc__reconnect myc__reconnect;

typedef struct {
  /* Starts the library's connection to 'ip', or to the configured
   * address when 'ip' is NULL (no lookup).  The state is CONNECTING; a
   * failure sets the reason (myc__reconnect_lost) and calls
   * myc__reconnect_ended. */
  void (*connect)(myc__reconnect *r, const char *ip);
  /* Nonzero while the library holds a connection or an attempt: the
   * client is not closed, nor freed, before it lets go. */
  int (*busy)(const myc__reconnect *r);
  /* The connection or attempt is over (the reason is set, the state
   * DOWN): let go of what the library still holds, fail every request
   * with the reason.  The owner may release the client meanwhile. */
  void (*ended)(myc__reconnect *r);
  /* Ends the current connection or attempt on the client's own
   * initiative (a timeout), the reason set: at least myc__reconnect_ended. */
  void (*drop)(myc__reconnect *r);
  /* The deadline of the oldest request on the wire (HANDSHAKE, UP), or
   * UINT64_MAX when none. */
  uint64_t (*head_deadline)(const myc__reconnect *r);
  /* That deadline passed at 'now': spare the request or drop. */
  void (*head_expired)(myc__reconnect *r, uint64_t now);
  /* The client's own notification bits 'bits' (NULL: it has none).
   * Returns nonzero when the client went away or the connection ended. */
  int (*notified)(myc__reconnect *r, unsigned bits);
  /* Delivers MYC__RC_EV_DOWN, _UP or _CLOSED to the owner. */
  void (*event)(myc__reconnect *r, int code);
  /* The owner let go (myc__reconnect_release): drop every request
   * without an outcome and let go of the library's connection. */
  void (*release)(myc__reconnect *r);
  /* Closing and nothing pending on the connection: the library's
   * connection may go (myc__reconnect_close, CONNECTING and later). */
  void (*close)(myc__reconnect *r);
  /* Every handle is closed: frees the client. */
  void (*destroy)(myc__reconnect *r);
} myc__reconnect_ops;

struct myc__reconnect {
  const myc__reconnect_ops *ops;
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  const char *kind;        /* "redis", "postgres": the failures' prefix */
  const char *lookup_host; /* a name to look up first, or NULL */
  char server[300];        /* "host:port", named by every failure */
  uint32_t connect_timeout_ms, reconnect_min_ms, reconnect_max_ms;

  myc_service *svc; /* the service the events go to (myc__reconnect_bind) */
  uint64_t source;

  int state, closing, released, resolving, timer_closing;
  int handles; /* the client's handles being closed */
  unsigned notify;
  uint32_t attempts; /* failures since the last success */
  uint32_t retry_ms;
  uint64_t attempt_deadline, retry_at;
  int attempt_spared; /* its deadline extended once after a stall */
  uint64_t timer_due; /* when the timer was meant to fire */
  myc__rng rng;       /* reconnect jitter */

  /* Why the last connection or attempt ended: the outcome of its
   * requests and the DOWN event.  'why' points into 'lost' past the
   * "kind host:port: " prefix. */
  int lost_status;
  char lost[512];
  const char *why;
  char err[512]; /* the latest failure of any kind */
  int in_api;    /* depth of calls from the owner: no delivery then */
};

/* The options every client has, as the owner gave them: zero takes the
 * default ('connect_timeout_ms' the client's, the backoff 100 to 5000). */
typedef struct {
  uint32_t connect_timeout_ms; /* one attempt: lookup and connection */
  uint32_t reconnect_min_ms;   /* first retry after a failure */
  uint32_t reconnect_max_ms;   /* backoff doubles up to this */
} myc__reconnect_timing;

#define MYC__RC_RECONNECT_MIN_MS 100
#define MYC__RC_RECONNECT_MAX_MS 5000

/* Fills 'r' (no handle yet) with 't', zero fields defaulted (a zero
 * connect_timeout_ms takes 'default_connect_ms').  Returns 0, or
 * MYC_EINVAL with "KIND: reconnect_min_ms (N) is above ..." in 'err'.
 * The client sets 'server' and 'lookup_host' before myc__reconnect_start. */
int myc__reconnect_init(myc__reconnect *r, const myc__reconnect_ops *ops,
                        uv_loop_t *loop, const char *kind,
                        const myc__reconnect_timing *t,
                        uint32_t default_connect_ms, char *err, size_t errlen);

/* Starts the timer (unreferenced) and the first attempt.  Cannot fail:
 * past it the client is freed only through myc__reconnect_release. */
void myc__reconnect_start(myc__reconnect *r);

/* The loop's time, brought up to date: requests can be issued long after
 * the loop last woke, and deadlines count from the real now. */
uint64_t myc__reconnect_now(myc__reconnect *r);

/* Records the latest failure ("KIND HOST: " + the text, on one line) and
 * returns 'status'. */
int myc__reconnect_fail(myc__reconnect *r, int status, const char *fmt, ...);

/* Records why the current connection or attempt ends. */
void myc__reconnect_lost(myc__reconnect *r, int status, const char *fmt, ...);

/* 0 when a new request may be accepted; else the failure (ESTATE when
 * closing, ENOTCONN between attempts), recorded. */
int myc__reconnect_refuse(myc__reconnect *r);

/* Nonzero when an event may go to the owner now: not released; asserts
 * that no call from the owner is in progress. */
int myc__reconnect_deliverable(const myc__reconnect *r);

/* Points the timer at the next thing due. */
void myc__reconnect_rearm(myc__reconnect *r);

/* Nonzero when the timer fired at least MYC__RC_STALL_MS late. */
int myc__reconnect_stalled(const myc__reconnect *r, uint64_t now);

/* The connection (or its handshake) is ready: UP follows. */
void myc__reconnect_up(myc__reconnect *r);

/* The current connection or attempt is over (its reason set): requests
 * fail, then CLOSED when closing, else a retry after a backoff. */
void myc__reconnect_ended(myc__reconnect *r);

/* Closing and the library let go: CLOSED is next. */
void myc__reconnect_finish(myc__reconnect *r);

/* Closes gracefully (the owner's call).  Idempotent. */
void myc__reconnect_close(myc__reconnect *r);

/* The owner lets go: nothing is delivered any more, the client is
 * destroyed once every handle is closed.  Idempotent. */
void myc__reconnect_release(myc__reconnect *r);

/* A handle of the client starts or finishes closing. */
void myc__reconnect_handle_closing(myc__reconnect *r);
void myc__reconnect_handle_closed(myc__reconnect *r);

/* "connecting", "up", "down", "closing" or "closed". */
const char *myc__reconnect_state(const myc__reconnect *r);

/* Events go to the Lua function registered for 'source' of service 's'
 * (myc__reconnect_to_service). */
void myc__reconnect_bind(myc__reconnect *r, myc_service *s, uint64_t source);
void myc__reconnect_to_service(myc__reconnect *r, int code, const void *ev,
                               size_t size);

#endif
