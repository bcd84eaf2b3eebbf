/* pg_client.c -- asynchronous PostgreSQL client (see pg_client.h): one
 * libpq connection at a time, watched with a uv_poll_t on its socket;
 * lookup, deadlines, retries and notifications are net/reconnect.c's.
 *
 * Queries wait in a FIFO; only its head is ever on the wire (stage
 * PREPARING or EXECUTING), so a result always belongs to the head.
 */
#include "net/pg_client.h"

#include "net/reconnect.h"
#include "runtime/engine.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define DEFAULT_CONNECT_MS 2000
#define DEFAULT_QUERY_MS 2000
#define DEFAULT_MAX_PENDING 65536
/* Statements prepared per connection; past it queries go unprepared
 * (a service building SQL text on the fly must not grow the server). */
#define MAX_STATEMENTS 256
enum { Q_WAITING, Q_PREPARING, Q_EXECUTING };
/* The head query goes out from the timer: a send that fails ends the
 * connection and fails queries, never inside a call from the owner. */
enum { N_SEND = MYC__RC_N_CLIENT };

_Static_assert((int)MYC_PG_EV_UP == (int)MYC__RC_EV_UP &&
                   (int)MYC_PG_EV_DOWN == (int)MYC__RC_EV_DOWN &&
                   (int)MYC_PG_EV_CLOSED == (int)MYC__RC_EV_CLOSED,
               "the lifecycle events keep reconnect.h's numbers");

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
  myc__reconnect rc; /* the connection's lifecycle */
  const myc__alloc *alloc;
  myc__pg_sink sink;
  void *sink_ud;

  /* The URL's keywords and values (NULL-terminated), with a free slot
   * for the hostaddr found by the lookup. */
  char **keys, **vals;
  int nkeys, addr_slot;
  char *lookup_host; /* a host name to resolve first, or NULL */
  myc_pg_options opt;

  PGconn *conn;
  watch *w;

  char *stmts[MAX_STATEMENTS]; /* SQL of statement "myc_<i>" */
  int nstmts;

  query *qhead, *qtail;
  uint32_t pending;
  uint64_t next_id;
};

#define PG(r) ((myc_pg *)((char *)(r) - offsetof(myc_pg, rc)))

static void on_poll(uv_poll_t *h, int status, int events);

/* ---- helpers ------------------------------------------------------------- */

static uint64_t now_ms(myc_pg *c) { return myc__reconnect_now(&c->rc); }

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

static void deliver(myc_pg *c, int code, myc_pg_event *ev) {
  if (myc__reconnect_deliverable(&c->rc))
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
  return c->rc.released;
}

static void rearm(myc_pg *c) { myc__reconnect_rearm(&c->rc); }

#define fail(c, status, ...) myc__reconnect_fail(&(c)->rc, status, __VA_ARGS__)

/* ---- the connection -------------------------------------------------------- */

static void on_watch_closed(uv_handle_t *h) {
  watch *w = h->data;
  myc_pg *c = w->c;
  myc__free(c->alloc, w, sizeof *w);
  myc__reconnect_handle_closed(&c->rc);
}

/* Must run before libpq closes the socket it watches. */
static void close_watch(myc_pg *c) {
  watch *w = c->w;
  if (w == NULL)
    return;
  c->w = NULL;
  uv_poll_stop(&w->h);
  myc__reconnect_handle_closing(&c->rc);
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
    rc = uv_poll_init(c->rc.loop, &w->h, fd);
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
 * with that reason.  Callbacks only (reconnect.h's 'ended'). */
static void ended(myc__reconnect *r) {
  myc_pg *c = PG(r);
  shut(c);
  while (c->qhead != NULL)
    if (complete(c, r->lost_status, r->lost, ""))
      return;
}

static void conn_ended(myc_pg *c) { myc__reconnect_ended(&c->rc); }

static void lost_conn(myc_pg *c, const char *what) {
  myc__reconnect_lost(&c->rc, UV_ECONNRESET, "%s: %s", what,
                      c->conn ? PQerrorMessage(c->conn) : "closed");
  conn_ended(c);
}

/* Ends the connection or attempt, 'status' and 'what' saying why. */
static void end_with(myc_pg *c, int status, const char *what) {
  myc__reconnect_lost(&c->rc, status, "%s", what);
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
    end_with(c, UV_EIO, "cannot watch the socket");
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
    fail(c, MYC_EINVAL, "%s",
         r ? PQresultErrorMessage(r) : PQerrorMessage(c->conn));
    return complete(c, MYC_EINVAL, c->rc.err, code);
  }
  if (q->stage == Q_PREPARING) {
    char *sql = dup_n(c->alloc, q->sql, strlen(q->sql));
    if (sql == NULL) {
      fail(c, MYC_ENOMEM, "out of memory");
      return complete(c, MYC_ENOMEM, c->rc.err, NULL);
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
      end_with(c, UV_EPROTO, "COPY is not supported; connection dropped");
      return 1;
    default:
      break;
    }
    if (c->qhead->res == NULL)
      c->qhead->res = r;
    else
      PQclear(r);
  }
  if (c->qhead == NULL && c->rc.closing) {
    shut(c);
    myc__reconnect_finish(&c->rc);
    return 1;
  }
  if (c->qhead != NULL && c->qhead->stage == Q_WAITING)
    return send_head(c) != 0;
  rearm(c);
  return 0;
}

static void up_reached(myc_pg *c) {
  myc__reconnect_up(&c->rc);
  if (watch_for(c, UV_READABLE) != 0) {
    end_with(c, UV_EIO, "cannot watch the socket");
    return;
  }
  if (c->qhead == NULL && c->rc.closing) {
    shut(c);
    myc__reconnect_finish(&c->rc);
    return;
  }
  (void)send_head(c);
}

/* Advances the connection handshake (PQconnectPoll). */
static void connect_step(myc_pg *c) {
  switch (PQconnectPoll(c->conn)) {
  case PGRES_POLLING_OK:
    up_reached(c);
    return;
  case PGRES_POLLING_FAILED:
    myc__reconnect_lost(&c->rc, UV_ECONNREFUSED, "cannot connect: %s",
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
  end_with(c, UV_EIO, "cannot watch the socket");
}

static void on_poll(uv_poll_t *h, int status, int events) {
  watch *w = h->data;
  myc_pg *c = w->c;
  if (c->w != w || c->conn == NULL)
    return;
  if (c->rc.state == MYC__RC_CONNECTING) {
    connect_step(c);
    return;
  }
  if (status < 0) {
    myc__reconnect_lost(&c->rc, status, "connection lost: %s",
                        uv_strerror(status));
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
      end_with(c, UV_EIO, "cannot watch the socket");
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

/* reconnect.h's 'connect': 'ip' is the address the lookup found. */
static void connect_to(myc__reconnect *r, const char *ip) {
  myc_pg *c = PG(r);
  if (ip != NULL)
    c->vals[c->addr_slot] = (char *)ip;
  c->conn = PQconnectStartParams((const char *const *)c->keys,
                                 (const char *const *)c->vals, 0);
  if (ip != NULL)
    c->vals[c->addr_slot] = NULL;
  if (c->conn == NULL) {
    end_with(c, MYC_ENOMEM, "cannot connect: out of memory");
    return;
  }
  PQsetNoticeProcessor(c->conn, notice_ignored, NULL);
  if (PQstatus(c->conn) == CONNECTION_BAD ||
      PQsetnonblocking(c->conn, 1) != 0) {
    myc__reconnect_lost(r, UV_ECONNREFUSED, "cannot connect: %s",
                        PQerrorMessage(c->conn));
    conn_ended(c);
    return;
  }
  if (watch_for(c, UV_WRITABLE) != 0)
    end_with(c, UV_EIO, "cannot watch the socket");
}

static int busy(const myc__reconnect *r) { return PG(r)->conn != NULL; }

static uint64_t head_deadline(const myc__reconnect *r) {
  const query *q = PG(r)->qhead;
  return r->state == MYC__RC_UP && q != NULL && q->stage != Q_WAITING
             ? q->deadline
             : UINT64_MAX;
}

static void head_expired(myc__reconnect *r, uint64_t now) {
  myc_pg *c = PG(r);
  query *q = c->qhead;
  /* After a stall the result may be waiting in the socket: read it first,
   * and give what is still out one more full timeout. */
  if (myc__reconnect_stalled(r, now) && !q->spared) {
    if (read_results(c))
      return;
    if (c->qhead == q) {
      q->spared = 1;
      q->deadline = now + c->opt.query_timeout_ms;
    }
    return;
  }
  /* The server still owes this result: a later one could not be told
   * apart, so the connection goes (cancelling would block). */
  myc__reconnect_lost(r, UV_ETIMEDOUT,
                      "no result within %u ms; connection dropped",
                      c->opt.query_timeout_ms);
  conn_ended(c);
}

static int notified(myc__reconnect *r, unsigned bits) {
  return (bits & N_SEND) && r->state == MYC__RC_UP && send_head(PG(r)) != 0;
}

static void lifecycle_event(myc__reconnect *r, int code) {
  myc_pg_event ev;
  memset(&ev, 0, sizeof ev);
  ev.error = "";
  ev.sqlstate = "";
  if (code == MYC_PG_EV_DOWN) {
    ev.status = r->lost_status;
    ev.retry_ms = (int32_t)r->retry_ms;
    ev.error = r->lost;
  }
  deliver(PG(r), code, &ev);
}

static void release(myc__reconnect *r) {
  myc_pg *c = PG(r);
  while (c->qhead != NULL)
    free_query(c, pop(c));
  shut(c);
}

/* Accepted queries still run; with none, the connection goes now. */
static void close_conn(myc__reconnect *r) {
  myc_pg *c = PG(r);
  if (c->qhead == NULL) {
    shut(c);
    myc__reconnect_finish(r);
  }
}

static void free_params(myc_pg *c);

static void destroy(myc__reconnect *r) {
  myc_pg *c = PG(r);
  free_params(c);
  myc__free(c->alloc, c, sizeof *c);
}

static const myc__reconnect_ops pg_ops = {
    .connect = connect_to,
    .busy = busy,
    .ended = ended,
    .drop = myc__reconnect_ended, /* 'ended' lets go of libpq's attempt */
    .head_deadline = head_deadline,
    .head_expired = head_expired,
    .notified = notified,
    .event = lifecycle_event,
    .release = release,
    .close = close_conn,
    .destroy = destroy};

/* ---- public API ------------------------------------------------------------ */

static int set_options(myc_pg *c, uv_loop_t *loop, const myc_pg_options *o,
                       char *err, size_t errlen) {
  myc__reconnect_timing t = {0, 0, 0};
  myc_pg_options d = {0, DEFAULT_QUERY_MS, 0, 0, DEFAULT_MAX_PENDING};
  if (o != NULL) {
    t.connect_timeout_ms = o->connect_timeout_ms;
    t.reconnect_min_ms = o->reconnect_min_ms;
    t.reconnect_max_ms = o->reconnect_max_ms;
    if (o->query_timeout_ms)
      d.query_timeout_ms = o->query_timeout_ms;
    if (o->max_pending)
      d.max_pending = o->max_pending;
  }
  /* The lifecycle's three are c->rc's. */
  c->opt = d;
  return myc__reconnect_init(&c->rc, &pg_ops, loop, "postgres", &t,
                             DEFAULT_CONNECT_MS, err, errlen);
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
  snprintf(c->rc.server, sizeof c->rc.server, "%s:%s",
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
  rc = set_options(c, loop, opt, err, errlen);
  if (rc == 0)
    rc = parse_url(c, url, err, errlen);
  if (rc != 0) {
    free_params(c);
    myc__free(alloc, c, sizeof *c);
    return rc;
  }
  c->rc.lookup_host = c->lookup_host;
  c->sink = sink;
  c->sink_ud = ud;
  myc__reconnect_start(&c->rc);
  *out = c;
  return 0;
}

static void sink_to_service(void *ud, int code, const myc_pg_event *ev) {
  myc__reconnect_to_service(&((myc_pg *)ud)->rc, code, ev, sizeof *ev);
}

int myc__pg_open(myc_service *s, uint64_t source, const char *url,
                 const myc_pg_options *opt, myc_pg **out, char *err,
                 size_t errlen) {
  int rc = myc__pg_new(&myc__service_worker(s)->loop, &s->eng->alloc, url,
                       opt, sink_to_service, NULL, out, err, errlen);
  if (rc == 0) {
    (*out)->sink_ud = *out;
    myc__reconnect_bind(&(*out)->rc, s, source);
  }
  return rc;
}

static int64_t query_new(myc_pg *c, const char *sql, int nparams,
                         const char *const *values, const size_t *lens) {
  query *q;
  int i, rc;
  if (sql == NULL || *sql == 0)
    return fail(c, MYC_EINVAL, "empty query");
  if (nparams < 0 || nparams > 65535 || (nparams > 0 && values == NULL))
    return fail(c, MYC_EINVAL, "%d parameters (0 to 65535)", nparams);
  if ((rc = myc__reconnect_refuse(&c->rc)) != 0)
    return rc;
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
  if (c->rc.state == MYC__RC_UP && c->qhead == q) {
    /* A send that fails ends the connection and fails queries: that must
     * not happen inside the owner's call, so the timer sends it, at once. */
    c->rc.notify |= N_SEND;
    rearm(c);
  }
  return (int64_t)q->id;
}

int64_t myc__pg_query(myc_pg *c, const char *sql, int nparams,
                      const char *const *values, const size_t *lens) {
  int64_t rc;
  c->rc.in_api++;
  rc = query_new(c, sql, nparams, values, lens);
  c->rc.in_api--;
  return rc;
}

void myc__pg_close(myc_pg *c) { myc__reconnect_close(&c->rc); }

void myc__pg_free(myc_pg *c) { myc__reconnect_release(&c->rc); }

const char *myc__pg_state(const myc_pg *c) {
  return myc__reconnect_state(&c->rc);
}

const char *myc__pg_server(const myc_pg *c) { return c->rc.server; }
const char *myc__pg_error(const myc_pg *c) { return c->rc.err; }
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
