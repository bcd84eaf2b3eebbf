/* redis_client_test.c -- the Redis client against a real redis-server
 * started here on a free 127.0.0.1 port (it dies with the test: it gets
 * SIGKILL when its parent exits), on a plain libuv loop. */
#include "net/redis_client.h"

#include "test.h"
#include "test_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- redis-server ------------------------------------------------------- */

static int can_connect(int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Starts redis-server on 'port' ('pass' non-NULL: requirepass) and waits
 * until it accepts connections.  Returns its pid, or -1. */
static pid_t start_server(int port, const char *pass) {
  char p[16];
  int i, status;
  pid_t pid;
  snprintf(p, sizeof p, "%d", port);
  pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (freopen("/dev/null", "w", stdout) == NULL)
      _exit(126);
    if (pass != NULL)
      execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--requirepass", pass,
             (char *)NULL);
    else
      execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", (char *)NULL);
    _exit(127);
  }
  for (i = 0; i < 500; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      fprintf(stderr,
              "redis-server did not start (exit %d): is it "
              "installed? (scripts/deps.sh)\n",
              WEXITSTATUS(status));
      return -1;
    }
    if (can_connect(port))
      return pid;
    sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

static void stop_server(pid_t pid) {
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
}

/* ---- events ------------------------------------------------------------- */

typedef struct {
  int code;
  uint64_t id;
  int status;
  char *text; /* REPLY: the reply, escaped; failures: the message */
} record;

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick;
  myc_redis *c;
  record *recs;
  size_t n, cap;
  size_t replies, ups, downs, closed;
  /* optional reactions */
  int command_on_down;
  int64_t down_rc;
  char down_err[512];
  int free_on_closed;
} harness;

static void append(char **buf, size_t *len, size_t *cap, const char *s,
                   size_t n) {
  if (*len + n + 1 > *cap) {
    while (*len + n + 1 > *cap)
      *cap = *cap ? *cap * 2 : 64;
    *buf = realloc(*buf, *cap);
  }
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = '\0';
}

/* Writes reply 'r' as text: "s:bytes" (non-printables as \xNN), "+OK",
 * "-ERR ...", "i:42", "nil", "[a,b]". */
static void describe(const void *r, char **buf, size_t *len, size_t *cap) {
  myc_redis_value v;
  char tmp[64];
  size_t i;
  myc__redis_reply_view(r, &v);
  switch (v.type) {
  case MYC_REDIS_STRING:
    append(buf, len, cap, "s:", 2);
    for (i = 0; i < v.len; i++) {
      unsigned char ch = (unsigned char)v.str[i];
      if (ch >= 32 && ch < 127 && ch != '\\')
        append(buf, len, cap, (const char *)&ch, 1);
      else
        append(buf, len, cap, tmp,
               (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", ch));
    }
    break;
  case MYC_REDIS_STATUS:
  case MYC_REDIS_ERROR:
    append(buf, len, cap, v.type == MYC_REDIS_STATUS ? "+" : "-", 1);
    append(buf, len, cap, v.str, v.len);
    break;
  case MYC_REDIS_INTEGER:
    append(buf, len, cap, tmp,
           (size_t)snprintf(tmp, sizeof tmp, "i:%lld", (long long)v.integer));
    break;
  case MYC_REDIS_NIL:
    append(buf, len, cap, "nil", 3);
    break;
  case MYC_REDIS_ARRAY:
    append(buf, len, cap, "[", 1);
    for (i = 0; i < v.elements; i++) {
      if (i > 0)
        append(buf, len, cap, ",", 1);
      describe(myc__redis_reply_element(r, i), buf, len, cap);
    }
    append(buf, len, cap, "]", 1);
    break;
  }
}

static void sink(void *ud, int code, const myc_redis_event *ev) {
  harness *h = ud;
  record *r;
  size_t len = 0, cap = 0;
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 256;
    h->recs = realloc(h->recs, h->cap * sizeof *h->recs);
  }
  r = &h->recs[h->n++];
  memset(r, 0, sizeof *r);
  r->code = code;
  r->id = ev->id;
  r->status = ev->status;
  if (ev->reply != NULL)
    describe(ev->reply, &r->text, &len, &cap);
  else if (ev->error != NULL)
    r->text = strdup(ev->error);
  switch (code) {
  case MYC_REDIS_EV_REPLY:
    h->replies++;
    break;
  case MYC_REDIS_EV_UP:
    h->ups++;
    break;
  case MYC_REDIS_EV_DOWN:
    h->downs++;
    if (h->command_on_down) {
      const char *argv[1] = {"PING"};
      size_t lens[1] = {4};
      h->command_on_down = 0;
      h->down_rc = myc__redis_command(h->c, 1, argv, lens);
      snprintf(h->down_err, sizeof h->down_err, "%s", myc__redis_error(h->c));
    }
    break;
  case MYC_REDIS_EV_CLOSED:
    h->closed++;
    if (h->free_on_closed) {
      myc__redis_free(h->c);
      h->c = NULL;
    }
    break;
  }
}

static void tick(uv_timer_t *t) { (void)t; }

static void harness_init(harness *h) {
  memset(h, 0, sizeof *h);
  uv_loop_init(&h->loop);
  /* The client's handles do not keep a loop alive: this one does, and
   * bounds each wait. */
  uv_timer_init(&h->loop, &h->tick);
  uv_timer_start(&h->tick, tick, 5, 5);
}

static void harness_free(harness *h) {
  size_t i;
  if (h->c != NULL)
    myc__redis_free(h->c);
  uv_close((uv_handle_t *)&h->tick, NULL);
  while (uv_run(&h->loop, UV_RUN_NOWAIT) != 0)
    ;
  if (uv_loop_close(&h->loop) != 0)
    fprintf(stderr, "loop still busy at close\n");
  for (i = 0; i < h->n; i++)
    free(h->recs[i].text);
  free(h->recs);
}

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

/* Turns the loop until '*count' reaches 'want' or 'ms' passed. */
static int wait_for(harness *h, const size_t *count, size_t want, int ms) {
  uint64_t end = mono_ms() + (uint64_t)ms;
  while (*count < want && mono_ms() < end)
    uv_run(&h->loop, UV_RUN_ONCE);
  return *count >= want;
}

static const myc__alloc heap = {myc__default_alloc, NULL};

static int open_client(harness *h, const char *url,
                       const myc_redis_options *o) {
  char err[256];
  int rc =
      myc__redis_new(&h->loop, &heap, url, o, sink, h, &h->c, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "open %s: %s\n", url, err);
  return rc;
}

static int64_t cmd(harness *h, int argc, ...) {
  const char *argv[16];
  size_t lens[16];
  va_list ap;
  int i;
  va_start(ap, argc);
  for (i = 0; i < argc; i++) {
    argv[i] = va_arg(ap, const char *);
    lens[i] = strlen(argv[i]);
  }
  va_end(ap);
  return myc__redis_command(h->c, argc, argv, lens);
}

/* The reply record of command 'id', or NULL. */
static const record *reply_of(const harness *h, int64_t id) {
  size_t i;
  for (i = 0; i < h->n; i++)
    if (h->recs[i].code == MYC_REDIS_EV_REPLY && h->recs[i].id == (uint64_t)id)
      return &h->recs[i];
  return NULL;
}

static char url_buf[128];
static const char *url_of(int port) {
  snprintf(url_buf, sizeof url_buf, "redis://127.0.0.1:%d", port);
  return url_buf;
}

/* ---- tests -------------------------------------------------------------- */

static void test_bad_open(void) {
  harness h;
  myc_redis_options o;
  char err[256];
  myc_redis *c = (myc_redis *)&h;
  harness_init(&h);
  CHECK_EQ(myc__redis_new(&h.loop, &heap, "redis//x", NULL, sink, &h, &c, err,
                          sizeof err),
           MYC_EINVAL);
  CHECK(c == NULL);
  CHECK(strstr(err, "bad URL") != NULL);
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 500;
  o.reconnect_max_ms = 100;
  CHECK_EQ(myc__redis_new(&h.loop, &heap, "redis://h", &o, sink, &h, &c, err,
                          sizeof err),
           MYC_EINVAL);
  CHECK(strstr(err, "reconnect_min_ms") != NULL);
  CHECK_EQ(h.n, 0);
  harness_free(&h);
}

static void test_basic(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  int64_t id[9];
  CHECK(pid > 0);
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  CHECK(strncmp(myc__redis_server(h.c), "127.0.0.1:", 10) == 0);
  id[0] = cmd(&h, 3, "SET", "k", "v1");
  id[1] = cmd(&h, 2, "GET", "k");
  id[2] = cmd(&h, 2, "GET", "missing");
  id[3] = cmd(&h, 2, "INCR", "n");
  id[4] = cmd(&h, 3, "INCRBY", "n", "41");
  id[5] = cmd(&h, 5, "RPUSH", "l", "a", "b", "c");
  id[6] = cmd(&h, 4, "LRANGE", "l", "0", "-1");
  id[7] = cmd(&h, 1, "NOSUCHCOMMAND");
  id[8] = cmd(&h, 3, "MGET", "k", "missing");
  CHECK(id[0] > 0 && id[8] == id[0] + 8);
  CHECK_EQ(myc__redis_pending(h.c), 9);
  CHECK(wait_for(&h, &h.replies, 9, 5000));
  CHECK_EQ(myc__redis_pending(h.c), 0);
  CHECK_STR(reply_of(&h, id[0])->text, "+OK");
  CHECK_STR(reply_of(&h, id[1])->text, "s:v1");
  CHECK_STR(reply_of(&h, id[2])->text, "nil");
  CHECK_STR(reply_of(&h, id[3])->text, "i:1");
  CHECK_STR(reply_of(&h, id[4])->text, "i:42");
  CHECK_STR(reply_of(&h, id[5])->text, "i:3");
  CHECK_STR(reply_of(&h, id[6])->text, "[s:a,s:b,s:c]");
  CHECK(strncmp(reply_of(&h, id[7])->text, "-ERR unknown command", 20) == 0);
  CHECK_STR(reply_of(&h, id[8])->text, "[s:v1,nil]");
  CHECK_EQ(h.ups, 1);
  CHECK_STR(myc__redis_state(h.c), "up");
  harness_free(&h);
  stop_server(pid);
}

static void test_binary(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  const char key[] = "bin\0key", val[] = "a\0b\xff\r\n$3\r\nc";
  const char *argv[3] = {"SET", key, val};
  size_t lens[3] = {3, sizeof key - 1, sizeof val - 1};
  int64_t id;
  CHECK(pid > 0);
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  CHECK(myc__redis_command(h.c, 3, argv, lens) > 0);
  argv[0] = "GET";
  lens[0] = 3;
  id = myc__redis_command(h.c, 2, argv, lens);
  argv[1] = "bin";
  lens[1] = 3; /* a different key: the NUL is part of the name */
  myc__redis_command(h.c, 2, argv, lens);
  CHECK(wait_for(&h, &h.replies, 3, 5000));
  CHECK_STR(reply_of(&h, id)->text, "s:a\\x00b\\xff\\x0d\\x0a$3\\x0d\\x0ac");
  CHECK_STR(reply_of(&h, id + 1)->text, "nil");
  harness_free(&h);
  stop_server(pid);
}

static void test_pipeline(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  char val[32];
  int i;
  size_t k;
  CHECK(pid > 0);
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  /* All issued before the first reply: 10 000 commands in flight. */
  for (i = 0; i < 5000; i++) {
    snprintf(val, sizeof val, "%d", i);
    CHECK(cmd(&h, 3, "SET", val, val) > 0);
    CHECK(cmd(&h, 2, "INCR", "counter") > 0);
  }
  CHECK_EQ(myc__redis_pending(h.c), 10000);
  CHECK(wait_for(&h, &h.replies, 10000, 10000));
  for (k = 0, i = 0; k < h.n; k++) {
    const record *r = &h.recs[k];
    if (r->code != MYC_REDIS_EV_REPLY)
      continue;
    CHECK_EQ(r->id, (uint64_t)i + 1); /* in order */
    if (i % 2 == 0) {
      CHECK_STR(r->text, "+OK");
    } else {
      snprintf(val, sizeof val, "i:%d", i / 2 + 1);
      CHECK_STR(r->text, val);
    }
    i++;
  }
  CHECK_EQ(i, 10000);
  harness_free(&h);
  stop_server(pid);
}

static void test_refused(void) {
  harness h;
  int held = -1, port = test_refusing_port(&held);
  int64_t id;
  const record *r;
  char want[128];
  myc_redis_options o;
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 50;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), &o), 0);
  CHECK_STR(myc__redis_state(h.c), "connecting");
  /* Accepted during the attempt; fails with its error. */
  id = cmd(&h, 2, "GET", "k");
  CHECK(id > 0);
  h.command_on_down = 1;
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  r = reply_of(&h, id);
  CHECK(r != NULL);
  CHECK_EQ(r->status, UV_ECONNREFUSED);
  snprintf(want, sizeof want,
           "redis 127.0.0.1:%d: cannot connect: "
           "connection refused",
           port);
  CHECK_STR(r->text, want);
  /* Between attempts commands fail fast, naming the server. */
  CHECK_EQ(h.down_rc, UV_ENOTCONN);
  snprintf(want, sizeof want,
           "redis 127.0.0.1:%d: not connected (cannot "
           "connect: connection refused); next attempt in",
           port);
  CHECK(strncmp(h.down_err, want, strlen(want)) == 0);
  /* It keeps retrying. */
  CHECK(wait_for(&h, &h.downs, 3, 5000));
  CHECK_EQ(h.ups, 0);
  harness_free(&h);
  close(held);
}

static void test_kill_restart(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  myc_redis_options o;
  size_t k, ok = 0, failed = 0, n_before;
  int i, order_ok = 1;
  int64_t id;
  CHECK(pid > 0);
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 200;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), &o), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  /* Some replies, then the server freezes with commands in flight and
   * dies. */
  for (i = 0; i < 10; i++)
    CHECK(cmd(&h, 2, "INCR", "n") > 0);
  CHECK(wait_for(&h, &h.replies, 10, 5000));
  kill(pid, SIGSTOP);
  for (i = 10; i < 2000; i++)
    CHECK(cmd(&h, 2, "INCR", "n") > 0);
  wait_for(&h, &h.replies, 2000, 100);
  stop_server(pid);
  CHECK(wait_for(&h, &h.replies, 2000, 5000));
  for (k = 0; k < h.n; k++) {
    const record *r = &h.recs[k];
    if (r->code != MYC_REDIS_EV_REPLY)
      continue;
    if (r->status == 0) {
      ok++;
      order_ok &= failed == 0; /* every success before the first failure */
    } else {
      failed++;
      order_ok &= r->status == UV_ECONNRESET &&
                  strstr(r->text, "connection lost") != NULL &&
                  strstr(r->text, "redis 127.0.0.1:") == r->text;
    }
  }
  CHECK(ok >= 10);
  CHECK(failed > 0);
  CHECK_EQ(ok + failed, 2000);
  CHECK(order_ok);
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  CHECK_STR(myc__redis_state(h.c), "down");
  n_before = h.downs;
  CHECK(wait_for(&h, &h.downs, n_before + 2, 5000)); /* retries refused */
  pid = start_server(port, NULL);
  CHECK(pid > 0);
  CHECK(wait_for(&h, &h.ups, 2, 5000));
  id = cmd(&h, 1, "PING");
  CHECK(id > 0);
  CHECK(wait_for(&h, &h.replies, 2001, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+PONG");
  harness_free(&h);
  stop_server(pid);
}

static void test_timeout(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  myc_redis_options o;
  int64_t id, id2;
  uint64_t t0;
  const record *r;
  CHECK(pid > 0);
  memset(&o, 0, sizeof o);
  o.command_timeout_ms = 200;
  o.reconnect_min_ms = 20;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), &o), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  t0 = mono_ms();
  /* The server holds it 60 s; the client gives up after 200 ms.  Half
   * the hold is the bound: generous on a loaded machine, and still far
   * from the server's own reply. */
  id = cmd(&h, 3, "BLPOP", "nothing", "60");
  id2 = cmd(&h, 1, "PING");
  CHECK(wait_for(&h, &h.replies, 2, 30000));
  CHECK(mono_ms() - t0 < 30000);
  r = reply_of(&h, id);
  CHECK_EQ(r->status, UV_ETIMEDOUT);
  CHECK(strstr(r->text, "no reply within 200 ms") != NULL);
  CHECK_EQ(reply_of(&h, id2)->status, UV_ETIMEDOUT);
  CHECK(wait_for(&h, &h.ups, 2, 5000)); /* a fresh connection */
  id = cmd(&h, 1, "PING");
  CHECK(wait_for(&h, &h.replies, 3, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+PONG");
  harness_free(&h);
  stop_server(pid);
}

/* The loop stalls past the command timeout (a long handler batch, a
 * descheduled process) while the reply waits in the socket: libuv runs
 * the timer before it reads, and the reply must still win.  Stalls before
 * and after the command was written. */
static void test_stalled_loop(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  myc_redis_options o;
  int64_t id, id2;
  CHECK(pid > 0);
  memset(&o, 0, sizeof o);
  o.command_timeout_ms = 300;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), &o), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  id = cmd(&h, 3, "SET", "k", "v");
  uv_run(&h.loop, UV_RUN_NOWAIT); /* written */
  uv_sleep(600);
  id2 = cmd(&h, 2, "GET", "k"); /* issued late, not written yet */
  uv_sleep(600);
  CHECK(wait_for(&h, &h.replies, 2, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+OK");
  CHECK_STR(reply_of(&h, id2)->text, "s:v");
  CHECK_EQ(h.downs, 0);

  /* Issued and stalled before any write. */
  id = cmd(&h, 2, "INCR", "n");
  uv_sleep(600);
  CHECK(wait_for(&h, &h.replies, 3, 5000));
  CHECK_STR(reply_of(&h, id)->text, "i:1");
  CHECK_EQ(h.downs, 0);
  harness_free(&h);
  stop_server(pid);
}

static void test_auth_and_db(void) {
  harness h, h0;
  int port = test_free_port();
  pid_t pid = start_server(port, "s3cret");
  int64_t id;
  char url[128];
  CHECK(pid > 0);
  harness_init(&h);
  snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/2", port);
  CHECK_EQ(open_client(&h, url, NULL), 0);
  id = cmd(&h, 3, "SET", "in2", "yes");
  CHECK(wait_for(&h, &h.replies, 1, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+OK");
  CHECK_EQ(h.ups, 1);
  harness_free(&h);

  harness_init(&h0);
  snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d", port);
  CHECK_EQ(open_client(&h0, url, NULL), 0);
  id = cmd(&h0, 2, "GET", "in2");
  CHECK(wait_for(&h0, &h0.replies, 1, 5000));
  CHECK_STR(reply_of(&h0, id)->text, "nil"); /* db 0 */
  harness_free(&h0);

  harness_init(&h);
  snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", port);
  CHECK_EQ(open_client(&h, url, NULL), 0);
  id = cmd(&h, 2, "GET", "k");
  CHECK(wait_for(&h, &h.replies, 1, 5000));
  CHECK_EQ(reply_of(&h, id)->status, UV_EACCES);
  CHECK(strstr(reply_of(&h, id)->text, ": AUTH failed: WRONGPASS") != NULL);
  CHECK(strstr(reply_of(&h, id)->text, "wrong") == NULL);
  CHECK_EQ(h.ups, 0);
  harness_free(&h);

  harness_init(&h);
  snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/99999", port);
  CHECK_EQ(open_client(&h, url, NULL), 0);
  id = cmd(&h, 1, "PING");
  CHECK(wait_for(&h, &h.replies, 1, 5000));
  CHECK_EQ(reply_of(&h, id)->status, MYC_EINVAL);
  CHECK(strstr(reply_of(&h, id)->text, "SELECT 99999 failed") != NULL);
  harness_free(&h);
  stop_server(pid);
}

static void test_host_name(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  char url[128];
  int64_t id;
  CHECK(pid > 0);
  harness_init(&h);
  snprintf(url, sizeof url, "redis://localhost:%d", port);
  CHECK_EQ(open_client(&h, url, NULL), 0);
  /* Issued during the lookup: queued, then sent. */
  id = cmd(&h, 1, "PING");
  CHECK(id > 0);
  CHECK(wait_for(&h, &h.replies, 1, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+PONG");
  harness_free(&h);
  stop_server(pid);
}

static void test_close(void) {
  harness h;
  int held = -1, port = test_free_port();
  pid_t pid = start_server(port, NULL);
  int i;
  int64_t last = 0;
  CHECK(pid > 0);
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  for (i = 0; i < 100; i++)
    last = cmd(&h, 2, "INCR", "c");
  h.free_on_closed = 1;
  myc__redis_close(h.c);
  myc__redis_close(h.c); /* idempotent */
  CHECK_STR(myc__redis_state(h.c), "closing");
  CHECK_EQ(cmd(&h, 1, "PING"), MYC_ESTATE);
  CHECK(strstr(myc__redis_error(h.c), "client closed") != NULL);
  CHECK(wait_for(&h, &h.closed, 1, 5000));
  /* Commands sent before the close got their replies, then CLOSED. */
  CHECK_EQ(h.replies, 100);
  CHECK_STR(reply_of(&h, last)->text, "i:100");
  CHECK_EQ(h.recs[h.n - 1].code, MYC_REDIS_EV_CLOSED);
  CHECK(h.c == NULL);
  harness_free(&h);

  /* Closing while down: CLOSED comes at once, no retry. */
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(test_refusing_port(&held)), NULL), 0);
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  h.free_on_closed = 1;
  myc__redis_close(h.c);
  CHECK(wait_for(&h, &h.closed, 1, 5000));
  harness_free(&h);
  close(held);
  stop_server(pid);
}

static void test_free_with_pending(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  int i;
  CHECK(pid > 0);
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  for (i = 0; i < 100; i++)
    cmd(&h, 2, "INCR", "c");
  myc__redis_free(h.c);
  h.c = NULL;
  uv_run(&h.loop, UV_RUN_NOWAIT);
  CHECK_EQ(h.replies, 0); /* abandoned, never delivered */
  harness_free(&h);

  /* Freed during a lookup. */
  harness_init(&h);
  CHECK_EQ(open_client(&h, "redis://localhost:1", NULL), 0);
  cmd(&h, 1, "PING");
  myc__redis_free(h.c);
  h.c = NULL;
  harness_free(&h);
  CHECK_EQ(h.n, 0);
  stop_server(pid);
}

/* A service's stop closes its client and its Lua state frees it in the
 * same turn: what it issued before must still reach the server, though
 * nobody waits for the replies. */
static void test_close_then_free(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  int64_t id;
  CHECK(pid > 0);
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  cmd(&h, 3, "SET", "written", "before the stop");
  cmd(&h, 2, "INCR", "n");
  myc__redis_close(h.c);
  myc__redis_free(h.c);
  h.c = NULL;
  harness_free(&h);
  CHECK_EQ(h.replies, 0);

  /* Without a close, free drops at once: nothing is written. */
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  cmd(&h, 3, "SET", "dropped", "x");
  myc__redis_free(h.c);
  h.c = NULL;
  harness_free(&h);

  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), NULL), 0);
  id = cmd(&h, 3, "MGET", "written", "dropped");
  cmd(&h, 2, "GET", "n");
  CHECK(wait_for(&h, &h.replies, 2, 5000));
  CHECK_STR(reply_of(&h, id)->text, "[s:before the stop,nil]");
  CHECK_STR(reply_of(&h, id + 1)->text, "s:1");
  harness_free(&h);
  stop_server(pid);
}

static void test_limits(void) {
  harness h;
  int port = test_free_port();
  pid_t pid = start_server(port, NULL);
  myc_redis_options o;
  const char *argv[2] = {"subscribe", "ch"};
  size_t lens[2] = {9, 2};
  int i;
  CHECK(pid > 0);
  memset(&o, 0, sizeof o);
  o.max_pending = 10;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url_of(port), &o), 0);
  CHECK_EQ(myc__redis_command(h.c, 2, argv, lens), MYC_EINVAL);
  CHECK(strstr(myc__redis_error(h.c), "subscribe is not supported") != NULL);
  CHECK_EQ(myc__redis_command(h.c, 0, argv, lens), MYC_EINVAL);
  for (i = 0; i < 10; i++)
    CHECK(cmd(&h, 1, "PING") > 0);
  CHECK_EQ(cmd(&h, 1, "PING"), MYC_ELIMIT);
  CHECK(wait_for(&h, &h.replies, 10, 5000));
  CHECK(cmd(&h, 1, "PING") > 0);
  harness_free(&h);
  stop_server(pid);
}

/* Every allocation of the constructor failing in turn leaks nothing. */
static void test_alloc_failures(void) {
  failing_alloc fa;
  myc__alloc a = {failing_alloc_fn, &fa};
  harness h;
  myc_redis *c = NULL;
  char err[256];
  int rc = -1;
  long n;
  harness_init(&h);
  for (n = 1; rc != 0 && n < 20; n++) {
    memset(&fa, 0, sizeof fa);
    fa.fail_at = n;
    rc = myc__redis_new(&h.loop, &a, "redis://127.0.0.1:1", NULL, sink, &h, &c,
                        err, sizeof err);
    if (rc != 0) {
      CHECK_EQ(rc, MYC_ENOMEM);
      CHECK_EQ(fa.live, 0);
    }
  }
  CHECK_EQ(rc, 0);
  myc__redis_free(c);
  uv_run(&h.loop, UV_RUN_NOWAIT); /* the close callbacks release it */
  CHECK_EQ(fa.live, 0);
  harness_free(&h);
}

/* ---- hostile peers ------------------------------------------------------ */

/* A server on the test's own loop that answers every read from a client
 * with 'script' (and, with 'greet', writes it on accept too): a broken or
 * hostile Redis. */
typedef struct {
  uv_tcp_t server;
  const char *script;
  int greet;
  size_t flood; /* after the script, this many bytes of 'x' */
  int port;
  int accepted;
} peer;

typedef struct {
  uv_tcp_t tcp;
  uv_write_t wr;
  peer *p;
  char buf[256];
} peer_conn;

static void peer_closed(uv_handle_t *h) { free(h->data); }

static void peer_write(peer_conn *pc) {
  static char xs[4 << 20];
  uv_buf_t b[2];
  b[0] = uv_buf_init((char *)pc->p->script, (unsigned)strlen(pc->p->script));
  if (pc->p->flood == 0) {
    uv_try_write((uv_stream_t *)&pc->tcp, b, 1);
    return;
  }
  memset(xs, 'x', sizeof xs);
  b[1] = uv_buf_init(xs, (unsigned)(pc->p->flood < sizeof xs ? pc->p->flood
                                                              : sizeof xs));
  uv_write(&pc->wr, (uv_stream_t *)&pc->tcp, b, 2, NULL);
}

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  peer_conn *pc = h->data;
  (void)hint;
  *b = uv_buf_init(pc->buf, sizeof pc->buf);
}

static void peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  peer_conn *pc = st->data;
  (void)b;
  if (n < 0)
    uv_close((uv_handle_t *)st, peer_closed);
  else if (n > 0)
    peer_write(pc);
}

static void peer_accept(uv_stream_t *server, int status) {
  peer *p = server->data;
  peer_conn *pc = calloc(1, sizeof *pc);
  if (status != 0 || pc == NULL)
    return;
  pc->p = p;
  uv_tcp_init(server->loop, &pc->tcp);
  pc->tcp.data = pc;
  if (uv_accept(server, (uv_stream_t *)&pc->tcp) != 0) {
    uv_close((uv_handle_t *)&pc->tcp, peer_closed);
    return;
  }
  p->accepted++;
  if (p->greet)
    peer_write(pc);
  uv_read_start((uv_stream_t *)&pc->tcp, peer_alloc, peer_read);
}

static int peer_start(harness *h, peer *p, const char *script, int greet) {
  struct sockaddr_in a;
  int len = sizeof a;
  memset(p, 0, sizeof *p);
  p->script = script;
  p->greet = greet;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(&h->loop, &p->server);
  p->server.data = p;
  if (uv_tcp_bind(&p->server, (struct sockaddr *)&a, 0) != 0 ||
      uv_listen((uv_stream_t *)&p->server, 8, peer_accept) != 0 ||
      uv_tcp_getsockname(&p->server, (struct sockaddr *)&a, &len) != 0)
    return -1;
  p->port = ntohs(a.sin_port);
  return 0;
}

/* Closes the listener; connections go with the client's. */
static void peer_stop(peer *p) { uv_close((uv_handle_t *)&p->server, NULL); }

static const record *last_down(const harness *h) {
  size_t i;
  for (i = h->n; i-- > 0;)
    if (h->recs[i].code == MYC_REDIS_EV_DOWN)
      return &h->recs[i];
  return NULL;
}

/* Five replies to one PING: hiredis 0.14 asserted (the process aborted).
 * The first answers the PING; the rest end this connection only. */
static void test_extra_replies(void) {
  harness h;
  peer p;
  myc_redis_options o;
  int64_t id;
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 20;
  o.reconnect_max_ms = 50;
  harness_init(&h);
  CHECK_EQ(peer_start(&h, &p, "+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n", 0), 0);
  CHECK_EQ(open_client(&h, url_of(p.port), &o), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  id = cmd(&h, 1, "PING");
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+OK");
  CHECK_EQ(last_down(&h)->status, UV_EPROTO);
  CHECK(strstr(last_down(&h)->text, "a reply to no command") != NULL);
  CHECK(strncmp(last_down(&h)->text, "redis 127.0.0.1:", 16) == 0);
  /* It reconnects, and a command then fails the same way, not the test. */
  CHECK(wait_for(&h, &h.ups, 2, 5000));
  id = cmd(&h, 2, "GET", "k");
  CHECK(wait_for(&h, &h.downs, 2, 5000));
  CHECK_STR(reply_of(&h, id)->text, "+OK");
  peer_stop(&p);
  harness_free(&h);
}

/* A bulk string announced at 1 GiB, then streamed: the client stops
 * buffering at its bound instead of growing until the command timeout. */
static void test_reply_too_big(void) {
  harness h;
  peer p;
  int64_t id;
  uint64_t t0;
  harness_init(&h);
  CHECK_EQ(peer_start(&h, &p, "$1073741824\r\n", 0), 0);
  p.flood = 4 << 20;
  CHECK_EQ(open_client(&h, url_of(p.port), NULL), 0);
  myc__redis_set_max_reply(h.c, 1 << 20);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  t0 = mono_ms();
  id = cmd(&h, 2, "GET", "big");
  CHECK(wait_for(&h, &h.replies, 1, 5000));
  CHECK(mono_ms() - t0 < 900); /* not the 1 s command timeout */
  CHECK_EQ(reply_of(&h, id)->status, MYC_ELIMIT);
  CHECK(strstr(reply_of(&h, id)->text,
               ": a reply of more than 1 MiB; connection dropped") != NULL);
  peer_stop(&p);
  harness_free(&h);
}

/* A reply before any command, and replies to a command already
 * answered, in one read or several. */
static void test_unsolicited(void) {
  static const struct {
    const char *script;
    int greet;
    const char *why;
  } cases[] = {
      {"+HELLO\r\n", 1, "a reply to no command"},
      {":1\r\n", 1, "a reply to no command"},
      {"$-1\r\n", 1, "a reply to no command"},
      {"*2\r\n:1\r\n:2\r\n", 1, "a reply to no command"},
      {"-ERR max number of clients reached\r\n", 1,
       "connection lost: ERR max number of clients reached"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof *cases; i++) {
    harness h;
    peer p;
    const record *r;
    int64_t id;
    harness_init(&h);
    CHECK_EQ(peer_start(&h, &p, cases[i].script, cases[i].greet), 0);
    CHECK_EQ(open_client(&h, url_of(p.port), NULL), 0);
    CHECK(wait_for(&h, &h.downs, 1, 5000));
    r = last_down(&h);
    if (strstr(r->text, cases[i].why) == NULL)
      fprintf(stderr, "case %zu: %s\n", i, r->text);
    CHECK(strstr(r->text, cases[i].why) != NULL);
    id = cmd(&h, 1, "PING");
    CHECK_EQ(id, UV_ENOTCONN);
    peer_stop(&p);
    harness_free(&h);
  }
}

/* ---- in an engine ------------------------------------------------------- */

/* Sets and gets a key, leaves a command that never answers in flight,
 * emits what it read on "done"; gives up after 5 s.  With 'close_in_stop'
 * the client is closed by the service's stop, else it goes with the Lua
 * state. */
static const char service_src[] =
    "local redis = require 'mycelium.net.redis'\n"
    "local r\n"
    "return {\n"
    "  init = function(ctx)\n"
    "    r = assert(redis.connect(ctx, '%s'))\n"
    "    ctx:after(5000, function() ctx:shutdown(3) end)\n"
    "    coroutine.wrap(function()\n"
    "      assert(r:set('svc', 'ok') == 'OK')\n"
    "      local v = r:get('svc')\n"
    "      r:command({ 'BLPOP', 'never', '0' }, function() end)\n"
    "      ctx:emit('done', v)\n"
    "    end)()\n"
    "  end,\n"
    "  stop = function() if %s then r:close() end end,\n"
    "}\n";

static char tmpdir[] = "/tmp/myc_redis_test_XXXXXX";

static const char *write_service(int port, int close_in_stop) {
  static char path[300];
  char url[64];
  FILE *f;
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  snprintf(path, sizeof path, "%s/svc.lua", tmpdir);
  f = fopen(path, "w");
  fprintf(f, service_src, url, close_in_stop ? "true" : "false");
  fclose(f);
  return path;
}

typedef struct {
  myc_engine *e;
  char got[64];
} done_box;

static void on_done(void *ud, const myc_message *m) {
  done_box *b = ud;
  snprintf(b->got, sizeof b->got, "%.*s", (int)m->len, (const char *)m->data);
  myc_engine_stop(b->e, 0);
}

static int engine_with_service(int manual, int port, int close_in_stop,
                               done_box *box) {
  myc_engine_config cfg;
  myc_service_config sc;
  char err[512];
  myc_engine_config_init(&cfg);
  cfg.manual = manual;
  cfg.log_level = MYC_LOG_ERROR;
  memset(&sc, 0, sizeof sc);
  sc.name = "svc";
  sc.module = write_service(port, close_in_stop);
  sc.worker = -1;
  memset(box, 0, sizeof *box);
  if (myc_engine_new(&box->e, &cfg) != 0 ||
      myc_engine_add_c_service(box->e, "sink", "done", on_done, box, 0) != 0 ||
      myc_engine_add_service(box->e, &sc, err, sizeof err) != 0 ||
      myc_engine_start(box->e, err, sizeof err) != 0) {
    fprintf(stderr, "engine: %s\n", err);
    return -1;
  }
  return 0;
}

/* Worker threads: the client's handles must not keep a worker alive at
 * shutdown, and everything is released with the engine. */
static void test_threaded_engine(void) {
  int port = test_free_port(), close_in_stop;
  pid_t pid = start_server(port, NULL);
  done_box box;
  CHECK(pid > 0);
  for (close_in_stop = 0; close_in_stop < 2; close_in_stop++) {
    CHECK_EQ(engine_with_service(0, port, close_in_stop, &box), 0);
    CHECK_EQ(myc_engine_run(box.e, 0), 0);
    myc_engine_free(box.e);
    CHECK_STR(box.got, "ok");
  }
  stop_server(pid);
}

/* A manual engine turns the worker loop in myc_engine_run_once(). */
static void test_manual_engine(void) {
  int port = test_free_port(), close_in_stop;
  pid_t pid = start_server(port, NULL);
  done_box box;
  uint64_t end;
  CHECK(pid > 0);
  for (close_in_stop = 0; close_in_stop < 2; close_in_stop++) {
    CHECK_EQ(engine_with_service(1, port, close_in_stop, &box), 0);
    for (end = mono_ms() + 5000; box.got[0] == '\0' && mono_ms() < end;) {
      myc_engine_run_once(box.e, 0);
      sleep_ms(1);
    }
    CHECK_STR(box.got, "ok");
    myc_engine_free(box.e);
  }
  stop_server(pid);
}

int main(void) {
  static const test_case cases[] = {
      {"bad_open", test_bad_open},
      {"basic", test_basic},
      {"binary", test_binary},
      {"pipeline", test_pipeline},
      {"refused", test_refused},
      {"kill_restart", test_kill_restart},
      {"timeout", test_timeout},
      {"stalled_loop", test_stalled_loop},
      {"auth_and_db", test_auth_and_db},
      {"host_name", test_host_name},
      {"close", test_close},
      {"free_with_pending", test_free_with_pending},
      {"close_then_free", test_close_then_free},
      {"limits", test_limits},
      {"alloc_failures", test_alloc_failures},
      {"extra_replies", test_extra_replies},
      {"unsolicited", test_unsolicited},
      {"reply_too_big", test_reply_too_big},
      {"threaded_engine", test_threaded_engine},
      {"manual_engine", test_manual_engine},
      {NULL, NULL}};
  int rc;
  signal(SIGPIPE, SIG_IGN);
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
