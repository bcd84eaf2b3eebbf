/* metrics_test.c -- the metrics exposition and its listener: the counters
 * of a service in the Prometheus text format, promtool's check of it, a
 * scrape answered while the only worker is stuck in a handler, and the
 * errors of a bad listen address. */
#include "mycelium.h"
#include "base/alloc.h"
#include "base/text.h"
#include "test.h"
#include "test_engine.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_metrics_XXXXXX";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* GETs 'path' from 127.0.0.1:'port' into 'out' (the whole answer, head
 * and body).  Returns the bytes read or -1. */
static int http_get(int port, const char *path, char *out, size_t cap) {
  struct sockaddr_in sa = {0};
  char req[256];
  size_t len = 0;
  ssize_t n;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
    close(fd);
    return -1;
  }
  while (len < cap - 1 && (n = read(fd, out + len, cap - 1 - len)) > 0)
    len += (size_t)n;
  out[len] = '\0';
  close(fd);
  return (int)len;
}

/* The value of the sample line starting with 'series' (name and
 * labels), or -1. */
static double sample(const char *text, const char *series) {
  const char *p = text;
  size_t n = strlen(series);
  while ((p = strstr(p, series)) != NULL) {
    if ((p == text || p[-1] == '\n') && p[n] == ' ')
      return atof(p + n + 1);
    p += n;
  }
  return -1;
}

/* Pipes 'text' into `promtool check metrics`.  Returns its exit status,
 * or -2 when promtool is not installed. */
static int promtool(const char *text) {
  char path[300], cmd[400];
  FILE *f;
  int rc;
  if (system("command -v promtool >/dev/null 2>&1") != 0)
    return -2;
  snprintf(path, sizeof path, "%s/scrape.txt", tmpdir);
  f = fopen(path, "w");
  if (f == NULL)
    return -1;
  fputs(text, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
  rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static const char *ECHO =
    "return { subscribe = { 'in', 'b/c' },\n"
    "  on_message = function(ctx, msg) ctx:emit('out', msg.data) end }\n";

/* Handled, emitted and dropped counts read back from the exposition of
 * a manual engine; the text passes promtool. */
static void counters_in_exposition(void) {
  myc_engine *e = test_manual_engine();
  myc_service_config sc = {0};
  myc_mailbox_config mb;
  static char text[1 << 17];
  char err[256];
  int64_t len;
  int i, rc;
  CHECK(e != NULL);
  mb.capacity = 2;
  mb.policy = MYC_POLICY_DROP_NEWEST;
  mb.threshold = 0.8;
  mb.max_bytes = 1 << 20;
  mb.max_message_bytes = 1 << 16;
  sc.name = "echo";
  sc.module = test_module(tmpdir, "echo.lua", ECHO);
  sc.worker = -1;
  sc.mailbox = &mb;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "%s\n", err);
  CHECK_EQ(rc, 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  for (i = 0; i < 5; i++)
    myc_publish(e, "in", MYC_KIND_RAW, 0, "m", 1);
  myc_publish(e, "b/c", MYC_KIND_RAW, 0, "m", 1);
  myc_engine_run_once(e, 0);
  len = myc_engine_metrics(e, text, 10);
  CHECK(len > 1000);
  CHECK_EQ(strlen(text), 9); /* cut as snprintf cuts */
  CHECK_EQ(myc_engine_metrics(e, text, sizeof text), len);
  CHECK_EQ(strlen(text), len);
  CHECK_EQ(sample(text, "mycelium_messages_handled_total{service=\"echo\"}"), 2);
  CHECK_EQ(sample(text, "mycelium_messages_emitted_total{service=\"echo\"}"), 2);
  CHECK_EQ(sample(text, "mycelium_messages_dropped_total{service=\"echo\","
                        "topic=\"in\",reason=\"drop_newest\"}"), 3);
  CHECK_EQ(sample(text, "mycelium_messages_dropped_total{service=\"echo\","
                        "topic=\"b/c\",reason=\"drop_newest\"}"), 1);
  CHECK_EQ(sample(text, "mycelium_messages_unrouted_total"), 2);
  CHECK_EQ(sample(text, "mycelium_queue_capacity{service=\"echo\"}"), 2);
#if MYC_METRICS
  CHECK_EQ(sample(text, "mycelium_handler_duration_seconds_count{service=\"echo\"}"), 2);
  CHECK_EQ(sample(text, "mycelium_worker_batch_size_count{worker=\"0\"}"), 1);
  CHECK(strstr(text, "metrics=\"on\"") != NULL);
#else
  /* -DMYC_METRICS=OFF: no timing, no histograms. */
  CHECK(strstr(text, "mycelium_handler_duration_seconds") == NULL);
  CHECK(strstr(text, "mycelium_worker_") == NULL);
  CHECK(strstr(text, "metrics=\"off\"") != NULL);
#endif
  CHECK(sample(text, "process_start_time_seconds") > 1.7e9);
  snprintf(err, sizeof err, "\nmycelium_build_info{version=\"%d.%d.%d\"",
           MYC_VERSION_MAJOR, MYC_VERSION_MINOR, MYC_VERSION_PATCH);
  CHECK(strstr(text, err) != NULL);
  rc = promtool(text);
  myc_engine_free(e);
  if (rc == -2) {
    CHECK(getenv("CI") == NULL); /* CI installs it (scripts/deps.sh) */
    printf("skip: promtool not installed (apt-get install prometheus)\n");
    return;
  }
  CHECK_EQ(rc, 0);
}

/* The exposition escapes what a label value or HELP text may not hold. */
static void text_escapes(void) {
  myc__alloc a = {myc__default_alloc, NULL};
  myc__text t;
  myc__text_init(&t, &a);
  myc__text_label(&t, "a\"b\\c\nd", 7);
  myc__text_printf(&t, "|");
  myc__text_help(&t, "q\"\\\n");
  CHECK_STR(t.p, "a\\\"b\\\\c\\nd|q\"\\\\\\n");
  myc__text_free(&t);
}

typedef struct {
  const char *peer;
  uint64_t in, out;
} counted;

static void peer_label(myc__text *t, const void *rec) {
  const counted *c = rec;
  myc__text_printf(t, "peer=\"");
  myc__text_label(t, c->peer, strlen(c->peer));
  myc__text_printf(t, "\"");
}

/* A table of counter families (what links and NATS print with): HELP and
 * TYPE once a family, one sample per record and entry, the record's
 * labels before the entry's, braces only when there is a label, the
 * HELP and TYPE alone when there is no record. */
static void counter_families(void) {
  static const myc__text_counter fams[] = {
      {"x_total", "counter", "In and out.", "dir=\"in\"",
       offsetof(counted, in)},
      {NULL, NULL, NULL, "dir=\"out\"", offsetof(counted, out)},
      {"y", "gauge", "Back\\slash.", NULL, offsetof(counted, out)},
  };
  static const counted recs[] = {{"a", 1, 2}, {"b\"", 3, 18446744073709551615u}};
  myc__alloc a = {myc__default_alloc, NULL};
  myc__text t;
  size_t len = 0;
  char *p;
  myc__text_init(&t, &a);
  myc__text_counters(&t, fams, 3, recs, sizeof *recs, 2, peer_label);
  CHECK_STR(t.p, "# HELP x_total In and out.\n# TYPE x_total counter\n"
                 "x_total{peer=\"a\",dir=\"in\"} 1\n"
                 "x_total{peer=\"b\\\"\",dir=\"in\"} 3\n"
                 "x_total{peer=\"a\",dir=\"out\"} 2\n"
                 "x_total{peer=\"b\\\"\",dir=\"out\"} 18446744073709551615\n"
                 "# HELP y Back\\\\slash.\n# TYPE y gauge\n"
                 "y{peer=\"a\"} 2\n"
                 "y{peer=\"b\\\"\"} 18446744073709551615\n");
  myc__text_free(&t);
  myc__text_init(&t, &a);
  myc__text_counters(&t, fams, 3, recs, sizeof *recs, 1, NULL);
  myc__text_counters(&t, fams + 2, 1, recs, sizeof *recs, 0, peer_label);
  p = myc__text_take(&t, &len);
  CHECK(p != NULL);
  CHECK_STR(p, "# HELP x_total In and out.\n# TYPE x_total counter\n"
               "x_total{dir=\"in\"} 1\nx_total{dir=\"out\"} 2\n"
               "# HELP y Back\\\\slash.\n# TYPE y gauge\ny 2\n"
               "# HELP y Back\\\\slash.\n# TYPE y gauge\n");
  CHECK_EQ(len, strlen(p));
  myc__free(&a, p, len + 1);
}

typedef struct {
  myc_engine *e;
  pthread_t th;
} live;

static void *run_engine(void *arg) {
  myc_engine_run(((live *)arg)->e, 0);
  return NULL;
}

/* A handler spinning for 1.5 s of CPU on the only worker. */
static const char *STUCK =
    "return { subscribe = { 'spin' }, on_message = function()\n"
    "  local t = os.clock() + 1.5\n"
    "  while os.clock() < t do end\n"
    "end }\n";

static int live_start(live *l, const char *listen) {
  myc_engine_config cfg;
  myc_service_config sc = {0};
  char err[512];
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.metrics_listen = listen;
  if (myc_engine_new(&l->e, &cfg) != 0)
    return -1;
  sc.name = "stuck";
  sc.module = test_module(tmpdir, "stuck.lua", STUCK);
  sc.worker = -1;
  if (myc_engine_add_service(l->e, &sc, err, sizeof err) != 0 ||
      myc_engine_start(l->e, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    myc_engine_free(l->e);
    return -1;
  }
  return pthread_create(&l->th, NULL, run_engine, l);
}

static void live_stop(live *l) {
  myc_engine_stop(l->e, 0);
  pthread_join(l->th, NULL);
  myc_engine_free(l->e);
}

/* While the only worker spins in a handler, a scrape answers at once:
 * it shows the handler running (loop lag growing) and the stats still say
 * it runs afterwards, so the answer did not wait for it. */
static void scrape_while_handler_stuck(void) {
  static char body[1 << 17];
  myc_service_stats st;
  double t0, best = 1e9, lag;
  int port, i;
  live l;
  CHECK_EQ(live_start(&l, "127.0.0.1:0"), 0);
  port = myc_engine_metrics_port(l.e);
  CHECK(port > 0);
  CHECK_EQ(myc_publish(l.e, "spin", MYC_KIND_RAW, 0, "x", 1), 0);
  for (i = 0; i < 500; i++) {
    myc_engine_service_stats(l.e, 0, &st);
    if (st.running[0] != '\0')
      break;
    usleep(2000);
  }
  CHECK(strncmp(st.running, "handler", 7) == 0);
  usleep(300 * 1000);
  for (i = 0; i < 3; i++) {
    t0 = now_ms();
    CHECK(http_get(port, "/metrics", body, sizeof body) > 0);
    if (now_ms() - t0 < best)
      best = now_ms() - t0;
  }
  myc_engine_service_stats(l.e, 0, &st);
  CHECK(strncmp(st.running, "handler", 7) == 0); /* still stuck */
  CHECK(strncmp(body, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(strstr(body, "Content-Type: text/plain; version=0.0.4") != NULL);
  lag = sample(strstr(body, "\r\n\r\n") + 4,
               "mycelium_worker_loop_lag_seconds{worker=\"0\"}");
#if MYC_METRICS
  CHECK(lag >= 0.25);
#else
  CHECK(lag == -1); /* not measured */
#endif
  printf("scrape during a stuck handler: best of 3 %.1f ms, lag %.2f s\n",
         best, lag);
  CHECK(best < 100);
  /* Other paths are not metrics. */
  CHECK(http_get(port, "/", body, sizeof body) > 0);
  CHECK(strncmp(body, "HTTP/1.1 404", 12) == 0);
  live_stop(&l);
}

/* A listen address that is no numeric host:port is refused at creation;
 * a port in use fails the start naming the key. */
static void bad_listen(void) {
  struct sockaddr_in sa = {0};
  socklen_t salen = sizeof sa;
  myc_engine_config cfg;
  myc_engine *e;
  char err[512], addr[64];
  int fd;
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.metrics_listen = "localhost:9464";
  CHECK_EQ(myc_engine_new(&e, &cfg), MYC_EINVAL);
  cfg.metrics_listen = "127.0.0.1:70000";
  CHECK_EQ(myc_engine_new(&e, &cfg), MYC_EINVAL);
  /* A port this test listens on. */
  fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &salen) == 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
  cfg.metrics_listen = addr;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK(myc_engine_start(e, err, sizeof err) < 0);
  myc_engine_free(e);
  close(fd);
  CHECK(strstr(err, "metrics.listen '127.0.0.1:") != NULL);
  CHECK(strstr(err, "address already in use") != NULL);
}

int main(void) {
  static const test_case cases[] = {
      {"counters_in_exposition", counters_in_exposition},
      {"text_escapes", text_escapes},
      {"counter_families", counter_families},
      {"scrape_while_handler_stuck", scrape_while_handler_stuck},
      {"bad_listen", bad_listen},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
