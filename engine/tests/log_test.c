/* log_test.c -- the engine's log lines (log.h): the exact JSON and text
 * layout of a record, escaping of everything a service or a peer can put
 * in a message (quotes, control characters, a forged newline), the level
 * filter, long records, key/value fields, quoting for messages, and the
 * stderr sink writing each line whole.
 */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>

#include <unistd.h>

typedef struct {
  char lines[8][4096];
  int levels[8];
  int n;
} capture;

static void sink(void *ud, int level, const char *line, size_t len) {
  capture *c = ud;
  if (c->n < 8) {
    snprintf(c->lines[c->n], sizeof c->lines[0], "%.*s", (int)len, line);
    c->levels[c->n++] = level;
  }
}

static const myc__alloc heap = {myc__default_alloc, NULL};

/* 2023-11-14T22:13:20.123456789Z */
#define TS 1700000000123456789LL

static const uint8_t trace[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                                  0xcd, 0xef, 0,    1,    2,    3,
                                  4,    5,    6,    0xff};
static const uint8_t span[8] = {0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1};

static void make(myc__log *l, capture *c, int format, int level,
                 const char *node, const myc__alloc *a) {
  myc_engine_config cfg;
  myc_engine_config_init(&cfg);
  cfg.log_fn = sink;
  cfg.log_ud = c;
  cfg.log_format = format;
  cfg.log_level = level;
  memset(c, 0, sizeof *c);
  CHECK_EQ(myc__log_init(l, a, &cfg, node, NULL), 0);
}

static void test_json(void) {
  myc__log l;
  capture c;
  const char msg[] = "say \"hi\"\\ now\nand\tthen\x01!";
  make(&l, &c, MYC_LOG_JSON, MYC_LOG_DEBUG, "node\"1", &heap);
  myc__log_write(&l, MYC_LOG_WARN, TS, "svc", 3, trace, span, msg,
                 sizeof msg - 1, "\"n\":5", 5);
  CHECK_EQ(c.n, 1);
  CHECK_EQ(c.levels[0], MYC_LOG_WARN);
  CHECK_STR(c.lines[0],
            "{\"ts\":\"2023-11-14T22:13:20.123456Z\",\"level\":\"warn\","
            "\"node\":\"node\\\"1\",\"service\":\"svc\","
            "\"msg\":\"say \\\"hi\\\"\\\\ now\\nand\\tthen\\u0001!\","
            "\"trace_id\":\"0123456789abcdef00010203040506ff\","
            "\"span_id\":\"deadbeef00000001\",\"n\":5}");
  /* no service, no trace, no extra */
  myc__log_write(&l, MYC_LOG_DEBUG, 0, NULL, 0, NULL, NULL, "m", 1, NULL, 0);
  CHECK_STR(c.lines[1], "{\"ts\":\"1970-01-01T00:00:00.000000Z\","
                        "\"level\":\"debug\",\"node\":\"node\\\"1\","
                        "\"msg\":\"m\"}");
  myc__log_destroy(&l);
}

static void test_text(void) {
  myc__log l;
  capture c;
  const char msg[] = "forged\n2023-01-01 ERROR [x] fake\r\x7f\x01 end";
  make(&l, &c, MYC_LOG_TEXT, MYC_LOG_INFO, "n", &heap);
  myc__log_write(&l, MYC_LOG_ERROR, TS, "a]b\n", 4, trace, span, msg,
                 sizeof msg - 1, "k=v\nx", 5);
  CHECK_EQ(c.n, 1);
  CHECK_STR(c.lines[0],
            "2023-11-14T22:13:20.123456Z ERROR [a]b\\n] "
            "forged\\n2023-01-01 ERROR [x] fake\\r\\x7f\\x01 end k=v\\nx"
            " trace_id=0123456789abcdef00010203040506ff"
            " span_id=deadbeef00000001");
  CHECK(strchr(c.lines[0], '\n') == NULL);
  myc__log_write(&l, MYC_LOG_INFO, TS, NULL, 0, NULL, NULL, "plain", 5, NULL,
                 0);
  CHECK_STR(c.lines[1], "2023-11-14T22:13:20.123456Z INFO  plain");
  myc__log_destroy(&l);
}

static void test_levels(void) {
  myc__log l;
  capture c;
  make(&l, &c, MYC_LOG_TEXT, MYC_LOG_WARN, "n", &heap);
  myc__log_write(&l, MYC_LOG_DEBUG, TS, NULL, 0, NULL, NULL, "d", 1, NULL, 0);
  myc__log_write(&l, MYC_LOG_INFO, TS, NULL, 0, NULL, NULL, "i", 1, NULL, 0);
  myc__log_write(&l, MYC_LOG_WARN, TS, NULL, 0, NULL, NULL, "w", 1, NULL, 0);
  myc__log_write(&l, MYC_LOG_ERROR, TS, NULL, 0, NULL, NULL, "e", 1, NULL, 0);
  myc__log_write(&l, 4, TS, NULL, 0, NULL, NULL, "?", 1, NULL, 0);
  myc__log_write(&l, -1, TS, NULL, 0, NULL, NULL, "?", 1, NULL, 0);
  CHECK_EQ(c.n, 2);
  CHECK_EQ(c.levels[0], MYC_LOG_WARN);
  CHECK_EQ(c.levels[1], MYC_LOG_ERROR);
  CHECK(strstr(c.lines[0], "WARN  w") != NULL);
  CHECK(strstr(c.lines[1], "ERROR e") != NULL);
  myc__log_destroy(&l);
}

/* Past the 1 KiB on the stack the line is allocated, and freed after. */
static void test_long_record(void) {
  failing_alloc fa = {0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__log l;
  capture c;
  char msg[3000];
  memset(msg, 'm', sizeof msg);
  make(&l, &c, MYC_LOG_JSON, MYC_LOG_DEBUG, "n", &a);
  myc__log_write(&l, MYC_LOG_INFO, TS, "s", 1, NULL, NULL, msg, sizeof msg,
                 NULL, 0);
  CHECK_EQ(c.n, 1);
  CHECK_EQ(strlen(c.lines[0]), strlen("{\"ts\":\"2023-11-14T22:13:20.123456Z\","
                                      "\"level\":\"info\",\"node\":\"n\","
                                      "\"service\":\"s\",\"msg\":\"\"}") +
                                   sizeof msg);
  CHECK(fa.count > 0);
  CHECK_EQ(fa.live, 0);
  myc__log_destroy(&l);
}

static void test_kv(void) {
  myc__log l;
  capture c;
  const char *keys[] = {"path", "why"}, *vals[] = {"/a \"b\"", "x\ny"};
  make(&l, &c, MYC_LOG_JSON, MYC_LOG_DEBUG, "n", &heap);
  myc__log_write_kv(&l, MYC_LOG_INFO, TS, NULL, 0, NULL, NULL, "loaded", 2,
                    keys, vals);
  CHECK_STR(c.lines[0], "{\"ts\":\"2023-11-14T22:13:20.123456Z\","
                        "\"level\":\"info\",\"node\":\"n\",\"msg\":\"loaded\","
                        "\"path\":\"/a \\\"b\\\"\",\"why\":\"x\\ny\"}");
  make(&l, &c, MYC_LOG_TEXT, MYC_LOG_DEBUG, "n", &heap);
  myc__log_write_kv(&l, MYC_LOG_INFO, TS, NULL, 0, NULL, NULL, "loaded", 2,
                    keys, vals);
  CHECK_STR(c.lines[0], "2023-11-14T22:13:20.123456Z INFO  loaded "
                        "path=/a \"b\" why=x\\ny");
  make(&l, &c, MYC_LOG_TEXT, MYC_LOG_WARN, "n", &heap);
  myc__log_write_kv(&l, MYC_LOG_INFO, TS, NULL, 0, NULL, NULL, "below", 2,
                    keys, vals);
  CHECK_EQ(c.n, 0);
}

static void test_quote(void) {
  char out[16];
  myc__log_quote(out, sizeof out, "a\nb\x01", 4);
  CHECK_STR(out, "a\\nb\\x01");
  myc__log_quote(out, sizeof out, "0123456789abcdefghij", 20);
  CHECK_STR(out, "0123456789ab...");
  CHECK_EQ(strlen(out), sizeof out - 1);
  myc__log_quote(out, sizeof out, "0123456789abcde", 15); /* fits exactly */
  CHECK_STR(out, "0123456789abcde");
  myc__log_quote(out, sizeof out, "\n\n\n\n\n\n\n\n", 8);
  CHECK_STR(out, "\\n\\n\\n\\n\\n\\n...");
  myc__log_quote(out, 3, "abc", 3);
  CHECK_STR(out, "");
  myc__log_quote(out, sizeof out, "", 0);
  CHECK_STR(out, "");
}

/* Without a callback each line goes to stderr in one write, newline
 * included. */
static void test_stderr(void) {
  myc__log l;
  myc_engine_config cfg;
  int fds[2], saved;
  char buf[512];
  ssize_t n;
  myc_engine_config_init(&cfg);
  cfg.log_format = MYC_LOG_TEXT;
  cfg.log_level = MYC_LOG_DEBUG;
  CHECK_EQ(pipe(fds), 0);
  saved = dup(STDERR_FILENO);
  CHECK(saved >= 0);
  dup2(fds[1], STDERR_FILENO);
  myc__log_init(&l, &heap, &cfg, "n", NULL);
  myc__log_write(&l, MYC_LOG_INFO, TS, "s", 1, NULL, NULL, "one", 3, NULL, 0);
  myc__log_write(&l, MYC_LOG_INFO, TS, "s", 1, NULL, NULL, "two", 3, NULL, 0);
  myc__log_destroy(&l); /* writes what the log thread holds */
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[1]);
  n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  CHECK(n > 0);
  buf[n > 0 ? n : 0] = '\0';
  CHECK_STR(buf, "2023-11-14T22:13:20.123456Z INFO  [s] one\n"
                 "2023-11-14T22:13:20.123456Z INFO  [s] two\n");
}

typedef struct {
  int fd;
  char *out;
  size_t len, cap;
} drain;

static void drain_main(void *arg) {
  drain *d = arg;
  ssize_t n;
  for (;;) {
    if (d->cap - d->len < 65536) {
      d->cap = d->cap ? 2 * d->cap : 1 << 20;
      d->out = realloc(d->out, d->cap);
      CHECK(d->out != NULL);
    }
    n = read(d->fd, d->out + d->len, d->cap - d->len - 1);
    if (n <= 0)
      break;
    d->len += (size_t)n;
  }
  d->out[d->len] = '\0';
}

/* Stderr a pipe nobody reads: every record returns at once (the old
 * sink blocked in write(2) once the pipe held 64 KiB), the records past
 * the buffer are counted, and once a reader comes the buffered records
 * come out in order followed by the count. */
static void test_stderr_unread(void) {
  myc__log l;
  myc_engine_config cfg;
  int fds[2], saved, i;
  char msg[64], want[96];
  drain d = {0, NULL, 0, 0};
  uv_thread_t reader;
  int64_t t0;
  uint64_t dropped;
  const char *p, *last;
  myc_engine_config_init(&cfg);
  cfg.log_level = MYC_LOG_DEBUG;
  CHECK_EQ(pipe(fds), 0);
  saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  close(fds[1]);
  CHECK_EQ(myc__log_init(&l, &heap, &cfg, "n", NULL), 0);
  t0 = myc__mono_ns();
  for (i = 0; i < 100000; i++) {
    int k = snprintf(msg, sizeof msg, "record %06d", i);
    myc__log_write(&l, MYC_LOG_INFO, TS, "s", 1, NULL, NULL, msg, (size_t)k,
                   NULL, 0);
  }
  CHECK(myc__mono_ns() - t0 < 5000000000LL);
  dropped = atomic_load(&l.dropped);
  CHECK(dropped > 0);
  d.fd = fds[0];
  CHECK_EQ(uv_thread_create(&reader, drain_main, &d), 0);
  myc__log_destroy(&l);
  dup2(saved, STDERR_FILENO); /* the last write end: the reader sees EOF */
  close(saved);
  uv_thread_join(&reader);
  close(fds[0]);
  snprintf(want, sizeof want,
           "\n%llu log records dropped (log output not keeping up)\n",
           (unsigned long long)dropped);
  CHECK(strstr(d.out, want) != NULL);
  CHECK(strncmp(d.out, "2023-11-14T22:13:20.123456Z INFO  [s] record 000000\n",
                52) == 0);
  /* One thread's records keep their order. */
  last = "";
  for (p = strstr(d.out, "record "); p != NULL; p = strstr(p + 1, "record ")) {
    CHECK(strncmp(p, last, 13) > 0);
    last = p;
  }
  free(d.out);
}

/* Shutdown with stderr stuck gives up after MYC_LOG_FLUSH_MS. */
static void test_stderr_stuck_shutdown(void) {
  myc__log l;
  myc_engine_config cfg;
  int fds[2], saved, i;
  int64_t t0, took;
  myc_engine_config_init(&cfg);
  CHECK_EQ(pipe(fds), 0);
  saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  CHECK_EQ(myc__log_init(&l, &heap, &cfg, "n", NULL), 0);
  for (i = 0; i < 20000; i++)
    myc__log_write(&l, MYC_LOG_INFO, TS, "s", 1, NULL, NULL,
                   "a record of some length, to fill the pipe", 42, NULL, 0);
  t0 = myc__mono_ns();
  myc__log_destroy(&l);
  took = myc__mono_ns() - t0;
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[0]);
  close(fds[1]);
  CHECK(took >= (MYC_LOG_FLUSH_MS - 100) * 1000000LL);
  CHECK(took < (MYC_LOG_FLUSH_MS + 1000) * 1000000LL);
}

/* A log of 100 records/s, bursts of 5, to 'c'. */
static void make_rated(myc__log *l, capture *c) {
  myc_engine_config cfg;
  myc_engine_config_init(&cfg);
  cfg.log_fn = sink;
  cfg.log_ud = c;
  cfg.log_rate = 100;
  cfg.log_burst = 5;
  memset(c, 0, sizeof *c);
  CHECK_EQ(myc__log_init(l, &heap, &cfg, "n", NULL), 0);
}

/* The token bucket: a burst, then the rate, exact on given times; the
 * summary line comes with the first record let through again. */
static void test_rate(void) {
  myc__log l;
  capture c;
  myc__log_bucket b;
  int i, let = 0;
  int64_t t = TS;
  memset(&b, 0, sizeof b);
  make_rated(&l, &c);
  for (i = 0; i < 50; i++)
    let += myc__log_admit(&l, &b, MYC_LOG_INFO, t, "s", 1);
  CHECK_EQ(let, 5);
  CHECK_EQ(atomic_load(&b.total), 45u);
  CHECK_EQ(c.n, 0);
  /* 30 ms at 100/s: 3 more. */
  t += 30000000;
  for (i = 0; i < 50; i++)
    let += myc__log_admit(&l, &b, MYC_LOG_INFO, t, "s", 1);
  CHECK_EQ(let, 8);
  CHECK_EQ(atomic_load(&b.total), 92u);
  CHECK_EQ(atomic_load(&l.suppressed), 92u);
  CHECK_EQ(c.n, 1);
  CHECK(strstr(c.lines[0], "45 log records of this service suppressed") !=
        NULL);
  /* Below the level: neither let through nor counted. */
  CHECK_EQ(myc__log_admit(&l, &b, MYC_LOG_DEBUG, t, "s", 1), 0);
  CHECK_EQ(atomic_load(&b.total), 92u);
  myc__log_destroy(&l);
}

/* A bucket's own rate and burst win over the log's (a negative rate: no
 * limit); a bucket that goes quiet while over its rate gets its summary
 * line from myc__log_flush_held once it has a token again, or from
 * myc__log_bucket_done, each record counted in one line only. */
static void test_rate_own_and_quiet(void) {
  myc__log l;
  capture c;
  myc__log_bucket b, free_b;
  int i, let = 0;
  int64_t t = TS;
  memset(&b, 0, sizeof b);
  memset(&free_b, 0, sizeof free_b);
  b.rate = 10;
  b.burst = 2;
  b.service = "s1";
  b.service_len = 2;
  free_b.rate = -1;
  make_rated(&l, &c);
  for (i = 0; i < 10; i++)
    let += myc__log_admit(&l, &b, MYC_LOG_INFO, t, "s1", 2);
  CHECK_EQ(let, 2);
  CHECK_EQ(atomic_load(&b.total), 8u);
  /* Not due yet: a token comes back 100 ms later at 10/s. */
  myc__log_flush_held(&l, t + 50000000, 0);
  CHECK_EQ(c.n, 0);
  myc__log_flush_held(&l, t + 100000001, 0);
  CHECK_EQ(c.n, 1);
  CHECK(strstr(c.lines[0], "s1") != NULL);
  CHECK(strstr(c.lines[0], "8 log records of this service suppressed (over "
                           "its log rate of 10 records/s, burst 2)") != NULL);
  CHECK_EQ(c.levels[0], MYC_LOG_WARN);
  /* Said once. */
  myc__log_flush_held(&l, t + 900000000, 1);
  CHECK_EQ(c.n, 1);
  /* Over the rate again, then the service ends. */
  t += 100000001;
  for (i = 0; i < 4; i++)
    let += myc__log_admit(&l, &b, MYC_LOG_INFO, t, "s1", 2);
  CHECK_EQ(let, 3);
  CHECK_EQ(c.n, 1);
  myc__log_bucket_done(&l, &b, t);
  CHECK_EQ(c.n, 2);
  CHECK(strstr(c.lines[1], "3 log records of this service suppressed") !=
        NULL);
  myc__log_flush_held(&l, t + 900000000, 1);
  CHECK_EQ(c.n, 2);
  CHECK_EQ(atomic_load(&b.total), 11u);
  /* No limit: all let through, none counted. */
  for (i = 0, let = 0; i < 1000; i++)
    let += myc__log_admit(&l, &free_b, MYC_LOG_INFO, t, "s2", 2);
  CHECK_EQ(let, 1000);
  CHECK_EQ(atomic_load(&free_b.total), 0u);
  CHECK_EQ(atomic_load(&l.suppressed), 11u);
  myc__log_destroy(&l);
}

int main(void) {
  static const test_case cases[] = {
      {"json", test_json},
      {"text", test_text},
      {"levels", test_levels},
      {"long_record", test_long_record},
      {"kv", test_kv},
      {"quote", test_quote},
      {"stderr", test_stderr},
      {"stderr_unread", test_stderr_unread},
      {"stderr_stuck_shutdown", test_stderr_stuck_shutdown},
      {"rate", test_rate},
      {"rate_own_and_quiet", test_rate_own_and_quiet},
      {NULL, NULL},
  };
  return run_tests(cases);
}
