/* server.c -- the replay server's connections and streaming (see
 * server.h).
 *
 * A connection starts as HTTP/1.1: a POST is one JSON-RPC request (or
 * batch) answered in the response; a GET with an upgrade becomes a
 * WebSocket, whose text messages are JSON-RPC requests.  After
 * eth_subscribe the connection streams pre-encoded notification frames
 * straight into its stream's queue: wslay's own frames (replies, pongs,
 * close) are always complete when we append, because our send callback
 * takes whole buffers, so the two never interleave inside a frame.
 */
#include "server.h"

#include "net/http_msg.h"
#include "rpc.h"
#include "net/stream.h"
#include "net/ws_handshake.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

/* Stop producing above this many queued bytes; produce again on drain. */
#define HIGH_WATER (1u << 20)
#define MAX_BODY (1u << 20)

typedef struct server server;

typedef struct conn {
  server *srv;
  struct conn *next;
  myc__stream st;
  myc__http_msg http;
  int websocket;
  wslay_event_context_ptr wslay;
  const char *in;
  size_t in_len;
  int in_recv;
  char *body;
  size_t body_len;
  int streaming;    /* subscribed: notifications flow */
  int pace_waiting; /* the pace timer will resume production */
  int dropping;
  uint64_t sent; /* notifications on this connection */
  uv_timer_t pace;
  int handles; /* stream + pace timer still open */
  double rate_credit;
  uint64_t rate_last_ms;
} conn;

struct server {
  const server_options *o;
  capture *cap;
  chain *ch;
  myc__alloc alloc;
  uv_loop_t *loop;
  uv_tcp_t listener;
  SSL_CTX *tls;
  conn *conns;
  size_t pos;     /* next notification of the chain */
  uint64_t plays; /* completed plays of the capture */
  uint64_t drops_done;
  uint64_t sent, sent_bytes;
  uint64_t t_first, t_last; /* uv_hrtime of the first and last send */
  int exhausted;
  int held; /* --hold: no notification before SIGUSR1 */
  uv_signal_t sigint, sigterm, sigusr1;
  uv_timer_t ttl;
};

static http_parser_settings req_settings;

/* ---- lifetime -------------------------------------------------------------
 */

static void stop_server(server *s);

static void conn_release(conn *c) {
  server *s = c->srv;
  conn **pp;
  if (--c->handles > 0)
    return;
  for (pp = &s->conns; *pp != NULL; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  if (c->wslay != NULL)
    wslay_event_context_free(c->wslay);
  myc__stream_destroy(&c->st);
  free(c->body);
  free(c);
  if (s->o->once && s->exhausted && s->conns == NULL)
    stop_server(s);
}

static void on_pace_closed(uv_handle_t *h) {
  conn_release(h->data);
}

static void on_closed(myc__stream *st) {
  conn *c = st->data;
  uv_close((uv_handle_t *)&c->pace, on_pace_closed);
  conn_release(c);
}

static void on_error(myc__stream *st, int err, const char *msg) {
  conn *c = st->data;
  if (!c->srv->o->quiet && err != UV_EOF && err != UV_ECONNRESET)
    fprintf(stderr, "replay: connection: %s\n", msg);
}

/* ---- streaming --------------------------------------------------------------
 */

static void produce(conn *c);

static void on_pace(uv_timer_t *t) {
  conn *c = t->data;
  c->pace_waiting = 0;
  produce(c);
}

/* How many notifications from the chain position may go now. */
static size_t allowance(conn *c) {
  server *s = c->srv;
  const capture *cap = s->cap;
  size_t n = cap->n - s->pos, k;
  uint64_t now_ms, gap;
  switch (s->o->pace) {
  case PACE_BLOCK:
    /* The rest of the current block now, the next block later. */
    for (k = 1; k < n && cap->block[s->pos + k] == cap->block[s->pos]; k++)
      ;
    if (s->pos + k < cap->n) {
      gap = cap->block[s->pos + k] > cap->block[s->pos]
                ? cap->block[s->pos + k] - cap->block[s->pos]
                : 1;
      c->pace_waiting = 1;
      uv_timer_start(&c->pace, on_pace,
                     (uint64_t)(s->o->block_ms * (double)(gap > 10 ? 10 : gap)),
                     0);
    }
    return k;
  case PACE_RATE:
    now_ms = uv_now(s->loop);
    c->rate_credit += s->o->rate * (double)(now_ms - c->rate_last_ms) / 1000;
    c->rate_last_ms = now_ms;
    if (c->rate_credit > s->o->rate)
      c->rate_credit = s->o->rate; /* at most a second's worth at once */
    k = (size_t)c->rate_credit;
    /* Spend only what goes now: the rest of a play may be shorter than
     * the credit, and what it cannot take belongs to the next play. */
    if (k > n)
      k = n;
    c->rate_credit -= (double)k;
    c->pace_waiting = 1;
    /* Every millisecond: a burst of 10 ms would queue behind itself and
     * show up as latency in whatever the client measures. */
    uv_timer_start(&c->pace, on_pace, 1, 0);
    return k;
  default:
    return n;
  }
}

/* The capture has run out: loop, or mark the server done. */
static int rewind_chain(server *s) {
  s->plays++;
  if (s->o->loops != 0 && s->plays >= s->o->loops) {
    s->exhausted = 1;
    return 0;
  }
  s->pos = 0;
  return 1;
}

static void drop_now(conn *c) {
  server *s = c->srv;
  c->streaming = 0;
  c->dropping = 1;
  s->drops_done++;
  if (!s->o->quiet)
    fprintf(stderr,
            "replay: dropping the connection after %llu "
            "notifications (as asked)\n",
            (unsigned long long)c->sent);
  /* What is queued still goes out, then FIN: no close frame. */
  myc__stream_close(&c->st, 1, 2000);
}

static void produce(conn *c) {
  server *s = c->srv;
  const capture *cap = s->cap;
  /* Held: the subscription reply went out; notifications wait. */
  while (!s->held && c->streaming && !c->pace_waiting &&
         myc__stream_queued(&c->st) < HIGH_WATER) {
    size_t k, bytes;
    if (s->pos == cap->n && !rewind_chain(s))
      break;
    if (s->o->drop_after && s->drops_done < s->o->drops &&
        c->sent >= s->o->drop_after) {
      drop_now(c);
      return;
    }
    k = allowance(c);
    if (s->o->drop_after && s->drops_done < s->o->drops &&
        c->sent + k > s->o->drop_after)
      k = (size_t)(s->o->drop_after - c->sent);
    /* Bound one copy so that the queue check runs again. */
    while (k > 1 && cap->offset[s->pos + k] - cap->offset[s->pos] > HIGH_WATER)
      k /= 2;
    if (k == 0)
      break;
    bytes = cap->offset[s->pos + k] - cap->offset[s->pos];
    if (myc__stream_queue(&c->st, cap->frames + cap->offset[s->pos], bytes))
      break;
    if (s->t_first == 0)
      s->t_first = uv_hrtime();
    s->t_last = uv_hrtime();
    s->pos += k;
    s->sent += k;
    s->sent_bytes += bytes;
    c->sent += k;
  }
  myc__stream_flush(&c->st);
}

static void on_drain(myc__stream *st) {
  produce(st->data);
}

/* ---- WebSocket
 * ---------------------------------------------------------------- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *ud) {
  conn *c = ud;
  (void)flags;
  if (c->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > c->in_len)
    len = c->in_len;
  memcpy(buf, c->in, len);
  c->in += len;
  c->in_len -= len;
  return (ssize_t)len;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *p,
                       size_t len, int flags, void *ud) {
  conn *c = ud;
  (void)flags;
  if (myc__stream_queue(&c->st, p, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

static void reply(conn *c, char *text) {
  struct wslay_event_msg m;
  if (text == NULL)
    return;
  m.opcode = WSLAY_TEXT_FRAME;
  m.msg = (const uint8_t *)text;
  m.msg_length = strlen(text);
  (void)wslay_event_queue_msg(c->wslay, &m);
  free(text);
}

static rpc_call call_for(conn *c, int websocket) {
  server *s = c->srv;
  rpc_call rc;
  memset(&rc, 0, sizeof rc);
  rc.ch = s->ch;
  rc.new_sub = s->cap->sub_id;
  rc.active_sub = c->streaming ? s->cap->sub_id : NULL;
  rc.websocket = websocket;
  rc.head_block = s->cap->n ? s->cap->block[s->pos ? s->pos - 1 : 0] : 0;
  return rc;
}

static void ws_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *m, void *ud) {
  conn *c = ud;
  rpc_call rc;
  (void)ctx;
  if (m->opcode != WSLAY_TEXT_FRAME)
    return;
  rc = call_for(c, 1);
  reply(c, rpc_answer(&rc, (const char *)m->msg, m->msg_length));
  if (rc.unsubscribed)
    c->streaming = 0;
  if (rc.subscribed) {
    c->streaming = 1;
    if (c->srv->o->restart)
      c->srv->pos = 0;
    c->rate_last_ms = uv_now(c->srv->loop);
  }
}

static const struct wslay_event_callbacks ws_cbs = {
    ws_recv, ws_send, NULL, NULL, NULL, NULL, ws_msg};

static void ws_feed(conn *c, const char *p, size_t n) {
  int rc;
  c->in = p;
  c->in_len = n;
  rc = wslay_event_recv(c->wslay);
  c->in_len = 0;
  if (rc == 0)
    rc = wslay_event_send(c->wslay);
  if (rc != 0 ||
      (wslay_event_get_close_sent(c->wslay) &&
       wslay_event_get_close_received(c->wslay)) ||
      !wslay_event_get_read_enabled(c->wslay)) {
    c->streaming = 0;
    myc__stream_close(&c->st, 1, 1000);
    return;
  }
  produce(c);
}

static int upgrade(conn *c, const char *rest, size_t n) {
  const char *key = myc__http_msg_get(&c->http, "sec-websocket-key");
  char acc[MYC_WS_ACCEPT_LEN + 1], head[256];
  if (c->http.parser.method != HTTP_GET || key == NULL ||
      !myc__http_msg_has_token(&c->http, "upgrade", "websocket"))
    return -1;
  myc__ws_accept(key, strlen(key), acc);
  snprintf(head, sizeof head,
           "HTTP/1.1 101 Switching Protocols\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: %s\r\n\r\n",
           acc);
  if (wslay_event_context_server_init(&c->wslay, &ws_cbs, c) != 0)
    return -1;
  wslay_event_config_set_max_recv_msg_length(c->wslay, MAX_BODY);
  c->websocket = 1;
  myc__stream_queue(&c->st, head, strlen(head));
  if (n > 0)
    ws_feed(c, rest, n);
  else
    myc__stream_flush(&c->st);
  return 0;
}

/* ---- HTTP
 * ------------------------------------------------------------------------ */

static void http_reply(conn *c, int status, const char *text, int keep) {
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: %zu\r\n%s\r\n",
                   status, status == 200 ? "OK" : "Bad Request", strlen(text),
                   keep ? "" : "Connection: close\r\n");
  myc__stream_queue(&c->st, head, (size_t)n);
  myc__stream_queue(&c->st, text, strlen(text));
  if (keep)
    myc__stream_flush(&c->st);
  else
    myc__stream_close(&c->st, 1, 1000);
}

static int on_begin(http_parser *p) {
  conn *c = myc__http_msg_of(p)->owner;
  myc__http_msg_reset(&c->http);
  c->body_len = 0;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  conn *c = myc__http_msg_of(p)->owner;
  char *b;
  if (c->body_len + n > MAX_BODY || !(b = realloc(c->body, c->body_len + n)))
    return 1;
  memcpy(b + c->body_len, at, n);
  c->body = b;
  c->body_len += n;
  return 0;
}

static int on_complete(http_parser *p) {
  conn *c = myc__http_msg_of(p)->owner;
  rpc_call rc;
  char *text;
  if (p->upgrade)
    return 0; /* the upgrade is handled after the parser returns */
  if (p->method != HTTP_POST) {
    http_reply(c, 400,
               "{\"error\":\"POST a JSON-RPC request, or upgrade "
               "to a WebSocket\"}",
               0);
    return 0;
  }
  rc = call_for(c, 0);
  text = rpc_answer(&rc, c->body ? c->body : "", c->body_len);
  http_reply(c, 200, text ? text : "", http_should_keep_alive(p));
  free(text);
  return 0;
}

static int on_data(myc__stream *st, const char *p, size_t n) {
  conn *c = st->data;
  size_t used;
  if (c->websocket) {
    ws_feed(c, p, n);
    return st->state != MYC_STREAM_OPEN;
  }
  used = http_parser_execute(&c->http.parser, &req_settings, p, n);
  if (c->http.parser.upgrade) {
    if (upgrade(c, p + used, n - used) != 0)
      http_reply(c, 400, "{\"error\":\"bad WebSocket upgrade\"}", 0);
  } else if (HTTP_PARSER_ERRNO(&c->http.parser) != HPE_OK &&
             st->state == MYC_STREAM_OPEN) {
    http_reply(c, 400, "{\"error\":\"bad HTTP request\"}", 0);
  }
  return st->state != MYC_STREAM_OPEN;
}

static const myc__stream_cbs conn_cbs = {NULL, on_data, on_drain, on_error,
                                         on_closed};

/* ---- the listener
 * ------------------------------------------------------------------ */

static void on_connection(uv_stream_t *l, int status) {
  server *s = l->data;
  conn *c;
  if (status < 0 || (c = calloc(1, sizeof *c)) == NULL)
    return;
  c->srv = s;
  c->handles = 2;
  c->next = s->conns;
  s->conns = c;
  uv_timer_init(s->loop, &c->pace);
  c->pace.data = c;
  myc__http_msg_init(&c->http, HTTP_REQUEST, c);
  myc__stream_init(&c->st, s->loop, &s->alloc, &conn_cbs, c);
  /* On failure the stream still calls on_closed, which frees. */
  (void)myc__stream_accept(&c->st, l, s->tls);
}

static void print_summary(server *s) {
  double secs = (double)(s->t_last - s->t_first) / 1e9;
  fprintf(stderr, "replay: sent %llu notifications (%.1f MB) in %.3f s",
          (unsigned long long)s->sent, (double)s->sent_bytes / 1e6, secs);
  if (secs > 0)
    fprintf(stderr, ": %.0f notifications/s", (double)s->sent / secs);
  fprintf(stderr, "\n");
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void stop_server(server *s) {
  uv_stop(s->loop);
}

static void on_signal(uv_signal_t *h, int sig) {
  (void)sig;
  stop_server(h->data);
}

/* --hold ends: every subscriber starts streaming now, its pace counted
 * from now rather than from its subscription. */
static void on_release(uv_signal_t *h, int sig) {
  server *s = h->data;
  conn *c;
  (void)sig;
  if (!s->held)
    return;
  s->held = 0;
  for (c = s->conns; c != NULL; c = c->next)
    if (c->streaming && !c->dropping) {
      c->rate_last_ms = uv_now(s->loop);
      produce(c);
    }
}

static void on_ttl(uv_timer_t *t) {
  stop_server(t->data);
}

static int listen_on(server *s) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound, rc;
  uv_ip4_addr("127.0.0.1", s->o->port, &addr);
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection)) != 0) {
    fprintf(stderr, "replay: cannot listen on 127.0.0.1:%d: %s\n", s->o->port,
            uv_strerror(rc));
    return -1;
  }
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  printf("listening on %s://127.0.0.1:%d/ (%zu notifications, subscription "
         "%s, %zu pools, %zu tokens)\n",
         s->tls ? "wss" : "ws", ntohs(((struct sockaddr_in *)&bound)->sin_port),
         s->cap->n, s->cap->sub_id, chain_pools(s->ch), chain_tokens(s->ch));
  fflush(stdout);
  return 0;
}

int server_run(const server_options *o, capture *cap, chain *ch) {
  server s;
  myc__tls_config tc;
  char err[300];
  int rc = 0;
  memset(&s, 0, sizeof s);
  s.o = o;
  s.cap = cap;
  s.ch = ch;
  s.alloc.fn = myc__default_alloc;
  s.loop = uv_default_loop();
  myc__http_msg_settings(&req_settings);
  req_settings.on_message_begin = on_begin;
  req_settings.on_body = on_body;
  req_settings.on_message_complete = on_complete;
  signal(SIGPIPE, SIG_IGN);
  if (o->cert && o->key) {
    memset(&tc, 0, sizeof tc);
    tc.cert_file = o->cert;
    tc.key_file = o->key;
    if ((s.tls = myc__tls_ctx_new(1, &tc, err, sizeof err)) == NULL) {
      fprintf(stderr, "replay: %s\n", err);
      return 1;
    }
  }
  if (listen_on(&s) != 0)
    rc = 1;
  if (rc == 0) {
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    s.held = o->hold;
    uv_signal_init(s.loop, &s.sigusr1);
    s.sigusr1.data = &s;
    uv_signal_start(&s.sigusr1, on_release, SIGUSR1);
    if (o->ttl > 0) {
      uv_timer_init(s.loop, &s.ttl);
      s.ttl.data = &s;
      uv_timer_start(&s.ttl, on_ttl, (uint64_t)(o->ttl * 1000), 0);
    }
    uv_run(s.loop, UV_RUN_DEFAULT);
  }
  print_summary(&s);
  /* Connections are dropped as the process ends; no need to free them. */
  uv_walk(s.loop, close_walk, NULL);
  if (s.tls)
    SSL_CTX_free(s.tls);
  return rc;
}
