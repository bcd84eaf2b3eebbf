/* nats_test.c -- the pure parts of the NATS transport: topics and
 * patterns as subjects (docs/NATS.md, Subjects), prefixes, and the
 * sequence table that tells gaps and repeats; and, against a real
 * nats-server, engines freed right after their connection closed, and a
 * producer's worker publishing itself across a restart of the server. */
#include "test.h"
#include "test_engine.h"
#include "test_net.h"

#ifdef MYC_WITH_NATS

#include "base/alloc.h"
#include "base/check.h"
#include "nats/seqmap.h"
#include "nats/subject.h"
#include "nats/transport.h"

#include <nats/nats.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *subj(const char *prefix, const char *name, int pattern) {
  static char out[MYC_NATS_SUBJECT_MAX];
  int n =
      myc__nats_subject(prefix, name, strlen(name), pattern, out, sizeof out);
  return n < 0 ? "(too long)" : out;
}

static void topics_and_patterns_map_to_subjects(void) {
  CHECK_STR(subj("mycelium", "swaps.v2", 0), "mycelium.swaps.v2");
  CHECK_STR(subj("mycelium", "swaps.*", 1), "mycelium.swaps.>");
  CHECK_STR(subj("mycelium", "a.b.*", 1), "mycelium.a.b.>");
  CHECK_STR(subj("mycelium", "*", 1), "mycelium.>");
  CHECK_STR(subj("prod.eu", "swaps.v2", 0), "prod.eu.swaps.v2");
  /* no prefix: the topic itself */
  CHECK_STR(subj("", "swaps.v2", 0), "swaps.v2");
  CHECK_STR(subj("", "swaps.*", 1), "swaps.>");
  CHECK_STR(subj("", "*", 1), ">");
  /* a topic is never read as a pattern */
  CHECK_STR(subj("p", "x", 0), "p.x");
}

static void subjects_that_do_not_fit_are_refused(void) {
  char out[8];
  CHECK_EQ(myc__nats_subject("mycelium", "swaps.v2", 8, 0, out, sizeof out),
           -1);
  CHECK_EQ(myc__nats_subject("p", "abcde", 5, 0, out, sizeof out), 7);
  CHECK_STR(out, "p.abcde");
}

static void subjects_map_back_to_topics(void) {
  const char *t;
  size_t n;
  CHECK_EQ(myc__nats_topic_of("mycelium", "mycelium.swaps.v2", 17, &t, &n), 0);
  CHECK_EQ(n, 8);
  CHECK(memcmp(t, "swaps.v2", 8) == 0);
  CHECK_EQ(myc__nats_topic_of("mycelium", "other.swaps.v2", 14, &t, &n), -1);
  CHECK_EQ(myc__nats_topic_of("mycelium", "myceliumx.a", 11, &t, &n), -1);
  CHECK_EQ(myc__nats_topic_of("mycelium", "mycelium.", 9, &t, &n), -1);
  CHECK_EQ(myc__nats_topic_of("", "a.b", 3, &t, &n), 0);
  CHECK_EQ(n, 3);
}

static void prefixes_are_checked(void) {
  CHECK(myc__nats_prefix_check("") == NULL);
  CHECK(myc__nats_prefix_check("mycelium") == NULL);
  CHECK(myc__nats_prefix_check("prod.eu-1") == NULL);
  CHECK(myc__nats_prefix_check("a..b") != NULL);
  CHECK(myc__nats_prefix_check(".a") != NULL);
  CHECK(myc__nats_prefix_check("a.") != NULL);
  CHECK(myc__nats_prefix_check("a.*") != NULL);
  CHECK(myc__nats_prefix_check("a.>") != NULL);
  CHECK(myc__nats_prefix_check("a b") != NULL);
}

static void sequence_table_keeps_one_number_per_key(void) {
  static const myc__alloc a = {myc__default_alloc, NULL};
  myc__seqmap m;
  char key[32];
  uint64_t *v;
  int i;
  myc__seqmap_init(&m, &a, 1000);
  v = myc__seqmap_at(&m, "abc/x", 5);
  CHECK(v != NULL);
  CHECK_EQ(*v, 0);
  *v = 41;
  /* a key is its bytes, not a prefix of a longer one */
  CHECK_EQ(*myc__seqmap_at(&m, "abc/x", 5), 41);
  CHECK_EQ(*myc__seqmap_at(&m, "abc/xy", 6), 0);
  CHECK_EQ(*myc__seqmap_at(&m, "abc/xy", 5), 41);
  /* growth keeps every value */
  for (i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "k%d", i);
    *myc__seqmap_at(&m, key, strlen(key)) = (uint64_t)i * 3;
  }
  for (i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "k%d", i);
    CHECK_EQ(*myc__seqmap_at(&m, key, strlen(key)), (uint64_t)i * 3);
  }
  CHECK_EQ(*myc__seqmap_at(&m, "abc/x", 5), 41);
  /* full: a new key is not tracked, old ones still are */
  for (i = 500; i < 998; i++) {
    snprintf(key, sizeof key, "k%d", i);
    CHECK(myc__seqmap_at(&m, key, strlen(key)) != NULL);
  }
  CHECK(myc__seqmap_at(&m, "new", 3) == NULL);
  CHECK(myc__seqmap_at(&m, "k7", 2) != NULL);
  myc__seqmap_free(&m);
}

/* Whether nats-server is not installed: the test is skipped, or fails
 * under CI (with the CHECK after this returned 1). */
static int nats_server_missing(void) {
  const char *ci = getenv("CI");
  if (system("command -v nats-server >/dev/null 2>&1") == 0)
    return 0;
  printf("%s nats-server missing (run scripts/deps.sh)\n",
         ci && *ci ? "FAIL" : "skip");
  return 1;
}

static int in_ci(void) {
  const char *ci = getenv("CI");
  return ci != NULL && *ci != '\0';
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* nats-server on 'port', accepting connections, or -1 (it is missing). */
static pid_t start_nats_server(int port) {
  char p[16];
  pid_t pid;
  int i, fd;
  snprintf(p, sizeof p, "%d", port);
  pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    /* gone with the test, even one that aborts */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(null, 1);
    dup2(null, 2);
    execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", p,
           (char *)NULL);
    _exit(127);
  }
  for (i = 0; pid > 0 && i < 500; i++) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
      close(fd);
      return pid;
    }
    close(fd);
    if (waitpid(pid, NULL, WNOHANG) == pid)
      return -1;
    sleep_ms(20);
  }
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return -1;
}

/* The start of a test with a server: '*server' a nats-server on 'port'
 * and the directory 'dir' made, or 0 when nats-server is missing (the
 * test is skipped, or fails under CI) or a check failed. */
static void start_test(int port, char *dir, pid_t *server) {
  pid_t pid;
  *server = 0;
  if (nats_server_missing()) {
    CHECK(!in_ci());
    return;
  }
  pid = start_nats_server(port);
  CHECK(pid > 0);
  CHECK(mkdtemp(dir) != NULL);
  *server = pid;
}

/* The end of a test with a server: it stops, the test's directory goes. */
static void stop_server_remove_dir(pid_t server, const char *dir) {
  char cmd[128];
  kill(server, SIGTERM);
  waitpid(server, NULL, 0);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK_EQ(system(cmd), 0);
}

static int nats_state_is(myc_engine *e, const char *state, int ms) {
  myc__nats_stats st;
  for (; ms > 0; ms -= 10) {
    myc__nats_stats_get(myc__nats_of(e), &st);
    if (strcmp(st.state, state) == 0)
      return 1;
    sleep_ms(10);
  }
  return 0;
}

/* libnats runs every connection's closed callback on one thread of its
 * own: this one holds it, so that the engine's comes late. */
static void slow_closed(natsConnection *nc, void *ud) {
  (void)nc, (void)ud;
  /* longer than natsConnection_Close itself waits (~500 ms) */
  sleep_ms(1500);
}

static natsConnection *slow_connection(int port) {
  natsOptions *o = NULL;
  natsConnection *nc = NULL;
  char url[64];
  snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
  if (natsOptions_Create(&o) != NATS_OK)
    return NULL;
  if (natsOptions_SetURL(o, url) != NATS_OK ||
      natsOptions_SetClosedCB(o, slow_closed, NULL) != NATS_OK ||
      natsConnection_Connect(&nc, o) != NATS_OK)
    nc = NULL;
  natsOptions_Destroy(o);
  return nc;
}

/* libnats calls the closed callback from its own thread after
 * natsConnection_Close returned: an engine freed at once (a process that
 * exits right after its engine stopped) met it later on freed memory
 * (`mycelium run` aborted at exit, on a loaded machine).  Here another
 * connection's slow closed callback holds that thread while each engine
 * stops and is freed; under ASan a late callback is a
 * heap-use-after-free. */
static void engines_freed_at_once_leave_no_callback_behind(void) {
  char dir[] = "/tmp/myc_nats_test_XXXXXX", cfg[512], err[512];
  int port = test_free_port(), i;
  pid_t server;
  start_test(port, dir, &server);
  if (server == 0)
    return;
  test_module(dir, "sub.lua",
              "return { handlers = { [\"t.*\"] = function() end } }\n");
  snprintf(cfg, sizeof cfg,
           "return { workers = 1, log = { level = \"error\" },\n"
           "  connect = { \"nats://127.0.0.1:%d\" },\n"
           "  services = { { name = \"sub\", module = \"sub.lua\" } } }\n",
           port);
  test_module(dir, "engine.lua", cfg);
  for (i = 0; i < 6; i++) {
    myc_engine *e = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/engine.lua", dir);
    if (myc_engine_from_file(&e, path, err, sizeof err) != 0)
      fprintf(stderr, "engine: %s\n", err);
    CHECK(e != NULL);
    CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
    CHECK(nats_state_is(e, "up", 10000));
    if (i % 3 == 0) {
      natsConnection *slow = slow_connection(port);
      CHECK(slow != NULL);
      natsConnection_Close(slow);
      myc_engine_stop(e, 0);
      myc_engine_free(e);
      natsConnection_Destroy(slow);
    } else {
      myc_engine_stop(e, 0);
      myc_engine_free(e);
    }
  }
  sleep_ms(600);
  stop_server_remove_dir(server, dir);
}


static uint64_t sent_or_dropped(const myc__nats_stats *st) {
  return st->msgs_out + st->dropped_queue_full + st->dropped_disconnect +
         st->dropped_shutdown;
}

/* A libnats subscriber of 'subject' that comes back after a restart of
 * the server. */
static natsSubscription *raw_subscriber(int port, const char *subject,
                                        natsConnection **nc) {
  natsOptions *o = NULL;
  natsSubscription *sub = NULL;
  char url[64];
  snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
  *nc = NULL;
  if (natsOptions_Create(&o) != NATS_OK)
    return NULL;
  if (natsOptions_SetURL(o, url) == NATS_OK &&
      natsOptions_SetReconnectWait(o, 20) == NATS_OK &&
      natsOptions_SetMaxReconnect(o, -1) == NATS_OK &&
      natsConnection_Connect(nc, o) == NATS_OK &&
      natsConnection_SubscribeSync(&sub, *nc, subject) == NATS_OK &&
      natsSubscription_SetPendingLimits(sub, -1, -1) == NATS_OK &&
      natsConnection_Flush(*nc) == NATS_OK) {
    natsOptions_Destroy(o);
    return sub;
  }
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(*nc);
  *nc = NULL;
  natsOptions_Destroy(o);
  return NULL;
}

/* The number in a message's Myc-Seq header ("<publisher>-<n>"), or 0. */
static uint64_t seq_of(natsMsg *m) {
  const char *v = NULL, *dash;
  if (natsMsgHeader_Get(m, "Myc-Seq", &v) != NATS_OK || v == NULL ||
      (dash = strchr(v, '-')) == NULL)
    return 0;
  return strtoull(dash + 1, NULL, 10);
}

#define SEQ_N 3000

/* The worker of "_nats" publishes its batches and writes them itself on a
 * clear-text connection (docs/NATS.md, Threads); while libnats redials a
 * killed server the batches go through the NATS thread, and once
 * reconnected the worker writes again.  Across both paths a subscriber
 * sees the producer's messages in order, none twice, up to the last, and
 * every message is counted once: published or dropped by reason. */
static void direct_runs_keep_order_and_counts_across_a_restart(void) {
  char dir[] = "/tmp/myc_nats_test_XXXXXX", cfg[600], err[512], path[600];
  int port = test_free_port(), ms, got = 0, dup_or_back = 0;
  uint64_t last = 0;
  myc_engine *e = NULL;
  natsConnection *nc = NULL;
  natsSubscription *sub;
  myc__nats_stats st, d_before;
  pid_t server;
  start_test(port, dir, &server);
  if (server == 0)
    return;
  sub = raw_subscriber(port, "mycelium.seq.t", &nc);
  CHECK(sub != NULL);
  memset(&d_before, 0, sizeof d_before);
  snprintf(cfg, sizeof cfg,
           "return { init = function(ctx)\n"
           "  local n = 0\n"
           "  ctx:every(2, function()\n"
           "    for _ = 1, 4 do\n"
           "      if n < %d then n = n + 1; ctx:emit(\"seq.t\", tostring(n)) end\n"
           "    end\n"
           "  end)\n"
           "end }\n",
           SEQ_N);
  test_module(dir, "producer.lua", cfg);
  snprintf(cfg, sizeof cfg,
           "return { workers = 2, log = { level = \"error\" },\n"
           "  connect = { \"nats://127.0.0.1:%d\" },\n"
           "  nats = { worker = 0, reconnect_wait_ms = 20 },\n"
           "  services = { { name = \"producer\", worker = 0,"
           " module = \"producer.lua\" } } }\n",
           port);
  test_module(dir, "engine.lua", cfg);
  snprintf(path, sizeof path, "%s/engine.lua", dir);
  CHECK_EQ(myc_engine_from_file(&e, path, err, sizeof err), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  for (ms = 0; ms < 30000;) {
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, sub, 10);
    if (s == NATS_OK) {
      uint64_t n = seq_of(m);
      dup_or_back += n <= last;
      last = n;
      got++;
      natsMsg_Destroy(m);
      /* A tenth of the way: the server dies, and comes back. */
      if (got == SEQ_N / 10) {
        myc__nats_stats_get(myc__nats_of(e), &d_before);
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        sleep_ms(150);
        server = start_nats_server(port);
        CHECK(server > 0);
      }
      continue;
    }
    ms += 10;
    myc__nats_stats_get(myc__nats_of(e), &st);
    if (sent_or_dropped(&st) == SEQ_N && last == SEQ_N)
      break;
  }
  myc__nats_stats_get(myc__nats_of(e), &st);
  CHECK_EQ(dup_or_back, 0);
  CHECK_EQ(last, SEQ_N);
  CHECK(got <= SEQ_N);
  CHECK_EQ(sent_or_dropped(&st), SEQ_N);
  CHECK(st.reconnects >= 1);
  /* Both paths ran: the worker's before the kill and after the
   * reconnect, the NATS thread's while libnats redialled. */
  CHECK(st.msgs_direct > d_before.msgs_direct);
  CHECK(d_before.msgs_direct > 0);
  CHECK(st.writes_direct > 0);
  CHECK(st.msgs_direct < st.msgs_out);
  myc_engine_stop(e, 0);
  myc_engine_free(e);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  stop_server_remove_dir(server, dir);
}

/* What a C subscriber of the receiving engine saw: the numbers in the
 * payloads (8 bytes each), and which thread handled them. */
typedef struct {
  _Atomic uint64_t n;
  _Atomic uint64_t back; /* a number not above the one before */
  _Atomic uint64_t first, last;
  _Atomic uintptr_t thread;
} rx_sink;

static void on_rx(void *ud, const myc_message *m) {
  rx_sink *s = ud;
  uint64_t v = 0;
  if (m->len >= 8)
    memcpy(&v, m->data, 8);
  if (atomic_load(&s->n) == 0)
    atomic_store(&s->first, v);
  else if (v <= atomic_load(&s->last))
    atomic_fetch_add(&s->back, 1);
  atomic_store(&s->last, v);
  atomic_store(&s->thread, myc__thread_token());
  atomic_fetch_add(&s->n, 1);
}

static uint64_t mailbox_drops(myc_engine *e, const char *name) {
  myc_service_stats st;
  return test_service_stats(e, name, &st) == 0 ? st.dropped : 0;
}

#define RX_N 20000

/* Publishes number 'n' (the payload's first 8 bytes) on "rx.t". */
static void rx_publish(myc_engine *p, uint64_t n) {
  uint8_t payload[64];
  memset(payload, 0, sizeof payload);
  memcpy(payload, &n, 8);
  while (myc_publish(p, "rx.t", MYC_KIND_RAW, 0, payload, sizeof payload) ==
         MYC_EFULL)
    sleep_ms(1);
}

/* With nats.worker = 1 the receiving engine polls its connection on
 * worker 1's loop: what it reads is taken from the subscriptions there
 * and handed to worker 1's subscriber with no thread crossed (worker 0's
 * gets it as from any worker).  A stream from another engine, whose
 * server is killed and restarted mid-stream: both subscribers see it in
 * the producer's order, and every number the producer took is handled,
 * dropped from a mailbox or counted lost (libnats' pending limits and
 * repeats included), from the first one seen to the last.  The engines
 * stop clean (the ASan build checks what they leave). */
static void worker_loop_receives_in_order_across_a_restart(void) {
  char dir[] = "/tmp/myc_nats_test_XXXXXX", cfg[600], err[512], path[600];
  int port = test_free_port(), ms, killed = 0;
  myc_engine *p = NULL, *r = NULL;
  myc__nats_stats pst, rst;
  uint64_t i, accounted, total;
  static rx_sink s0, s1;
  pid_t server;
  memset(&s0, 0, sizeof s0);
  memset(&s1, 0, sizeof s1);
  start_test(port, dir, &server);
  if (server == 0)
    return;
  snprintf(cfg, sizeof cfg,
           "return { node = \"p\", workers = 1, log = { level = \"error\" },\n"
           "  connect = { \"nats://127.0.0.1:%d\" },\n"
           "  nats = { reconnect_wait_ms = 20 },\n"
           "  services = { { name = \"idle\", module = \"idle.lua\" } } }\n",
           port);
  test_module(dir, "idle.lua", "return { init = function() end }\n");
  test_module(dir, "p.lua", cfg);
  snprintf(cfg, sizeof cfg,
           "return { node = \"r\", workers = 2, log = { level = \"error\" },\n"
           "  connect = { \"nats://127.0.0.1:%d\" },\n"
           "  nats = { worker = 1, reconnect_wait_ms = 20 },\n"
           "  services = { { name = \"idle\", module = \"idle.lua\" } } }\n",
           port);
  test_module(dir, "r.lua", cfg);
  snprintf(path, sizeof path, "%s/p.lua", dir);
  if (myc_engine_from_file(&p, path, err, sizeof err) != 0)
    fprintf(stderr, "engine: %s\n", err);
  CHECK(p != NULL);
  snprintf(path, sizeof path, "%s/r.lua", dir);
  CHECK_EQ(myc_engine_from_file(&r, path, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(r, "sink1", "rx.*", on_rx, &s1, 1), 0);
  CHECK_EQ(myc_engine_add_c_service(r, "sink0", "rx.*", on_rx, &s0, 0), 0);
  CHECK_EQ(myc_engine_start(r, err, sizeof err), 0);
  CHECK_EQ(myc_engine_start(p, err, sizeof err), 0);
  CHECK(nats_state_is(r, "up", 10000));
  CHECK(nats_state_is(p, "up", 10000));
  for (ms = 0; ms < 10000; ms += 10) {
    myc__nats_stats_get(myc__nats_of(r), &rst);
    if (rst.subjects == 1)
      break;
    sleep_ms(10);
  }
  CHECK_EQ(rst.subjects, 1);
  for (i = 1; i <= RX_N; i++) {
    rx_publish(p, i);
    if (i % 40 == 0)
      sleep_ms(1);
    /* A fifth of the way in, once messages arrive: the server dies, and
     * comes back. */
    if (!killed && i >= RX_N / 5 && atomic_load(&s1.n) > 0) {
      killed = 1;
      kill(server, SIGKILL);
      waitpid(server, NULL, 0);
      sleep_ms(150);
      server = start_nats_server(port);
      CHECK(server > 0);
    }
  }
  CHECK(killed);
  /* Until what the producer published has all been counted and its last
   * message arrived: one more every 50 ms meanwhile (the stream may end
   * before the receiver has subscribed again). */
  total = RX_N;
  for (ms = 0; ms < 30000; ms += 10) {
    myc__nats_stats_get(myc__nats_of(p), &pst);
    myc__nats_stats_get(myc__nats_of(r), &rst);
    if (sent_or_dropped(&pst) == total && pst.queued == 0 &&
        atomic_load(&s1.last) == total && atomic_load(&s0.last) == total)
      break;
    if (ms % 50 == 0)
      rx_publish(p, ++total);
    sleep_ms(10);
  }
  myc__nats_stats_get(myc__nats_of(p), &pst);
  myc__nats_stats_get(myc__nats_of(r), &rst);
  if (atomic_load(&s1.last) != total)
    fprintf(stderr,
            "rx: last %llu of %llu published; in %llu lost %llu "
            "pending_limit %llu state %s\n",
            (unsigned long long)atomic_load(&s1.last),
            (unsigned long long)total, (unsigned long long)rst.msgs_in,
            (unsigned long long)rst.dropped_lost,
            (unsigned long long)rst.dropped_pending_limit, rst.state);
  CHECK_EQ(sent_or_dropped(&pst), total);
  CHECK_EQ(atomic_load(&s1.last), total);
  CHECK_EQ(atomic_load(&s0.last), total);
  CHECK(rst.reconnects >= 1);
  /* Read, taken and handed to sink1 on worker 1; sink0 on worker 0. */
  CHECK(myc__nats_reader(myc__nats_of(r)) != 0);
  CHECK_EQ(myc__nats_reader(myc__nats_of(r)),
           atomic_load(&r->sched.workers[1].owner.token));
  CHECK_EQ(atomic_load(&s1.thread),
           atomic_load(&r->sched.workers[1].owner.token));
  CHECK_EQ(atomic_load(&s0.thread),
           atomic_load(&r->sched.workers[0].owner.token));
  /* In order, and every number from the first seen accounted for. */
  CHECK_EQ(atomic_load(&s1.back), 0);
  CHECK_EQ(atomic_load(&s0.back), 0);
  /* What the producer dropped took no number: no gap at the receiver.
   * It drops only while disconnected, after the first message arrived. */
  accounted = rst.dropped_lost + rst.dropped_pending_limit +
              rst.dropped_duplicate + pst.dropped_disconnect +
              pst.dropped_queue_full + pst.dropped_shutdown;
  CHECK_EQ(atomic_load(&s1.n) + mailbox_drops(r, "sink1") + accounted,
           total - atomic_load(&s1.first) + 1);
  CHECK_EQ(atomic_load(&s0.n) + mailbox_drops(r, "sink0") + accounted,
           total - atomic_load(&s0.first) + 1);
  CHECK_EQ(rst.msgs_in, rst.dropped_duplicate + atomic_load(&s1.n) +
                            mailbox_drops(r, "sink1"));
  myc_engine_stop(p, 0);
  myc_engine_free(p);
  myc_engine_stop(r, 0);
  myc_engine_free(r);
  stop_server_remove_dir(server, dir);
}

/* Two engines in ping-pong through NATS, each reading its connection on
 * its service's worker (nats.worker), stopped in the middle of it.  At a
 * close libnats stops polling and closes its socket number from the NATS
 * thread while the worker's loop may still have a change of that poll
 * pending: libuv aborts when epoll refuses it (a closed number), which
 * the ping-pong's constant write requests made frequent. */
static void worker_loops_stop_in_the_middle_of_a_ping_pong(void) {
  char dir[] = "/tmp/myc_nats_test_XXXXXX", cfg[600], err[512], path[600];
  int port = test_free_port(), round;
  pid_t server;
  start_test(port, dir, &server);
  if (server == 0)
    return;
  test_module(dir, "ponger.lua",
              "return { subscribe = { \"pp.ping\" },\n"
              "  on_message = function(ctx, msg) ctx:emit(\"pp.pong\", "
              "msg.data) end }\n");
  test_module(dir, "pinger.lua",
              "local probe\n"
              "return { subscribe = { \"pp.pong\" },\n"
              "  init = function(ctx) probe = ctx:every(5, function() "
              "ctx:emit(\"pp.ping\", string.rep(\"x\", 1024)) end) end,\n"
              "  on_message = function(ctx, msg)\n"
              "    if probe then probe.cancel(); probe = nil end\n"
              "    ctx:emit(\"pp.ping\", msg.data) end }\n");
  for (round = 0; round < 10; round++) {
    myc_engine *e[2] = {NULL, NULL};
    myc__nats_stats st;
    int i, ms;
    for (i = 0; i < 2; i++) {
      snprintf(
          cfg, sizeof cfg,
          "return { workers = 2, log = { level = \"error\" },\n"
          "  connect = { \"nats://127.0.0.1:%d\" }, nats = { worker = 1 },\n"
          "  services = { { name = \"s\", worker = 1, module = \"%s\" } } "
          "}\n",
          port, i == 0 ? "ponger.lua" : "pinger.lua");
      test_module(dir, "engine.lua", cfg);
      snprintf(path, sizeof path, "%s/engine.lua", dir);
      CHECK_EQ(myc_engine_from_file(&e[i], path, err, sizeof err), 0);
      CHECK_EQ(myc_engine_start(e[i], err, sizeof err), 0);
    }
    /* Under way: the pinger has had pongs. */
    for (ms = 0; ms < 10000; ms += 5) {
      myc__nats_stats_get(myc__nats_of(e[1]), &st);
      if (st.msgs_in >= 200)
        break;
      sleep_ms(5);
    }
    CHECK(st.msgs_in >= 200);
    CHECK_EQ(myc__nats_reader(myc__nats_of(e[1])),
             atomic_load(&e[1]->sched.workers[1].owner.token));
    for (i = round % 2; i < 2 && i >= 0; i += round % 2 ? -1 : 1) {
      myc_engine_stop(e[i], 0);
      myc_engine_free(e[i]);
    }
  }
  stop_server_remove_dir(server, dir);
}

/* nats.worker puts "_nats" (and so every publish's hand-over) on the
 * worker of the services that talk to NATS; a worker that does not exist
 * is refused naming the key.  No server needed: "_nats" exists from the
 * start, connected or not. */
static void nats_runs_on_the_worker_it_is_given(void) {
  char dir[] = "/tmp/myc_nats_test_XXXXXX", cfg[512], err[512], path[600];
  myc_engine *e = NULL;
  myc_service_stats st;
  int found = -1;
  CHECK(mkdtemp(dir) != NULL);
  test_module(dir, "sub.lua",
              "return { handlers = { [\"t.*\"] = function() end } }\n");
  snprintf(path, sizeof path, "%s/engine.lua", dir);
  snprintf(cfg, sizeof cfg,
           "return { workers = 3, log = { level = \"error\" },\n"
           "  connect = { \"nats://127.0.0.1:%d\" }, nats = { worker = 2 },\n"
           "  services = { { name = \"sub\", module = \"sub.lua\" } } }\n",
           test_free_port());
  test_module(dir, "engine.lua", cfg);
  CHECK_EQ(myc_engine_from_file(&e, path, err, sizeof err), 0);
  if (test_service_stats(e, "_nats", &st) == 0)
    found = st.worker;
  myc_engine_free(e);
  CHECK_EQ(found, 2);
  /* Without a worker count the config cannot check it: the engine does. */
  snprintf(cfg, sizeof cfg,
           "return { log = { level = \"error\" },\n"
           "  connect = { \"nats://127.0.0.1:1\" }, nats = { worker = 200 },\n"
           "  services = { { name = \"sub\", module = \"sub.lua\" } } }\n");
  test_module(dir, "engine.lua", cfg);
  e = NULL;
  CHECK(myc_engine_from_file(&e, path, err, sizeof err) != 0);
  CHECK(e == NULL);
  CHECK(strstr(err, "nats.worker 200") != NULL);
  snprintf(cfg, sizeof cfg, "rm -rf %s", dir);
  CHECK_EQ(system(cfg), 0);
}

int main(void) {
  static const test_case cases[] = {
      {"topics_and_patterns_map_to_subjects",
       topics_and_patterns_map_to_subjects},
      {"subjects_that_do_not_fit_are_refused",
       subjects_that_do_not_fit_are_refused},
      {"subjects_map_back_to_topics", subjects_map_back_to_topics},
      {"prefixes_are_checked", prefixes_are_checked},
      {"sequence_table_keeps_one_number_per_key",
       sequence_table_keeps_one_number_per_key},
      {"nats_runs_on_the_worker_it_is_given",
       nats_runs_on_the_worker_it_is_given},
      {"engines_freed_at_once_leave_no_callback_behind",
       engines_freed_at_once_leave_no_callback_behind},
      {"direct_runs_keep_order_and_counts_across_a_restart",
       direct_runs_keep_order_and_counts_across_a_restart},
      {"worker_loop_receives_in_order_across_a_restart",
       worker_loop_receives_in_order_across_a_restart},
      {"worker_loops_stop_in_the_middle_of_a_ping_pong",
       worker_loops_stop_in_the_middle_of_a_ping_pong},
      {NULL, NULL}};
  return run_tests(cases);
}

#else

#include <stdio.h>

int main(void) {
  puts("nats_test: built without NATS (MYC_WITH_NATS off): nothing to test");
  return 0;
}

#endif
