/* control.c -- the control channel (see control.h, docs/CONTROL.md).
 *
 * Everything here runs on the monitor loop, never on a worker: status is
 * read from counters the workers publish, and a reload is compiled here
 * and handed to the service's worker, whose answer comes back through
 * myc__monitor_post.  A connection carries one request and one reply.
 */
#include "supervise/control.h"

#include "runtime/activation.h"
#include "supervise/control_proto.h"
#include "supervise/monitor.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LINE_MAX_BYTES MYC__CTL_LINE_MAX
#define RELOAD_REPLY_MS 10000
/* A client gets this long to send its request, and again to take its
 * reply: one that does neither must not hold a descriptor for ever. */
#define REQUEST_MS 5000
#define WRITE_MS 5000
/* Connections open at once.  At the cap a new client still gets in: the
 * oldest connection that has sent nothing yet makes room for it. */
#define MAX_CONNS 64

typedef struct conn conn;

/* A reload on its way: the worker fills it, the monitor loop answers. */
typedef struct {
  myc__job job; /* first */
  myc__supervise *sv;
  myc_engine *e;
  myc_service *s;
  conn *c; /* NULL once the connection gave up waiting */
  int rc;
  char err[1024];
} ticket;

struct conn {
  conn *next, *prev;
  myc__control *ctl;
  uv_pipe_t pipe;
  uv_timer_t timer;
  uv_write_t wr;
  char *out;
  size_t outlen;
  int open_handles;
  int requested; /* its request line was read */
  int replied;
  ticket *waiting;
  size_t len;
  size_t line_len; /* of the request waiting for the engine's start */
  char buf[LINE_MAX_BYTES + 1];
};

struct myc__control {
  myc__supervise *sv;
  myc_engine *e;
  uv_pipe_t server;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  conn *conns; /* newest first */
  int nconns;
};

/* ---- status ------------------------------------------------------------- */

/* ,"drops":[{topic, dropped_oldest, dropped_newest, rejected, shutdown,
 * too_large}] */
static void status_drops_json(myc__sbuf *b, myc_engine *e, myc_service *s) {
  myc_drop_stats d[MYC_DROP_TOPICS + 1];
  int n = myc__engine_drops_locked(e, s, d, MYC_DROP_TOPICS + 1), k;
  myc__sb_put(b, ",\"drops\":[", 10);
  for (k = 0; k < n; k++) {
    myc__sb_printf(b, "%s{\"topic\":", k ? "," : "");
    myc__sb_json(b, d[k].topic);
    myc__sb_printf(b,
                   ",\"dropped_oldest\":%llu,\"dropped_newest\":%llu,"
                   "\"rejected\":%llu,\"shutdown\":%llu,\"too_large\":%llu}",
                   (unsigned long long)d[k].dropped_oldest,
                   (unsigned long long)d[k].dropped_newest,
                   (unsigned long long)d[k].rejected,
                   (unsigned long long)d[k].shutdown,
                   (unsigned long long)d[k].too_large);
  }
  myc__sb_put(b, "]", 1);
}

static void status_service(myc__sbuf *b, myc_engine *e, myc_service *s,
                           int first) {
  myc_service_stats st;
  myc__engine_stats_locked(e, s, &st);
  myc__sb_printf(b, "%s{\"name\":", first ? "" : ",");
  myc__sb_json(b, st.name);
  myc__sb_printf(b, ",\"worker\":%d,\"state\":\"%s\",\"kind\":\"%s\"",
                 st.worker, st.state, s->cb ? "c" : "lua");
  if (s->cb == NULL) {
    myc__sb_put(b, ",\"module\":", 10);
    uv_mutex_lock(&s->hook_lock);
    myc__sb_json(b, s->module);
    uv_mutex_unlock(&s->hook_lock);
  }
  myc__sb_printf(b, ",\"version\":%u,\"restart\":\"%s\",\"group\":", st.version,
                 st.restart);
  if (st.group != NULL)
    myc__sb_json(b, st.group);
  else
    myc__sb_put(b, "null", 4);
  /* Spawned at run time: by whom ("" for the host); null: configured. */
  myc__sb_put(b, ",\"spawned_by\":", 14);
  if (s->spawned)
    myc__sb_json(b, s->parent ? s->parent : "");
  else
    myc__sb_put(b, "null", 4);
  myc__sb_printf(
      b,
      ",\"restarts\":%llu,\"errors\":%llu,\"timeouts\":%llu,"
      "\"reloads\":%llu,\"reload_failures\":%llu,\"rollbacks\":%llu",
      (unsigned long long)st.restarts, (unsigned long long)st.errors,
      (unsigned long long)st.timeouts, (unsigned long long)st.reloads,
      (unsigned long long)st.reload_failures, (unsigned long long)st.rollbacks);
  myc__sb_printf(
      b,
      ",\"in\":%llu,\"out\":%llu,\"unrouted\":%llu,\"dropped\":%llu,"
      "\"dropped_oldest\":%llu,\"dropped_newest\":%llu,"
      "\"rejected\":%llu,\"too_large\":%llu,\"queue_depth\":%u,"
      "\"queue_capacity\":%u,\"queue_bytes\":%llu,\"queue_max_bytes\":%llu",
      (unsigned long long)st.in, (unsigned long long)st.out,
      (unsigned long long)st.unrouted, (unsigned long long)st.dropped,
      (unsigned long long)st.dropped_oldest,
      (unsigned long long)st.dropped_newest, (unsigned long long)st.rejected,
      (unsigned long long)st.too_large, st.queue_depth, st.queue_capacity,
      (unsigned long long)st.queue_bytes,
      (unsigned long long)st.queue_max_bytes);
  myc__sb_printf(b,
                 ",\"memory_bytes\":%llu,\"memory_peak\":%llu,"
                 "\"memory_limit\":%llu,\"running\":",
                 (unsigned long long)st.memory_bytes,
                 (unsigned long long)st.memory_peak,
                 (unsigned long long)st.memory_limit);
  myc__sb_json(b, st.running);
  myc__sb_printf(b, ",\"running_ms\":%.1f", st.running_ms);
  myc__sb_printf(b, ",\"requests_dropped\":%llu,\"replies_late\":%llu",
                 (unsigned long long)st.requests_dropped,
                 (unsigned long long)st.replies_late);
  myc__sb_printf(b, ",\"logs_suppressed\":%llu",
                 (unsigned long long)atomic_load(&s->log_bucket.total));
  status_drops_json(b, e, s);
  myc__sb_put(b, "}", 1);
}

#define TEXT_ROW "%-20s %3s %-10s %3s %8s %15s %10s %10s %8s %-12s %s\n"

/* Losses by topic of service 'i' (text): one line per topic with any. */
static void status_drops_text(myc__sbuf *b, myc_engine *e, myc_service *s) {
  myc_drop_stats d[MYC_DROP_TOPICS + 1];
  int n = myc__engine_drops_locked(e, s, d, MYC_DROP_TOPICS + 1), k;
  for (k = 0; k < n; k++)
    myc__sb_printf(b,
                   "  %-18s dropped on %s: oldest %llu, newest %llu, rejected "
                   "%llu, at shutdown %llu, too large %llu\n",
                   s->name, d[k].topic,
                   (unsigned long long)d[k].dropped_oldest,
                   (unsigned long long)d[k].dropped_newest,
                   (unsigned long long)d[k].rejected,
                   (unsigned long long)d[k].shutdown,
                   (unsigned long long)d[k].too_large);
}

/* Emits that reached no one (text), for a service with any: a topic
 * misspelled at the emitter or at the subscriber shows here. */
static void status_unrouted_text(myc__sbuf *b, myc_engine *e,
                                 myc_service *s) {
  myc_service_stats st;
  myc__engine_stats_locked(e, s, &st);
  if (st.unrouted > 0)
    myc__sb_printf(b,
                   "  %-18s emitted %llu message%s on topics no service "
                   "subscribes to (unrouted)\n",
                   st.name, (unsigned long long)st.unrouted,
                   st.unrouted == 1 ? "" : "s");
}

/* Requests a service lost track of (text), for a service with any. */
static void status_requests_text(myc__sbuf *b, myc_engine *e,
                                 myc_service *s) {
  myc_service_stats st;
  myc__engine_stats_locked(e, s, &st);
  if (st.requests_dropped > 0 || st.replies_late > 0)
    myc__sb_printf(b,
                   "  %-18s requests dropped by a restart or reload %llu, "
                   "replies late %llu\n",
                   st.name, (unsigned long long)st.requests_dropped,
                   (unsigned long long)st.replies_late);
  if (atomic_load(&s->log_bucket.total) > 0)
    myc__sb_printf(b,
                   "  %-18s log records suppressed (over its log rate) "
                   "%llu\n",
                   st.name,
                   (unsigned long long)atomic_load(&s->log_bucket.total));
}

static void status_text_service(myc__sbuf *b, myc_engine *e,
                                myc_service *s) {
  myc_service_stats st;
  char mem[32], run[180], queue[32], wrk[16], ver[16], restarts[24];
  char in[24], out[24], dropped[24];
  myc__engine_stats_locked(e, s, &st);
  if (st.memory_limit)
    snprintf(mem, sizeof mem, "%.1f/%.0fM", (double)st.memory_bytes / 1048576,
             (double)st.memory_limit / 1048576);
  else
    snprintf(mem, sizeof mem, "%.1fM", (double)st.memory_bytes / 1048576);
  if (st.running[0] && st.running_ms > 0)
    snprintf(run, sizeof run, "%s (%.0f ms)", st.running, st.running_ms);
  else
    snprintf(run, sizeof run, "%s", st.running[0] ? st.running : "-");
  snprintf(queue, sizeof queue, "%u/%u", st.queue_depth, st.queue_capacity);
  snprintf(wrk, sizeof wrk, "%d", st.worker);
  snprintf(ver, sizeof ver, "%u", st.version);
  snprintf(restarts, sizeof restarts, "%llu", (unsigned long long)st.restarts);
  snprintf(in, sizeof in, "%llu", (unsigned long long)st.in);
  snprintf(out, sizeof out, "%llu", (unsigned long long)st.out);
  snprintf(dropped, sizeof dropped, "%llu", (unsigned long long)st.dropped);
  myc__sb_printf(b, TEXT_ROW, st.name, wrk, st.state, ver, restarts, queue, in,
                 out, dropped, mem, run);
}

int myc__control_status(myc_engine *e, int text, char **out, size_t *len) {
  myc__sbuf b = {&e->alloc, NULL, 0, 0, 0};
  myc_lifecycle_stats lc;
  uint32_t i, k;
  myc_engine_lifecycle_stats(e, &lc);
  if (text) {
    myc__sb_printf(&b, "node %s, %u worker%s, %u service%s", e->node,
                   e->sched.nworkers, e->sched.nworkers == 1 ? "" : "s",
                   lc.services, lc.services == 1 ? "" : "s");
    if (atomic_load(&e->log.dropped) + atomic_load(&e->log.suppressed) > 0)
      myc__sb_printf(&b,
                     "; log records dropped %llu (output not keeping "
                     "up), suppressed %llu (over a service's rate)",
                     (unsigned long long)atomic_load(&e->log.dropped),
                     (unsigned long long)atomic_load(&e->log.suppressed));
    if (lc.spawned + lc.removed > 0)
      myc__sb_printf(&b, "; %llu spawned, %llu removed (%llu queued "
                     "message%s dropped with them)",
                     (unsigned long long)lc.spawned,
                     (unsigned long long)lc.removed,
                     (unsigned long long)lc.dropped, lc.dropped == 1 ? "" : "s");
    myc__sb_put(&b, "\n", 1);
    myc__sb_printf(&b, TEXT_ROW, "SERVICE", "WRK", "STATE", "VER", "RESTARTS",
                   "QUEUE", "IN", "OUT", "DROPPED", "MEMORY", "RUNNING");
  } else {
    myc__sb_printf(&b, "{\"ok\":true,\"protocol\":1,\"node\":");
    myc__sb_json(&b, e->node);
    myc__sb_printf(&b,
                   ",\"version\":\"%s\",\"pid\":%d,\"workers\":%u,"
                   "\"lifecycle\":{\"spawned\":%llu,\"removed\":%llu,"
                   "\"dropped\":%llu},\"log\":{\"dropped\":%llu,"
                   "\"suppressed\":%llu},\"services\":[",
                   myc_version(), (int)getpid(), e->sched.nworkers,
                   (unsigned long long)lc.spawned,
                   (unsigned long long)lc.removed,
                   (unsigned long long)lc.dropped,
                   (unsigned long long)atomic_load(&e->log.dropped),
                   (unsigned long long)atomic_load(&e->log.suppressed));
  }
  uv_mutex_lock(&e->services_lock);
  /* In the order the services came (the registry's, holes skipped). */
  for (i = 0, k = 0; i < e->endservices; i++) {
    myc_service *s = e->services[i];
    if (s == NULL)
      continue;
    if (text)
      status_text_service(&b, e, s);
    else
      status_service(&b, e, s, k++ == 0);
  }
  if (text)
    for (i = 0; i < e->endservices; i++) {
      myc_service *s = e->services[i];
      if (s == NULL)
        continue;
      status_drops_text(&b, e, s);
      status_unrouted_text(&b, e, s);
      status_requests_text(&b, e, s);
    }
  uv_mutex_unlock(&e->services_lock);
  if (!text)
    myc__sb_put(&b, "]", 1);
  {
    /* What runs beside the workers (links) adds its own part. */
    myc__beside *x;
    for (x = e->besides; x != NULL; x = x->next) {
      size_t n = 0;
      char *part = x->status ? x->status(x->ud, !text, &n) : NULL;
      if (part != NULL) {
        myc__sb_put(&b, part, n);
        myc__free(&e->alloc, part, n + 1);
      }
    }
  }
  if (!text)
    myc__sb_put(&b, "}\n", 2);
  if (b.failed) {
    if (b.p != NULL)
      myc__free(b.a, b.p, b.cap);
    return MYC_ENOMEM;
  }
  *out = b.p;
  *len = b.cap;
  return 0;
}

/* ---- connections -------------------------------------------------------- */

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->open_handles > 0)
    return;
  if (c->out != NULL)
    myc__free(&c->ctl->e->alloc, c->out, c->outlen);
  myc__free(&c->ctl->e->alloc, c, sizeof *c);
}

static void conn_close(conn *c) {
  if (uv_is_closing((uv_handle_t *)&c->pipe))
    return;
  if (c->waiting != NULL)
    c->waiting->c = NULL;
  c->waiting = NULL;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    c->ctl->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->ctl->nconns--;
  uv_close((uv_handle_t *)&c->pipe, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  conn_close(req->data);
}

/* Waiting for a request, or for a client to take its reply. */
static void on_idle_timeout(uv_timer_t *h);

/* Sends 'reply' (taking the buffer of 'cap' bytes, 'n' used) and closes. */
static void conn_reply(conn *c, char *reply, size_t n, size_t cap) {
  uv_buf_t buf;
  if (c->replied || uv_is_closing((uv_handle_t *)&c->pipe)) {
    myc__free(&c->ctl->e->alloc, reply, cap);
    return;
  }
  c->replied = 1;
  c->out = reply;
  c->outlen = cap;
  buf = uv_buf_init(reply, (unsigned)n);
  c->wr.data = c;
  uv_read_stop((uv_stream_t *)&c->pipe);
  uv_timer_start(&c->timer, on_idle_timeout, WRITE_MS, 0);
  if (uv_write(&c->wr, (uv_stream_t *)&c->pipe, &buf, 1, on_written) != 0)
    conn_close(c);
}

static void reply_fmt(conn *c, const char *fmt, ...) {
  myc__sbuf b = {&c->ctl->e->alloc, NULL, 0, 0, 0};
  char tmp[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  myc__sb_put(&b, tmp, strlen(tmp));
  if (b.failed) {
    conn_close(c);
    return;
  }
  conn_reply(c, b.p, b.len, b.cap);
}

static void reply_error(conn *c, int rc, const char *err) {
  myc__sbuf b = {&c->ctl->e->alloc, NULL, 0, 0, 0};
  myc__sb_printf(&b,
                 "{\"ok\":false,\"code\":\"%s\",\"error\":", myc_err_name(rc));
  myc__sb_json(&b, err);
  myc__sb_put(&b, "}\n", 2);
  if (b.failed) {
    conn_close(c);
    return;
  }
  conn_reply(c, b.p, b.len, b.cap);
}

static void reply_reloaded(conn *c, myc_service *s) {
  myc__sbuf b = {&c->ctl->e->alloc, NULL, 0, 0, 0};
  myc_service_stats st;
  /* By name, under the registry's lock: the service may be gone. */
  if (myc__engine_stats_by_name(c->ctl->e, s->name, s->name_len, &st) != 0)
    memset(&st, 0, sizeof st);
  myc__sb_printf(&b, "{\"ok\":true,\"service\":");
  myc__sb_json(&b, s->name);
  myc__sb_printf(&b, ",\"version\":%u,\"pause_ms\":%.3f}\n", st.version,
                 st.last_pause_ms);
  if (b.failed) {
    conn_close(c);
    return;
  }
  conn_reply(c, b.p, b.len, b.cap);
}

/* ---- reload ---------------------------------------------------------------
 */

static void ticket_run(myc__job *j, int run) {
  ticket *t = (ticket *)j;
  if (run && t->c != NULL) {
    conn *c = t->c;
    c->waiting = NULL;
    if (t->rc == 0) {
      reply_reloaded(c, t->s);
    } else {
      myc__control_hide_token(t->err, sizeof t->err);
      reply_error(c, t->rc, t->err);
    }
  }
  myc__engine_unpin(t->s);
  myc__free(&t->e->alloc, t, sizeof *t);
}

/* On the service's worker: hand the answer to the monitor loop. */
static void reload_done(void *ud, int rc, const char *err) {
  ticket *t = ud;
  t->rc = rc;
  snprintf(t->err, sizeof t->err, "%s", err ? err : "");
  myc__monitor_post(t->sv, &t->job);
}

static void on_reload_timeout(uv_timer_t *h) {
  conn *c = h->data;
  char running[128], msg[512];
  myc_service *s = c->waiting ? c->waiting->s : NULL;
  if (s == NULL)
    return;
  myc__service_running(s, running, sizeof running);
  snprintf(msg, sizeof msg,
           "service '%s': its worker has not reached the "
           "swap after %d s (running: %s); the reload will happen when it "
           "does",
           s->name, RELOAD_REPLY_MS / 1000,
           running[0] ? running : "another service");
  c->waiting->c = NULL;
  c->waiting = NULL;
  reply_error(c, MYC_ETIMEDOUT, msg);
}

static void do_reload(conn *c, const char *name, const char *module) {
  myc_engine *e = c->ctl->e;
  /* Pinned until the ticket is answered: it may be killed meanwhile. */
  myc_service *s = myc__engine_pin(e, name, strlen(name));
  char err[1024];
  ticket *t;
  int rc;
  if (s == NULL) {
    snprintf(err, sizeof err, "no service named '%s'", name);
    reply_error(c, MYC_ENOENT, err);
    return;
  }
  t = myc__calloc(&e->alloc, sizeof *t);
  if (t == NULL) {
    myc__engine_unpin(s);
    reply_error(c, MYC_ENOMEM, "out of memory");
    return;
  }
  t->job.fn = ticket_run;
  t->sv = c->ctl->sv;
  t->e = e;
  t->s = s;
  t->c = c;
  c->waiting = t;
  rc = myc__reload_start(c->ctl->sv, s, module, 0, reload_done, t, err,
                         sizeof err);
  if (rc != 0) {
    c->waiting = NULL;
    myc__free(&e->alloc, t, sizeof *t);
    myc__engine_unpin(s);
    myc__control_hide_token(err, sizeof err);
    reply_error(c, rc, err);
    return;
  }
  uv_timer_start(&c->timer, on_reload_timeout, RELOAD_REPLY_MS, 0);
}

/* ---- requests ----------------------------------------------------------- */

static void handle_line(conn *c, char *line, size_t len);

static void on_start_wait(uv_timer_t *h) {
  conn *c = h->data;
  handle_line(c, c->buf, c->line_len);
}

static void handle_line(conn *c, char *line, size_t len) {
  myc__ctl_request req;
  char err[512], *out;
  size_t cap;
  int rc;
  c->requested = 1;
  uv_timer_stop(&c->timer);
  /* The socket is bound before the workers run (a bad path fails the
   * start): a request that comes meanwhile waits for them, asked again
   * every millisecond, rather than being refused as "not running". */
  if (!atomic_load(&c->ctl->e->started) && !atomic_load(&c->ctl->e->stopping)) {
    c->line_len = len;
    uv_timer_start(&c->timer, on_start_wait, 1, 0);
    return;
  }
  rc = myc__control_parse(line, len, &req, err, sizeof err);
  if (rc != 0) {
    reply_error(c, rc, err);
  } else if (req.verb == MYC__CTL_STATUS) {
    if (myc__control_status(c->ctl->e, req.text, &out, &cap) != 0)
      reply_error(c, MYC_ENOMEM, "out of memory");
    else
      conn_reply(c, out, strlen(out), cap);
  } else if (req.verb == MYC__CTL_RELOAD) {
    do_reload(c, req.service, req.module);
  } else {
    reply_fmt(c, "{\"ok\":true,\"protocol\":1}\n");
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  (void)hint;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(LINE_MAX_BYTES - c->len));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  conn *c = st->data;
  char *nl;
  (void)buf;
  if (n < 0) {
    /* EOF: a request without its newline still counts. */
    if (n == UV_EOF && c->len > 0 && !c->requested) {
      uv_read_stop(st);
      handle_line(c, c->buf, c->len);
    } else if (c->waiting == NULL) {
      conn_close(c);
    } else {
      uv_read_stop(st);
    }
    return;
  }
  c->len += (size_t)n;
  nl = memchr(c->buf, '\n', c->len);
  if (nl != NULL) {
    uv_read_stop(st);
    handle_line(c, c->buf, (size_t)(nl - c->buf));
  } else if (c->len == LINE_MAX_BYTES) {
    uv_read_stop(st);
    c->requested = 1;
    reply_error(c, MYC_ETOOBIG, "request line longer than 4096 bytes");
  }
}

static void on_idle_timeout(uv_timer_t *h) {
  conn *c = h->data;
  char msg[64];
  if (c->replied) { /* the client does not read its reply */
    conn_close(c);
    return;
  }
  snprintf(msg, sizeof msg, "no request line within %d s", REQUEST_MS / 1000);
  reply_error(c, MYC_ETIMEDOUT, msg);
}

/* At the cap: closes the oldest connection that has sent nothing yet.
 * Returns 0, or MYC_ELIMIT when every one is busy with a request. */
static int make_room(myc__control *ctl) {
  conn *c, *oldest = NULL;
  char msg[160];
  for (c = ctl->conns; c != NULL; c = c->next)
    if (!c->requested && !uv_is_closing((uv_handle_t *)&c->pipe))
      oldest = c;
  if (oldest == NULL)
    return MYC_ELIMIT;
  snprintf(msg, sizeof msg,
           "closed to make room: %d control connections were open and "
           "this one had sent no request",
           MAX_CONNS);
  oldest->requested = 1;
  reply_error(oldest, MYC_ELIMIT, msg);
  conn_close(oldest); /* its reply may never be read; the slot is needed */
  return 0;
}

static void on_connection(uv_stream_t *server, int status) {
  myc__control *ctl = server->data;
  conn *c;
  int full;
  if (status != 0)
    return;
  full = ctl->nconns >= MAX_CONNS && make_room(ctl) != 0;
  c = myc__calloc(&ctl->e->alloc, sizeof *c);
  if (c == NULL)
    return;
  c->ctl = ctl;
  uv_pipe_init(server->loop, &c->pipe, 0);
  uv_timer_init(server->loop, &c->timer);
  c->pipe.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = ctl->conns;
  if (ctl->conns != NULL)
    ctl->conns->prev = c;
  ctl->conns = c;
  ctl->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
    conn_close(c);
  } else if (full) {
    c->requested = 1;
    reply_error(c, MYC_ELIMIT,
                "too many control connections, each busy with a "
                "request; try again once a reload is done");
  } else if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) {
    conn_close(c);
  } else {
    uv_timer_start(&c->timer, on_idle_timeout, REQUEST_MS, 0);
  }
}

/* ---- listener -------------------------------------------------------------
 */

/* A socket file left by an engine that died: nobody accepts on it. */
static int stale_socket(const char *path) {
  struct sockaddr_un sa;
  struct stat sb;
  int fd, rc;
  if (lstat(path, &sb) != 0 || !S_ISSOCK(sb.st_mode))
    return 0;
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return 0;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  close(fd);
  return rc != 0 && errno == ECONNREFUSED;
}

/* Why 'path' cannot be listened on.  libuv reports a missing directory
 * as EACCES (as Windows does); say what is really wrong. */
static void listen_error(const char *path, int rc, char *err, size_t errlen) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *slash = strrchr(path, '/');
  struct stat sb;
  if (slash == NULL || slash == path)
    snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  if (rc == UV_EACCES && stat(dir, &sb) != 0 && errno == ENOENT)
    snprintf(err, errlen,
             "control: cannot listen on %s: directory %s does not exist "
             "(create it, or set control to a path in one that does)",
             path, dir);
  else if (rc == UV_EACCES && stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
    snprintf(err, errlen, "control: cannot listen on %s: %s is not a directory",
             path, dir);
  else
    snprintf(err, errlen, "control: cannot listen on %s: %s%s", path,
             uv_strerror(rc),
             rc == UV_EADDRINUSE ? " (another engine is running there?)" : "");
}

int myc__control_open(myc__supervise *sv, uv_loop_t *loop, const char *url,
                      myc__control **out, char *err, size_t errlen) {
  myc_engine *e = sv->e;
  myc__control *c;
  const char *path = url + 7;
  mode_t old;
  int rc;
  *out = NULL;
  if (strncmp(url, "unix://", 7) != 0 || *path == '\0' ||
      strlen(path) >= sizeof c->path) {
    snprintf(err, errlen,
             "control: '%s' is not unix:///path (at most %zu "
             "bytes of path)",
             url, sizeof c->path - 1);
    return MYC_EINVAL;
  }
  c = myc__calloc(&e->alloc, sizeof *c);
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  c->sv = sv;
  c->e = e;
  snprintf(c->path, sizeof c->path, "%s", path);
  /* A client that hangs up before its reply must not kill the engine
   * with SIGPIPE; keep a disposition the host chose. */
  {
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
      signal(SIGPIPE, SIG_IGN);
  }
  if (stale_socket(c->path))
    unlink(c->path);
  uv_pipe_init(loop, &c->server, 0);
  c->server.data = c;
  /* Only this user may talk to it: reload runs code. */
  old = umask(077);
  rc = uv_pipe_bind(&c->server, c->path);
  umask(old);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&c->server, 16, on_connection);
  if (rc != 0) {
    listen_error(c->path, rc, err, errlen);
    uv_close((uv_handle_t *)&c->server, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    myc__free(&e->alloc, c, sizeof *c);
    return rc;
  }
  chmod(c->path, 0600);
  *out = c;
  return 0;
}

static void server_closed(uv_handle_t *h) {
  myc__control *c = h->data;
  myc__free(&c->e->alloc, c, sizeof *c);
}

void myc__control_close(myc__control *c) {
  while (c->conns != NULL)
    conn_close(c->conns);
  unlink(c->path);
  uv_close((uv_handle_t *)&c->server, server_closed);
}
