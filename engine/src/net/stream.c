/* stream.c -- byte streams to a peer on a libuv loop (see stream.h).
 *
 * Lifetime: every handle opened and every request in flight counts in
 * 'pending'; a closing stream calls on_closed when the last of them has
 * come back, which libuv always does from the loop.  Callbacks can close
 * the stream under our feet, so each one is followed by a state check.
 */
#include "net/stream.h"

#include "mycelium.h"

#include <stdio.h>
#include <string.h>

/* Buffers larger than this are released once empty, so one huge message
 * does not pin its memory for the life of the connection. */
#define KEEP_BUFFER (1u << 20)

static void finish_close(myc__stream *st);
static void flush(myc__stream *st);

void myc__stream_init(myc__stream *st, uv_loop_t *loop, const myc__alloc *a,
                      const myc__stream_cbs *cb, void *data) {
  memset(st, 0, sizeof *st - sizeof st->rbuf);
  st->loop = loop;
  st->alloc = a;
  st->cb = cb;
  st->data = data;
}

/* ---- closing ------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) {
  myc__stream *st = h->data;
  st->pending--;
  finish_close(st);
}

static void close_handles(myc__stream *st) {
  if (st->tcp_open && !uv_is_closing((uv_handle_t *)&st->tcp))
    uv_close((uv_handle_t *)&st->tcp, on_handle_closed);
  if (st->timer_open && !uv_is_closing((uv_handle_t *)&st->timer))
    uv_close((uv_handle_t *)&st->timer, on_handle_closed);
  if (st->resolving)
    (void)uv_cancel((uv_req_t *)&st->gai); /* its callback still comes */
}

static void finish_close(myc__stream *st) {
  if (st->state != MYC_STREAM_CLOSING || st->pending > 0)
    return;
  st->tcp_open = st->timer_open = 0;
  if (st->addrs != NULL)
    uv_freeaddrinfo(st->addrs);
  st->addrs = st->next_addr = NULL;
  myc__tls_free(&st->tls);
  st->out.len = st->flight.len = 0;
  st->writing = st->graceful = st->paused = 0;
  st->state = MYC_STREAM_IDLE;
  st->cb->on_closed(st);
}

/* The connection is lost: report once, then close everything. */
static void fail(myc__stream *st, int err, const char *fmt, const char *arg) {
  char msg[512];
  if (st->state == MYC_STREAM_CLOSING || st->state == MYC_STREAM_IDLE)
    return;
  snprintf(msg, sizeof msg, fmt, arg);
  st->state = MYC_STREAM_CLOSING;
  st->graceful = 0;
  close_handles(st);
  st->cb->on_error(st, err, msg);
}

static void fail_uv(myc__stream *st, int err, const char *what) {
  char msg[256];
  if (err == UV_EOF)
    snprintf(msg, sizeof msg, "%s: the peer closed the connection", what);
  else
    snprintf(msg, sizeof msg, "%s: %s (%s)", what, uv_strerror(err),
             uv_err_name(err));
  fail(st, err, "%s", msg);
}

static void on_linger(uv_timer_t *t) {
  close_handles(t->data);
}

void myc__stream_close(myc__stream *st, int graceful, uint64_t linger_ms) {
  if (st->state == MYC_STREAM_IDLE || st->state == MYC_STREAM_CLOSING)
    return;
  if (graceful && st->state == MYC_STREAM_OPEN) {
    if (st->ssl_ctx != NULL) {
      myc__tls_shutdown(&st->tls);
      (void)myc__stream_queue(st, NULL, 0); /* moves the alert out */
    }
    flush(st);
    if (st->writing || st->out.len > 0) {
      /* Linger: the last writes (a close frame) may still get out. */
      st->state = MYC_STREAM_CLOSING;
      st->graceful = 1;
      uv_timer_stop(&st->timer);
      uv_timer_start(&st->timer, on_linger, linger_ms, 0);
      return;
    }
  }
  st->state = MYC_STREAM_CLOSING;
  close_handles(st);
}

/* ---- writing ------------------------------------------------------------ */

static int reserve(myc__stream *st, myc__bytes *b, size_t n) {
  size_t cap;
  char *p;
  if (b->cap - b->len >= n)
    return 0;
  cap = b->cap ? b->cap : 16384;
  while (cap - b->len < n)
    cap *= 2;
  p = myc__realloc(st->alloc, b->p, b->cap, cap);
  if (p == NULL)
    return MYC_ENOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

static void trim(myc__stream *st, myc__bytes *b) {
  if (b->len == 0 && b->cap > KEEP_BUFFER) {
    myc__free(st->alloc, b->p, b->cap);
    b->p = NULL;
    b->cap = 0;
  }
}

static void on_write(uv_write_t *req, int status) {
  myc__stream *st = req->data;
  st->writing = 0;
  st->flight.len = 0;
  trim(st, &st->flight);
  if (status == UV_ECANCELED)
    return;
  if (status < 0 && st->state == MYC_STREAM_CLOSING) {
    close_handles(st); /* a graceful close that cannot finish */
    return;
  }
  if (status < 0) {
    fail_uv(st, status, "write");
    return;
  }
  if (st->out.len > 0) {
    flush(st);
  } else if (st->state == MYC_STREAM_CLOSING && st->graceful) {
    st->graceful = 0;
    close_handles(st);
  } else if (st->state == MYC_STREAM_OPEN && st->cb->on_drain != NULL) {
    st->cb->on_drain(st);
  }
}

static void flush(myc__stream *st) {
  myc__bytes tmp;
  uv_buf_t buf;
  int rc;
  if (st->writing || st->out.len == 0 || !st->tcp_open)
    return;
  tmp = st->flight;
  st->flight = st->out;
  st->out = tmp;
  st->out.len = 0;
  buf = uv_buf_init(st->flight.p, (unsigned)st->flight.len);
  st->write.data = st;
  rc = uv_write(&st->write, (uv_stream_t *)&st->tcp, &buf, 1, on_write);
  if (rc == 0)
    st->writing = 1;
  else
    st->flight.len = 0; /* the read side will see the same error */
}

/* Moves the ciphertext OpenSSL produced to the write queue. */
static int take_tls(myc__stream *st) {
  size_t n = myc__tls_pending(&st->tls);
  if (n == 0)
    return 0;
  if (reserve(st, &st->out, n) != 0)
    return MYC_ENOMEM;
  st->out.len += myc__tls_take(&st->tls, st->out.p + st->out.len, n);
  return 0;
}

int myc__stream_write(myc__stream *st, const void *p, size_t n) {
  int rc = myc__stream_queue(st, p, n);
  if (rc == 0)
    flush(st);
  return rc;
}

void myc__stream_flush(myc__stream *st) {
  if (st->state == MYC_STREAM_OPEN || st->state == MYC_STREAM_CLOSING)
    flush(st);
}

int myc__stream_queue(myc__stream *st, const void *p, size_t n) {
  int rc;
  if (st->state != MYC_STREAM_OPEN &&
      !(st->state == MYC_STREAM_HANDSHAKE && p == NULL))
    return MYC_ESTATE;
  if (st->ssl_ctx != NULL) {
    if (n > 0 && (rc = myc__tls_write(&st->tls, p, n)) != 0)
      return rc;
    if ((rc = take_tls(st)) != 0)
      return rc;
  } else if (n > 0) {
    if (reserve(st, &st->out, n) != 0)
      return MYC_ENOMEM;
    memcpy(st->out.p + st->out.len, p, n);
    st->out.len += n;
  }
  return 0;
}

size_t myc__stream_queued(const myc__stream *st) {
  return st->out.len + st->flight.len;
}

/* ---- reading ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  myc__stream *st = h->data;
  (void)hint;
  *buf = uv_buf_init(st->rbuf, sizeof st->rbuf);
}

static void opened(myc__stream *st) {
  st->state = MYC_STREAM_OPEN;
  uv_timer_stop(&st->timer);
  if (st->cb->on_open != NULL)
    st->cb->on_open(st);
}

static int deliver(void *ud, const char *p, size_t n) {
  myc__stream *st = ud;
  if (st->state != MYC_STREAM_OPEN)
    return 1;
  return st->cb->on_data(st, p, n) != 0 || st->state != MYC_STREAM_OPEN;
}

static void on_tls_data(myc__stream *st, const char *p, size_t n) {
  char err[300];
  int was_open = st->tls.done, now_open = 0;
  int rc =
      myc__tls_feed(&st->tls, p, n, deliver, st, &now_open, err, sizeof err);
  if (take_tls(st) == 0)
    flush(st); /* handshake replies, alerts */
  if (rc != 0) {
    fail(st, rc, "%s", err);
    return;
  }
  if (now_open && !was_open && st->state == MYC_STREAM_HANDSHAKE) {
    opened(st);
    /* Application data may have come with the last handshake record. */
    if (st->state == MYC_STREAM_OPEN && !st->paused)
      on_tls_data(st, NULL, 0);
  }
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  myc__stream *st = h->data;
  if (nread == 0)
    return;
  if (nread < 0 && st->state == MYC_STREAM_CLOSING) {
    close_handles(st); /* lingering, and the peer is gone */
    return;
  }
  if (nread < 0) {
    fail_uv(st, (int)nread,
            st->state == MYC_STREAM_HANDSHAKE ? "TLS handshake" : "read");
    return;
  }
  if (st->ssl_ctx != NULL)
    on_tls_data(st, buf->base, (size_t)nread);
  else if (st->state == MYC_STREAM_OPEN)
    deliver(st, buf->base, (size_t)nread);
}

static int start_reading(myc__stream *st) {
  st->tcp.data = st;
  return st->paused ? 0
                    : uv_read_start((uv_stream_t *)&st->tcp, on_alloc, on_read);
}

void myc__stream_pause(myc__stream *st) {
  if (!st->paused && st->tcp_open)
    uv_read_stop((uv_stream_t *)&st->tcp);
  st->paused = 1;
}

/* Records already decrypted wait inside OpenSSL: deliver them from the
 * loop, not from inside myc__stream_resume(). */
static void on_resume(uv_timer_t *t) {
  myc__stream *st = t->data;
  if (st->state == MYC_STREAM_OPEN && !st->paused)
    on_tls_data(st, NULL, 0);
}

void myc__stream_resume(myc__stream *st) {
  if (!st->paused)
    return;
  st->paused = 0;
  if (!st->tcp_open || st->state == MYC_STREAM_CLOSING)
    return;
  (void)start_reading(st);
  if (st->ssl_ctx != NULL && st->state == MYC_STREAM_OPEN)
    uv_timer_start(&st->timer, on_resume, 0, 0);
}

/* ---- connecting --------------------------------------------------------- */

static void next_address(myc__stream *st);

static void start_tls(myc__stream *st) {
  char err[300];
  int rc = myc__tls_init(&st->tls, st->ssl_ctx, 0, st->host);
  if (rc == 0)
    rc = myc__tls_start(&st->tls, err, sizeof err);
  else
    snprintf(err, sizeof err, "cannot start TLS: out of memory");
  if (rc == 0 && (rc = take_tls(st)) == 0) {
    st->state = MYC_STREAM_HANDSHAKE;
    flush(st);
    return;
  }
  fail(st, rc, "%s", err);
}

/* The socket of an address that refused is closed: try the next one. */
static void on_refused_closed(uv_handle_t *h) {
  myc__stream *st = h->data;
  st->pending--;
  st->tcp_open = 0;
  if (st->state == MYC_STREAM_CONNECTING)
    next_address(st);
  else
    finish_close(st);
}

static void on_connect(uv_connect_t *req, int status) {
  myc__stream *st = req->data;
  st->pending--;
  if (st->state != MYC_STREAM_CONNECTING) {
    finish_close(st);
    return;
  }
  if (status < 0) {
    st->last_err = status;
    uv_close((uv_handle_t *)&st->tcp, on_refused_closed);
    return;
  }
  if (myc__tcp_connected_to_itself(&st->tcp)) {
    st->last_err = UV_ECONNREFUSED;
    uv_close((uv_handle_t *)&st->tcp, on_refused_closed);
    return;
  }
  uv_tcp_nodelay(&st->tcp, 1);
  if ((status = start_reading(st)) != 0) {
    fail_uv(st, status, "read");
    return;
  }
  if (st->ssl_ctx != NULL)
    start_tls(st);
  else
    opened(st);
}

static void next_address(myc__stream *st) {
  char what[300];
  struct addrinfo *ai = st->next_addr;
  int rc;
  if (ai == NULL) {
    snprintf(what, sizeof what, "connect to %s port %u", st->host, st->port);
    fail_uv(st, st->last_err ? st->last_err : UV_ECONNREFUSED, what);
    return;
  }
  st->next_addr = ai->ai_next;
  if ((rc = uv_tcp_init(st->loop, &st->tcp)) != 0) {
    fail_uv(st, rc, "socket");
    return;
  }
  st->tcp.data = st;
  st->tcp_open = 1;
  st->pending++;
  st->connect.data = st;
  rc = uv_tcp_connect(&st->connect, &st->tcp, ai->ai_addr, on_connect);
  if (rc == 0) {
    st->pending++;
    return;
  }
  st->last_err = rc;
  uv_close((uv_handle_t *)&st->tcp, on_refused_closed);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  myc__stream *st = req->data;
  char what[300];
  st->pending--;
  st->resolving = 0;
  if (st->state != MYC_STREAM_RESOLVING) {
    if (res != NULL)
      uv_freeaddrinfo(res);
    finish_close(st);
    return;
  }
  if (status < 0) {
    snprintf(what, sizeof what, "cannot resolve '%s'", st->host);
    fail_uv(st, status, what);
    return;
  }
  st->addrs = st->next_addr = res;
  st->state = MYC_STREAM_CONNECTING;
  next_address(st);
}

static void on_deadline(uv_timer_t *t) {
  myc__stream *st = t->data;
  char what[64];
  snprintf(what, sizeof what, "no connection within %llu ms",
           (unsigned long long)st->timeout_ms);
  fail(st, UV_ETIMEDOUT, "%s", what);
}

static void open_timer(myc__stream *st) {
  uv_timer_init(st->loop, &st->timer); /* cannot fail on Unix */
  st->timer.data = st;
  st->timer_open = 1;
  st->pending++;
}

int myc__stream_connect(myc__stream *st, const char *host, uint16_t port,
                        SSL_CTX *tls, uint64_t timeout_ms) {
  struct addrinfo hints;
  char service[8];
  int rc;
  if (st->state != MYC_STREAM_IDLE)
    return MYC_ESTATE;
  if (strlen(host) >= sizeof st->host)
    return MYC_EINVAL;
  snprintf(st->host, sizeof st->host, "%s", host);
  snprintf(service, sizeof service, "%u", port);
  st->port = port;
  st->ssl_ctx = tls;
  st->timeout_ms = timeout_ms;
  st->last_err = 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  st->gai.data = st;
  rc = uv_getaddrinfo(st->loop, &st->gai, on_resolved, st->host, service,
                      &hints);
  if (rc != 0)
    return rc;
  st->pending = 1;
  st->resolving = 1;
  st->state = MYC_STREAM_RESOLVING;
  open_timer(st);
  uv_timer_start(&st->timer, on_deadline, timeout_ms, 0);
  return 0;
}

int myc__stream_accept(myc__stream *st, uv_stream_t *server, SSL_CTX *tls) {
  int rc;
  if (st->state != MYC_STREAM_IDLE)
    return MYC_ESTATE;
  if ((rc = uv_tcp_init(st->loop, &st->tcp)) != 0)
    return rc;
  st->tcp.data = st;
  st->tcp_open = 1;
  st->pending = 1;
  st->ssl_ctx = tls;
  st->state = tls ? MYC_STREAM_HANDSHAKE : MYC_STREAM_OPEN;
  open_timer(st);
  if ((rc = uv_accept(server, (uv_stream_t *)&st->tcp)) != 0 ||
      (tls && (rc = myc__tls_init(&st->tls, tls, 1, NULL)) != 0) ||
      (rc = start_reading(st)) != 0) {
    st->state = MYC_STREAM_CLOSING;
    close_handles(st);
    return rc;
  }
  uv_tcp_nodelay(&st->tcp, 1);
  return 0;
}

void myc__stream_destroy(myc__stream *st) {
  myc__free(st->alloc, st->out.p, st->out.cap);
  myc__free(st->alloc, st->flight.p, st->flight.cap);
  st->out.p = st->flight.p = NULL;
  st->out.cap = st->flight.cap = 0;
  myc__tls_free(&st->tls);
}
