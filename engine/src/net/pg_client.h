/* pg_client.h -- an asynchronous PostgreSQL client on a worker's libuv
 * loop (libpq's non-blocking API: PQconnectStartParams/PQconnectPoll,
 * PQsendPrepare/PQsendQueryPrepared), for services (through
 * lua/mycelium/net/postgres.lua and ffi/) and for C code.
 *
 * Queries run one at a time on one connection, in the order issued; each
 * distinct SQL text is prepared once per connection (a statement named
 * after it) and then executed with its parameters.  Every query accepted
 * has exactly one outcome, a result or a failure, delivered as an event.
 * Nothing is delivered from inside a call into this API: the Lua side
 * calls in through the FFI, which must never re-enter the Lua state.
 */
#ifndef MYC_PG_CLIENT_H
#define MYC_PG_CLIENT_H

#include "base/alloc.h"
#include "runtime/service.h"

#include <stdint.h>
#include <uv.h>

typedef struct myc_pg myc_pg;

/* Events (the 'code' of myc__service_event for a service's client). */
enum {
  MYC_PG_EV_RESULT = 1, /* a query's outcome */
  MYC_PG_EV_UP = 2,     /* connected */
  MYC_PG_EV_DOWN = 3,   /* a connection or an attempt failed */
  MYC_PG_EV_CLOSED = 4  /* after myc__pg_close(): the last event */
};

typedef struct {
  uint64_t id;          /* RESULT: the id myc__pg_query() returned */
  int32_t status;       /* 0, or a negative code (failed query, DOWN) */
  int32_t retry_ms;     /* DOWN: the next attempt starts in this many ms */
  const void *result;   /* RESULT with status 0: myc__pg_result_*() */
  const char *error;    /* status < 0: the reason, naming the server */
  const char *sqlstate; /* the server's SQLSTATE ("42P01"...) or "" */
} myc_pg_event;

/* Zero fields take the defaults shown. */
typedef struct {
  uint32_t connect_timeout_ms; /* 2000: one attempt (lookup + startup) */
  uint32_t query_timeout_ms;   /* 2000: the query in flight */
  uint32_t reconnect_min_ms;   /* 100: first retry after a failure */
  uint32_t reconnect_max_ms;   /* 5000: backoff doubles up to this */
  uint32_t max_pending;        /* 65536: queries without an outcome */
} myc_pg_options;

typedef void (*myc__pg_sink)(void *ud, int code, const myc_pg_event *ev);

/* Creates a client on 'loop' and starts connecting to 'url' (a libpq
 * connection URI "postgresql://..." or "key=value" string).  On success
 * '*out' owns a connection that reconnects until myc__pg_close() or
 * myc__pg_free().  On failure (MYC_EINVAL: a bad URL or option,
 * MYC_ENOMEM) '*out' is NULL, the reason is in 'err', the sink is never
 * called.  Its handles do not keep the loop alive.  A host name is looked
 * up with uv_getaddrinfo (libpq's own lookup would block the loop), an
 * IPv4 address preferred. */
int myc__pg_new(uv_loop_t *loop, const myc__alloc *alloc, const char *url,
                const myc_pg_options *opt, myc__pg_sink sink, void *ud,
                myc_pg **out, char *err, size_t errlen);

/* Like myc__pg_new() on the worker of service 's', delivering events to
 * the Lua function registered for 'source' (lua/mycelium/events.lua). */
int myc__pg_open(myc_service *s, uint64_t source, const char *url,
                 const myc_pg_options *opt, myc_pg **out, char *err,
                 size_t errlen);

/* Issues query 'sql' with 'nparams' text parameters (values[i] NULL for
 * SQL NULL; copied).  Returns its id (> 0) or a negative code with the
 * reason in myc__pg_error(): UV_ENOTCONN between attempts (queries fail
 * fast rather than queue while the server is away), MYC_ELIMIT with
 * max_pending outstanding, MYC_ESTATE once closing, MYC_EINVAL for an
 * empty query or more than 65535 parameters, MYC_ENOMEM.  While an
 * attempt is in progress queries are accepted and run once it succeeds
 * (or fail with its error). */
int64_t myc__pg_query(myc_pg *c, const char *sql, int nparams,
                      const char *const *values, const size_t *lens);

/* Closes gracefully: new queries are refused, those accepted still run
 * (within the query timeout), then the connection closes and CLOSED
 * follows.  Queries still waiting for the host name's lookup fail
 * (MYC_ESTATE).  Idempotent. */
void myc__pg_close(myc_pg *c);

/* The owner lets go of 'c': no event is delivered any more, outstanding
 * queries are abandoned, memory goes once libuv has closed the handles. */
void myc__pg_free(myc_pg *c);

/* "connecting", "up", "down", "closing" or "closed". */
const char *myc__pg_state(const myc_pg *c);
/* "host:port" (or the socket directory) of the URL. */
const char *myc__pg_server(const myc_pg *c);
/* The latest failure (empty when none), naming the server. */
const char *myc__pg_error(const myc_pg *c);
/* Queries issued whose outcome has not been delivered yet. */
uint32_t myc__pg_pending(const myc_pg *c);

/* A result's shape: rows, columns, and rows affected by a command
 * (INSERT/UPDATE/DELETE; -1 when the command reports none). */
typedef struct {
  int32_t rows, cols;
  int64_t affected;
} myc_pg_result_info;

void myc__pg_result_info(const void *r, myc_pg_result_info *out);
/* Column 'col': its name and the type OID (PostgreSQL's pg_type). */
const char *myc__pg_result_name(const void *r, int col);
uint32_t myc__pg_result_type(const void *r, int col);
/* The text of a value, NULL for SQL NULL; '*len' its length. */
const char *myc__pg_result_value(const void *r, int row, int col,
                                 size_t *len);

#endif
