/* http.c -- HTTP(S) requests of services (see http.h).
 *
 * A request: connect (stream.c, TLS when https), write the request,
 * parse the response with http-parser, close, then one DONE event.  The
 * object lives until its owner released it and its stream and timer are
 * back from libuv.
 */
#include "net/http.h"

#include "base/clock.h"
#include "runtime/engine.h"
#include "net/http_msg.h"
#include "net/stream.h"
#include "net/url.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct myc_http {
  myc__resource res;       /* first */
  myc_service *svc;        /* only while attached: a service may go first */
  const myc__alloc *alloc; /* the engine's, which outlives the loops */
  int detached;
  uint64_t source;
  myc_http_options opt;
  char *url_text;
  myc__url url;
  SSL_CTX *ssl;
  myc__stream st;
  uv_timer_t timer;
  myc__http_msg msg;
  http_parser_settings hs;
  myc__bytes req;  /* the request, head and body */
  myc__bytes body; /* the response body */
  int done;        /* the response is complete */
  int stopped, released, timer_closed, finished;
  int err;
  char errmsg[600];
};

void myc__http_options_init(myc_http_options *o) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = 10000;
  o->max_body = 16.0 * 1024 * 1024;
}

static const myc__alloc *alloc_of(const myc_http *h) {
  return h->alloc;
}

static void http_free(myc_http *h) {
  const myc__alloc *a = alloc_of(h);
  myc__stream_destroy(&h->st);
  if (h->ssl != NULL)
    SSL_CTX_free(h->ssl);
  myc__free(a, h->req.p, h->req.cap);
  myc__free(a, h->body.p, h->body.cap);
  myc__strfree(a, h->url_text);
  myc__free(a, h, sizeof *h);
}

static void maybe_free(myc_http *h) {
  if (h->released && h->timer_closed && h->st.state == MYC_STREAM_IDLE)
    http_free(h);
}

static void on_timer_closed(uv_handle_t *t) {
  myc_http *h = t->data;
  h->timer_closed = 1;
  maybe_free(h);
}

static void set_error(myc_http *h, int err, const char *fmt, ...) {
  va_list ap;
  int n;
  if (h->err != 0)
    return;
  h->err = err;
  n = snprintf(h->errmsg, sizeof h->errmsg, "%s: ", h->url_text);
  va_start(ap, fmt);
  vsnprintf(h->errmsg + n, sizeof h->errmsg - (size_t)n, fmt, ap);
  va_end(ap);
}

/* The request is over: one event (unless abandoned), then the handles
 * go. */
static void finish(myc_http *h) {
  myc_http_response r;
  if (h->finished)
    return;
  h->finished = 1;
  if (!h->detached)
    myc__service_detach(h->svc, &h->res);
  h->detached = 1;
  uv_close((uv_handle_t *)&h->timer, on_timer_closed);
  if (h->stopped)
    return;
  if (!h->done && h->err == 0)
    set_error(h, UV_ECONNRESET,
              "the connection closed before the response "
              "was complete");
  memset(&r, 0, sizeof r);
  r.status = h->msg.parser.status_code;
  r.err = h->done ? 0 : h->err;
  r.body = h->body.p ? h->body.p : "";
  r.body_len = h->body.len;
  r.error = h->done ? "" : h->errmsg;
  (void)myc__service_event(h->svc, h->source, MYC_HTTP_EV_DONE, &r, sizeof r);
}

static void shut(myc_http *h) {
  h->stopped = 1;
  if (h->st.state != MYC_STREAM_IDLE)
    myc__stream_close(&h->st, 0, 0); /* finish() follows on_closed */
  else
    finish(h);
}

/* The service stops (and may be freed before libuv returns our handles):
 * it already detached us, and we must not touch it again. */
static void on_resource_stop(myc__resource *r) {
  myc_http *h = (myc_http *)r;
  h->detached = 1;
  shut(h);
}

/* ---- the response ----------------------------------------------------------
 */

static int on_body(http_parser *p, const char *at, size_t n) {
  myc_http *h = myc__http_msg_of(p)->owner;
  myc__bytes *b = &h->body;
  size_t cap;
  char *q;
  if ((double)(b->len + n) > h->opt.max_body) {
    set_error(h, MYC_ELIMIT,
              "response body larger than max_body (%.0f "
              "bytes)",
              h->opt.max_body);
    return 1;
  }
  if (b->cap - b->len < n) {
    for (cap = b->cap ? b->cap : 4096; cap - b->len < n; cap *= 2)
      ;
    if ((q = myc__realloc(alloc_of(h), b->p, b->cap, cap)) == NULL) {
      set_error(h, MYC_ENOMEM, "out of memory");
      return 1;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, at, n);
  b->len += n;
  return 0;
}

static int on_complete(http_parser *p) {
  myc_http *h = myc__http_msg_of(p)->owner;
  h->done = 1;
  return 1; /* one response is all we wait for */
}

static void parse(myc_http *h, const char *p, size_t n) {
  myc__http_msg *m = &h->msg;
  (void)http_parser_execute(&m->parser, &h->hs, p, n);
  if (h->done) {
    myc__stream_close(&h->st, 0, 0);
  } else if (HTTP_PARSER_ERRNO(&m->parser) != HPE_OK) {
    set_error(h, UV_EPROTO, "bad HTTP response: %s",
              m->overflow
                  ? "header too large"
                  : http_errno_description(HTTP_PARSER_ERRNO(&m->parser)));
    myc__stream_close(&h->st, 0, 0);
  }
}

/* ---- the stream
 * -------------------------------------------------------------- */

static void on_stream_open(myc__stream *st) {
  myc_http *h = st->data;
  int rc = myc__stream_write(st, h->req.p, h->req.len);
  if (rc != 0) {
    set_error(h, rc, "cannot send the request: %s", myc_strerror(rc));
    myc__stream_close(st, 0, 0);
  }
}

static int on_stream_data(myc__stream *st, const char *p, size_t n) {
  parse(st->data, p, n);
  return st->state != MYC_STREAM_OPEN;
}

static void on_stream_error(myc__stream *st, int err, const char *msg) {
  myc_http *h = st->data;
  if (err == UV_EOF && !h->done)
    parse(h, NULL, 0); /* the end of a body delimited by the close */
  if (!h->done)
    set_error(h, err, "%s", msg);
}

static void on_stream_closed(myc__stream *st) {
  myc_http *h = st->data;
  if (h->finished)
    maybe_free(h);
  else
    finish(h);
}

static const myc__stream_cbs stream_cbs = {on_stream_open, on_stream_data, NULL,
                                           on_stream_error, on_stream_closed};

static void on_deadline(uv_timer_t *t) {
  myc_http *h = t->data;
  set_error(h, UV_ETIMEDOUT, "no complete response within %.0f ms",
            h->opt.timeout_ms);
  myc__stream_close(&h->st, 0, 0);
}

/* ---- the API
 * ------------------------------------------------------------------- */

static int build_request(myc_http *h, const char *method, const char *headers,
                         const void *body, size_t n) {
  char head[MYC_URL_PATH_MAX + 1024];
  int hl = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: %s\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n"
                    "User-Agent: mycelium/%s\r\n%s\r\n",
                    method, h->url.path, h->url.authority, n, myc_version(),
                    headers ? headers : "");
  if (hl < 0 || (size_t)hl >= sizeof head)
    return MYC_ETOOBIG;
  h->req.cap = (size_t)hl + n;
  if ((h->req.p = myc__malloc(alloc_of(h), h->req.cap)) == NULL)
    return MYC_ENOMEM;
  memcpy(h->req.p, head, (size_t)hl);
  if (n > 0)
    memcpy(h->req.p + hl, body, n);
  h->req.len = h->req.cap;
  return 0;
}

static int prepare(myc_http *h, const char *url, const char *method,
                   const char *headers, const void *body, size_t n,
                   const myc_http_options *o, char *err, size_t errlen) {
  myc__tls_config tc;
  int rc;
  if (myc__url_parse(&h->url, url, err, errlen) != 0)
    return MYC_EINVAL;
  if (h->url.websocket) {
    snprintf(err, errlen,
             "'%s': an HTTP URL starts with http:// or "
             "https://",
             url);
    return MYC_EINVAL;
  }
  /* Bounded: both are converted to integers (math.huge would overflow). */
  if (!(o->timeout_ms > 0 && o->timeout_ms <= MYC_MAX_MS) ||
      !(o->max_body >= 1 && o->max_body <= 1e15) || method == NULL ||
      strpbrk(method, " \r\n") != NULL) {
    snprintf(err, errlen,
             "bad method or options (timeout_ms > 0 and at most 1e12, "
             "max_body from 1 to 1e15)");
    return MYC_EINVAL;
  }
  if ((h->url_text = myc__strdup(alloc_of(h), url)) == NULL ||
      (rc = build_request(h, method, headers, body, n)) == MYC_ENOMEM) {
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  if (rc != 0) {
    snprintf(err, errlen, "request head too large");
    return rc;
  }
  if (h->url.tls) {
    memset(&tc, 0, sizeof tc);
    tc.ca_file = o->ca_file;
    tc.insecure = o->insecure;
    if ((h->ssl = myc__tls_ctx_new(0, &tc, err, errlen)) == NULL)
      return MYC_ETLS;
  }
  return 0;
}

myc_http *myc__http_request(myc_service *s, uint64_t source, const char *method,
                           const char *url, const char *headers,
                           const void *body, size_t n,
                           const myc_http_options *o, char *err,
                           size_t errlen) {
  myc_http *h = myc__calloc(&s->eng->alloc, sizeof *h);
  int rc;
  if (h == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  h->svc = s;
  h->alloc = &s->eng->alloc;
  h->source = source;
  h->opt = *o;
  h->opt.ca_file = NULL;
  myc__stream_init(&h->st, &myc__service_worker(s)->loop, &s->eng->alloc, &stream_cbs, h);
  if (prepare(h, url, method, headers, body, n, o, err, errlen) != 0) {
    http_free(h);
    return NULL;
  }
  rc = myc__stream_connect(&h->st, h->url.host, h->url.port, h->ssl,
                           (uint64_t)o->timeout_ms);
  if (rc != 0) {
    snprintf(err, errlen, "%s: cannot connect: %s", url, myc_strerror(rc));
    http_free(h);
    return NULL;
  }
  myc__http_msg_init(&h->msg, HTTP_RESPONSE, h);
  myc__http_msg_settings(&h->hs);
  h->hs.on_body = on_body;
  h->hs.on_message_complete = on_complete;
  uv_timer_init(&myc__service_worker(s)->loop, &h->timer);
  h->timer.data = h;
  uv_timer_start(&h->timer, on_deadline, (uint64_t)o->timeout_ms, 0);
  h->res.stop = on_resource_stop;
  myc__service_attach(s, &h->res);
  return h;
}

void myc__http_release(myc_http *h) {
  if (h == NULL || h->released)
    return;
  h->released = 1;
  if (!h->finished)
    shut(h);
  else
    maybe_free(h);
}
