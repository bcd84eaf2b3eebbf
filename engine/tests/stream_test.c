/* stream_test.c -- a byte stream to one peer (stream.h), both ends in one
 * loop over 127.0.0.1: callbacks never run inside the call that caused
 * them, bytes arrive whole and in order (queued, flushed, in bulk), a
 * graceful close writes what is queued first, pause holds delivery back,
 * a refused connect, a deadline, and an owner closing from on_data each
 * end in exactly one on_closed.
 */
#include "test.h"
#include "test_net.h"

#include "mycelium.h"
#include "net/stream.h"

typedef struct {
  myc__stream st;
  char got[1 << 16];
  size_t got_len, total;
  uint32_t hash; /* of every byte in order */
  int opens, drains, errors, closed, err, close_in_data;
  char msg[512];
} end;

static void on_open(myc__stream *st) { ((end *)st->data)->opens++; }

static int on_data(myc__stream *st, const char *p, size_t n) {
  end *e = st->data;
  if (e->got_len + n <= sizeof e->got) {
    memcpy(e->got + e->got_len, p, n);
    e->got_len += n;
  }
  e->total += n;
  for (size_t i = 0; i < n; i++)
    e->hash = e->hash * 33 + (unsigned char)p[i];
  if (e->close_in_data) {
    myc__stream_close(st, 0, 0);
    return 1;
  }
  return 0;
}

static void on_drain(myc__stream *st) { ((end *)st->data)->drains++; }

static void on_error(myc__stream *st, int err, const char *msg) {
  end *e = st->data;
  e->errors++;
  e->err = err;
  snprintf(e->msg, sizeof e->msg, "%s", msg);
}

static void on_closed(myc__stream *st) { ((end *)st->data)->closed++; }

static const myc__stream_cbs cbs = {on_open, on_data, on_drain, on_error,
                                    on_closed};
static const myc__alloc heap = {myc__default_alloc, NULL};

typedef struct {
  uv_loop_t loop;
  uv_tcp_t listener;
  int port;
  end client, server;
} pair;

static void on_connection(uv_stream_t *l, int status) {
  pair *p = l->data;
  if (status == 0)
    (void)myc__stream_accept(&p->server.st, l, NULL);
}

static int listen_on_free_port(pair *p) {
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int len = sizeof name;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_init(&p->loop, &p->listener) != 0 ||
      uv_tcp_bind(&p->listener, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&p->listener, 8, on_connection) != 0 ||
      uv_tcp_getsockname(&p->listener, (struct sockaddr *)&name, &len) != 0)
    return -1;
  p->listener.data = p;
  p->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
  return 0;
}

static void pair_init(pair *p) {
  memset(p, 0, sizeof *p);
  uv_loop_init(&p->loop);
  myc__stream_init(&p->client.st, &p->loop, &heap, &cbs, &p->client);
  myc__stream_init(&p->server.st, &p->loop, &heap, &cbs, &p->server);
}

/* Runs the loop until *flag reaches 'want', for at most 30 s. */
static int run_until(pair *p, const int *flag, int want) {
  uint64_t end_ms = uv_now(&p->loop) + 30000;
  while (*flag < want && uv_now(&p->loop) < end_ms) {
    uv_run(&p->loop, UV_RUN_ONCE);
    uv_update_time(&p->loop);
  }
  return *flag >= want;
}

static int run_until_bytes(pair *p, const size_t *n, size_t want) {
  uint64_t end_ms = uv_now(&p->loop) + 30000;
  while (*n < want && uv_now(&p->loop) < end_ms) {
    uv_run(&p->loop, UV_RUN_ONCE);
    uv_update_time(&p->loop);
  }
  return *n >= want;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void pair_free(pair *p) {
  uv_walk(&p->loop, walk_close, NULL);
  while (uv_run(&p->loop, UV_RUN_NOWAIT) != 0)
    ;
  uv_loop_close(&p->loop);
  myc__stream_destroy(&p->client.st);
  myc__stream_destroy(&p->server.st);
}

static int connect_pair(pair *p, const char *host) {
  if (listen_on_free_port(p) != 0 ||
      myc__stream_connect(&p->client.st, host, (uint16_t)p->port, NULL,
                          10000) != 0)
    return -1;
  /* never from inside the call */
  if (p->client.opens != 0)
    return -1;
  if (!run_until(p, &p->client.opens, 1))
    return -1;
  return p->server.st.state == MYC_STREAM_OPEN ||
                 run_until(p, &p->server.st.state, MYC_STREAM_OPEN)
             ? 0
             : -1;
}

static void test_exchange_and_graceful_close(void) {
  pair p;
  pair_init(&p);
  CHECK_EQ(connect_pair(&p, "127.0.0.1"), 0);
  CHECK_EQ(p.client.st.state, MYC_STREAM_OPEN);
  CHECK_EQ(myc__stream_connect(&p.client.st, "127.0.0.1", 1, NULL, 10),
           MYC_ESTATE);
  /* a write, then a burst queued and flushed once */
  CHECK_EQ(myc__stream_write(&p.client.st, "hello", 5), 0);
  CHECK_EQ(myc__stream_queue(&p.client.st, ", ", 2), 0);
  CHECK_EQ(myc__stream_queue(&p.client.st, "world", 5), 0);
  CHECK(myc__stream_queued(&p.client.st) >= 7);
  myc__stream_flush(&p.client.st);
  CHECK(run_until_bytes(&p, &p.server.got_len, 12));
  CHECK_EQ(p.server.got_len, 12);
  CHECK(memcmp(p.server.got, "hello, world", 12) == 0);
  CHECK(run_until(&p, &p.client.drains, 1));
  CHECK_EQ(myc__stream_queued(&p.client.st), 0);
  /* the other way */
  CHECK_EQ(myc__stream_write(&p.server.st, "pong", 4), 0);
  CHECK(run_until_bytes(&p, &p.client.got_len, 4));
  CHECK(memcmp(p.client.got, "pong", 4) == 0);
  /* graceful: what is queued still goes, then the peer sees EOF */
  CHECK_EQ(myc__stream_queue(&p.client.st, "bye", 3), 0);
  myc__stream_close(&p.client.st, 1, 5000);
  CHECK_EQ(p.client.closed, 0); /* not from inside the call */
  CHECK_EQ(myc__stream_write(&p.client.st, "late", 4), MYC_ESTATE);
  CHECK(run_until(&p, &p.client.closed, 1));
  CHECK(run_until(&p, &p.server.errors, 1));
  CHECK_EQ(p.server.err, UV_EOF);
  CHECK(strstr(p.server.msg, "the peer closed the connection") != NULL);
  CHECK_EQ(p.server.got_len, 15);
  CHECK(memcmp(p.server.got + 12, "bye", 3) == 0);
  CHECK(run_until(&p, &p.server.closed, 1));
  CHECK_EQ(p.client.errors, 0);
  CHECK_EQ(p.client.st.state, MYC_STREAM_IDLE);
  /* closing again is a no-op, and no second on_closed comes */
  myc__stream_close(&p.client.st, 0, 0);
  uv_run(&p.loop, UV_RUN_NOWAIT);
  CHECK_EQ(p.client.closed, 1);
  CHECK_EQ(p.server.closed, 1);
  pair_free(&p);
}

/* "localhost" goes through the resolver; each address is tried in turn
 * (an IPv6 ::1 first finds no listener and the IPv4 one is used). */
static void test_resolved_name(void) {
  pair p;
  pair_init(&p);
  CHECK_EQ(connect_pair(&p, "localhost"), 0);
  CHECK_EQ(p.client.opens, 1);
  myc__stream_close(&p.client.st, 0, 0);
  CHECK(run_until(&p, &p.client.closed, 1));
  pair_free(&p);
}

static void test_bulk_in_order(void) {
  pair p;
  static char big[3 << 20];
  size_t i;
  uint32_t want = 0;
  pair_init(&p);
  CHECK_EQ(connect_pair(&p, "127.0.0.1"), 0);
  for (i = 0; i < sizeof big; i++) {
    big[i] = (char)(i * 31 + (i >> 12));
    want = want * 33 + (unsigned char)big[i];
  }
  /* in uneven pieces, while earlier ones are in flight */
  for (i = 0; i < sizeof big; i += 70001)
    CHECK_EQ(myc__stream_write(&p.client.st, big + i,
                               sizeof big - i < 70001 ? sizeof big - i
                                                      : 70001),
             0);
  p.server.got_len = sizeof p.server.got; /* keep only the total */
  CHECK(run_until_bytes(&p, &p.server.total, sizeof big));
  CHECK_EQ(p.server.total, sizeof big);
  CHECK_EQ(p.server.hash, want);
  CHECK(run_until(&p, &p.client.drains, 1));
  CHECK_EQ(myc__stream_queued(&p.client.st), 0);
  myc__stream_close(&p.client.st, 1, 1000);
  CHECK(run_until(&p, &p.client.closed, 1));
  CHECK(run_until(&p, &p.server.closed, 1));
  pair_free(&p);
}

static void test_pause_holds_delivery(void) {
  pair p;
  int i;
  pair_init(&p);
  CHECK_EQ(connect_pair(&p, "127.0.0.1"), 0);
  myc__stream_pause(&p.client.st);
  CHECK_EQ(myc__stream_write(&p.server.st, "held", 4), 0);
  CHECK(run_until(&p, &p.server.drains, 1)); /* in the client's kernel */
  for (i = 0; i < 20; i++)
    uv_run(&p.loop, UV_RUN_NOWAIT);
  CHECK_EQ(p.client.total, 0);
  myc__stream_resume(&p.client.st);
  CHECK(run_until_bytes(&p, &p.client.got_len, 4));
  CHECK(memcmp(p.client.got, "held", 4) == 0);
  myc__stream_close(&p.client.st, 0, 0);
  CHECK(run_until(&p, &p.client.closed, 1));
  pair_free(&p);
}

/* The owner closes from on_data: nothing more is delivered. */
static void test_close_from_on_data(void) {
  pair p;
  pair_init(&p);
  CHECK_EQ(connect_pair(&p, "127.0.0.1"), 0);
  p.server.close_in_data = 1;
  CHECK_EQ(myc__stream_write(&p.client.st, "one", 3), 0);
  CHECK(run_until(&p, &p.server.closed, 1));
  CHECK_EQ(p.server.errors, 0);
  CHECK(p.server.total >= 1 && p.server.total <= 3);
  (void)myc__stream_write(&p.client.st, "two", 3);
  CHECK(run_until(&p, &p.client.errors, 1)); /* reset or EOF */
  CHECK(run_until(&p, &p.client.closed, 1));
  CHECK(p.server.total <= 3);
  CHECK_EQ(p.server.closed, 1);
  pair_free(&p);
}

static void test_refused(void) {
  pair p;
  int held;
  int port = test_refusing_port(&held);
  pair_init(&p);
  CHECK(port > 0);
  CHECK_EQ(myc__stream_connect(&p.client.st, "127.0.0.1", (uint16_t)port,
                               NULL, 10000),
           0);
  CHECK(run_until(&p, &p.client.closed, 1));
  CHECK_EQ(p.client.opens, 0);
  CHECK_EQ(p.client.errors, 1);
  CHECK_EQ(p.client.err, UV_ECONNREFUSED);
  CHECK(strstr(p.client.msg, "connect to 127.0.0.1 port") != NULL);
  CHECK_EQ(p.client.st.state, MYC_STREAM_IDLE);
  /* idle again: it may connect anew */
  CHECK_EQ(myc__stream_write(&p.client.st, "x", 1), MYC_ESTATE);
  close(held);
  pair_free(&p);
}

/* A socket bound to a free port and dialled to that same port connects to
 * itself; the dialers must see it as refused, and a real connection must
 * not look like one. */
static void test_connected_to_itself(void) {
  pair p;
  uv_tcp_t self;
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  pair_init(&p);
  CHECK(fd >= 0);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_EQ(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
  CHECK_EQ(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
  CHECK_EQ(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
  CHECK_EQ(uv_tcp_init(&p.loop, &self), 0);
  CHECK_EQ(uv_tcp_open(&self, fd), 0);
  CHECK(myc__tcp_connected_to_itself(&self));
  CHECK_EQ(connect_pair(&p, "127.0.0.1"), 0);
  CHECK(!myc__tcp_connected_to_itself(&p.client.st.tcp));
  myc__stream_close(&p.client.st, 0, 0);
  CHECK(run_until(&p, &p.client.closed, 1));
  pair_free(&p);
}

/* A deadline of 0 ms passes before the name is even resolved. */
static void test_deadline(void) {
  pair p;
  pair_init(&p);
  CHECK_EQ(myc__stream_connect(&p.client.st, "127.0.0.1", 9, NULL, 0), 0);
  CHECK(run_until(&p, &p.client.closed, 1));
  CHECK_EQ(p.client.errors, 1);
  CHECK_EQ(p.client.err, UV_ETIMEDOUT);
  CHECK_STR(p.client.msg, "no connection within 0 ms");
  CHECK_EQ(p.client.opens, 0);
  pair_free(&p);
}

static void test_bad_arguments(void) {
  pair p;
  char host[300];
  pair_init(&p);
  memset(host, 'h', sizeof host - 1);
  host[sizeof host - 1] = '\0';
  CHECK_EQ(myc__stream_connect(&p.client.st, host, 80, NULL, 100), MYC_EINVAL);
  CHECK_EQ(myc__stream_write(&p.client.st, "x", 1), MYC_ESTATE);
  myc__stream_close(&p.client.st, 1, 0); /* idle: a no-op */
  uv_run(&p.loop, UV_RUN_NOWAIT);
  CHECK_EQ(p.client.closed, 0);
  pair_free(&p);
}

int main(void) {
  static const test_case cases[] = {
      {"exchange_and_graceful_close", test_exchange_and_graceful_close},
      {"resolved_name", test_resolved_name},
      {"bulk_in_order", test_bulk_in_order},
      {"pause_holds_delivery", test_pause_holds_delivery},
      {"close_from_on_data", test_close_from_on_data},
      {"refused", test_refused},
      {"connected_to_itself", test_connected_to_itself},
      {"deadline", test_deadline},
      {"bad_arguments", test_bad_arguments},
      {NULL, NULL},
  };
  return run_tests(cases);
}
