/* server.c -- the metrics listener: a minimal HTTP/1.1 server on a libuv
 * loop of its own thread, answering GET /metrics with the exposition and
 * closing each connection after one answer.  It only reads counters
 * (metrics.c), so it keeps answering while every worker is busy.
 */
#include "observe/observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_MAX 8192 /* bytes of request head read at most */
#define CONN_MAX 64      /* connections at once; more are closed at once */
#define CONN_MS 5000     /* a connection that sends no request by then */

struct myc__server {
  myc__observe *o;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_tcp_t tcp;
  uv_async_t stop;
  int nconns;
};

typedef struct {
  myc__server *sv;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  char req[REQUEST_MAX];
  size_t len;
  myc__text out;
  int closing, handles;
} conn;

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles > 0)
    return;
  c->sv->nconns--;
  myc__text_free(&c->out);
  myc__free(&c->sv->o->e->alloc, c, sizeof *c);
}

static void conn_close(conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->timer, conn_closed);
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void written(uv_write_t *wr, int status) {
  (void)status;
  conn_close(wr->data);
}

/* Answers the request head in c->req (NUL-terminated). */
static void respond(conn *c) {
  const char *status = "200 OK", *type = "text/plain; version=0.0.4; "
                                         "charset=utf-8";
  myc__text body;
  uv_buf_t b;
  int head = strncmp(c->req, "HEAD ", 5) == 0;
  const char *path = c->req + (head ? 5 : 4);
  size_t plen = strcspn(path, " ?\r\n");
  myc__text_init(&body, &c->sv->o->e->alloc);
  if (strncmp(c->req, "GET ", 4) != 0 && !head) {
    status = "405 Method Not Allowed";
    myc__text_printf(&body, "only GET /metrics is served here\n");
  } else if (plen != 8 || strncmp(path, "/metrics", 8) != 0) {
    status = "404 Not Found";
    myc__text_printf(&body, "metrics are served at /metrics\n");
  } else {
    myc__metrics_render(c->sv->o, &body);
  }
  if (body.oom) {
    status = "503 Service Unavailable";
    myc__text_free(&body);
    myc__text_printf(&body, "out of memory\n");
  }
  if (strcmp(status, "200 OK") != 0)
    type = "text/plain; charset=utf-8";
  myc__text_printf(&c->out, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, type, body.len);
  if (!head && body.len > 0)
    myc__text_printf(&c->out, "%s", body.p);
  myc__text_free(&body);
  if (c->out.oom) {
    conn_close(c);
    return;
  }
  b = uv_buf_init(c->out.p, (unsigned)c->out.len);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, written) != 0)
    conn_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  conn *c = h->data;
  (void)hint;
  *b = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - 1 - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  (void)b;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)n;
  c->req[c->len] = '\0';
  if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
    uv_read_stop(s);
    uv_timer_stop(&c->timer);
    respond(c);
  } else if (c->len == sizeof c->req - 1) {
    conn_close(c); /* a head this long is no scrape */
  }
}

static void conn_timeout(uv_timer_t *t) { conn_close(t->data); }

static void on_connection(uv_stream_t *server, int status) {
  myc__server *sv = server->data;
  conn *c;
  if (status != 0)
    return;
  c = myc__calloc(&sv->o->e->alloc, sizeof *c);
  if (c == NULL)
    return;
  c->sv = sv;
  c->handles = 2;
  myc__text_init(&c->out, &sv->o->e->alloc);
  uv_tcp_init(&sv->loop, &c->tcp);
  uv_timer_init(&sv->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  sv->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || sv->nconns > CONN_MAX) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, conn_timeout, CONN_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0)
    conn_close(c);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (h->data != NULL && h->type == UV_TCP && h != arg)
    conn_close(h->data);
  else if (h->type != UV_TCP && h->type != UV_TIMER)
    uv_close(h, NULL);
}

/* Closes the listener, the stop handle and every connection. */
static void on_stop(uv_async_t *a) {
  myc__server *sv = a->data;
  uv_close((uv_handle_t *)&sv->tcp, NULL);
  uv_walk(&sv->loop, close_any, &sv->tcp);
}

static void server_main(void *arg) {
  myc__server *sv = arg;
  uv_run(&sv->loop, UV_RUN_DEFAULT);
}

/* Splits "host:port" or "[v6]:port" into an address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss) {
  char host[256];
  const char *colon = strrchr(s, ':');
  size_t hl;
  char *end;
  long port;
  if (colon == NULL || colon == s)
    return MYC_EINVAL;
  port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || colon[1] == '\0' || port < 0 || port > 65535)
    return MYC_EINVAL;
  hl = (size_t)(colon - s);
  if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
    s++;
    hl -= 2;
  }
  if (hl >= sizeof host)
    return MYC_EINVAL;
  memcpy(host, s, hl);
  host[hl] = '\0';
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ||
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return MYC_EINVAL;
}

int myc__server_listen_ok(const char *listen) {
  struct sockaddr_storage ss;
  return parse_listen(listen, &ss) == 0;
}

static int bound_port(uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss, rc;
  if ((rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len)) != 0)
    return rc;
  return ss.ss_family == AF_INET6
             ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int myc__server_start(myc__observe *o, char *err, size_t errlen) {
  const myc__alloc *a = &o->e->alloc;
  struct sockaddr_storage ss;
  myc__server *sv;
  int rc;
  if (parse_listen(o->listen, &ss) != 0) {
    snprintf(err, errlen, "metrics.listen '%s' is no host:port", o->listen);
    return MYC_EINVAL;
  }
  sv = myc__calloc(a, sizeof *sv);
  if (sv == NULL)
    return MYC_ENOMEM;
  sv->o = o;
  if ((rc = uv_loop_init(&sv->loop)) != 0) {
    myc__free(a, sv, sizeof *sv);
    return rc;
  }
  uv_tcp_init(&sv->loop, &sv->tcp);
  uv_async_init(&sv->loop, &sv->stop, on_stop);
  sv->tcp.data = sv->stop.data = sv;
  if ((rc = uv_tcp_bind(&sv->tcp, (struct sockaddr *)&ss, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&sv->tcp, 64, on_connection)) != 0 ||
      (rc = bound_port(&sv->tcp)) < 0 ||
      (o->port = rc, rc = uv_thread_create(&sv->thread, server_main, sv)) != 0) {
    snprintf(err, errlen, "metrics.listen '%s': cannot listen: %s", o->listen,
             uv_strerror(rc));
    on_stop(&sv->stop);
    uv_run(&sv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&sv->loop);
    myc__free(a, sv, sizeof *sv);
    return rc;
  }
  o->server = sv;
  return 0;
}

void myc__server_stop(myc__observe *o) {
  myc__server *sv = o->server;
  if (sv == NULL)
    return;
  uv_async_send(&sv->stop);
  uv_thread_join(&sv->thread);
  uv_loop_close(&sv->loop);
  myc__free(&o->e->alloc, sv, sizeof *sv);
  o->server = NULL;
}
