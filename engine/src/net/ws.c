/* ws.c -- WebSocket client connections of services (see ws.h).
 *
 * One myc_ws lives from myc__ws_open() until both its owner released it
 * and libuv gave back its handles.  In between it runs attempts: connect
 * (stream.c), upgrade (ws_handshake.c), frames, and after each attempt
 * either a reconnect delay or the end.  Frames from the server are parsed
 * where the read left them (ws_recv.c) and delivered before the read's
 * buffer is reused; wslay frames what we send.  Every event reaches the
 * service from a loop callback, never from inside a myc_ws_* call, and
 * none after a release or a stop of the service.
 */
#include "net/ws.h"

#include "base/backoff.h"
#include "runtime/engine.h"
#include "net/stream.h"
#include "net/url.h"
#include "net/ws_handshake.h"

#include <math.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <wslay/wslay.h>

/* What the single timer is counting down. */
enum { TM_NONE, TM_UPGRADE, TM_PING, TM_PONG, TM_CLOSE, TM_RETRY, TM_FINAL };

struct myc_ws {
  myc__resource res;       /* first: the service's stop finds us through it */
  myc_service *svc;        /* only while attached: a service may go first */
  const myc__alloc *alloc; /* the engine's, which outlives the loops */
  int detached;
  uint64_t source;
  myc_ws_options opt;
  char *url_text, *protocol, *headers;
  myc__url url;
  SSL_CTX *ssl;
  int state;
  int upgrading;   /* connected, waiting for the 101 */
  int failures;    /* consecutive attempts that ended unhealthy */
  int user_closed; /* no reconnect: the service asked to close */
  int stopped;     /* released or service stopped: no more events */
  int released, timer_closed;
  int alive; /* bytes arrived since the last ping */
  int timer_mode;
  uv_timer_t timer;
  myc__stream st;
  myc__http_msg http;
  http_parser_settings hs;
  char key[MYC_WS_KEY_LEN + 1];
  wslay_event_context_ptr wslay; /* sending only */
  myc__ws_recv rx;
  int in_recv;      /* during feed(): sends wait for its end */
  uint64_t read_ns; /* when the read being fed returned */
  int err;          /* first error of this attempt */
  char errmsg[600];
  int close_code; /* received, or 1006 */
  char close_reason[124];
  size_t close_reason_len;
};

void myc__ws_options_init(myc_ws_options *o) {
  memset(o, 0, sizeof *o);
  o->reconnect = 1;
  o->backoff_initial_ms = 250;
  o->backoff_max_ms = 30000;
  o->backoff_multiplier = 2;
  o->backoff_jitter = 0.5;
  o->open_timeout_ms = 10000;
  o->ping_interval_ms = 30000;
  o->pong_timeout_ms = 10000;
  o->close_timeout_ms = 3000;
  o->max_message = 64.0 * 1024 * 1024;
  o->max_buffered = 64.0 * 1024 * 1024;
}

static const myc__alloc *alloc_of(const myc_ws *ws) {
  return ws->alloc;
}

/* ---- lifetime ------------------------------------------------------------ */

static void ws_free(myc_ws *ws) {
  const myc__alloc *a = alloc_of(ws);
  if (ws->wslay != NULL)
    wslay_event_context_free(ws->wslay);
  myc__stream_destroy(&ws->st);
  if (ws->ssl != NULL)
    SSL_CTX_free(ws->ssl);
  myc__strfree(a, ws->url_text);
  myc__strfree(a, ws->protocol);
  myc__strfree(a, ws->headers);
  myc__ws_recv_free(&ws->rx);
  myc__free(a, ws, sizeof *ws);
}

static void maybe_free(myc_ws *ws) {
  if (ws->released && ws->timer_closed && ws->st.state == MYC_STREAM_IDLE)
    ws_free(ws);
}

static void on_timer_closed(uv_handle_t *h) {
  myc_ws *ws = h->data;
  ws->timer_closed = 1;
  maybe_free(ws);
}

/* No more attempts: the connection is closed for good. */
static void finish(myc_ws *ws) {
  if (ws->state == MYC_WS_CLOSED)
    return;
  ws->state = MYC_WS_CLOSED;
  if (!ws->detached)
    myc__service_detach(ws->svc, &ws->res);
  ws->detached = 1;
  uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
}

/* Released, or the service stops: drop everything without events. */
static void shut(myc_ws *ws) {
  ws->stopped = 1;
  if (ws->st.state != MYC_STREAM_IDLE)
    myc__stream_close(&ws->st, 0, 0); /* finish() follows on_closed */
  else
    finish(ws);
}

/* The service stops (and may be freed before libuv returns our handles):
 * it already detached us, and we must not touch it again. */
static void on_resource_stop(myc__resource *r) {
  myc_ws *ws = (myc_ws *)r;
  ws->detached = 1;
  shut(ws);
}

/* ---- events ----------------------------------------------------------------
 */

static void emit(myc_ws *ws, int code, const void *data, size_t len) {
  if (!ws->stopped)
    (void)myc__service_event(ws->svc, ws->source, code, data, len);
}

/* Records the first error of an attempt, prefixed with the URL so that
 * whoever reads it knows which peer it is about. */
static void set_error(myc_ws *ws, int err, const char *fmt, ...) {
  va_list ap;
  int n;
  if (ws->err != 0)
    return;
  ws->err = err;
  n = snprintf(ws->errmsg, sizeof ws->errmsg, "%s: ", ws->url_text);
  va_start(ap, fmt);
  vsnprintf(ws->errmsg + n, sizeof ws->errmsg - (size_t)n, fmt, ap);
  va_end(ap);
}

/* Ends the current connection after an error.  'graceful' lets a close
 * frame we queued get out first. */
static void drop(myc_ws *ws, int graceful) {
  myc__stream_close(&ws->st, graceful, (uint64_t)ws->opt.close_timeout_ms);
}

static void on_timer(uv_timer_t *t);

static void arm(myc_ws *ws, int mode, double ms) {
  ws->timer_mode = mode;
  uv_timer_start(&ws->timer, on_timer, ms > 0 ? (uint64_t)ms : 0, 0);
}

static void disarm(myc_ws *ws) {
  ws->timer_mode = TM_NONE;
  uv_timer_stop(&ws->timer);
}

/* Delay before attempt number 'failures' + 1 (base/backoff.h). */
static double backoff(myc_ws *ws) {
  const myc_ws_options *o = &ws->opt;
  myc__backoff b;
  b.initial_ms = o->backoff_initial_ms;
  b.max_ms = o->backoff_max_ms;
  b.multiplier = o->backoff_multiplier;
  b.jitter = o->backoff_jitter;
  return myc__backoff_ms(&b, ws->failures > 0 ? (uint32_t)ws->failures - 1 : 0,
                         &myc__service_worker(ws->svc)->rng);
}

static void start_attempt(myc_ws *ws);

/* An attempt is over (its stream is closed): tell the service, then
 * reconnect after a delay or stop for good.  'failed' is 0 only for the
 * final event of a service that closed us between attempts. */
static void attempt_ended(myc_ws *ws, int failed) {
  myc_ws_close_info info;
  int final;
  if (ws->stopped) {
    finish(ws);
    return;
  }
  ws->failures += failed;
  final = ws->user_closed || !ws->opt.reconnect ||
          (ws->opt.max_attempts > 0 && ws->failures >= ws->opt.max_attempts);
  memset(&info, 0, sizeof info);
  info.code = ws->close_code;
  info.err = ws->err;
  info.attempt = ws->failures;
  info.reconnect_ms = final ? -1 : backoff(ws);
  info.reason = ws->close_reason;
  info.reason_len = ws->close_reason_len;
  info.error = ws->errmsg;
  if (final) {
    finish(ws);
  } else {
    ws->state = MYC_WS_WAITING;
    arm(ws, TM_RETRY, info.reconnect_ms);
  }
  /* The service may close or release us during the event: myc__ws_close
   * then schedules a final event, myc__ws_release finishes at once. */
  emit(ws, MYC_WS_EV_CLOSE, &info, sizeof info);
}

/* ---- frames ------------------------------------------------------------- */

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *p,
                             size_t len, int flags, void *ud) {
  myc_ws *ws = ud;
  (void)flags;
  /* Always takes everything: max_buffered bounds the queue instead. */
  if (myc__stream_queue(&ws->st, p, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

static int on_wslay_mask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                         void *ud) {
  (void)ctx;
  (void)ud;
  /* RFC 6455 wants masks an attacker cannot predict. */
  return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

static const struct wslay_event_callbacks wslay_cbs = {
    NULL, on_wslay_send, on_wslay_mask, NULL, NULL, NULL, NULL};

/* Delivers the messages received so far, in one event: at the end of
 * each read, and before a pong so that events keep the wire's order. */
static void flush_batch(myc_ws *ws) {
  myc_ws_batch b;
  if (ws->rx.n == 0)
    return;
  /* Closing: the service does not want more. */
  if (ws->state == MYC_WS_OPEN) {
    ws->failures = 0; /* a peer that delivers is healthy */
    myc__ws_recv_batch(&ws->rx, &b);
    b.arrival_ns = ws->read_ns;
    emit(ws, MYC_WS_EV_MESSAGES, &b, sizeof b);
  }
  myc__ws_recv_clear(&ws->rx);
}

/* ---- control frames (ws_recv callbacks) --------------------------------- */

/* Queues a control frame for pump(); none goes once our close is queued. */
static int queued(int rc) {
  return rc == 0 || rc == WSLAY_ERR_NO_MORE_MSG ? 0 : MYC_ENOMEM;
}

static int on_rx_ping(void *ud, const char *p, size_t n) {
  myc_ws *ws = ud;
  struct wslay_event_msg m;
  m.opcode = WSLAY_PONG;
  m.msg = (const uint8_t *)p;
  m.msg_length = n;
  return queued(wslay_event_queue_msg(ws->wslay, &m));
}

static int on_rx_pong(void *ud, const char *p, size_t n) {
  myc_ws *ws = ud;
  flush_batch(ws);
  emit(ws, MYC_WS_EV_PONG, p, n);
  return 0;
}

/* The server's close: answered with its code and reason, as RFC 6455
 * asks; after_recv() ends the connection once the answer is out. */
static int on_rx_close(void *ud, int code, const char *reason, size_t n) {
  myc_ws *ws = ud;
  ws->close_code = code;
  ws->close_reason_len =
      n < sizeof ws->close_reason ? n : sizeof ws->close_reason - 1;
  memcpy(ws->close_reason, reason, ws->close_reason_len);
  ws->close_reason[ws->close_reason_len] = '\0';
  return queued(wslay_event_queue_close(ws->wslay,
                                        code == 1005 ? 0 : (uint16_t)code,
                                        (const uint8_t *)reason, n));
}

static const myc__ws_recv_cbs rx_cbs = {on_rx_ping, on_rx_pong, on_rx_close};

/* Hands what wslay queued to the socket. */
static void pump(myc_ws *ws) {
  if (ws->wslay == NULL || ws->st.state != MYC_STREAM_OPEN)
    return;
  if (wslay_event_send(ws->wslay) != 0) {
    set_error(ws, MYC_ENOMEM, "cannot queue a frame");
    drop(ws, 0);
    return;
  }
  myc__stream_flush(&ws->st);
}

static const char *violation(int code) {
  switch (code) {
  case MYC_WS_MALFORMED:
  case 1002:
    return "the server violated the WebSocket protocol";
  case 1007:
    return "the server sent a text message that is not valid UTF-8";
  case 1009:
    return "the server sent a message larger than max_message";
  default:
    return "the server sent an invalid frame";
  }
}

/* After a read: a close from the peer ends the connection once our reply
 * is out; a frame that broke the protocol fails the connection with a
 * close frame carrying the code (none for a header that cannot be
 * parsed), and is reported with the code we sent. */
static void after_recv(myc_ws *ws, int rc) {
  int code;
  if (rc > 0)
    (void)wslay_event_queue_close(
        ws->wslay, rc == MYC_WS_MALFORMED ? 0 : (uint16_t)rc, NULL, 0);
  pump(ws);
  if (ws->st.state != MYC_STREAM_OPEN)
    return;
  if (rc < 0) {
    set_error(ws, rc, "out of memory for a received message");
    drop(ws, 0);
    return;
  }
  if (rc > 0) {
    code = wslay_event_get_status_code_sent(ws->wslay);
    if (rc == 1009)
      set_error(ws, UV_EPROTO, "%s (%.0f bytes; closed with %d)", violation(rc),
                ws->opt.max_message, code);
    else if (code == 1005) /* a close frame without a code */
      set_error(ws, UV_EPROTO, "%s (a malformed frame header)", violation(rc));
    else
      set_error(ws, UV_EPROTO, "%s (closed with %d)", violation(rc), code);
    ws->close_code = 1006;
    drop(ws, 1);
    return;
  }
  if (ws->rx.closed && wslay_event_get_close_sent(ws->wslay)) {
    disarm(ws);
    ws->state = MYC_WS_CLOSING;
    /* Both close frames are through: nothing more can come.  Closing
     * now rather than waiting for the server's FIN costs us only a
     * TIME_WAIT socket. */
    myc__stream_close(&ws->st, 1, (uint64_t)ws->opt.close_timeout_ms);
  }
}

static void feed(myc_ws *ws, const char *p, size_t n) {
  int rc;
  ws->in_recv = 1;
  ws->read_ns = uv_hrtime();
  rc = myc__ws_recv_feed(&ws->rx, p, n);
  /* Before the read's buffer is reused: the batch may point into it.
   * Still in_recv: what the service sends meanwhile goes out after. */
  flush_batch(ws);
  ws->in_recv = 0;
  after_recv(ws, rc);
}

/* ---- the upgrade
 * ------------------------------------------------------------- */

static int on_head_done(http_parser *p) {
  myc__http_msg_of(p)->complete = 1;
  return 2; /* stop after the head: what follows is WebSocket frames */
}

static void become_open(myc_ws *ws, const char *rest, size_t n) {
  if (wslay_event_context_client_init(&ws->wslay, &wslay_cbs, ws) != 0) {
    ws->wslay = NULL;
    set_error(ws, MYC_ENOMEM, "out of memory");
    drop(ws, 0);
    return;
  }
  myc__ws_recv_reset(&ws->rx, (uint64_t)ws->opt.max_message);
  ws->upgrading = 0;
  ws->state = MYC_WS_OPEN;
  ws->alive = 1;
  if (ws->opt.ping_interval_ms > 0)
    arm(ws, TM_PING, ws->opt.ping_interval_ms);
  else
    disarm(ws);
  emit(ws, MYC_WS_EV_OPEN, NULL, 0);
  /* Frames may have come in the same read as the reply. */
  if (n > 0 && ws->st.state == MYC_STREAM_OPEN)
    feed(ws, rest, n);
}

static void upgrade_reply(myc_ws *ws, const char *p, size_t n) {
  myc__http_msg *m = &ws->http;
  size_t used = http_parser_execute(&m->parser, &ws->hs, p, n);
  char why[300];
  int rc;
  if (m->complete) {
    rc = myc__ws_check_reply(m, ws->key, ws->protocol, why, sizeof why);
    if (rc != 0) {
      set_error(ws, rc, "%s", why);
      drop(ws, 0);
      return;
    }
    become_open(ws, p + used, n - used);
  } else if (HTTP_PARSER_ERRNO(&m->parser) != HPE_OK) {
    set_error(ws, UV_EPROTO, "bad reply to the WebSocket upgrade: %s",
              m->overflow
                  ? "header too large"
                  : http_errno_description(HTTP_PARSER_ERRNO(&m->parser)));
    drop(ws, 0);
  }
}

/* ---- the stream ------------------------------------------------------------
 */

static void on_stream_open(myc__stream *st) {
  myc_ws *ws = st->data;
  char req[8192];
  int n, rc = myc__ws_new_key(ws->key);
  if (rc == 0) {
    n = myc__ws_request(req, sizeof req, &ws->url, ws->key, ws->protocol,
                        ws->headers);
    rc = n < 0 ? n : myc__stream_write(st, req, (size_t)n);
  }
  if (rc != 0) {
    set_error(ws, rc, "cannot send the upgrade request: %s", myc_strerror(rc));
    drop(ws, 0);
    return;
  }
  ws->upgrading = 1;
  myc__http_msg_init(&ws->http, HTTP_RESPONSE, ws);
  arm(ws, TM_UPGRADE, ws->opt.open_timeout_ms);
}

static int on_stream_data(myc__stream *st, const char *p, size_t n) {
  myc_ws *ws = st->data;
  ws->alive = 1;
  if (ws->upgrading)
    upgrade_reply(ws, p, n);
  else if (ws->wslay != NULL)
    feed(ws, p, n);
  return st->state != MYC_STREAM_OPEN;
}

static void on_stream_error(myc__stream *st, int err, const char *msg) {
  myc_ws *ws = st->data;
  /* The server closing TCP after the close handshake is the normal end. */
  if (ws->wslay != NULL && ws->rx.closed &&
      wslay_event_get_close_sent(ws->wslay))
    return;
  if (ws->wslay != NULL && err == UV_EOF)
    set_error(ws, UV_ECONNRESET,
              "the server closed the connection without "
              "a close frame");
  else
    set_error(ws, err, "%s", msg);
}

static void on_stream_closed(myc__stream *st) {
  myc_ws *ws = st->data;
  if (ws->wslay != NULL) {
    wslay_event_context_free(ws->wslay);
    ws->wslay = NULL;
  }
  ws->upgrading = 0;
  if (ws->timer_mode != TM_RETRY && ws->timer_mode != TM_FINAL &&
      ws->state != MYC_WS_CLOSED)
    disarm(ws);
  if (ws->state == MYC_WS_CLOSED) /* released while closing */
    maybe_free(ws);
  else
    attempt_ended(ws, 1);
}

static const myc__stream_cbs stream_cbs = {on_stream_open, on_stream_data, NULL,
                                           on_stream_error, on_stream_closed};

static void start_attempt(myc_ws *ws) {
  int rc;
  ws->err = 0;
  ws->errmsg[0] = '\0';
  ws->close_code = 1006;
  ws->close_reason_len = 0;
  ws->close_reason[0] = '\0';
  ws->state = MYC_WS_CONNECTING;
  rc = myc__stream_connect(&ws->st, ws->url.host, ws->url.port, ws->ssl,
                           (uint64_t)ws->opt.open_timeout_ms);
  if (rc != 0) {
    set_error(ws, rc, "cannot connect: %s", myc_strerror(rc));
    attempt_ended(ws, 1);
  }
}

/* ---- the timer --------------------------------------------------------------
 */

static void on_timer(uv_timer_t *t) {
  myc_ws *ws = t->data;
  int mode = ws->timer_mode;
  ws->timer_mode = TM_NONE;
  switch (mode) {
  case TM_UPGRADE:
    set_error(ws, UV_ETIMEDOUT,
              "no reply to the WebSocket upgrade within "
              "%.0f ms",
              ws->opt.open_timeout_ms);
    drop(ws, 0);
    break;
  case TM_PING:
    ws->alive = 0;
    if (myc__ws_ping(ws, "mycelium", 8) == 0)
      arm(ws, TM_PONG, ws->opt.pong_timeout_ms);
    break;
  case TM_PONG:
    if (ws->alive) {
      arm(ws, TM_PING, ws->opt.ping_interval_ms);
      break;
    }
    set_error(ws, UV_ETIMEDOUT,
              "no data and no pong within %.0f ms of a "
              "ping: the server or the network is gone",
              ws->opt.pong_timeout_ms);
    drop(ws, 0);
    break;
  case TM_CLOSE:
    set_error(ws, UV_ETIMEDOUT, "no close reply within %.0f ms",
              ws->opt.close_timeout_ms);
    drop(ws, 0);
    break;
  case TM_RETRY:
    start_attempt(ws);
    break;
  case TM_FINAL:
    attempt_ended(ws, 0);
    break;
  default:
    break;
  }
}

/* ---- the API
 * ------------------------------------------------------------------- */

static int check_options(const myc_ws_options *o, char *err, size_t errlen) {
  const char *bad = NULL;
  if (!(o->backoff_initial_ms >= 0) || !(o->backoff_max_ms >= 0))
    bad = "backoff delays must be >= 0";
  else if (!(o->backoff_multiplier >= 1))
    bad = "backoff multiplier must be >= 1";
  else if (!(o->backoff_jitter >= 0 && o->backoff_jitter <= 1))
    bad = "backoff jitter must be between 0 and 1";
  else if (!(o->open_timeout_ms > 0) || !(o->close_timeout_ms > 0))
    bad = "timeouts must be > 0";
  else if (!(o->ping_interval_ms >= 0) || !(o->pong_timeout_ms > 0))
    bad = "ping interval must be >= 0 and pong timeout > 0";
  else if (!(o->max_message >= 1) || !(o->max_buffered >= 1))
    bad = "max_message and max_buffered must be >= 1";
  else if (o->max_attempts < 0)
    bad = "max_attempts must be >= 0";
  /* Converted to integers later: math.huge would overflow them. */
  else if (!(o->backoff_max_ms <= MYC_MAX_MS) ||
           !(o->backoff_initial_ms <= MYC_MAX_MS) ||
           !(o->open_timeout_ms <= MYC_MAX_MS) ||
           !(o->close_timeout_ms <= MYC_MAX_MS) ||
           !(o->ping_interval_ms <= MYC_MAX_MS) ||
           !(o->pong_timeout_ms <= MYC_MAX_MS))
    bad = "times must be at most 1e12 ms";
  else if (!(o->max_message <= 1e15) || !(o->max_buffered <= 1e15))
    bad = "max_message and max_buffered must be at most 1e15";
  if (bad != NULL)
    snprintf(err, errlen, "%s", bad);
  return bad ? MYC_EINVAL : 0;
}

static int dup_opt(const myc__alloc *a, const char *s, char **out) {
  *out = NULL;
  return s == NULL || (*out = myc__strdup(a, s)) != NULL ? 0 : MYC_ENOMEM;
}

myc_ws *myc__ws_open(myc_service *s, uint64_t source, const char *url,
                    const myc_ws_options *o, char *err, size_t errlen) {
  const myc__alloc *a = &s->eng->alloc;
  myc__tls_config tc;
  myc_ws *ws;
  myc__url u;
  if (myc__url_parse(&u, url, err, errlen) != 0)
    return NULL;
  if (!u.websocket) {
    snprintf(err, errlen, "'%s': a WebSocket URL starts with ws:// or wss://",
             url);
    return NULL;
  }
  if (check_options(o, err, errlen) != 0)
    return NULL;
  ws = myc__calloc(a, sizeof *ws);
  if (ws == NULL)
    goto nomem;
  ws->svc = s;
  ws->alloc = a;
  ws->source = source;
  ws->opt = *o;
  ws->url = u;
  ws->close_code = 1006;
  myc__stream_init(&ws->st, &myc__service_worker(s)->loop, a, &stream_cbs, ws);
  myc__ws_recv_init(&ws->rx, a, &rx_cbs, ws);
  if ((ws->url_text = myc__strdup(a, url)) == NULL ||
      dup_opt(a, o->protocol, &ws->protocol) != 0 ||
      dup_opt(a, o->headers, &ws->headers) != 0)
    goto nomem;
  ws->opt.protocol = ws->opt.headers = ws->opt.ca_file = NULL;
  if (u.tls) {
    memset(&tc, 0, sizeof tc);
    tc.ca_file = o->ca_file;
    tc.insecure = o->insecure;
    if ((ws->ssl = myc__tls_ctx_new(0, &tc, err, errlen)) == NULL) {
      ws_free(ws);
      return NULL;
    }
  }
  myc__http_msg_settings(&ws->hs);
  ws->hs.on_headers_complete = on_head_done;
  uv_timer_init(&myc__service_worker(s)->loop, &ws->timer);
  ws->timer.data = ws;
  ws->res.stop = on_resource_stop;
  myc__service_attach(s, &ws->res);
  /* The first attempt starts from the loop, like every later one, so
   * that its outcome is always an event. */
  ws->state = MYC_WS_CONNECTING;
  arm(ws, TM_RETRY, 0);
  return ws;
nomem:
  snprintf(err, errlen, "out of memory");
  if (ws != NULL)
    ws_free(ws);
  return NULL;
}

int myc__ws_send(myc_ws *ws, int binary, const void *p, size_t n) {
  struct wslay_event_msg m;
  if (ws->state != MYC_WS_OPEN || ws->wslay == NULL)
    return MYC_ESTATE;
  if (myc__ws_buffered(ws) + (double)n > ws->opt.max_buffered)
    return MYC_ELIMIT;
  m.opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
  m.msg = p;
  m.msg_length = n;
  if (wslay_event_queue_msg(ws->wslay, &m) != 0)
    return MYC_ENOMEM;
  if (!ws->in_recv)
    pump(ws);
  return 0;
}

int myc__ws_ping(myc_ws *ws, const void *p, size_t n) {
  struct wslay_event_msg m;
  if (ws->state != MYC_WS_OPEN || ws->wslay == NULL)
    return MYC_ESTATE;
  if (n > 125)
    return MYC_EINVAL;
  m.opcode = WSLAY_PING;
  m.msg = p;
  m.msg_length = n;
  if (wslay_event_queue_msg(ws->wslay, &m) != 0)
    return MYC_ENOMEM;
  if (!ws->in_recv)
    pump(ws);
  return 0;
}

int myc__ws_close(myc_ws *ws, int code, const char *reason, size_t n) {
  if (ws->state == MYC_WS_CLOSED || ws->user_closed || ws->stopped)
    return MYC_ESTATE;
  if (n > 123 || (code != 1000 && (code < 3000 || code > 4999)))
    return MYC_EINVAL;
  ws->user_closed = 1;
  switch (ws->state) {
  case MYC_WS_OPEN:
    ws->state = MYC_WS_CLOSING;
    if (wslay_event_queue_close(ws->wslay, (uint16_t)code,
                                (const uint8_t *)reason, n) != 0) {
      drop(ws, 0);
      break;
    }
    arm(ws, TM_CLOSE, ws->opt.close_timeout_ms);
    if (!ws->in_recv)
      pump(ws);
    break;
  case MYC_WS_CONNECTING:
    if (ws->st.state != MYC_STREAM_IDLE)
      drop(ws, 0); /* attempt_ended() reports the end */
    else
      arm(ws, TM_FINAL, 0); /* the first attempt had not started */
    break;
  case MYC_WS_WAITING:
    arm(ws, TM_FINAL, 0); /* the final event comes from the loop */
    break;
  default: /* closing already: just do not come back */
    break;
  }
  return 0;
}

void myc__ws_pause(myc_ws *ws) {
  myc__stream_pause(&ws->st);
}

void myc__ws_resume(myc_ws *ws) {
  myc__stream_resume(&ws->st);
}

int myc__ws_state(const myc_ws *ws) {
  return ws->state;
}

int myc__ws_taking(const myc_ws *ws) {
  return ws->state == MYC_WS_OPEN && !ws->stopped && !ws->released;
}

double myc__ws_buffered(const myc_ws *ws) {
  double n = (double)myc__stream_queued(&ws->st);
  if (ws->wslay != NULL)
    n += (double)wslay_event_get_queued_msg_length(ws->wslay);
  return n;
}

void myc__ws_release(myc_ws *ws) {
  if (ws == NULL || ws->released)
    return;
  ws->released = 1;
  if (ws->state != MYC_WS_CLOSED)
    shut(ws);
  else
    maybe_free(ws);
}
