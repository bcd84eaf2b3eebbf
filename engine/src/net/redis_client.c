/* redis_client.c -- asynchronous Redis client (see redis_client.h): one
 * hiredis async context at a time on the loop, through hiredis's libuv
 * adapter; lookup, timeouts, retries and notifications are
 * net/reconnect.c's.
 *
 * Invariant: 'ring' mirrors hiredis's callback list one for one, so the
 * head of the ring is the command whose reply comes next; a connection
 * that ends runs every callback (NULL reply), which empties the ring.
 */
#include "net/redis_client.h"

#include "net/reconnect.h"
#include "runtime/engine.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define DEFAULT_CONNECT_MS 1000
#define DEFAULT_COMMAND_MS 1000
#define DEFAULT_MAX_PENDING 65536

/* Private data of the client's own commands (user commands carry NULL). */
#define CMD_AUTH ((void *)1)
#define CMD_SELECT ((void *)2)

/* Lifecycle events wait for reconnect.c's timer: they must not run
 * inside hiredis's connect callback (freeing the context there is unsafe)
 * nor inside a call from the owner. */
_Static_assert((int)MYC_REDIS_EV_UP == (int)MYC__RC_EV_UP &&
                   (int)MYC_REDIS_EV_DOWN == (int)MYC__RC_EV_DOWN &&
                   (int)MYC_REDIS_EV_CLOSED == (int)MYC__RC_EV_CLOSED,
               "the lifecycle events keep reconnect.h's numbers");

typedef struct {
  uint64_t id; /* 0: the client's own command (AUTH, SELECT) */
  uint64_t deadline;
  int spared; /* given a second timeout after a stall (spare_after_stall) */
} pending;

/* A command issued while the host name is being looked up. */
typedef struct queued {
  struct queued *next;
  uint64_t id, deadline;
  char *cmd; /* RESP, formatted by hiredis */
  int len;
} queued;

struct myc_redis {
  myc__reconnect rc; /* the connection's lifecycle */
  const myc__alloc *alloc;
  myc__redis_sink sink;
  void *sink_ud;

  myc__redis_url url;
  myc_redis_options opt;

  redisAsyncContext *ac; /* the current connection or attempt */
  redisReplyObjectFunctions reader_fns; /* hiredis's, guarded (see guard) */
  const redisReplyObjectFunctions *hiredis_fns;
  int unsolicited; /* the server sent a reply to no command */
  size_t max_reply; /* bytes of a reply buffered before it is complete */
  int init_pending; /* AUTH/SELECT replies still awaited */

  pending *ring;
  uint32_t head, n, cap;
  queued *qhead, *qtail;
  uint32_t user_pending; /* user commands without an outcome */
  uint64_t next_id;
};

#define REDIS(r) ((myc_redis *)((char *)(r) - offsetof(myc_redis, rc)))

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ms(myc_redis *c) { return myc__reconnect_now(&c->rc); }

/* Records the latest failure (myc__redis_error) and returns 'status'. */
#define fail(c, status, ...) myc__reconnect_fail(&(c)->rc, status, __VA_ARGS__)

/* Records why the current connection or attempt ends. */
#define set_lost(c, status, ...)                                               \
  myc__reconnect_lost(&(c)->rc, status, __VA_ARGS__)

static void deliver(myc_redis *c, int code, myc_redis_event *ev) {
  if (myc__reconnect_deliverable(&c->rc))
    c->sink(c->sink_ud, code, ev);
}

static void rearm(myc_redis *c) { myc__reconnect_rearm(&c->rc); }

/* ---- the ring of commands awaiting a reply ------------------------------ */

/* Makes room for 'more' entries.  Returns 0 or MYC_ENOMEM (unchanged). */
static int ring_reserve(myc_redis *c, uint32_t more) {
  uint32_t cap = c->cap, i;
  pending *p;
  if (c->n + more <= cap)
    return 0;
  while (cap < c->n + more)
    cap *= 2;
  p = myc__malloc(c->alloc, cap * sizeof *p);
  if (p == NULL)
    return MYC_ENOMEM;
  for (i = 0; i < c->n; i++)
    p[i] = c->ring[(c->head + i) & (c->cap - 1)];
  myc__free(c->alloc, c->ring, c->cap * sizeof *p);
  c->ring = p;
  c->cap = cap;
  c->head = 0;
  return 0;
}

static void ring_push(myc_redis *c, uint64_t id, uint64_t deadline) {
  pending *p = &c->ring[(c->head + c->n++) & (c->cap - 1)];
  assert(c->n <= c->cap);
  p->id = id;
  p->deadline = deadline;
  p->spared = 0;
}

static pending ring_pop(myc_redis *c) {
  pending p = c->ring[c->head];
  assert(c->n > 0);
  c->head = (c->head + 1) & (c->cap - 1);
  c->n--;
  return p;
}

/* Drops the commands that waited for an address, failing each with
 * 'lost' when 'deliver_failure' is set. */
static void free_queued(myc_redis *c, int deliver_failure) {
  while (c->qhead != NULL) {
    queued *q = c->qhead;
    myc_redis_event ev = {q->id, c->rc.lost_status, 0, NULL, c->rc.lost};
    c->qhead = q->next;
    if (c->qhead == NULL)
      c->qtail = NULL;
    redisFreeCommand(q->cmd);
    myc__free(c->alloc, q, sizeof *q);
    c->user_pending--;
    if (deliver_failure)
      deliver(c, MYC_REDIS_EV_REPLY, &ev);
  }
}

/* The current connection or attempt is over ('lost' says why; c->ac was
 * detached): commands waiting for an address fail (reconnect.h's
 * 'ended'); those of the detached context fail as it is freed. */
static void ended(myc__reconnect *r) {
  myc_redis *c = REDIS(r);
  c->init_pending = 0;
  free_queued(c, 1);
}

static void conn_ended(myc_redis *c) { myc__reconnect_ended(&c->rc); }

/* Ends the current connection or attempt on the client's own initiative
 * (a timeout, a failed AUTH), 'lost' saying why.  Never called from an
 * owner's call. */
static void drop(myc_redis *c) {
  redisAsyncContext *ac = c->ac;
  c->ac = NULL;
  conn_ended(c);
  /* Every command of 'ac' now fails with 'lost' (on_reply, NULL). */
  if (ac != NULL)
    redisAsyncFree(ac);
}

static void drop_op(myc__reconnect *r) { drop(REDIS(r)); }

static void lifecycle_event(myc__reconnect *r, int code) {
  myc_redis_event ev;
  memset(&ev, 0, sizeof ev);
  if (code == MYC_REDIS_EV_DOWN) {
    ev.status = r->lost_status;
    ev.retry_ms = (int32_t)r->retry_ms;
    ev.error = r->lost;
  }
  deliver(REDIS(r), code, &ev);
}

static void check_backlog(redisAsyncContext *ac);

/* libuv runs timers before it polls: after a stall, the oldest command's
 * deadline passes before the loop reads the reply that has long been
 * waiting in the socket (or even writes the command).  A timer that fired
 * late writes and reads first; what is still waiting then gets one more
 * full timeout from now (once per command, so that a loop that is always
 * late still gives up on a server that never answers).  Returns 1 when
 * the connection is spared (or ended while reading, its reason set). */
static int spare_after_stall(myc_redis *c, uint64_t now) {
  redisAsyncContext *ac = c->ac;
  uint32_t i;
  if (!myc__reconnect_stalled(&c->rc, now) || c->ring[c->head].spared)
    return 0;
  if (sdslen(ac->c.obuf) > 0)
    redisAsyncHandleWrite(ac);
  if (c->ac == ac)
    redisAsyncHandleRead(ac);
  if (c->ac == ac)
    check_backlog(ac);
  if (c->ac != ac)
    return 1;
  for (i = 0; i < c->n; i++) {
    pending *p = &c->ring[(c->head + i) & (c->cap - 1)];
    if (p->deadline <= now + c->opt.command_timeout_ms) {
      p->deadline = now + c->opt.command_timeout_ms;
      p->spared = 1;
    }
  }
  return 1;
}

static uint64_t head_deadline(const myc__reconnect *r) {
  const myc_redis *c = REDIS(r);
  return c->n > 0 ? c->ring[c->head].deadline : UINT64_MAX;
}

/* Replies come in order: if the oldest is late the connection is stuck
 * (or the server is), and a late reply could no longer be matched once
 * its command is abandoned, so the connection goes. */
static void head_expired(myc__reconnect *r, uint64_t now) {
  myc_redis *c = REDIS(r);
  if (spare_after_stall(c, now))
    return;
  set_lost(c, UV_ETIMEDOUT, "no reply within %u ms; connection dropped",
           c->opt.command_timeout_ms);
  drop(c);
}

/* ---- hiredis callbacks -------------------------------------------------- */

/* hiredis is tearing 'ac' down after an error: runs before the first of
 * its failed callbacks, so that they (and what the owner does in them)
 * see the client down already. */
static void connection_lost(myc_redis *c, const redisAsyncContext *ac) {
  int status = ac->err == REDIS_ERR_PROTOCOL ? UV_EPROTO : UV_ECONNRESET;
  if (c->unsolicited)
    set_lost(c, UV_EPROTO,
             "connection dropped: the server sent a reply to no command "
             "(a broken server, or not Redis)");
  else
    set_lost(c, status, "connection lost: %s",
             ac->errstr && *ac->errstr ? ac->errstr : "closed");
  c->ac = NULL;
  conn_ended(c);
}

static void handshake_reply(myc_redis *c, const redisReply *r, void *kind) {
  if (r == NULL)
    return; /* the connection is ending; its reason is set */
  if (r->type == REDIS_REPLY_ERROR) {
    if (kind == CMD_AUTH)
      set_lost(c, UV_EACCES, "AUTH failed: %s", r->str);
    else
      set_lost(c, MYC_EINVAL, "SELECT %d failed: %s", c->url.db, r->str);
    drop(c);
    return;
  }
  if (--c->init_pending == 0 && c->rc.state == MYC__RC_HANDSHAKE)
    myc__reconnect_up(&c->rc);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv) {
  myc_redis *c = ac->data;
  myc_redis_event ev;
  pending p = ring_pop(c);
  if (reply == NULL && c->ac == ac)
    connection_lost(c, ac);
  if (priv != NULL) {
    handshake_reply(c, reply, priv);
    return;
  }
  c->user_pending--;
  memset(&ev, 0, sizeof ev);
  ev.id = p.id;
  if (reply != NULL) {
    ev.reply = reply;
  } else {
    ev.status = c->rc.lost_status;
    ev.error = c->rc.lost;
  }
  deliver(c, MYC_REDIS_EV_REPLY, &ev);
}

/* What waited for the connection gets a full command timeout from now:
 * a slow connect must not make a fresh connection look stuck. */
static void rebase_deadlines(myc_redis *c) {
  uint64_t from = now_ms(c) + c->opt.command_timeout_ms;
  uint32_t i;
  for (i = 0; i < c->n; i++) {
    pending *p = &c->ring[(c->head + i) & (c->cap - 1)];
    if (p->deadline < from)
      p->deadline = from;
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  myc_redis *c = ac->data;
  if (c->ac != ac)
    return;
  if (status != REDIS_OK) {
    /* hiredis leaves the socket's error in errno for this callback. */
    int err = errno ? uv_translate_sys_error(errno) : UV_EIO;
    set_lost(c, err, "cannot connect: %s", uv_strerror(err));
    c->ac = NULL; /* hiredis frees it after this callback */
    conn_ended(c);
    return;
  }
  rebase_deadlines(c);
  if (c->init_pending > 0) {
    c->rc.state = MYC__RC_HANDSHAKE;
    rearm(c);
  } else {
    myc__reconnect_up(&c->rc);
  }
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  myc_redis *c = ac->data;
  if (c->ac != ac)
    return; /* the client let go of it already */
  if (status == REDIS_OK && c->rc.closing) {
    c->ac = NULL;
    conn_ended(c);
    return;
  }
  connection_lost(c, ac);
}

/* ---- the libuv adapter's event hooks ------------------------------------ */

/* hiredis 0.14's adapter (Debian 12) returns early when libuv reports a
 * poll error, and libuv reports POLLERR (a refused connect, a reset) only
 * that way, stopping the handle: the failure would go unnoticed until a
 * timeout.  These hooks replace the adapter's four, as hiredis 1.x fixed
 * them: an error counts as readiness, so hiredis reads the socket and
 * meets the error itself.  Attach and cleanup stay the adapter's. */

/* hiredis keeps a reply's bytes until the reply is complete, with no
 * bound: "$2147483647\r\n" and a stream of bytes would grow the buffer
 * until the command timeout.  Checked after each read (16 KiB at most). */
static void check_backlog(redisAsyncContext *ac) {
  myc_redis *c = ac->data;
  const redisReader *r = ac->c.reader;
  if (c == NULL || c->ac != ac || r->len - r->pos <= c->max_reply)
    return;
  set_lost(c, MYC_ELIMIT,
           "a reply of more than %zu MiB; connection dropped",
           c->max_reply >> 20);
  drop(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  redisLibuvEvents *p = h->data;
  int ev = events;
  if (status != 0) {
    ev = p->events;
    p->events = 0; /* libuv stopped the handle */
  }
  if (p->context != NULL && (ev & UV_READABLE)) {
    redisAsyncHandleRead(p->context);
    /* A drop frees the context; the adapter clears p->context then. */
    if (p->context != NULL)
      check_backlog(p->context);
  }
  if (p->context != NULL && (ev & UV_WRITABLE))
    redisAsyncHandleWrite(p->context);
}

static void poll_set(redisLibuvEvents *p, int events) {
  /* hiredis asks for reads after every read: restarting the poll each
   * time would cost a system call per reply batch. */
  if (events == p->events)
    return;
  p->events = events;
  if (events)
    uv_poll_start(&p->handle, events, on_poll);
  else
    uv_poll_stop(&p->handle);
}

static void add_read(void *p) {
  poll_set(p, ((redisLibuvEvents *)p)->events | UV_READABLE);
}
static void del_read(void *p) {
  poll_set(p, ((redisLibuvEvents *)p)->events & ~UV_READABLE);
}
static void add_write(void *p) {
  poll_set(p, ((redisLibuvEvents *)p)->events | UV_WRITABLE);
}
static void del_write(void *p) {
  poll_set(p, ((redisLibuvEvents *)p)->events & ~UV_WRITABLE);
}

/* ---- replies to no command ----------------------------------------------- */

/* hiredis 0.14 asserts, aborting the process, when a reply comes with no
 * command waiting for it (unless it is an error, which it reports and
 * drops the connection for).  A broken or hostile server can do that, so
 * the reader's object hooks check each top-level reply as it is built:
 * refusing the object makes hiredis drop the connection as it does for a
 * malformed reply.  'privdata' of the reader is the connection. */
static int unsolicited(const redisReadTask *t) {
  redisAsyncContext *ac = t->privdata;
  myc_redis *c = ac->data;
  if (t->parent != NULL || ac->replies.head != NULL ||
      t->type == REDIS_REPLY_ERROR)
    return 0;
  c->unsolicited = 1;
  return 1;
}

static const redisReplyObjectFunctions *hiredis_fns(const redisReadTask *t) {
  return ((myc_redis *)((redisAsyncContext *)t->privdata)->data)->hiredis_fns;
}

static void *guard_string(const redisReadTask *t, char *s, size_t n) {
  return unsolicited(t) ? NULL : hiredis_fns(t)->createString(t, s, n);
}
static void *guard_array(const redisReadTask *t, int n) {
  return unsolicited(t) ? NULL : hiredis_fns(t)->createArray(t, n);
}
static void *guard_integer(const redisReadTask *t, long long v) {
  return unsolicited(t) ? NULL : hiredis_fns(t)->createInteger(t, v);
}
static void *guard_nil(const redisReadTask *t) {
  return unsolicited(t) ? NULL : hiredis_fns(t)->createNil(t);
}

static void guard(myc_redis *c, redisAsyncContext *ac) {
  redisReader *r = ac->c.reader;
  c->hiredis_fns = r->fn;
  c->reader_fns = *r->fn; /* what is not replaced stays hiredis's */
  c->reader_fns.createString = guard_string;
  c->reader_fns.createArray = guard_array;
  c->reader_fns.createInteger = guard_integer;
  c->reader_fns.createNil = guard_nil;
  r->fn = &c->reader_fns;
  r->privdata = ac; /* redisReaderSetPrivdata casts its value to int */
  c->unsolicited = 0;
}

/* ---- connecting --------------------------------------------------------- */

/* Queues AUTH and SELECT, then what waited for the address.  Returns 0 or
 * MYC_ENOMEM. */
static int send_initial(myc_redis *c, redisAsyncContext *ac, uint64_t now) {
  uint32_t nq = 0;
  queued *q;
  char db[16];
  for (q = c->qhead; q != NULL; q = q->next)
    nq++;
  if (ring_reserve(c, nq + 2) != 0)
    return MYC_ENOMEM;
  if (c->url.has_password) {
    const char *argv[3] = {"AUTH", c->url.user, c->url.password};
    size_t lens[3] = {4, strlen(c->url.user), strlen(c->url.password)};
    /* AUTH user password (ACLs, Redis 6) or AUTH password. */
    int argc = lens[1] > 0 ? 3 : 2;
    if (argc == 2) {
      argv[1] = argv[2];
      lens[1] = lens[2];
    }
    if (redisAsyncCommandArgv(ac, on_reply, CMD_AUTH, argc, argv, lens))
      return MYC_ENOMEM;
    ring_push(c, 0, now + c->rc.connect_timeout_ms);
    c->init_pending++;
  }
  if (c->url.db != 0) {
    const char *argv[2] = {"SELECT", db};
    size_t lens[2] = {6, 0};
    lens[1] = (size_t)snprintf(db, sizeof db, "%d", c->url.db);
    if (redisAsyncCommandArgv(ac, on_reply, CMD_SELECT, 2, argv, lens))
      return MYC_ENOMEM;
    ring_push(c, 0, now + c->rc.connect_timeout_ms);
    c->init_pending++;
  }
  /* A command hiredis refuses stays queued, failed by the caller. */
  while ((q = c->qhead) != NULL) {
    if (redisAsyncFormattedCommand(ac, on_reply, NULL, q->cmd,
                                   (size_t)q->len) != REDIS_OK)
      return MYC_ENOMEM;
    ring_push(c, q->id, q->deadline);
    c->qhead = q->next;
    if (c->qhead == NULL)
      c->qtail = NULL;
    redisFreeCommand(q->cmd);
    myc__free(c->alloc, q, sizeof *q);
  }
  return 0;
}

/* reconnect.h's 'connect': 'ip' is the address the lookup found, NULL
 * when the URL gave one. */
static void connect_ip(myc__reconnect *r, const char *ip) {
  myc_redis *c = REDIS(r);
  redisAsyncContext *ac = redisAsyncConnect(ip ? ip : c->url.host, c->url.port);
  redisLibuvEvents *ev;
  if (ac == NULL) {
    set_lost(c, MYC_ENOMEM, "cannot connect: out of memory");
    conn_ended(c);
    return;
  }
  if (ac->err) {
    int err = ac->err == REDIS_ERR_IO && errno ? uv_translate_sys_error(errno)
                                               : UV_EINVAL;
    set_lost(c, err, "cannot connect: %s", uv_strerror(err));
    redisAsyncFree(ac);
    conn_ended(c);
    return;
  }
  if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
    /* The adapter sets its hooks before it can fail; without its data
     * the cleanup hook would dereference NULL. */
    ac->ev.cleanup = NULL;
    redisAsyncFree(ac);
    set_lost(c, MYC_ENOMEM, "cannot connect: out of memory");
    conn_ended(c);
    return;
  }
  ev = ac->ev.data;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  /* The worker's life is the engine's business: an open connection must
   * not keep its loop running after the engine stopped. */
  uv_unref((uv_handle_t *)&ev->handle);
  ac->data = c;
  guard(c, ac);
  c->ac = ac;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  if (send_initial(c, ac, now_ms(c)) != 0) {
    c->ac = NULL;
    set_lost(c, MYC_ENOMEM, "cannot connect: out of memory");
    conn_ended(c);
    redisAsyncFree(ac);
  }
}

/* ---- the lifecycle's hooks (reconnect.h) ------------------------------- */

static int busy(const myc__reconnect *r) { return REDIS(r)->ac != NULL; }

/* hiredis disconnects at once when nothing is pending (without a
 * disconnect callback if it never connected), else after the last reply. */
static void close_conn(myc__reconnect *r) {
  myc_redis *c = REDIS(r);
  redisAsyncContext *ac = c->ac;
  int immediate =
      !(ac->c.flags & REDIS_IN_CALLBACK) && ac->replies.head == NULL;
  redisAsyncDisconnect(ac);
  if (immediate && c->ac == ac) {
    c->ac = NULL;
    conn_ended(c);
  }
}

/* What a closing client issued but the loop has not written yet goes out
 * now: a service's stop usually closes the client and ends its Lua state
 * (and with it the client) in the same turn, before the loop could write,
 * and a write-back issued just before would be lost.  Non-blocking and
 * bounded: a full socket buffer ends it. */
static void flush_before_free(myc_redis *c, redisAsyncContext *ac) {
  int done = 0, tries;
  if (!c->rc.closing ||
      (c->rc.state != MYC__RC_UP && c->rc.state != MYC__RC_HANDSHAKE))
    return;
  for (tries = 0; tries < 8 && !done; tries++)
    if (redisBufferWrite(&ac->c, &done) != REDIS_OK)
      return;
}

static void release(myc__reconnect *r) {
  myc_redis *c = REDIS(r);
  redisAsyncContext *ac = c->ac;
  free_queued(c, 0);
  c->ac = NULL;
  if (ac != NULL) {
    flush_before_free(c, ac);
    redisAsyncFree(ac); /* its callbacks run without delivering */
  }
}

static void destroy(myc__reconnect *r) {
  myc_redis *c = REDIS(r);
  myc__free(c->alloc, c->ring, c->cap * sizeof *c->ring);
  myc__free(c->alloc, c, sizeof *c);
}

static const myc__reconnect_ops redis_ops = {
    .connect = connect_ip,
    .busy = busy,
    .ended = ended,
    .drop = drop_op,
    .head_deadline = head_deadline,
    .head_expired = head_expired,
    .notified = NULL, /* no notification of its own */
    .event = lifecycle_event,
    .release = release,
    .close = close_conn,
    .destroy = destroy};

/* ---- public API --------------------------------------------------------- */

static int set_options(myc_redis *c, uv_loop_t *loop,
                       const myc_redis_options *o, char *err, size_t errlen) {
  myc__reconnect_timing t = {0, 0, 0};
  myc_redis_options d = {NULL, 0, DEFAULT_COMMAND_MS, 0, 0,
                         DEFAULT_MAX_PENDING};
  if (o != NULL) {
    t.connect_timeout_ms = o->connect_timeout_ms;
    t.reconnect_min_ms = o->reconnect_min_ms;
    t.reconnect_max_ms = o->reconnect_max_ms;
    if (o->command_timeout_ms)
      d.command_timeout_ms = o->command_timeout_ms;
    if (o->max_pending)
      d.max_pending = o->max_pending;
    if (o->password != NULL) {
      if (strlen(o->password) >= sizeof c->url.password) {
        snprintf(err, errlen, "redis: password too long");
        return MYC_EINVAL;
      }
      strcpy(c->url.password, o->password);
      c->url.has_password = 1;
    }
  }
  /* The lifecycle's three are c->rc's. */
  c->opt = d;
  return myc__reconnect_init(&c->rc, &redis_ops, loop, "redis", &t,
                             DEFAULT_CONNECT_MS, err, errlen);
}

int myc__redis_new(uv_loop_t *loop, const myc__alloc *alloc, const char *url,
                   const myc_redis_options *opt, myc__redis_sink sink, void *ud,
                   myc_redis **out, char *err, size_t errlen) {
  struct in6_addr a6;
  myc_redis *c;
  int rc;
  *out = NULL;
  c = myc__calloc(alloc, sizeof *c);
  if (c == NULL) {
    snprintf(err, errlen, "redis: out of memory");
    return MYC_ENOMEM;
  }
  c->alloc = alloc;
  c->max_reply = MYC_REDIS_MAX_REPLY;
  rc = myc__redis_url_parse(url, &c->url, err, errlen);
  if (rc == 0)
    rc = set_options(c, loop, opt, err, errlen);
  if (rc == 0) {
    c->cap = 64;
    c->ring = myc__malloc(alloc, c->cap * sizeof *c->ring);
    if (c->ring == NULL) {
      snprintf(err, errlen, "redis: out of memory");
      rc = MYC_ENOMEM;
    }
  }
  if (rc != 0) {
    myc__free(alloc, c, sizeof *c);
    return rc;
  }
  c->sink = sink;
  c->sink_ud = ud;
  if (uv_inet_pton(AF_INET, c->url.host, &a6) != 0 &&
      uv_inet_pton(AF_INET6, c->url.host, &a6) != 0)
    c->rc.lookup_host = c->url.host;
  snprintf(c->rc.server, sizeof c->rc.server,
           strchr(c->url.host, ':') ? "[%s]:%d" : "%s:%d", c->url.host,
           c->url.port);
  /* Nothing can fail past this point: a started handle can only be
   * released asynchronously. */
  myc__reconnect_start(&c->rc);
  *out = c;
  return 0;
}

static void sink_to_service(void *ud, int code, const myc_redis_event *ev) {
  myc__reconnect_to_service(&((myc_redis *)ud)->rc, code, ev, sizeof *ev);
}

int myc__redis_open(myc_service *s, uint64_t source, const char *url,
                   const myc_redis_options *opt, myc_redis **out, char *err,
                   size_t errlen) {
  int rc = myc__redis_new(&myc__service_worker(s)->loop, &s->eng->alloc, url, opt,
                          sink_to_service, NULL, out, err, errlen);
  if (rc == 0) {
    (*out)->sink_ud = *out;
    myc__reconnect_bind(&(*out)->rc, s, source);
  }
  return rc;
}

/* Commands that turn the connection into a stream of pushed messages:
 * their replies no longer pair with commands. */
static int stream_command(const char *name, size_t len) {
  static const char *const names[] = {"subscribe", "psubscribe", "unsubscribe",
                                      "punsubscribe", "monitor"};
  size_t i;
  for (i = 0; i < sizeof names / sizeof *names; i++)
    if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0)
      return 1;
  return 0;
}

static int64_t enqueue(myc_redis *c, int argc, const char *const *argv,
                       const size_t *lens, uint64_t id, uint64_t deadline) {
  queued *q = myc__malloc(c->alloc, sizeof *q);
  if (q == NULL)
    return fail(c, MYC_ENOMEM, "out of memory");
  q->len = redisFormatCommandArgv(&q->cmd, argc, (const char **)argv, lens);
  if (q->len < 0) {
    myc__free(c->alloc, q, sizeof *q);
    return fail(c, MYC_ENOMEM, "out of memory");
  }
  q->next = NULL;
  q->id = id;
  q->deadline = deadline;
  if (c->qtail != NULL)
    c->qtail->next = q;
  else
    c->qhead = q;
  c->qtail = q;
  return 0;
}

static int64_t command(myc_redis *c, int argc, const char *const *argv,
                       const size_t *lens) {
  uint64_t now, id;
  int rc;
  if (argc < 1 || argv == NULL || lens == NULL)
    return fail(c, MYC_EINVAL, "a command needs at least its name");
  if (stream_command(argv[0], lens[0]))
    return fail(c, MYC_EINVAL,
                "%.*s is not supported (it turns the "
                "connection into a message stream)",
                (int)lens[0], argv[0]);
  if ((rc = myc__reconnect_refuse(&c->rc)) != 0)
    return rc;
  now = now_ms(c);
  if (c->user_pending >= c->opt.max_pending)
    return fail(c, MYC_ELIMIT, "%u commands in flight already (max_pending)",
                c->opt.max_pending);
  id = ++c->next_id;
  if (c->rc.state == MYC__RC_RESOLVING) {
    if (enqueue(c, argc, argv, lens, id, now + c->opt.command_timeout_ms))
      return MYC_ENOMEM;
  } else {
    if (ring_reserve(c, 1) != 0)
      return fail(c, MYC_ENOMEM, "out of memory");
    if (redisAsyncCommandArgv(c->ac, on_reply, NULL, argc, (const char **)argv,
                              lens) != REDIS_OK)
      return fail(c, MYC_ENOMEM, "cannot queue the command");
    ring_push(c, id, now + c->opt.command_timeout_ms);
    if (c->n == 1 && c->rc.state != MYC__RC_CONNECTING)
      rearm(c);
  }
  c->user_pending++;
  return (int64_t)id;
}

int64_t myc__redis_command(myc_redis *c, int argc, const char *const *argv,
                          const size_t *lens) {
  int64_t rc;
  c->rc.in_api++;
  rc = command(c, argc, argv, lens);
  c->rc.in_api--;
  return rc;
}

void myc__redis_close(myc_redis *c) { myc__reconnect_close(&c->rc); }

void myc__redis_free(myc_redis *c) { myc__reconnect_release(&c->rc); }

const char *myc__redis_state(const myc_redis *c) {
  return myc__reconnect_state(&c->rc);
}

void myc__redis_set_max_reply(myc_redis *c, size_t bytes) {
  c->max_reply = bytes;
}

const char *myc__redis_server(const myc_redis *c) { return c->rc.server; }
const char *myc__redis_error(const myc_redis *c) { return c->rc.err; }
uint32_t myc__redis_pending(const myc_redis *c) { return c->user_pending; }

void myc__redis_reply_view(const void *p, myc_redis_value *v) {
  const redisReply *r = p;
  memset(v, 0, sizeof *v);
  switch (r->type) {
  case REDIS_REPLY_ARRAY:
    v->type = MYC_REDIS_ARRAY;
    v->elements = r->elements;
    break;
  case REDIS_REPLY_INTEGER:
    v->type = MYC_REDIS_INTEGER;
    v->integer = r->integer;
    break;
  case REDIS_REPLY_NIL:
    v->type = MYC_REDIS_NIL;
    break;
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR:
    v->type =
        r->type == REDIS_REPLY_STATUS ? MYC_REDIS_STATUS : MYC_REDIS_ERROR;
    v->str = r->str;
    v->len = r->len;
    break;
  default:
    v->type = MYC_REDIS_STRING;
    v->str = r->str;
    v->len = r->len;
  }
}

const void *myc__redis_reply_element(const void *p, size_t i) {
  const redisReply *r = p;
  if (r->type != REDIS_REPLY_ARRAY || i >= r->elements)
    return NULL;
  return r->element[i];
}
