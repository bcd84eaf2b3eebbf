/* pg_client.c -- asynchronous PostgreSQL client (see pg_client.h): one
 * libpq connection at a time, watched with a uv_poll_t on its socket,
 * plus one timer for deadlines, retries and notifications.
 *
 * Queries wait in a FIFO; only its head is ever on the wire (stage
 * PREPARING or EXECUTING), so a result always belongs to the head.
 */
#include "net/pg_client.h"

#include "base/backoff.h"
#include "runtime/engine.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define DEFAULT_CONNECT_MS 2000
#define DEFAULT_QUERY_MS 2000
#define DEFAULT_RECONNECT_MIN_MS 100
#define DEFAULT_RECONNECT_MAX_MS 5000
#define DEFAULT_MAX_PENDING 65536
/* Statements prepared per connection; past it queries go unprepared
 * (a service building SQL text on the fly must not grow the server). */
#define MAX_STATEMENTS 256
/* A timer firing this late means the loop was not watching. */
#define STALL_MS 100

enum { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_UP, ST_CLOSED };
enum { Q_WAITING, Q_PREPARING, Q_EXECUTING };
/* Notifications wait for the timer: never inside a call from the owner. */
enum { N_DOWN = 1, N_UP = 2, N_CLOSED = 4, N_SEND = 8 };

typedef struct query {
  struct query *next;
  uint64_t id, deadline;
  int stage, stmt, spared;
  int nparams;
  char *sql;
  char **values; /* NUL-terminated copies; NULL for SQL NULL */
  PGresult *res; /* the first result of the stage */
} query;

typedef struct watch {
  uv_poll_t h;
  struct myc_pg *c;
  int fd;
} watch;

struct myc_pg {
  const myc__alloc *alloc;
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_getaddrinfo_t gai;
  myc__pg_sink sink; /* NULL once released */
  void *sink_ud;
  myc_service *svc;
  uint64_t source;

  /* The URL's keywords and values (NULL-terminated), with a free slot
   * for the hostaddr found by the lookup. */
  char **keys, **vals;
  int nkeys, addr_slot;
  char *lookup_host; /* a host name to resolve first, or NULL */
  char server[300];
  myc_pg_options opt;

  PGconn *conn;
  watch *w;
  int handles; /* watches being closed */
  int state, closing, released, resolving, timer_closing;
  unsigned notify;
  uint32_t attempts, retry_ms;
  uint64_t attempt_deadline, retry_at, timer_due;
  myc__rng rng;

  char *stmts[MAX_STATEMENTS]; /* SQL of statement "myc_<i>" */
  int nstmts;

  query *qhead, *qtail;
  uint32_t pending;
  uint64_t next_id;

  int lost_status;
  char lost[512], lost_state[6];
  char err[512];
  int in_api;
};

static void start_attempt(myc_pg *c);
static void on_timer(uv_timer_t *h);
static void on_poll(uv_poll_t *h, int status, int events);
static void release_if_done(myc_pg *c);

/* ---- helpers ------------------------------------------------------------- */

static uint64_t now_ms(myc_pg *c) {
  uv_update_time(c->loop);
  return uv_now(c->loop);
}

static char *dup_n(const myc__alloc *a, const char *s, size_t n) {
  char *p = myc__malloc(a, n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

static void free_str(const myc__alloc *a, char *s) {
  if (s != NULL)
    myc__free(a, s, strlen(s) + 1);
}

static int vset(char *dst, size_t cap, const myc_pg *c, const char *fmt,
                va_list ap) {
  int n = snprintf(dst, cap, "postgres %s: ", c->server);
  char *p;
  vsnprintf(dst + n, cap - (size_t)n, fmt, ap);
  /* libpq's messages end in a newline and may span lines. */
  for (p = dst; *p; p++)
    if (*p == '\n' || *p == '\t')
      *p = ' ';
  while (p > dst && p[-1] == ' ')
    *--p = 0;
  return n;
}

static int fail(myc_pg *c, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vset(c->err, sizeof c->err, c, fmt, ap);
  va_end(ap);
  return status;
}

static void set_lost(myc_pg *c, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vset(c->lost, sizeof c->lost, c, fmt, ap);
  va_end(ap);
  c->lost_status = status;
  c->lost_state[0] = 0;
  memcpy(c->err, c->lost, sizeof c->err);
}

static void deliver(myc_pg *c, int code, myc_pg_event *ev) {
  if (c->sink == NULL)
    return;
  assert(c->in_api == 0); /* never re-enter the owner's Lua state */
  c->sink(c->sink_ud, code, ev);
}

static void free_query(myc_pg *c, query *q) {
  int i;
  if (q->res != NULL)
    PQclear(q->res);
  for (i = 0; i < q->nparams; i++)
    free_str(c->alloc, q->values[i]);
  if (q->values != NULL)
    myc__free(c->alloc, q->values, (size_t)q->nparams * sizeof *q->values);
  free_str(c->alloc, q->sql);
  myc__free(c->alloc, q, sizeof *q);
}

static query *pop(myc_pg *c) {
  query *q = c->qhead;
  c->qhead = q->next;
  if (c->qhead == NULL)
    c->qtail = NULL;
  c->pending--;
  return q;
}

/* Delivers the outcome of the head query and frees it.  Returns nonzero
 * when the owner released the client meanwhile. */
static int complete(myc_pg *c, int status, const char *error,
                    const char *sqlstate) {
  query *q = pop(c);
  myc_pg_event ev;
  memset(&ev, 0, sizeof ev);
  ev.id = q->id;
  ev.status = status;
  ev.result = status == 0 ? q->res : NULL;
  ev.error = error ? error : "";
  ev.sqlstate = sqlstate ? sqlstate : "";
  deliver(c, MYC_PG_EV_RESULT, &ev);
  free_query(c, q);
  return c->released;
}

/* ---- timer ---------------------------------------------------------------- */

static void rearm(myc_pg *c) {
  uint64_t now, at = UINT64_MAX;
  if (c->released)
    return;
  if (c->notify)
    at = 0;
  else if (c->state == ST_DOWN && !c->closing)
    at = c->retry_at;
  else if (c->state == ST_RESOLVING || c->state == ST_CONNECTING)
    at = c->attempt_deadline;
  else if (c->state == ST_UP && c->qhead && c->qhead->stage != Q_WAITING)
    at = c->qhead->deadline;
  if (at == UINT64_MAX) {
    uv_timer_stop(&c->timer);
    return;
  }
  now = now_ms(c);
  c->timer_due = at > now ? at : now;
  uv_timer_start(&c->timer, on_timer, at > now ? at - now : 0, 0);
}

static uint32_t backoff(myc_pg *c) {
  myc__backoff b;
  b.initial_ms = c->opt.reconnect_min_ms;
  b.max_ms = c->opt.reconnect_max_ms;
  b.multiplier = 2;
  b.jitter = 0.2;
  return (uint32_t)myc__backoff_ms(&b, c->attempts++, &c->rng);
}

static void finish(myc_pg *c) {
  if (c->state == ST_CLOSED || c->conn != NULL || c->resolving)
    return;
  c->state = ST_CLOSED;
  c->notify |= N_CLOSED;
  rearm(c);
}

/* ---- the connection -------------------------------------------------------- */

static void on_watch_closed(uv_handle_t *h) {
  watch *w = h->data;
  myc_pg *c = w->c;
  myc__free(c->alloc, w, sizeof *w);
  c->handles--;
  release_if_done(c);
}

/* Must run before libpq closes the socket it watches. */
static void close_watch(myc_pg *c) {
  watch *w = c->w;
  if (w == NULL)
    return;
  c->w = NULL;
  uv_poll_stop(&w->h);
  c->handles++;
  uv_close((uv_handle_t *)&w->h, on_watch_closed);
}

/* Watches the connection's socket for 'events' (libpq may switch sockets
 * while connecting).  Returns 0 or a libuv error. */
static int watch_for(myc_pg *c, int events) {
  int fd = PQsocket(c->conn), rc;
  if (c->w != NULL && c->w->fd != fd)
    close_watch(c);
  if (c->w == NULL) {
    watch *w = myc__malloc(c->alloc, sizeof *w);
    if (w == NULL)
      return MYC_ENOMEM;
    rc = uv_poll_init(c->loop, &w->h, fd);
    if (rc != 0) {
      myc__free(c->alloc, w, sizeof *w);
      return rc;
    }
    uv_unref((uv_handle_t *)&w->h);
    w->h.data = w;
    w->c = c;
    w->fd = fd;
    c->w = w;
  }
  return uv_poll_start(&c->w->h, events, on_poll);
}

static void forget_statements(myc_pg *c) {
  int i;
  for (i = 0; i < c->nstmts; i++) {
    free_str(c->alloc, c->stmts[i]);
    c->stmts[i] = NULL;
  }
  c->nstmts = 0;
}

/* Closes the connection or attempt, if any, without a word to anyone. */
static void shut(myc_pg *c) {
  close_watch(c);
  if (c->conn != NULL) {
    PQfinish(c->conn);
    c->conn = NULL;
  }
  forget_statements(c);
}

/* The connection or attempt is over ('lost' says why): every query fails
 * with that reason, a retry is scheduled.  Callbacks only. */
static void conn_ended(myc_pg *c) {
  shut(c);
  c->state = ST_DOWN;
  while (c->qhead != NULL)
    if (complete(c, c->lost_status, c->lost, c->lost_state))
      return;
  if (c->closing) {
    finish(c);
    return;
  }
  c->retry_ms = backoff(c);
  c->retry_at = now_ms(c) + c->retry_ms;
  c->notify |= N_DOWN;
  rearm(c);
}

static void lost_conn(myc_pg *c, const char *what) {
  set_lost(c, UV_ECONNRESET, "%s: %s", what,
           c->conn ? PQerrorMessage(c->conn) : "closed");
  conn_ended(c);
}

static int find_statement(myc_pg *c, const char *sql) {
  int i;
  for (i = 0; i < c->nstmts; i++)
    if (strcmp(c->stmts[i], sql) == 0)
      return i;
  return -1;
}

/* Puts the head query on the wire if it is not yet.  Returns 0, or -1
 * when the connection was lost (and the queries failed). */
static int send_head(myc_pg *c) {
  query *q = c->qhead;
  char name[32];
  int ok, i, flush;
  if (q == NULL || q->stage != Q_WAITING)
    return 0;
  i = find_statement(c, q->sql);
  q->deadline = now_ms(c) + c->opt.query_timeout_ms;
  if (i >= 0) {
    snprintf(name, sizeof name, "myc_%d", i);
    ok = PQsendQueryPrepared(c->conn, name, q->nparams,
                             (const char *const *)q->values, NULL, NULL, 0);
    q->stage = Q_EXECUTING;
  } else if (c->nstmts < MAX_STATEMENTS) {
    snprintf(name, sizeof name, "myc_%d", c->nstmts);
    ok = PQsendPrepare(c->conn, name, q->sql, q->nparams, NULL);
    q->stmt = c->nstmts;
    q->stage = Q_PREPARING;
  } else {
    ok = PQsendQueryParams(c->conn, q->sql, q->nparams, NULL,
                           (const char *const *)q->values, NULL, NULL, 0);
    q->stage = Q_EXECUTING;
  }
  if (!ok) {
    lost_conn(c, "cannot send the query");
    return -1;
  }
  flush = PQflush(c->conn);
  if (flush < 0) {
    lost_conn(c, "cannot send the query");
    return -1;
  }
  if (watch_for(c, UV_READABLE | (flush ? UV_WRITABLE : 0)) != 0) {
    set_lost(c, UV_EIO, "cannot watch the socket");
    conn_ended(c);
    return -1;
  }
  rearm(c);
  return 0;
}

/* One stage of the head query is over (libpq returned its last result).
 * Returns nonzero when the client went away or the connection was lost. */
static int stage_done(myc_pg *c) {
  query *q = c->qhead;
  PGresult *r = q->res;
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ||
      st == PGRES_BAD_RESPONSE) {
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[512];
    snprintf(msg, sizeof msg, "%s",
             r ? PQresultErrorMessage(r) : PQerrorMessage(c->conn));
    fail(c, MYC_EINVAL, "%s", msg);
    return complete(c, MYC_EINVAL, c->err, code);
  }
  if (q->stage == Q_PREPARING) {
    char *sql = dup_n(c->alloc, q->sql, strlen(q->sql));
    if (sql == NULL) {
      fail(c, MYC_ENOMEM, "out of memory");
      return complete(c, MYC_ENOMEM, c->err, NULL);
    }
    /* The name is taken on the server now, whatever happens next. */
    c->stmts[c->nstmts++] = sql;
    PQclear(q->res);
    q->res = NULL;
    q->stage = Q_WAITING;
    return send_head(c) != 0;
  }
  return complete(c, 0, NULL, NULL);
}

/* Reads what the server sent and completes what it finished.  Returns
 * nonzero when the client went away or the connection was lost. */
static int read_results(myc_pg *c) {
  PGnotify *n;
  if (!PQconsumeInput(c->conn) || PQstatus(c->conn) == CONNECTION_BAD) {
    lost_conn(c, "connection lost");
    return 1;
  }
  while ((n = PQnotifies(c->conn)) != NULL)
    PQfreemem(n);
  while (c->qhead != NULL && c->qhead->stage != Q_WAITING &&
         !PQisBusy(c->conn)) {
    PGresult *r = PQgetResult(c->conn);
    if (r == NULL) {
      if (stage_done(c))
        return 1;
      continue;
    }
    switch (PQresultStatus(r)) {
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
      PQclear(r);
      set_lost(c, UV_EPROTO, "COPY is not supported; connection dropped");
      conn_ended(c);
      return 1;
    default:
      break;
    }
    if (c->qhead->res == NULL)
      c->qhead->res = r;
    else
      PQclear(r);
  }
  if (c->qhead == NULL && c->closing) {
    shut(c);
    finish(c);
    return 1;
  }
  if (c->qhead != NULL && c->qhead->stage == Q_WAITING)
    return send_head(c) != 0;
  rearm(c);
  return 0;
}

static void up_reached(myc_pg *c) {
  c->state = ST_UP;
  c->attempts = 0;
  c->notify |= N_UP;
  if (watch_for(c, UV_READABLE) != 0) {
    set_lost(c, UV_EIO, "cannot watch the socket");
    conn_ended(c);
    return;
  }
  if (c->qhead == NULL && c->closing) {
    shut(c);
    finish(c);
    return;
  }
  if (send_head(c) == 0)
    rearm(c);
}

/* Advances the connection handshake (PQconnectPoll). */
static void connect_step(myc_pg *c) {
  switch (PQconnectPoll(c->conn)) {
  case PGRES_POLLING_OK:
    up_reached(c);
    return;
  case PGRES_POLLING_FAILED:
    set_lost(c, UV_ECONNREFUSED, "cannot connect: %s",
             PQerrorMessage(c->conn));
    conn_ended(c);
    return;
  case PGRES_POLLING_READING:
    if (watch_for(c, UV_READABLE) != 0)
      break;
    return;
  default:
    if (watch_for(c, UV_WRITABLE) != 0)
      break;
    return;
  }
  set_lost(c, UV_EIO, "cannot watch the socket");
  conn_ended(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  watch *w = h->data;
  myc_pg *c = w->c;
  if (c->w != w || c->conn == NULL)
    return;
  if (c->state == ST_CONNECTING) {
    connect_step(c);
    return;
  }
  if (status < 0) {
    set_lost(c, status, "connection lost: %s", uv_strerror(status));
    conn_ended(c);
    return;
  }
  if (events & UV_WRITABLE) {
    int flush = PQflush(c->conn);
    if (flush < 0) {
      lost_conn(c, "cannot send the query");
      return;
    }
    if (flush == 0 && watch_for(c, UV_READABLE) != 0) {
      set_lost(c, UV_EIO, "cannot watch the socket");
      conn_ended(c);
      return;
    }
  }
  /* Read even without READABLE: a flush may have read input too. */
  (void)read_results(c);
}

static void notice_ignored(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

static void connect_to(myc_pg *c, const char *ip) {
  if (ip != NULL)
    c->vals[c->addr_slot] = (char *)ip;
  c->conn = PQconnectStartParams((const char *const *)c->keys,
                                 (const char *const *)c->vals, 0);
  if (ip != NULL)
    c->vals[c->addr_slot] = NULL;
  c->state = ST_CONNECTING;
  if (c->conn == NULL) {
    set_lost(c, MYC_ENOMEM, "cannot connect: out of memory");
    conn_ended(c);
    return;
  }
  PQsetNoticeProcessor(c->conn, notice_ignored, NULL);
  if (PQstatus(c->conn) == CONNECTION_BAD ||
      PQsetnonblocking(c->conn, 1) != 0) {
    set_lost(c, UV_ECONNREFUSED, "cannot connect: %s",
             PQerrorMessage(c->conn));
    conn_ended(c);
    return;
  }
  if (watch_for(c, UV_WRITABLE) != 0) {
    set_lost(c, UV_EIO, "cannot watch the socket");
    conn_ended(c);
    return;
  }
  rearm(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  myc_pg *c = req->data;
  char ip[64] = "";
  c->resolving = 0;
  if (status == 0 && res != NULL) {
    if (res->ai_family == AF_INET6)
      uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    else
      uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
  }
  uv_freeaddrinfo(res);
  if (c->released) {
    release_if_done(c);
    return;
  }
  if (c->state != ST_RESOLVING)
    return; /* timed out meanwhile: conn_ended ran */
  if (status != 0) {
    set_lost(c, status, "cannot resolve %s: %s", c->lookup_host,
             uv_strerror(status));
    conn_ended(c);
    return;
  }
  connect_to(c, ip);
}

static void start_attempt(myc_pg *c) {
  if (c->resolving) {
    /* The lookup of an attempt that timed out has not returned yet. */
    c->retry_at = now_ms(c) + 10;
    rearm(c);
    return;
  }
  c->attempt_deadline = now_ms(c) + c->opt.connect_timeout_ms;
  if (c->lookup_host != NULL) {
    struct addrinfo hints;
    int rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    c->state = ST_RESOLVING;
    rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->lookup_host, NULL,
                        &hints);
    if (rc != 0) {
      set_lost(c, rc, "cannot resolve %s: %s", c->lookup_host,
               uv_strerror(rc));
      conn_ended(c);
      return;
    }
    c->resolving = 1;
    rearm(c);
    return;
  }
  connect_to(c, NULL);
}

static void on_timer(uv_timer_t *h) {
  myc_pg *c = h->data;
  uint64_t now;
  unsigned n = c->notify;
  myc_pg_event ev;
  c->notify = 0;
  memset(&ev, 0, sizeof ev);
  ev.error = "";
  ev.sqlstate = "";
  if (n & N_DOWN) {
    myc_pg_event d = ev;
    d.status = c->lost_status;
    d.retry_ms = (int32_t)c->retry_ms;
    d.error = c->lost;
    deliver(c, MYC_PG_EV_DOWN, &d);
  }
  if ((n & N_UP) && !c->released && c->state == ST_UP)
    deliver(c, MYC_PG_EV_UP, &ev);
  if ((n & N_CLOSED) && !c->released)
    deliver(c, MYC_PG_EV_CLOSED, &ev);
  if (c->released)
    return;
  if ((n & N_SEND) && c->state == ST_UP && send_head(c) != 0)
    return;
  now = now_ms(c);
  switch (c->state) {
  case ST_DOWN:
    if (!c->closing && now >= c->retry_at)
      start_attempt(c);
    break;
  case ST_RESOLVING:
  case ST_CONNECTING:
    if (now >= c->attempt_deadline) {
      if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai);
      set_lost(c, UV_ETIMEDOUT, "cannot connect: timed out after %u ms",
               c->opt.connect_timeout_ms);
      conn_ended(c);
    }
    break;
  case ST_UP:
    if (c->qhead && c->qhead->stage != Q_WAITING &&
        c->qhead->deadline <= now) {
      query *q = c->qhead;
      /* After a stall the result may be waiting in the socket: read it
       * first, and give what is still out one more full timeout. */
      if (now - c->timer_due >= STALL_MS && !q->spared) {
        if (read_results(c))
          return;
        if (c->qhead == q) {
          q->spared = 1;
          q->deadline = now + c->opt.query_timeout_ms;
        }
        break;
      }
      /* The server still owes this result: a later one could not be
       * told apart, so the connection goes (cancelling would block). */
      set_lost(c, UV_ETIMEDOUT, "no result within %u ms; connection dropped",
               c->opt.query_timeout_ms);
      conn_ended(c);
    }
    break;
  }
  if (!c->released)
    rearm(c);
}

/* ---- public API ------------------------------------------------------------ */

static int set_options(myc_pg *c, const myc_pg_options *o, char *err,
                       size_t errlen) {
  myc_pg_options d = {DEFAULT_CONNECT_MS, DEFAULT_QUERY_MS,
                      DEFAULT_RECONNECT_MIN_MS, DEFAULT_RECONNECT_MAX_MS,
                      DEFAULT_MAX_PENDING};
  if (o != NULL) {
    if (o->connect_timeout_ms)
      d.connect_timeout_ms = o->connect_timeout_ms;
    if (o->query_timeout_ms)
      d.query_timeout_ms = o->query_timeout_ms;
    if (o->reconnect_min_ms)
      d.reconnect_min_ms = o->reconnect_min_ms;
    if (o->reconnect_max_ms)
      d.reconnect_max_ms = o->reconnect_max_ms;
    if (o->max_pending)
      d.max_pending = o->max_pending;
  }
  if (d.reconnect_min_ms > d.reconnect_max_ms) {
    snprintf(err, errlen,
             "postgres: reconnect_min_ms (%u) is above reconnect_max_ms (%u)",
             d.reconnect_min_ms, d.reconnect_max_ms);
    return MYC_EINVAL;
  }
  c->opt = d;
  return 0;
}

static void free_params(myc_pg *c) {
  int i;
  if (c->keys == NULL)
    return;
  for (i = 0; i < c->nkeys; i++) {
    free_str(c->alloc, c->keys[i]);
    free_str(c->alloc, c->vals[i]);
  }
  myc__free(c->alloc, c->keys, (size_t)(c->nkeys + 3) * sizeof *c->keys);
  myc__free(c->alloc, c->vals, (size_t)(c->nkeys + 3) * sizeof *c->vals);
  free_str(c->alloc, c->lookup_host);
}

static int is_address(const char *h) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, h, buf) == 0 ||
         uv_inet_pton(AF_INET6, h, buf) == 0;
}

/* Parses 'url' with libpq (no I/O) into keys/vals.  Keeps libpq from
 * anything that could block the loop: a host name is looked up by libuv
 * first, and GSSAPI encryption (Kerberos calls) is off unless asked for. */
static int parse_url(myc_pg *c, const char *url, char *err, size_t errlen) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(url, &perr), *o;
  const char *host = NULL, *port = NULL, *hostaddr = NULL;
  int n = 0, i = 0, gss = 0;
  if (opts == NULL) {
    snprintf(err, errlen, "postgres: bad URL '%s': %s", url,
             perr ? perr : "out of memory");
    if (perr) {
      char *p = err + strlen(err);
      while (p > err && (p[-1] == '\n' || p[-1] == ' '))
        *--p = 0;
      PQfreemem(perr);
    }
    return MYC_EINVAL;
  }
  for (o = opts; o->keyword; o++)
    if (o->val && *o->val)
      n++;
  c->keys = myc__calloc(c->alloc, (size_t)(n + 3) * sizeof *c->keys);
  c->vals = myc__calloc(c->alloc, (size_t)(n + 3) * sizeof *c->vals);
  if (c->keys == NULL || c->vals == NULL)
    goto nomem;
  for (o = opts; o->keyword; o++) {
    if (!o->val || !*o->val)
      continue;
    c->keys[i] = dup_n(c->alloc, o->keyword, strlen(o->keyword));
    c->vals[i] = dup_n(c->alloc, o->val, strlen(o->val));
    c->nkeys = ++i;
    if (!c->keys[i - 1] || !c->vals[i - 1])
      goto nomem;
    if (strcmp(o->keyword, "host") == 0)
      host = o->val;
    else if (strcmp(o->keyword, "port") == 0)
      port = o->val;
    else if (strcmp(o->keyword, "hostaddr") == 0)
      hostaddr = o->val;
    else if (strcmp(o->keyword, "gssencmode") == 0)
      gss = 1;
  }
  if (!gss) {
    c->keys[i] = dup_n(c->alloc, "gssencmode", 10);
    c->vals[i] = dup_n(c->alloc, "disable", 7);
    c->nkeys = ++i;
    if (!c->keys[i - 1] || !c->vals[i - 1])
      goto nomem;
  }
  if (host && strchr(host, ',')) {
    snprintf(err, errlen,
             "postgres: bad URL '%s': one host only (this client does not "
             "fail over between hosts)", url);
    PQconninfoFree(opts);
    return MYC_EINVAL;
  }
  if (host && *host != '/' && *host != '@' && !hostaddr && !is_address(host)) {
    c->lookup_host = dup_n(c->alloc, host, strlen(host));
    if (c->lookup_host == NULL)
      goto nomem;
    c->addr_slot = i;
    c->keys[i] = dup_n(c->alloc, "hostaddr", 8);
    if (c->keys[i] == NULL)
      goto nomem;
    /* vals[i] stays NULL except during PQconnectStartParams, and the
     * NULL key after it ends the list; nkeys counts the key to free it. */
    c->nkeys = ++i;
  }
  snprintf(c->server, sizeof c->server, "%s:%s",
           host ? host : (hostaddr ? hostaddr : "localhost"),
           port ? port : "5432");
  PQconninfoFree(opts);
  return 0;
nomem:
  PQconninfoFree(opts);
  snprintf(err, errlen, "postgres: out of memory");
  return MYC_ENOMEM;
}

int myc__pg_new(uv_loop_t *loop, const myc__alloc *alloc, const char *url,
                const myc_pg_options *opt, myc__pg_sink sink, void *ud,
                myc_pg **out, char *err, size_t errlen) {
  myc_pg *c;
  int rc;
  *out = NULL;
  if (url == NULL) {
    snprintf(err, errlen, "postgres: no URL");
    return MYC_EINVAL;
  }
  c = myc__calloc(alloc, sizeof *c);
  if (c == NULL) {
    snprintf(err, errlen, "postgres: out of memory");
    return MYC_ENOMEM;
  }
  c->alloc = alloc;
  rc = set_options(c, opt, err, errlen);
  if (rc == 0)
    rc = parse_url(c, url, err, errlen);
  if (rc != 0) {
    free_params(c);
    myc__free(alloc, c, sizeof *c);
    return rc;
  }
  c->loop = loop;
  c->sink = sink;
  c->sink_ud = ud;
  myc__rng_seed(&c->rng);
  uv_timer_init(loop, &c->timer);
  uv_unref((uv_handle_t *)&c->timer);
  c->timer.data = c;
  c->gai.data = c;
  c->in_api++;
  start_attempt(c);
  c->in_api--;
  *out = c;
  return 0;
}

static void sink_to_service(void *ud, int code, const myc_pg_event *ev) {
  myc_pg *c = ud;
  (void)myc__service_event(c->svc, c->source, code, ev, sizeof *ev);
}

int myc__pg_open(myc_service *s, uint64_t source, const char *url,
                 const myc_pg_options *opt, myc_pg **out, char *err,
                 size_t errlen) {
  int rc = myc__pg_new(&myc__service_worker(s)->loop, &s->eng->alloc, url,
                       opt, sink_to_service, NULL, out, err, errlen);
  if (rc == 0) {
    (*out)->sink_ud = *out;
    (*out)->svc = s;
    (*out)->source = source;
  }
  return rc;
}

static int64_t query_new(myc_pg *c, const char *sql, int nparams,
                         const char *const *values, const size_t *lens) {
  query *q;
  int i;
  uint64_t now;
  if (sql == NULL || *sql == 0)
    return fail(c, MYC_EINVAL, "empty query");
  if (nparams < 0 || nparams > 65535 || (nparams > 0 && values == NULL))
    return fail(c, MYC_EINVAL, "%d parameters (0 to 65535)", nparams);
  if (c->closing || c->state == ST_CLOSED)
    return fail(c, MYC_ESTATE, "client closed");
  now = now_ms(c);
  if (c->state == ST_DOWN)
    return fail(c, UV_ENOTCONN, "not connected (%s); next attempt in %u ms",
                c->lost + strlen("postgres : ") + strlen(c->server),
                (unsigned)(c->retry_at > now ? c->retry_at - now : 0));
  if (c->pending >= c->opt.max_pending)
    return fail(c, MYC_ELIMIT, "%u queries in flight already (max_pending)",
                c->opt.max_pending);
  q = myc__calloc(c->alloc, sizeof *q);
  if (q == NULL)
    return fail(c, MYC_ENOMEM, "out of memory");
  q->sql = dup_n(c->alloc, sql, strlen(sql));
  if (nparams > 0)
    q->values = myc__calloc(c->alloc, (size_t)nparams * sizeof *q->values);
  if (q->sql == NULL || (nparams > 0 && q->values == NULL)) {
    free_query(c, q);
    return fail(c, MYC_ENOMEM, "out of memory");
  }
  q->nparams = nparams;
  for (i = 0; i < nparams; i++) {
    if (values[i] == NULL)
      continue;
    if (memchr(values[i], 0, lens[i]) != NULL) {
      free_query(c, q);
      return fail(c, MYC_EINVAL, "parameter %d holds a NUL byte", i + 1);
    }
    q->values[i] = dup_n(c->alloc, values[i], lens[i]);
    if (q->values[i] == NULL) {
      free_query(c, q);
      return fail(c, MYC_ENOMEM, "out of memory");
    }
  }
  q->id = ++c->next_id;
  if (c->qtail)
    c->qtail->next = q;
  else
    c->qhead = q;
  c->qtail = q;
  c->pending++;
  if (c->state == ST_UP && c->qhead == q) {
    /* A send that fails ends the connection and fails queries: that must
     * not happen inside the owner's call, so the timer sends it, at once. */
    c->notify |= N_SEND;
    rearm(c);
  }
  return (int64_t)q->id;
}

int64_t myc__pg_query(myc_pg *c, const char *sql, int nparams,
                      const char *const *values, const size_t *lens) {
  int64_t rc;
  c->in_api++;
  rc = query_new(c, sql, nparams, values, lens);
  c->in_api--;
  return rc;
}

void myc__pg_close(myc_pg *c) {
  if (c->closing || c->released)
    return;
  c->in_api++;
  c->closing = 1;
  switch (c->state) {
  case ST_DOWN:
    finish(c);
    break;
  case ST_RESOLVING:
    /* on_resolved (cancelled) ends the attempt and finishes the close. */
    uv_cancel((uv_req_t *)&c->gai);
    break;
  case ST_CONNECTING:
  case ST_UP:
    /* Accepted queries still run; with none, the connection goes now. */
    if (c->qhead == NULL) {
      shut(c);
      finish(c);
    }
    break;
  }
  c->in_api--;
}

static void on_timer_closed(uv_handle_t *h) {
  myc_pg *c = h->data;
  free_params(c);
  myc__free(c->alloc, c, sizeof *c);
}

static void release_if_done(myc_pg *c) {
  if (c->released && !c->resolving && c->conn == NULL && c->handles == 0 &&
      !c->timer_closing) {
    c->timer_closing = 1;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  }
}

void myc__pg_free(myc_pg *c) {
  if (c->released)
    return;
  c->in_api++;
  c->released = 1;
  c->sink = NULL;
  while (c->qhead != NULL)
    free_query(c, pop(c));
  if (c->resolving)
    uv_cancel((uv_req_t *)&c->gai); /* on_resolved then releases */
  shut(c);
  uv_timer_stop(&c->timer);
  release_if_done(c);
  c->in_api--;
}

const char *myc__pg_state(const myc_pg *c) {
  if (c->state == ST_CLOSED)
    return "closed";
  if (c->closing)
    return "closing";
  switch (c->state) {
  case ST_DOWN:
    return "down";
  case ST_UP:
    return "up";
  default:
    return "connecting";
  }
}

const char *myc__pg_server(const myc_pg *c) { return c->server; }
const char *myc__pg_error(const myc_pg *c) { return c->err; }
uint32_t myc__pg_pending(const myc_pg *c) { return c->pending; }

void myc__pg_result_info(const void *r, myc_pg_result_info *out) {
  const PGresult *res = r;
  const char *n = PQcmdTuples((PGresult *)res);
  out->rows = PQntuples(res);
  out->cols = PQnfields(res);
  out->affected = n && *n ? (int64_t)strtoll(n, NULL, 10) : -1;
}

const char *myc__pg_result_name(const void *r, int col) {
  return PQfname(r, col);
}

uint32_t myc__pg_result_type(const void *r, int col) {
  return (uint32_t)PQftype(r, col);
}

const char *myc__pg_result_value(const void *r, int row, int col,
                                 size_t *len) {
  if (row < 0 || col < 0 || row >= PQntuples(r) || col >= PQnfields(r) ||
      PQgetisnull(r, row, col)) {
    *len = 0;
    return NULL;
  }
  *len = (size_t)PQgetlength(r, row, col);
  return PQgetvalue(r, row, col);
}
