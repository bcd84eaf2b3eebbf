/* link_test.c -- two engines in one process linked over a Unix socket and
 * over TCP on 127.0.0.1: subscriptions propagate (and follow changes at
 * run time), messages arrive in order with their trace context, a peer
 * that goes away is redialled and resubscribed, and hostile peers
 * (garbage, oversize frames, a stalled frame, a peer that never reads)
 * lose only their own link, counted. */
#include "test.h"
#include "test_net.h"
#include "test_engine.h"

#include "core/topic.h"
#include "ffi/ffi.h"
#include "link/link.h"
#include "link/wire.h"
#include "runtime/engine.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static char tmpdir[] = "/tmp/myc_link_test_XXXXXX";

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* What the sink (a C service of engine B) received. */
typedef struct {
  _Atomic uint64_t n;
  _Atomic uint64_t bad_order;
  uint64_t last;
  uint8_t trace[16];
  _Atomic int got_trace;
} sink;

static void on_sink(void *ud, const myc_message *m) {
  sink *s = ud;
  uint64_t v = 0;
  if (m->len >= 8)
    memcpy(&v, m->data, 8);
  if (v != s->last + 1)
    atomic_fetch_add(&s->bad_order, 1);
  s->last = v;
  if (!atomic_load(&s->got_trace)) {
    memcpy(s->trace, m->trace_id, 16);
    atomic_store(&s->got_trace, 1);
  }
  atomic_fetch_add(&s->n, 1);
}

static const char *NOOP = "return { handlers = {} }\n";
static char last_err[512]; /* why engine() returned NULL */

/* An engine from the config 'cfg', written to tmpdir/'name'.lua. */
static myc_engine *engine_cfg(const char *name, const char *cfg) {
  char path[512], err[512];
  myc_engine *e = NULL;
  FILE *f;
  snprintf(path, sizeof path, "%s/%s.lua", tmpdir, name);
  f = fopen(path, "w");
  if (f == NULL)
    return NULL;
  fputs(cfg, f);
  fclose(f);
  if (myc_engine_from_file(&e, path, err, sizeof err) != 0) {
    fprintf(stderr, "engine %s: %s\n", name, err);
    snprintf(last_err, sizeof last_err, "%s", err);
    return NULL;
  }
  return e;
}

/* An engine from a config file in tmpdir: 'links' is the Lua text of its
 * listen/connect/link keys. */
static myc_engine *engine(const char *name, const char *links) {
  char cfg[8192];
  test_module(tmpdir, "noop.lua", NOOP);
  snprintf(cfg, sizeof cfg,
           "return { node = \"%s\", workers = 2, log = { level = \"warn\" },\n"
           "  %s,\n  services = { { name = \"noop\", module = \"noop.lua\" } } }\n",
           name, links);
  return engine_cfg(name, cfg);
}

/* An engine 'node' listening on tmpdir/'sock' (its path written to
 * 'path', PATH_CAP bytes), 'link' the keys of its link table. */
#define PATH_CAP 256
static myc_engine *listening(const char *node, const char *sock,
                             const char *link, char *path) {
  char links[512];
  snprintf(path, PATH_CAP, "%s/%s", tmpdir, sock);
  snprintf(links, sizeof links, "listen = { \"unix://%s\" }, link = { %s }",
           path, link);
  return engine(node, links);
}

static int start(myc_engine *e) {
  char err[512];
  int rc = myc_engine_start(e, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "start: %s\n", err);
  return rc;
}

/* The first peer of 'e' (named 'name', or any) in state 'state' with
 * 'patterns' patterns, waited for up to 5 s; its stats in '*out'. */
static int wait_link(myc_engine *e, const char *name, const char *state,
                     uint32_t patterns, myc__link_stats *out) {
  int i;
  for (i = 0; i < 500; i++) {
    myc__link_stats st[8];
    uint32_t n = myc__links_stats(myc__links_of(e), st, 8), k;
    for (k = 0; k < n && k < 8; k++)
      if ((name == NULL || strcmp(st[k].peer, name) == 0) &&
          strcmp(st[k].state, state) == 0 && st[k].patterns == patterns) {
        if (out)
          *out = st[k];
        return 1;
      }
    sleep_ms(10);
  }
  return 0;
}

static int wait_peer(myc_engine *e, const char *state, uint32_t patterns,
                     myc__link_stats *out) {
  return wait_link(e, NULL, state, patterns, out);
}

/* 30 s: the ASan build on a loaded 2-core machine moves a few thousand
 * frames a second; the count tells a slow run from a lossy one. */
static int wait_count(_Atomic uint64_t *c, uint64_t want) {
  int i;
  for (i = 0; i < 3000 && atomic_load(c) < want; i++)
    sleep_ms(10);
  if (atomic_load(c) != want)
    fprintf(stderr, "wait_count: have %llu, want %llu\n",
            (unsigned long long)atomic_load(c), (unsigned long long)want);
  return atomic_load(c) == want;
}

/* The link's frame count once it reaches 'want': a read's frames are
 * counted after they are handed to the workers, so a handler can see the
 * last message before the count does. */
static int wait_frames_in(myc_engine *e, uint64_t want, myc__link_stats *st) {
  int i;
  for (i = 0; i < 3000; i++) {
    if (!wait_peer(e, "up", 0, st))
      return 0;
    if (st->frames_in >= want)
      break;
    sleep_ms(10);
  }
  return st->frames_in == want;
}

static void publish_seq(myc_engine *e, const char *topic, uint64_t from,
                        uint64_t n) {
  uint64_t i;
  for (i = from; i < from + n; i++) {
    uint8_t payload[64];
    memset(payload, 0, sizeof payload);
    memcpy(payload, &i, 8);
    while (myc_publish(e, topic, MYC_KIND_RAW, 0, payload, sizeof payload) ==
           MYC_EFULL)
      sleep_ms(1);
  }
}

/* The thread that read the last frames of 'e''s links (link.worker: the
 * worker's own; else the link thread, which is no worker). */
static int read_on_worker(myc_engine *e, int worker) {
  myc__links *L = myc__links_of(e);
  uintptr_t r = myc__links_reader(L);
  uint32_t i;
  if (worker >= 0)
    return r != 0 && r == atomic_load(&e->sched.workers[worker].owner.token);
  for (i = 0; i < e->sched.nworkers; i++)
    if (r == atomic_load(&e->sched.workers[i].owner.token))
      return 0;
  return r != 0;
}

/* 'a_link' and 'b_link': more keys of a's and b's link tables; with
 * "worker = 1" in both, the links run on worker 1's loop. */
static void subscriptions_and_messages_cross(const char *listen,
                                             const char *connect,
                                             const char *a_link,
                                             const char *b_link) {
  char a_links[2048], b_links[2048];
  myc_engine *a, *b;
  myc_service *sk;
  myc__link_stats st;
  static sink s;
  int on_worker = strstr(a_link, "worker = 1") != NULL;
  memset(&s, 0, sizeof s);
  snprintf(a_links, sizeof a_links, "listen = { \"%s\" }, link = { %s }",
           listen, a_link);
  snprintf(b_links, sizeof b_links,
           "connect = { \"%s\" }, link = { reconnect_initial_ms = 20, "
           "reconnect_max_ms = 100, %s }",
           connect, b_link);
  a = engine("a", a_links);
  b = engine("b", b_links);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &s,
                                     on_worker ? 1 : -1),
           0);
  sk = myc__engine_find(b, "sink", 4);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  /* B's subscription reaches A. */
  CHECK(wait_peer(a, "up", 1, &st));
  CHECK_STR(st.peer, "b");
  CHECK_EQ(st.version, 2);
  publish_seq(a, "swaps.v2", 1, 20000);
  publish_seq(a, "other.topic", 1, 10); /* nobody in B wants these */
  if (!wait_count(&s.n, 20000) && wait_peer(a, "up", 1, &st))
    fprintf(stderr, "link a->b: frames out %llu, dropped (queue full) %llu\n",
            (unsigned long long)st.frames_out,
            (unsigned long long)st.dropped_queue_full);
  CHECK_EQ(atomic_load(&s.n), 20000);
  CHECK_EQ(atomic_load(&s.bad_order), 0);
  /* a counts a write's frames when its callback runs, a turn of a's
   * loop after the bytes left: b may have read them all before. */
  {
    int i;
    for (i = 0; i < 500; i++) {
      CHECK(wait_peer(a, "up", 1, &st));
      if (st.frames_out == 20000)
        break;
      sleep_ms(10);
    }
  }
  CHECK_EQ(st.frames_out, 20000);
  CHECK_EQ(st.dropped_queue_full, 0);
  /* On a worker's loop the buffers come from that worker's pool, and no
   * link thread has one. */
  if (on_worker)
    CHECK(b->sched.aux_pool == NULL);
  /* Who read the frames: B the messages, A the subscriptions. */
  CHECK(read_on_worker(b, on_worker ? 1 : -1));
  CHECK(read_on_worker(a, on_worker ? 1 : -1));
  /* A plain link is written by the "_links" worker too; TLS only by the
   * link thread, which seals. */
  if (strncmp(listen, "tls+", 4) == 0)
    CHECK_EQ(st.frames_direct, 0);
  else
    CHECK(st.frames_direct > 0);
  /* B's sink saw A's trace id (a host publish is a root: non-zero). */
  {
    static const uint8_t zero[16];
    CHECK(atomic_load(&s.got_trace) && memcmp(s.trace, zero, 16) != 0);
  }
  /* Run-time changes: a new pattern, then the old one goes. */
  CHECK_EQ(myc__topics_subscribe(&b->topics, sk, "other.*", 7), 0);
  CHECK(wait_peer(a, "up", 2, NULL));
  s.last = 0;
  publish_seq(a, "other.topic", 1, 5);
  CHECK(wait_count(&s.n, 20005));
#ifndef __SANITIZE_THREAD__
  /* B's link thread takes its buffers from its pool, refilled by the
   * workers that handled them: by now they handed back the 20000 (a
   * loaded machine may run them only after the link thread read all of
   * those), and these 5 took some back.  (Read racily while the link
   * thread may still count: not in the TSan build.) */
  if (!on_worker)
    CHECK(b->sched.aux_pool != NULL && b->sched.aux_pool->recycled > 0);
#endif
  CHECK_EQ(myc__topics_unsubscribe(&b->topics, sk, "swaps.*", 7), 0);
  CHECK_EQ(myc__topics_unsubscribe(&b->topics, sk, "other.*", 7), 0);
  CHECK(wait_peer(a, "up", 0, NULL));
  publish_seq(a, "swaps.v2", 1, 5);
  sleep_ms(100);
  CHECK_EQ(atomic_load(&s.n), 20005);
  /* A goes away: B redials with backoff and resubscribes. */
  CHECK_EQ(myc__topics_subscribe(&b->topics, sk, "swaps.*", 7), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  myc_engine_free(a);
  CHECK(wait_peer(b, "down", 0, NULL) || wait_peer(b, "connecting", 0, NULL));
  a = engine("a", a_links);
  CHECK(a != NULL);
  CHECK_EQ(start(a), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  s.last = 0;
  publish_seq(a, "swaps.v2", 1, 100);
  CHECK(wait_count(&s.n, 20105));
  CHECK(wait_peer(b, "up", 0, &st));
  CHECK_EQ(st.reconnects, 1);
  myc_engine_free(b);
  myc_engine_free(a);
}

static void over_unix(void) {
  char url[256];
  snprintf(url, sizeof url, "unix://%s/a.sock", tmpdir);
  subscriptions_and_messages_cross(url, url, "", "");
}

static void over_tcp(void) {
  char url[256];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", test_free_port());
  subscriptions_and_messages_cross(url, url, "", "");
}

/* link.worker: the links run on worker 1's loop, with the sink there
 * too: frames are read on that worker's thread and handed to the sink
 * without another thread; A is freed with its link up, then comes back
 * and B redials it from its worker's loop; both are freed with links
 * open on a worker's loop (the ASan build checks nothing leaks). */
static void over_unix_on_a_worker_loop(void) {
  char url[256];
  snprintf(url, sizeof url, "unix://%s/aw.sock", tmpdir);
  subscriptions_and_messages_cross(url, url, "worker = 1", "worker = 1");
}

static void over_tcp_on_a_worker_loop(void) {
  char url[256];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", test_free_port());
  subscriptions_and_messages_cross(url, url, "worker = 1", "worker = 1");
}

/* Three engines: b and c dial a.  What a emits reaches both (each peer
 * once, by its own patterns); what c emits reaches a's subscriber but is
 * not sent on to b: links are one hop. */
/* Engines Pa, listening on tmpdir's socket 'sock', Pb and Pc dialling
 * it (P: 'prefix'). */
static void three_engines(const char *sock, char prefix, myc_engine **a,
                          myc_engine **b, myc_engine **c) {
  char links[512], path[256], name[3] = {prefix, 'a', 0};
  snprintf(path, sizeof path, "%s/%s", tmpdir, sock);
  snprintf(links, sizeof links, "listen = { \"unix://%s\" }", path);
  *a = engine(name, links);
  snprintf(links, sizeof links, "connect = { \"unix://%s\" }", path);
  name[1] = 'b';
  *b = engine(name, links);
  name[1] = 'c';
  *c = engine(name, links);
}

static void three_engines_fan_out_one_hop(void) {
  myc_engine *a, *b, *c;
  static sink sa, sb, sc;
  memset(&sa, 0, sizeof sa);
  memset(&sb, 0, sizeof sb);
  memset(&sc, 0, sizeof sc);
  three_engines("three.sock", 't', &a, &b, &c);
  CHECK(a != NULL && b != NULL && c != NULL);
  CHECK_EQ(myc_engine_add_c_service(a, "sink", "swaps.*", on_sink, &sa, -1), 0);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &sb, -1), 0);
  CHECK_EQ(myc_engine_add_c_service(c, "sink", "swaps.v2", on_sink, &sc, -1), 0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK_EQ(start(c), 0);
  /* a sees two peers with one pattern each; b and c see a's swaps.*. */
  {
    int i, ups = 0;
    for (i = 0; i < 500 && ups < 2; i++) {
      myc__link_stats st[8];
      uint32_t n = myc__links_stats(myc__links_of(a), st, 8), k;
      for (ups = 0, k = 0; k < n && k < 8; k++)
        ups += strcmp(st[k].state, "up") == 0 && st[k].patterns == 1;
      sleep_ms(10);
    }
    CHECK_EQ(ups, 2);
  }
  CHECK(wait_peer(b, "up", 1, NULL));
  CHECK(wait_peer(c, "up", 1, NULL));
  publish_seq(a, "swaps.v2", 1, 1000);
  CHECK(wait_count(&sb.n, 1000));
  CHECK(wait_count(&sc.n, 1000));
  CHECK(wait_count(&sa.n, 1000));
  CHECK_EQ(atomic_load(&sb.bad_order) + atomic_load(&sc.bad_order), 0);
  sa.last = sb.last = sc.last = 0;
  publish_seq(c, "swaps.v2", 1, 10);
  CHECK(wait_count(&sa.n, 1010));
  CHECK(wait_count(&sc.n, 1010));
  sleep_ms(200);
  CHECK_EQ(atomic_load(&sb.n), 1000);
  myc_engine_free(c);
  myc_engine_free(b);
  myc_engine_free(a);
}

/* "_links" keeps, per peer, whether the last topic it handled matched
 * the peer's patterns: a change of them must void that answer.  c keeps
 * other.topic coming to a's "_links" while b's patterns change. */
static void pattern_changes_apply_to_the_topic_being_sent(void) {
  myc_engine *a, *b, *c;
  myc_service *sk;
  myc__link_stats st;
  uint64_t out;
  static sink sb, sc;
  memset(&sb, 0, sizeof sb);
  memset(&sc, 0, sizeof sc);
  three_engines("cache.sock", 'c', &a, &b, &c);
  CHECK(a != NULL && b != NULL && c != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &sb, -1), 0);
  CHECK_EQ(myc_engine_add_c_service(c, "sink", "other.*", on_sink, &sc, -1), 0);
  sk = myc__engine_find(b, "sink", 4);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK_EQ(start(c), 0);
  CHECK(wait_link(a, "cb", "up", 1, &st));
  CHECK(wait_link(a, "cc", "up", 1, &st));
  /* b does not want other.topic (and is sent none of it). */
  publish_seq(a, "other.topic", 1, 5);
  CHECK(wait_count(&sc.n, 5));
  CHECK(wait_link(a, "cb", "up", 1, &st));
  CHECK_EQ(st.frames_out, 0);
  /* Now it does. */
  CHECK_EQ(myc__topics_subscribe(&b->topics, sk, "other.*", 7), 0);
  CHECK(wait_link(a, "cb", "up", 2, &st));
  sb.last = sc.last = 0;
  publish_seq(a, "other.topic", 1, 5);
  CHECK(wait_count(&sc.n, 10));
  CHECK(wait_count(&sb.n, 5));
  /* And no longer. */
  CHECK_EQ(myc__topics_unsubscribe(&b->topics, sk, "other.*", 7), 0);
  CHECK(wait_link(a, "cb", "up", 1, &st));
  out = st.frames_out;
  sc.last = 0;
  publish_seq(a, "other.topic", 1, 5);
  CHECK(wait_count(&sc.n, 15));
  sleep_ms(100);
  CHECK(wait_link(a, "cb", "up", 1, &st));
  CHECK_EQ(st.frames_out, out);
  CHECK_EQ(atomic_load(&sb.n), 5);
  myc_engine_free(c);
  myc_engine_free(b);
  myc_engine_free(a);
}

/* A subscriber slower than the peer writes (a few hundred ns a
 * message). */
static _Atomic uint64_t slow_n;

static void on_slow(void *ud, const myc_message *m) {
  volatile uint32_t i;
  (void)ud;
  (void)m;
  for (i = 0; i < 300; i++)
    ;
  atomic_fetch_add(&slow_n, 1);
}

/* b's links and its subscriber share worker 1, its mailbox holds 4096
 * messages, and a writes megabytes ahead of it over TCP.  The worker
 * reads one buffer (256 KiB, ~1900 of these messages) per turn of its
 * loop, then its handlers run: nothing is dropped.  (libuv would read
 * up to 32 buffers at once, and the mailbox would overflow.) */
static void reads_leave_turns_to_the_handlers(void) {
  char a_links[512], b_links[512], url[128];
  myc_engine *a, *b;
  uint64_t sent = 0;
  int waited = 0;
  atomic_store(&slow_n, 0);
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", test_free_port());
  snprintf(a_links, sizeof a_links,
           "listen = { \"%s\" }, link = { worker = 1 }", url);
  snprintf(b_links, sizeof b_links,
           "connect = { \"%s\" }, link = { worker = 1, "
           "reconnect_initial_ms = 20 },\n  mailbox = { capacity = 4096, "
           "policy = \"drop_newest\" }",
           url);
  a = engine("ra", a_links);
  b = engine("rb", b_links);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "slow", "bulk.*", on_slow, NULL, 1), 0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  /* At most 16384 ahead of the subscriber: a's queue never fills. */
  while (sent < 200000 && waited < 30000) {
    if (sent - atomic_load(&slow_n) > 16384) {
      sleep_ms(1);
      waited++;
      continue;
    }
    publish_seq(a, "bulk.x", sent + 1, 4096);
    sent += 4096;
  }
  CHECK(wait_count(&slow_n, sent));
  myc_engine_free(b);
  myc_engine_free(a);
}

/* ---- backpressure: a full "reject" mailbox pauses the link ------------- */

/* A sink that takes about 20 us a message, and stops while 'gate' is
 * closed. */
typedef struct {
  sink s;
  _Atomic int gate_closed;
} slow_sink;

static void on_slow_sink(void *ud, const myc_message *m) {
  slow_sink *k = ud;
  struct timespec t0, t;
  while (atomic_load(&k->gate_closed))
    sleep_ms(1);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do
    clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) <
         20000);
  on_sink(&k->s, m);
}

static uint64_t mb_dropped(myc_engine *e, const char *name, int why) {
  myc_service *s = myc__engine_find(e, name, strlen(name));
  return s != NULL ? atomic_load(&s->task.mb.dropped[why]) : UINT64_MAX;
}

/* a publishes 'n' messages to b, 8 on bp.x, 8 on bp.y and so on (one
 * mailbox's room is shared by two topics), pausing while bp.x's
 * pressure (what ctx:pressure says) is over 0.5, as Bandit's adapter
 * does; returns the highest pressure seen. */
static double publish_paced(myc_engine *a, uint64_t n) {
  myc_service *noop = myc__engine_find(a, "noop", 4);
  int64_t id = myc__engine_topic(a, noop, "bp.x", 4);
  double worst = 0;
  uint64_t i;
  for (i = 1; i <= n; i += 64) {
    double p = myc_ffi_pressure(noop, (uint32_t)id);
    int waited = 0;
    uint64_t j;
    worst = p > worst ? p : worst;
    while (p > 0.5 && waited++ < 30000) {
      sleep_ms(1);
      p = myc_ffi_pressure(noop, (uint32_t)id);
    }
    for (j = i; j < i + 64 && j <= n; j += 8)
      publish_seq(a, (j / 8) % 2 ? "bp.y" : "bp.x", j,
                  n - j + 1 < 8 ? n - j + 1 : 8);
  }
  return worst;
}

/* Engines 'pre'a, listening on tmpdir/'pre'.sock with 'a_keys', and
 * 'pre'b, dialling it, whose mailboxes are 'b_mailbox' and link table
 * has 'b_link' more. */
static void bp_pair(const char *pre, const char *a_keys, const char *b_mailbox,
                    const char *b_link, myc_engine **a, myc_engine **b) {
  char a_links[512], b_links[512], url[256], name[16];
  snprintf(url, sizeof url, "unix://%s/%s.sock", tmpdir, pre);
  snprintf(a_links, sizeof a_links, "listen = { \"%s\" }, %s", url, a_keys);
  snprintf(b_links, sizeof b_links,
           "connect = { \"%s\" }, link = { reconnect_initial_ms = 20, %s },\n"
           "  mailbox = { %s }",
           url, b_link, b_mailbox);
  snprintf(name, sizeof name, "%sa", pre);
  *a = engine(name, a_links);
  snprintf(name, sizeof name, "%sb", pre);
  *b = engine(name, b_links);
}

/* b's two subscribers of bp.* have mailboxes of 64 messages that refuse
 * when full (policy reject): one handles a message in 20 us, the other
 * at once.  a sends 30 000: b's link stops reading whenever the slow
 * one is full, a's queue (4096 frames) fills and its pressure rises, a
 * slows down (below 0.5, its "_links" mailbox of 1024 and the queue
 * together stay within the queue's bound); every message reaches both subscribers once, in order,
 * and nothing is dropped on either side.  'b_more': more keys of b's
 * link table. */
static void a_full_reject_mailbox_pauses_the_link(const char *b_more) {
  static slow_sink slow;
  static sink fast;
  myc_engine *a, *b;
  myc__link_stats st;
  double worst;
  int on_worker = strstr(b_more, "worker = 1") != NULL;
  const uint64_t n = 30000;
  memset(&slow, 0, sizeof slow);
  memset(&fast, 0, sizeof fast);
  bp_pair(on_worker ? "bpw" : "bp",
          "link = { queue_frames = 4096 },\n"
          "  mailbox = { capacity = 1024, policy = \"reject\" }",
          "capacity = 64, policy = \"reject\"", b_more, &a, &b);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "slow", "bp.*", on_slow_sink, &slow,
                                     on_worker ? 1 : 0),
           0);
  CHECK_EQ(myc_engine_add_c_service(b, "fast", "bp.*", on_sink, &fast,
                                     on_worker ? 0 : 1),
           0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  worst = publish_paced(a, n);
  if (!wait_count(&slow.s.n, n)) {
    size_t len;
    char *txt = myc__links_status(myc__links_of(b), 1, &len);
    fprintf(stderr, "b: %s\n", txt);
    myc__free(myc__links_alloc(myc__links_of(b)), txt, len + 1);
    txt = myc__links_status(myc__links_of(a), 1, &len);
    fprintf(stderr, "a: %s\n", txt);
    myc__free(myc__links_alloc(myc__links_of(a)), txt, len + 1);
  }
  CHECK_EQ(atomic_load(&slow.s.n), n);
  CHECK(wait_count(&fast.n, n));
  CHECK_EQ(atomic_load(&slow.s.bad_order), 0);
  CHECK_EQ(atomic_load(&fast.bad_order), 0);
  CHECK(worst > 0);
  CHECK_EQ(mb_dropped(b, "slow", MYC_DROP_REJECTED), 0);
  CHECK_EQ(mb_dropped(b, "fast", MYC_DROP_REJECTED), 0);
  CHECK(wait_peer(a, "up", 1, &st));
  CHECK_EQ(st.dropped_queue_full, 0);
  CHECK(wait_frames_in(b, n + 1, &st)); /* and the HELLO */
  CHECK(st.pauses > 0);
  CHECK(!st.paused);
  fprintf(stderr, "  pauses %llu, %llu ms paused, highest pressure %.2f\n",
          (unsigned long long)st.pauses, (unsigned long long)st.paused_ms,
          worst);
  /* The status says it. */
  {
    size_t len;
    char *json = myc__links_status(myc__links_of(b), 1, &len);
    CHECK(json != NULL && strstr(json, "\"paused\":false,\"pauses\":") != NULL);
    myc__free(myc__links_alloc(myc__links_of(b)), json, len + 1);
  }
  if (on_worker) {
    /* (The slow sink shares the links' worker: held in its handler, it
     * would hold the links' loop too.) */
    myc_engine_free(b);
    myc_engine_free(a);
    return;
  }
  /* A peer that hangs up while b holds what it sent: what b held is
   * dropped and counted, nothing leaks, b redials. */
  atomic_store(&slow.gate_closed, 1);
  publish_seq(a, "bp.x", n + 1, 200);
  {
    int i;
    for (i = 0; i < 500; i++) {
      if (wait_peer(b, "up", 0, &st) && st.paused)
        break;
      sleep_ms(10);
    }
    CHECK(st.paused);
  }
  myc_engine_free(a);
  {
    int i;
    for (i = 0; i < 500; i++) {
      myc__link_stats v[4];
      uint32_t k = myc__links_stats(myc__links_of(b), v, 4);
      if (k > 0 && v[0].dropped_held_disconnect > 0) {
        st = v[0];
        break;
      }
      sleep_ms(10);
    }
  }
  CHECK(st.dropped_held_disconnect > 0);
  CHECK(!st.paused);
  atomic_store(&slow.gate_closed, 0);
  myc_engine_free(b);
}

static void a_full_reject_mailbox_pauses_the_link_thread(void) {
  a_full_reject_mailbox_pauses_the_link("");
}

static void a_full_reject_mailbox_pauses_a_worker_loop(void) {
  a_full_reject_mailbox_pauses_the_link("worker = 1");
}

/* drop_oldest as before: b's full mailbox evicts, counted; the link
 * never pauses, and every message is either handled or counted. */
static void a_full_drop_oldest_mailbox_drops(void) {
  static slow_sink slow;
  myc_engine *a, *b;
  myc__link_stats st;
  uint64_t got, dropped;
  const uint64_t n = 5000;
  int i;
  memset(&slow, 0, sizeof slow);
  bp_pair("bpd", "mailbox = { policy = \"reject\" }",
          "capacity = 64, policy = \"drop_oldest\"", "", &a, &b);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "slow", "bp.*", on_slow_sink, &slow,
                                     0),
           0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  publish_seq(a, "bp.x", 1, n);
  for (i = 0; i < 3000; i++) {
    got = atomic_load(&slow.s.n);
    dropped = mb_dropped(b, "slow", MYC_DROP_OLDEST);
    if (got + dropped == n)
      break;
    sleep_ms(10);
  }
  CHECK_EQ(got + dropped, n);
  CHECK(dropped > 0);
  CHECK(wait_frames_in(b, n + 1, &st)); /* and the HELLO */
  CHECK_EQ(st.pauses, 0);
  myc_engine_free(b);
  myc_engine_free(a);
}

/* ---- hostile peers ------------------------------------------------------ */

static int dial_unix(const char *path) {
  struct sockaddr_un sa;
  struct timeval tv = {5, 0};
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Reads until the engine closes the connection (1) or 5 s pass (0). */
static int closed_by_peer(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0)
      return 1;
    if (n < 0)
      return errno == ECONNRESET;
  }
}

static size_t hello(uint8_t *out, size_t cap, const char *node) {
  myc__wire_hello h;
  memset(&h, 0, sizeof h);
  h.vmin = 1;
  h.vmax = 2;
  snprintf(h.node, sizeof h.node, "%s", node);
  return myc__wire_hello_encode(&h, out, cap);
}

/* A raw peer's greeting as 'node', then a subscription to swaps.*: 0
 * once both are written. */
static int subscribe_swaps(int fd, const char *node) {
  uint8_t f[512];
  size_t n = hello(f, sizeof f, node);
  myc__wire_put_tlv(f + n, MYC_WIRE_SUB, 7);
  memcpy(f + n + 6, "swaps.*", 7);
  return write(fd, f, n + 13) == (ssize_t)(n + 13) ? 0 : -1;
}

/* A raw peer 'node' dialled to 'e' listening on 'path', greeted and
 * subscribed to swaps.*, once 'e' has it up: its socket, or -1. */
static int swaps_peer(myc_engine *e, const char *path, const char *node) {
  int fd = dial_unix(path);
  if (fd < 0)
    return -1;
  if (subscribe_swaps(fd, node) != 0 || !wait_link(e, node, "up", 1, NULL)) {
    close(fd);
    return -1;
  }
  return fd;
}

static void hostile_peers(const char *more) {
  char links[512], path[256];
  myc_engine *a, *b;
  myc__link_stats st[8];
  static sink s;
  uint8_t f[512];
  size_t n;
  int fd;
  uint32_t k, np;
  uint64_t errors = 0;
  memset(&s, 0, sizeof s);
  snprintf(path, sizeof path, "%s/h.sock", tmpdir);
  snprintf(links, sizeof links,
           "listen = { \"unix://%s\" }, link = { frame_timeout_ms = 300, "
           "handshake_timeout_ms = 300, max_frame = 4096, queue_frames = 100"
           "%s }",
           path, more);
  a = engine("ha", links);
  snprintf(links, sizeof links, "connect = { \"unix://%s\" }, link = { %s }",
           path, more + (*more == ',' ? 1 : 0));
  b = engine("hb", links);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &s, -1), 0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 1, NULL));

  /* Garbage instead of a handshake. */
  fd = dial_unix(path);
  CHECK(fd >= 0);
  CHECK(write(fd, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
  CHECK(closed_by_peer(fd));
  close(fd);
  /* A frame announcing more than max_frame: closed on its 6 bytes. */
  fd = dial_unix(path);
  n = hello(f, sizeof f, "evil");
  CHECK(write(fd, f, n) == (ssize_t)n);
  myc__wire_put_tlv(f, MYC_WIRE_MSG, 1u << 30);
  CHECK(write(fd, f, 6) == 6);
  CHECK(closed_by_peer(fd));
  close(fd);
  /* A frame begun and never finished (slowloris). */
  fd = dial_unix(path);
  n = hello(f, sizeof f, "slow");
  CHECK(write(fd, f, n) == (ssize_t)n);
  myc__wire_put_tlv(f, MYC_WIRE_SUB, 7);
  CHECK(write(fd, f, 8) == 8);
  CHECK(closed_by_peer(fd));
  close(fd);
  /* Silence: no handshake at all. */
  fd = dial_unix(path);
  CHECK(closed_by_peer(fd));
  close(fd);
  /* A corrupt v2 message after a good handshake. */
  fd = dial_unix(path);
  n = hello(f, sizeof f, "corrupt");
  memset(f + n, 0xAB, 70);
  myc__wire_put_tlv(f + n, MYC_WIRE_MSG, 64);
  CHECK(write(fd, f, n + 70) == (ssize_t)(n + 70));
  CHECK(closed_by_peer(fd));
  close(fd);

  /* A peer that subscribes and never reads: its queue stays bounded and
   * the overflow is counted as its own. */
  fd = dial_unix(path);
  CHECK_EQ(subscribe_swaps(fd, "deaf"), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  {
    int i, deaf_seen = 0;
    for (i = 0; i < 500 && !deaf_seen; i++) {
      np = myc__links_stats(myc__links_of(a), st, 8);
      for (k = 0; k < np && k < 8; k++)
        deaf_seen |= strcmp(st[k].peer, "deaf") == 0 && st[k].patterns == 1;
      sleep_ms(10);
    }
    CHECK(deaf_seen);
  }
  {
    /* Paced so that the healthy peer's queue (100) never overflows. */
    uint64_t i;
    for (i = 0; i < 20000; i += 50) {
      publish_seq(a, "swaps.v2", i + 1, 50);
      CHECK(wait_count(&s.n, i + 50)); /* the healthy peer gets everything */
    }
  }
  CHECK_EQ(atomic_load(&s.bad_order), 0);
  {
    /* Producers see the deaf peer's full queue as a full mailbox on the
     * topics it subscribed, and status shows it. */
    myc_service *ns = myc__engine_find(a, "noop", 4);
    int64_t id = myc__topics_resolve(&a->topics, "swaps.v2", 8);
    size_t len = 0;
    char *js;
    CHECK(ns != NULL && id >= 0);
    CHECK(myc_ffi_pressure(ns, (uint32_t)id) == 1.0);
    js = myc__links_status(myc__links_of(a), 1, &len);
    CHECK(js != NULL && strstr(js, "\"pressure\":1.000") != NULL);
    CHECK(strstr(js, "\"frames_direct\":") != NULL);
    myc__free(myc__links_alloc(myc__links_of(a)), js, len + 1);
    js = myc__links_status(myc__links_of(a), 0, &len);
    CHECK(js != NULL && strstr(js, " FILL ") != NULL &&
          strstr(js, " 1.00 ") != NULL);
    myc__free(myc__links_alloc(myc__links_of(a)), js, len + 1);
  }
  np = myc__links_stats(myc__links_of(a), st, 8);
  for (k = 0; k < np && k < 8; k++) {
    if (strcmp(st[k].peer, "deaf") == 0) {
      CHECK(st[k].pressure == 1.0);
      CHECK(st[k].dropped_queue_full > 0);
      CHECK(st[k].queued <= 100);
      /* The "_links" worker wrote to it until its socket was full. */
      CHECK(st[k].frames_direct > 0);
      /* Every message is accounted for: written, queued or dropped. */
      CHECK_EQ(st[k].frames_out + st[k].queued + st[k].dropped_queue_full,
               20000);
    }
    errors += st[k].frame_errors;
  }
  CHECK(errors >= 4); /* garbage, oversize, stalled, corrupt (+ silence) */
  /* The hostile bytes were read on worker 1 with link.worker. */
  CHECK(read_on_worker(a, *more ? 1 : -1));
  close(fd);
  myc_engine_free(b);
  myc_engine_free(a);
}

static void hostile_peers_lose_only_their_link(void) { hostile_peers(""); }

/* A listener that cannot bind fails the start on a worker's loop too,
 * after a dial had begun there: what was opened on that loop is closed
 * before the start returns (the ASan build checks nothing leaks). */
static void a_start_failing_on_a_worker_loop_closes_everything(void) {
  char links[512];
  myc_engine *e;
  char err[512];
  snprintf(links, sizeof links,
           "listen = { \"tcp://127.0.0.1:%d\", \"unix://%s/no/such/dir/x.sock\" }, "
           "connect = { \"unix://%s/nobody.sock\" }, link = { worker = 1 }",
           test_free_port(), tmpdir, tmpdir);
  e = engine("sf", links);
  CHECK(e != NULL);
  CHECK(myc_engine_start(e, err, sizeof err) != 0);
  CHECK(strstr(err, "x.sock: cannot listen") != NULL);
  myc_engine_free(e);
}

/* The same on worker 1's loop: the handshake deadline and the stalled
 * frame are that loop's timers, the deaf peer's queue is written from
 * it; A is freed with the deaf peer's link still open. */
static void hostile_peers_on_a_worker_loop(void) {
  hostile_peers(", worker = 1");
}

/* A raw peer's reader of the frames publish_seq sends: whatever the
 * socket has, parsed frame by frame; a message whose payload is not the
 * next number of the sequence (or that does not decode) is bad. */
typedef struct {
  int fd;
  uint8_t *in;
  size_t have, cap;
  uint64_t want, got, bad;
} seq_reader;

static int seq_reader_init(seq_reader *rd, size_t cap) {
  memset(rd, 0, sizeof *rd);
  rd->fd = -1;
  rd->want = 1;
  rd->cap = cap;
  rd->in = malloc(cap);
  return rd->in != NULL ? 0 : -1;
}

/* One read: the bytes it got (0 or less: none now). */
static ssize_t seq_read(seq_reader *rd) {
  size_t off = 0;
  ssize_t r = recv(rd->fd, rd->in + rd->have, rd->cap - rd->have, MSG_DONTWAIT);
  if (r <= 0)
    return r;
  rd->have += (size_t)r;
  for (;;) {
    myc__wire_tlv t;
    int64_t len = myc__wire_next(rd->in + off, rd->have - off, 1u << 20, &t);
    if (len <= 0)
      break;
    if (t.type == MYC_WIRE_MSG) {
      myc__wire_msg m;
      const char *why = NULL;
      uint64_t v = 0;
      if (myc__wire_msg_decode(t.body, t.len, &m, &why) != 0) {
        fprintf(stderr, "frame %llu: %s\n", (unsigned long long)rd->got, why);
        rd->bad++;
      } else {
        memcpy(&v, m.payload, 8);
        rd->bad += v != rd->want;
        rd->want = v + 1;
      }
      rd->got++;
    }
    off += (size_t)len;
  }
  memmove(rd->in, rd->in + off, rd->have - off);
  rd->have -= off;
  return r;
}

/* The "_links" worker writes a plain link itself while the link thread
 * has nothing under way; a write the socket takes only in part is
 * finished by the link thread, from the byte it stopped at.  A raw peer
 * that reads nothing for a while (so the socket fills and writes stop
 * mid-frame) then reads everything: every frame whole, in order. */
static void direct_writes_keep_order_through_partial_writes(void) {
  char path[PATH_CAP];
  myc_engine *a;
  myc__link_stats st[8];
  seq_reader rd;
  const uint64_t N = 20000;
  uint32_t k, np;
  int fd, i, idle = 0;
  CHECK_EQ(seq_reader_init(&rd, 8u << 20), 0);
  a = listening("da", "d.sock", "queue_frames = 100000", path);
  CHECK(a != NULL);
  CHECK_EQ(start(a), 0);
  fd = rd.fd = dial_unix(path);
  CHECK(fd >= 0);
  {
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  CHECK_EQ(subscribe_swaps(fd, "slowreader"), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  publish_seq(a, "swaps.v2", 1, N);
  sleep_ms(200); /* unread: the socket fills, a write stops mid-frame */
  while (rd.got < N && idle < 50) {
    if (seq_read(&rd) <= 0) {
      idle++;
      sleep_ms(20);
      continue;
    }
    idle = 0;
  }
  CHECK_EQ(rd.got, N);
  CHECK_EQ(rd.bad, 0);
  for (i = 0; i < 100; i++) {
    np = myc__links_stats(myc__links_of(a), st, 8);
    for (k = 0; k < np && k < 8; k++)
      if (strcmp(st[k].peer, "slowreader") == 0 && st[k].queued == 0)
        i = 100;
    if (i < 100)
      sleep_ms(10);
  }
  for (k = 0; k < np && k < 8; k++)
    if (strcmp(st[k].peer, "slowreader") == 0) {
      CHECK_EQ(st[k].frames_out, N);
      CHECK_EQ(st[k].dropped_queue_full, 0);
      /* Both writers took part: the worker first, the link thread once
       * the socket was full. */
      CHECK(st[k].frames_direct > 0);
      CHECK(st[k].frames_direct < N);
    }
  close(fd);
  free(rd.in);
  myc_engine_free(a);
}

/* Engine B speaks only v1: typed messages cross as Rust Mycelium frames
 * (topic = the type's name, source = the sending node); what v1 cannot
 * carry is counted at the sender, and a type the receiver's contracts
 * lack is skipped and counted there. */
typedef struct {
  _Atomic uint64_t n;
  int kind, type;
  size_t len;
  char topic[64], source[64];
  uint64_t amount;
} typed_sink;

static void on_typed(void *ud, const myc_message *m) {
  typed_sink *s = ud;
  s->kind = m->kind;
  s->type = m->type;
  s->len = m->len;
  snprintf(s->topic, sizeof s->topic, "%.*s", (int)m->topic_len, m->topic);
  snprintf(s->source, sizeof s->source, "%.*s", (int)m->source_len,
           m->source);
  if (m->len == 8)
    memcpy(&s->amount, m->data, 8);
  atomic_fetch_add(&s->n, 1);
}

static void v1_peer_gets_typed_messages(void) {
  char links[512], path[256];
  myc_engine *a, *b;
  myc__link_stats st;
  static typed_sink s;
  uint64_t amount = 4242;
  int i;
  memset(&s, 0, sizeof s);
  test_module(tmpdir, "a.yaml",
              "schema: { id: 7, version: 1 }\n"
              "messages:\n"
              "  Swap: { tlv_type: 1000, fields: { amount: { type: u64 } } }\n"
              "  Other: { tlv_type: 1001, fields: { x: { type: u64 } } }\n");
  test_module(tmpdir, "b.yaml",
              "schema: { id: 7, version: 1 }\n"
              "messages:\n"
              "  Swap: { tlv_type: 1000, fields: { amount: { type: u64 } } }\n");
  snprintf(path, sizeof path, "%s/v1.sock", tmpdir);
  snprintf(links, sizeof links,
           "contracts = \"a.yaml\", listen = { \"unix://%s\" }", path);
  a = engine("va", links);
  snprintf(links, sizeof links,
           "contracts = \"b.yaml\", connect = { \"unix://%s\" }, "
           "link = { wire = 1 }",
           path);
  b = engine("vb", links);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "Swap", on_typed, &s, -1), 0);
  CHECK_EQ(myc_engine_add_c_service(b, "other", "Other", on_typed, &s, -1), 0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 2, &st));
  CHECK_EQ(st.version, 1);
  CHECK_EQ(myc_publish(a, "Swap", MYC_KIND_TYPED, 1000, &amount, 8), 0);
  CHECK(wait_count(&s.n, 1));
  CHECK_EQ(s.kind, MYC_KIND_TYPED);
  CHECK_EQ(s.type, 1000);
  CHECK_STR(s.topic, "Swap");
  CHECK_STR(s.source, "va");
  CHECK_EQ(s.amount, 4242);
  /* A table cannot travel as v1; a type b does not know is skipped. */
  CHECK_EQ(myc_publish(a, "Swap", MYC_KIND_RAW, 0, "raw", 3), 0);
  CHECK_EQ(myc_publish(a, "Other", MYC_KIND_TYPED, 1001, &amount, 8), 0);
  for (i = 0; i < 500; i++) {
    myc__link_stats sb;
    if (wait_peer(a, "up", 2, &st) && st.dropped_v1_untyped == 1 &&
        wait_peer(b, "up", 0, &sb) && sb.unknown_types == 1)
      break;
    sleep_ms(10);
  }
  CHECK_EQ(st.dropped_v1_untyped, 1);
  CHECK_EQ(st.frames_out, 2);
  CHECK(wait_peer(b, "up", 0, &st));
  CHECK_EQ(st.unknown_types, 1);
  CHECK_EQ(atomic_load(&s.n), 1);
  myc_engine_free(b);
  myc_engine_free(a);
}

/* A Unix listener with link.allow_uids takes only those uids. */
static void unix_peers_are_checked_against_allow_uids(void) {
  char links[512], path[256];
  myc_engine *a;
  uint8_t f[128];
  size_t n;
  int fd, allowed;
  for (allowed = 0; allowed < 2; allowed++) {
    snprintf(path, sizeof path, "%s/u%d.sock", tmpdir, allowed);
    snprintf(links, sizeof links,
             "listen = { \"unix://%s\" }, link = { allow_uids = { %u } }", path,
             allowed ? (unsigned)getuid() : (unsigned)getuid() + 1);
    a = engine("ua", links);
    CHECK(a != NULL);
    CHECK_EQ(start(a), 0);
    fd = dial_unix(path);
    CHECK(fd >= 0);
    n = hello(f, sizeof f, "someone");
    /* A refused peer may find the link closed before it writes. */
    CHECK(write(fd, f, n) == (ssize_t)n || !allowed);
    if (allowed) {
      CHECK(wait_peer(a, "up", 0, NULL));
    } else {
      /* The refusal says why before the link closes. */
      myc__wire_tlv t;
      ssize_t k = read(fd, f, sizeof f);
      CHECK(k > 6);
      CHECK(myc__wire_next(f, (size_t)k, 4096, &t) > 0);
      CHECK_EQ(t.type, MYC_WIRE_CLOSE);
      CHECK(memmem(t.body, t.len, "is not in link.allow_uids", 25) != NULL);
      CHECK(closed_by_peer(fd));
    }
    close(fd);
    myc_engine_free(a);
  }
}

/* A v1 message of a type the engine's contracts lack: skipped and
 * counted by default; with unknown_type = "fail" the link closes. */
static void unknown_v1_types_follow_the_policy(void) {
  char links[512], path[256];
  myc_engine *a;
  uint8_t f[128];
  size_t n;
  int fd, fail;
  for (fail = 0; fail < 2; fail++) {
    snprintf(path, sizeof path, "%s/k%d.sock", tmpdir, fail);
    snprintf(links, sizeof links,
             "listen = { \"unix://%s\" }, link = { unknown_type = \"%s\" }",
             path, fail ? "fail" : "skip");
    a = engine("ka", links);
    CHECK(a != NULL);
    CHECK_EQ(start(a), 0);
    fd = dial_unix(path);
    CHECK(fd >= 0);
    n = hello(f, sizeof f, "old");
    myc__wire_put_tlv(f + n, 42, 4); /* a Rust Mycelium message, type 42 */
    memcpy(f + n + 6, "\1\2\3\4", 4);
    CHECK(write(fd, f, n + 10) == (ssize_t)(n + 10));
    if (fail) {
      CHECK(closed_by_peer(fd));
    } else {
      myc__link_stats st;
      int i;
      for (i = 0; i < 500; i++) {
        if (wait_peer(a, "up", 0, &st) && st.unknown_types == 1)
          break;
        sleep_ms(10);
      }
      CHECK_EQ(st.unknown_types, 1);
      CHECK_EQ(st.frame_errors, 0);
    }
    close(fd);
    myc_engine_free(a);
  }
}

static int dial_tcp(int port) {
  struct sockaddr_in sa;
  struct timeval tv = {5, 0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Reads frames until a CLOSE (its text in 'why') or the end (0). */
static int read_close(int fd, char *why, size_t cap) {
  uint8_t buf[16384];
  size_t n = 0;
  for (;;) {
    myc__wire_tlv t;
    int64_t k;
    ssize_t r;
    while ((k = myc__wire_next(buf, n, sizeof buf, &t)) > 0) {
      if (t.type == MYC_WIRE_CLOSE) {
        snprintf(why, cap, "%.*s", (int)t.len, (const char *)t.body);
        return 1;
      }
      memmove(buf, buf + k, n - (size_t)k);
      n -= (size_t)k;
    }
    r = read(fd, buf + n, sizeof buf - n);
    if (r <= 0)
      return 0;
    n += (size_t)r;
  }
}

/* A key file of mode 'mode' in tmpdir. */
static void key_file(const char *name, const char *key, int mode, char *path,
                     size_t cap) {
  FILE *f;
  snprintf(path, cap, "%s/%s", tmpdir, name);
  f = fopen(path, "w");
  CHECK(f != NULL);
  fputs(key, f);
  fclose(f);
  CHECK_EQ(chmod(path, (mode_t)mode), 0);
}

/* Frame errors counted over every link of 'e', open or closed. */
static uint64_t link_errors(myc_engine *e, int *up) {
  myc__link_stats st[8];
  uint32_t n = myc__links_stats(myc__links_of(e), st, 8), k;
  uint64_t sum = 0;
  for (k = 0; k < n && k < 8; k++) {
    sum += st[k].frame_errors;
    if (strcmp(st[k].state, "up") == 0)
      *up = 1;
  }
  return sum;
}

/* TCP links with link.psk_file: peers with the same key link up and
 * exchange messages; another key, or none, is refused on both sides with
 * an error counted on each; a peer's wrong proof gets a CLOSE saying so;
 * a key file others may read, or too short, is refused at load. */
static void pre_shared_keys_guard_tcp_links(void) {
  char k1[256], k2[256], k3[256], url[128], a_links[512], b_links[512],
      why[1024];
  static sink s;
  myc_engine *a, *b;
  int port = test_free_port(), round;
  key_file("k1", "a-key-of-thirty-two-bytes-here!!\n", 0600, k1, sizeof k1);
  key_file("k2", "another-key-of-thirty-two-bytes!\n", 0600, k2, sizeof k2);
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
  snprintf(a_links, sizeof a_links,
           "listen = { \"%s\" }, link = { psk_file = \"%s\" }", url, k1);
  /* Round 0: the same key; 1: another; 2: none at b. */
  for (round = 0; round < 3; round++) {
    int up_a = 0, up_b = 0, i;
    memset(&s, 0, sizeof s);
    snprintf(b_links, sizeof b_links,
             "connect = { \"%s\" }, link = { %s%s%s reconnect_initial_ms = 20, "
             "reconnect_max_ms = 100 }",
             url, round < 2 ? "psk_file = \"" : "",
             round == 0 ? k1 : round == 1 ? k2 : "", round < 2 ? "\"," : "");
    a = engine("pa", a_links);
    b = engine("pb", b_links);
    CHECK(a != NULL && b != NULL);
    CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &s, -1),
             0);
    CHECK_EQ(start(a), 0);
    CHECK_EQ(start(b), 0);
    if (round == 0) {
      CHECK(wait_peer(a, "up", 1, NULL));
      publish_seq(a, "swaps.v2", 1, 1000);
      CHECK(wait_count(&s.n, 1000));
      CHECK_EQ(link_errors(a, &up_a), 0);
    } else {
      for (i = 0; i < 500; i++) {
        up_a = up_b = 0;
        if (link_errors(a, &up_a) > 0 && link_errors(b, &up_b) > 0)
          break;
        sleep_ms(10);
      }
      CHECK(link_errors(a, &up_a) > 0);
      CHECK(link_errors(b, &up_b) > 0);
      CHECK(!up_a && !up_b);
    }
    myc_engine_free(b);
    myc_engine_free(a);
  }
  /* A raw peer: without a key, then with a wrong proof. */
  a = engine("pa", a_links);
  CHECK(a != NULL);
  CHECK_EQ(start(a), 0);
  for (round = 0; round < 2; round++) {
    myc__wire_hello h;
    uint8_t f[512];
    size_t n;
    int fd;
    for (fd = -1, n = 0; fd < 0 && n < 100; n++) {
      fd = dial_tcp(port);
      if (fd < 0)
        sleep_ms(10);
    }
    CHECK(fd >= 0);
    memset(&h, 0, sizeof h);
    h.vmin = 1;
    h.vmax = 2;
    snprintf(h.node, sizeof h.node, "raw");
    if (round == 1) {
      h.flags = MYC_WIRE_HELLO_PSK;
      memset(h.nonce, 7, sizeof h.nonce);
    }
    n = myc__wire_hello_encode(&h, f, sizeof f);
    if (round == 1) {
      myc__wire_put_tlv(f + n, MYC_WIRE_AUTH, MYC_WIRE_PROOF);
      memset(f + n + MYC_WIRE_TLV, 9, MYC_WIRE_PROOF);
      n += MYC_WIRE_TLV + MYC_WIRE_PROOF;
    }
    CHECK(write(fd, f, n) == (ssize_t)n);
    CHECK(read_close(fd, why, sizeof why));
    CHECK(strstr(why, round == 0 ? "requires a pre-shared key (link.psk_file) "
                                   "and raw offers none"
                                 : "proof does not match") != NULL);
    close(fd);
  }
  myc_engine_free(a);
  /* Bad key files are refused with the key named and what to do. */
  key_file("k3", "a-key-of-thirty-two-bytes-here!!", 0644, k3, sizeof k3);
  snprintf(a_links, sizeof a_links,
           "listen = { \"%s\" }, link = { psk_file = \"%s\" }", url, k3);
  CHECK(engine("pbad", a_links) == NULL);
  key_file("k3", "short", 0600, k3, sizeof k3);
  CHECK(engine("pbad", a_links) == NULL);
  {
    myc__link_config c;
    char err[512];
    myc__link_config_init(&c);
    CHECK_EQ(myc__link_psk_load(&c, k3, err, sizeof err), MYC_EINVAL);
    CHECK(strstr(err, "must be 16 to 1024 bytes") != NULL);
    CHECK_EQ(chmod(k3, 0640), 0);
    CHECK_EQ(myc__link_psk_load(&c, k3, err, sizeof err), MYC_EINVAL);
    CHECK(strstr(err, "chmod 600") != NULL);
    CHECK_EQ(myc__link_psk_load(&c, k1, err, sizeof err), 0);
    CHECK_EQ(c.psk_len, 32);
  }
}

static void bad_urls_are_refused_with_the_key(void) {
  char path[512], err[512];
  myc_engine *e = NULL;
  FILE *f;
  test_module(tmpdir, "noop.lua", NOOP);
  snprintf(path, sizeof path, "%s/bad.lua", tmpdir);
  f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("return { connect = { \"http://x\" }, services = { { module = "
        "\"noop.lua\" } } }\n",
        f);
  fclose(f);
  CHECK_EQ(myc_engine_from_file(&e, path, err, sizeof err), MYC_ECONFIG);
  CHECK(strstr(err, "'connect[1]' must be") != NULL);
  f = fopen(path, "w");
  fputs("return { connect = { \"tcp://localhost:80\" }, services = { { "
        "module = \"noop.lua\" } } }\n",
        f);
  fclose(f);
  CHECK(myc_engine_from_file(&e, path, err, sizeof err) != 0);
  CHECK(strstr(err, "names are not resolved") != NULL);
}


/* link.worker puts "_links" (the worker that queues, and writes, what
 * goes out) with the services that emit to peers; default: placed like
 * any service, after "noop" on worker 0, so on worker 1. */
static int links_worker(myc_engine *e) {
  myc_service_stats st;
  return test_service_stats(e, "_links", &st) == 0 ? st.worker : -2;
}

static void links_run_on_the_worker_they_are_given(void) {
  char links[300];
  myc_engine *e;
  snprintf(links, sizeof links,
           "listen = { \"unix://%s/w.sock\" }, link = { worker = 0 }",
           tmpdir);
  e = engine("w0", links);
  CHECK(e != NULL);
  CHECK_EQ(links_worker(e), 0);
  myc_engine_free(e);
  snprintf(links, sizeof links, "listen = { \"unix://%s/w.sock\" }", tmpdir);
  e = engine("w1", links);
  CHECK(e != NULL);
  CHECK_EQ(links_worker(e), 1);
  myc_engine_free(e);
  snprintf(links, sizeof links,
           "listen = { \"unix://%s/w.sock\" }, link = { worker = 2 }",
           tmpdir);
  CHECK(engine("w2", links) == NULL);
  CHECK(strstr(last_err, "'link.worker' is 2 but there are only 2 workers") !=
        NULL);
}

/* The first peer of 'e' named 'name'; its stats in '*out'. */
static int peer_named(myc_engine *e, const char *name, myc__link_stats *out) {
  myc__link_stats st[8];
  uint32_t n = myc__links_stats(myc__links_of(e), st, 8), k;
  for (k = 0; k < n && k < 8; k++)
    if (strcmp(st[k].peer, name) == 0) {
      *out = st[k];
      return 1;
    }
  return 0;
}

/* A peer that reads slowly gets a long queue, written a part (4096
 * frames, 4 MiB) at a time: once the peer has read half of it, the
 * parts it took are counted out and their buffers released, not held
 * until the last byte of the queue is written.  On worker 1's loop. */
static void long_queues_are_written_a_part_at_a_time(void) {
  char path[PATH_CAP], buf[65536];
  myc_engine *a;
  myc__link_stats st0, st;
  size_t read_bytes = 0;
  const uint64_t N = 20000;
  int fd, idle = 0;
  a = listening("la", "lq.sock", "queue_frames = 100000, worker = 1", path);
  CHECK(a != NULL);
  CHECK_EQ(start(a), 0);
  fd = swaps_peer(a, path, "halfreader");
  CHECK(fd >= 0);
  publish_seq(a, "swaps.v2", 1, N);
  sleep_ms(300); /* unread: the socket fills, the rest waits */
  /* Read until the write under way completes: the next one takes the
   * queue (a part of it), and is the one under way from here. */
  CHECK(peer_named(a, "halfreader", &st0));
  while (idle < 100) {
    ssize_t r = recv(fd, buf, 4096, MSG_DONTWAIT);
    if (r > 0)
      read_bytes += (size_t)r;
    sleep_ms(2);
    CHECK(peer_named(a, "halfreader", &st));
    if (st.frames_out > st0.frames_out)
      break;
    idle += r <= 0;
  }
  sleep_ms(100);
  CHECK(peer_named(a, "halfreader", &st0));
  CHECK(st0.queued > 2 * 4096);
  read_bytes = 0;
  idle = 0;
  while (read_bytes < st0.queued_bytes / 2 && idle < 100) {
    ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r <= 0) {
      idle++;
      sleep_ms(10);
      continue;
    }
    read_bytes += (size_t)r;
  }
  sleep_ms(200);
  CHECK(peer_named(a, "halfreader", &st));
  CHECK(st.frames_out > st0.frames_out);
  CHECK(st.queued < st0.queued);
  CHECK_EQ(st.frames_out + st.queued + st.dropped_queue_full, N);
  close(fd);
  myc_engine_free(a);
}

/* A Lua service that, for each "go" message "FROM N", emits N messages
 * on swaps.v2 numbered from FROM (the first 8 payload bytes, little
 * endian, as publish_seq's), 64 bytes each. */
static const char *PUMP =
    "local M = { subscribe = { \"go\" } }\n"
    "local pad = string.rep(\"x\", 56)\n"
    "function M.on_message(ctx, msg)\n"
    "  local from, n = msg.data:match(\"(%d+) (%d+)\")\n"
    "  for i = tonumber(from), tonumber(from) + tonumber(n) - 1 do\n"
    "    ctx:emit(\"swaps.v2\", string.char(i % 256, math.floor(i / 256) %"
    " 256,\n"
    "      math.floor(i / 65536) % 256, 0, 0, 0, 0, 0) .. pad)\n"
    "  end\n"
    "end\n"
    "return M\n";

/* Engine 'node' listening on tmpdir/'sock' (its path in 'path'), the
 * links and the pump on worker 1; 'link' more keys of its link table,
 * 'more' more keys of its config. */
static myc_engine *pumping(const char *node, const char *sock,
                           const char *link, const char *more, char *path) {
  char cfg[1024];
  test_module(tmpdir, "pump.lua", PUMP);
  snprintf(path, PATH_CAP, "%s/%s", tmpdir, sock);
  snprintf(cfg, sizeof cfg,
           "return { node = \"%s\", workers = 2, log = { level = \"warn\" },\n"
           "  listen = { \"unix://%s\" }, link = { worker = 1, %s }, %s\n"
           "  services = { { name = \"pump\", module = \"pump.lua\","
           " worker = 1 } } }\n",
           node, path, link, more);
  return engine_cfg(node, cfg);
}

static void go(myc_engine *e, uint64_t from, uint64_t n) {
  char text[64];
  int len = snprintf(text, sizeof text, "%llu %llu", (unsigned long long)from,
                     (unsigned long long)n);
  while (myc_publish(e, "go", MYC_KIND_RAW, 0, text, (size_t)len) == MYC_EFULL)
    sleep_ms(1);
}

/* Waits (5 s at most) until the 'n' messages sent to peer 'node' are all
 * in its counters: written, queued or dropped; its stats in 'st'. */
static void accounted(myc_engine *e, const char *node, uint64_t n,
                      myc__link_stats *st) {
  int k;
  for (k = 0; k < 500; k++) {
    CHECK(peer_named(e, node, st));
    if (st->frames_out + st->queued + st->dropped_queue_full == n)
      break;
    sleep_ms(10);
  }
  CHECK_EQ(st->frames_out + st->queued + st->dropped_queue_full, n);
}

/* A pumping() engine (*e), started, whose pump emits 'n' messages in one
 * turn to a raw peer "stalled" (*fd) that never reads; returns once they
 * are all in its counters ('st'). */
static void pump_to_stalled(const char *node, const char *sock,
                            const char *link, const char *more, uint64_t n,
                            myc_engine **e, myc__link_stats *st, int *fd) {
  char path[PATH_CAP];
  *e = pumping(node, sock, link, more, path);
  CHECK(*e != NULL);
  CHECK_EQ(start(*e), 0);
  *fd = swaps_peer(*e, path, "stalled");
  CHECK(*fd >= 0);
  go(*e, 1, n);
  accounted(*e, "stalled", n, st);
}

/* With link.worker, what a service on that worker emits goes onto the
 * peer's queue without "_links"' mailbox, while what a host publishes
 * still comes through it: both streams arrive whole and in order,
 * every frame counted once, "_links" counts both as handled, and a
 * stream of 64-byte messages is written by the emitting worker. */
static void emits_on_the_links_worker_skip_the_mailbox(void) {
  char path[PATH_CAP], links[512];
  static sink sp, sh;
  myc_engine *a, *b;
  myc__link_stats st;
  myc_service_stats ls;
  const uint64_t N = 20000;
  uint64_t i;
  int k;
  memset(&sp, 0, sizeof sp);
  memset(&sh, 0, sizeof sh);
  a = pumping("pa", "pd.sock", "queue_frames = 100000", "", path);
  snprintf(links, sizeof links,
           "connect = { \"unix://%s\" }, link = { worker = 1, "
           "reconnect_initial_ms = 20 }, mailbox = { capacity = 65536 }",
           path);
  b = engine("pb", links);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "sinkp", "swaps.v2", on_sink, &sp, 1),
           0);
  CHECK_EQ(myc_engine_add_c_service(b, "sinkh", "swaps.h", on_sink, &sh, 1),
           0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 2, NULL));
  /* The pump's bursts and the host's stream interleave in "_links". */
  for (i = 0; i < 10; i++) {
    go(a, 1 + i * (N / 10), N / 10);
    publish_seq(a, "swaps.h", 1 + i * (N / 10), N / 10);
  }
  CHECK(wait_count(&sp.n, N));
  CHECK(wait_count(&sh.n, N));
  CHECK_EQ(atomic_load(&sp.bad_order), 0);
  CHECK_EQ(atomic_load(&sh.bad_order), 0);
  for (k = 0; k < 500; k++) {
    CHECK(wait_peer(a, "up", 2, &st));
    if (st.frames_out == 2 * N)
      break;
    sleep_ms(10);
  }
  CHECK_EQ(st.frames_out, 2 * N);
  CHECK_EQ(st.queued, 0);
  CHECK_EQ(st.dropped_queue_full + st.dropped_disconnect, 0);
  CHECK(st.frames_direct > 0);
  CHECK_EQ(test_service_stats(a, "_links", &ls), 0);
  CHECK_EQ(ls.in, 2 * N);
  CHECK_EQ(ls.dropped, 0);
  myc_engine_free(b);
  myc_engine_free(a);
}

/* What a service on the links' worker emits is bounded by the peer's
 * queue, not by "_links"' mailbox, which it does not pass through (a
 * burst of 30000 from one handler would overflow a mailbox of 1024): a
 * peer that never reads gets queue_frames of them, the rest are counted
 * as queue_full, and every one emitted is in exactly one counter. */
static void emits_on_the_links_worker_are_bounded_by_the_queue(void) {
  myc_engine *a;
  myc__link_stats st;
  myc_service_stats ls;
  const uint64_t N = 30000;
  int fd;
  pump_to_stalled("qa", "qd.sock", "queue_frames = 1000",
                  "mailbox = { capacity = 1024 },", N, &a, &st, &fd);
  CHECK(!test_failed);
  CHECK(st.dropped_queue_full > 0);
  CHECK(st.queued <= 1000);
  CHECK_EQ(test_service_stats(a, "_links", &ls), 0);
  CHECK_EQ(ls.in, N);
  CHECK_EQ(ls.dropped, 0);
  close(fd);
  myc_engine_free(a);
}

/* One handler turn emits twice a peer's queue bound (link.queue_frames
 * 500) to a peer that never reads: once the queue is half full the
 * worker writes it out within the turn, so the socket's buffer takes
 * what the queue cannot hold and nothing is dropped; without that, the
 * 500 the queue held were all that left the turn. */
static void a_turn_emitting_past_the_queue_writes_it_out(void) {
  myc_engine *a;
  myc__link_stats st;
  const uint64_t N = 1000;
  int fd;
  pump_to_stalled("ta", "td.sock", "queue_frames = 500", "", N, &a, &st,
                  &fd);
  CHECK(!test_failed);
  CHECK_EQ(st.dropped_queue_full, 0);
  CHECK(st.frames_out >= N - 500);
  close(fd);
  myc_engine_free(a);
}

/* A v2 message frame (its TLV header too) on 'topic' from 'source', with
 * 'plen' payload bytes starting with 'seq': its length. */
static size_t msg_frame(uint8_t *out, const char *topic, const char *source,
                        uint64_t seq, uint32_t plen) {
  size_t tl = strlen(topic), sl = strlen(source);
  size_t off = myc__frame_topic_offset(plen);
  uint32_t flen = (uint32_t)myc__frame_len(plen, tl, sl);
  myc_frame h;
  memset(&h, 0, sizeof h);
  h.frame_len = flen;
  h.kind = MYC_KIND_RAW;
  h.seq = seq;
  h.payload_len = plen;
  h.topic_len = (uint16_t)tl;
  h.source_len = (uint8_t)sl;
  h.version = MYC_FRAME_VERSION;
  myc__wire_put_tlv(out, MYC_WIRE_MSG, flen);
  memset(out + MYC_WIRE_TLV, 0, flen);
  memcpy(out + MYC_WIRE_TLV, &h, sizeof h);
  memcpy(out + MYC_WIRE_TLV + sizeof h, &seq, 8);
  memcpy(out + MYC_WIRE_TLV + off, topic, tl);
  memcpy(out + MYC_WIRE_TLV + off + tl, source, sl);
  return MYC_WIRE_TLV + flen;
}

/* A raw peer sends runs of messages whose shape (topic, source, sizes)
 * changes between runs, all in one write, on worker 1's loop: a frame
 * like the one before it skips the full decode, so each run goes to its
 * own topic's subscriber, in order, every one counted.  Then a frame of
 * the same lengths whose source has a character no name may have: it is
 * decoded in full and refused, the link closes, and nothing after it is
 * delivered. */
static void messages_of_one_shape_are_checked_once(void) {
  char links[512], path[256];
  static sink sa, so;
  myc_engine *a;
  const uint64_t RUN = 3000;
  size_t cap = 8u << 20, n = 0;
  uint8_t *buf = malloc(cap);
  uint64_t i;
  int fd;
  CHECK(buf != NULL);
  memset(&sa, 0, sizeof sa);
  memset(&so, 0, sizeof so);
  snprintf(path, sizeof path, "%s/sh.sock", tmpdir);
  snprintf(links, sizeof links,
           "listen = { \"unix://%s\" }, link = { worker = 1 },\n"
           "  mailbox = { capacity = 65536 }",
           path);
  a = engine("sh", links);
  CHECK(a != NULL);
  CHECK_EQ(myc_engine_add_c_service(a, "sa", "swaps.*", on_sink, &sa, 1), 0);
  CHECK_EQ(myc_engine_add_c_service(a, "so", "other.*", on_sink, &so, 1), 0);
  CHECK_EQ(start(a), 0);
  fd = dial_unix(path);
  CHECK(fd >= 0);
  n = hello(buf, cap, "shapes");
  /* swaps 1..RUN (64 B), other 1..RUN, swaps on (1 KiB), other on from
   * another source, swaps on (64 B again): five shapes. */
  for (i = 1; i <= RUN; i++)
    n += msg_frame(buf + n, "swaps.v2", "raw", i, 64);
  for (i = 1; i <= RUN; i++)
    n += msg_frame(buf + n, "other.x", "raw", i, 64);
  for (i = RUN + 1; i <= 2 * RUN; i++)
    n += msg_frame(buf + n, "swaps.v2", "raw", i, 1024);
  for (i = RUN + 1; i <= 2 * RUN; i++)
    n += msg_frame(buf + n, "other.x", "r2d", i, 64);
  for (i = 2 * RUN + 1; i <= 3 * RUN; i++)
    n += msg_frame(buf + n, "swaps.v2", "raw", i, 64);
  /* The same lengths as the last run, a space in the source. */
  n += msg_frame(buf + n, "swaps.v2", "r w", 3 * RUN + 1, 64);
  n += msg_frame(buf + n, "swaps.v2", "raw", 3 * RUN + 2, 64);
  CHECK(n <= cap);
  {
    size_t off = 0;
    while (off < n) {
      ssize_t w = write(fd, buf + off, n - off);
      if (w <= 0)
        break;
      off += (size_t)w;
    }
    CHECK_EQ(off, n);
  }
  CHECK(closed_by_peer(fd));
  close(fd);
  CHECK(wait_count(&sa.n, 3 * RUN));
  CHECK(wait_count(&so.n, 2 * RUN));
  sleep_ms(100);
  CHECK_EQ(atomic_load(&sa.n), 3 * RUN);
  CHECK_EQ(sa.last, 3 * RUN);
  CHECK_EQ(atomic_load(&sa.bad_order), 0);
  CHECK_EQ(atomic_load(&so.bad_order), 0);
  {
    /* The refused frame is the one error counted (the peer is gone: its
     * counters are kept with those of the peers gone before it). */
    myc__link_stats st[8];
    uint32_t k, np = myc__links_stats(myc__links_of(a), st, 8);
    uint64_t errors = 0;
    for (k = 0; k < np && k < 8; k++)
      errors += st[k].frame_errors;
    CHECK_EQ(errors, 1);
  }
  CHECK(read_on_worker(a, 1));
  free(buf);
  myc_engine_free(a);
}

/* A queue that a slow reader lets grow is taken from its head a part at
 * a time while messages keep being queued behind it: the reader gets
 * every frame once, whole and in order, and the counters add up. */
static void a_long_queue_taken_in_parts_keeps_order(void) {
  char path[PATH_CAP];
  myc_engine *a;
  myc__link_stats st;
  seq_reader rd;
  const uint64_t N = 30000;
  uint64_t sent = 0;
  int fd, idle = 0;
  CHECK_EQ(seq_reader_init(&rd, 16u << 20), 0);
  a = listening("tp", "tp.sock", "queue_frames = 100000, worker = 1", path);
  CHECK(a != NULL);
  CHECK_EQ(start(a), 0);
  fd = rd.fd = swaps_peer(a, path, "partreader");
  CHECK(fd >= 0);
  publish_seq(a, "swaps.v2", 1, N);
  sent = N;
  sleep_ms(300); /* unread: the queue grows past several parts */
  while (rd.got < 3 * N && idle < 100) {
    if (seq_read(&rd) <= 0) {
      idle++;
      sleep_ms(10);
      continue;
    }
    idle = 0;
    /* More behind the head the writes are taking, twice. */
    if (sent < 3 * N && rd.got > sent - N / 2) {
      publish_seq(a, "swaps.v2", sent + 1, N);
      sent += N;
    }
  }
  CHECK_EQ(sent, 3 * N);
  CHECK_EQ(rd.got, 3 * N);
  CHECK_EQ(rd.bad, 0);
  /* The reader can have the last bytes before the write's completion
   * is counted. */
  for (idle = 0; idle < 500; idle++) {
    CHECK(peer_named(a, "partreader", &st));
    if (st.frames_out == 3 * N)
      break;
    sleep_ms(10);
  }
  CHECK_EQ(st.frames_out, 3 * N);
  CHECK_EQ(st.dropped_queue_full, 0);
  CHECK_EQ(st.queued, 0);
  close(fd);
  free(rd.in);
  myc_engine_free(a);
}

/* ---- TLS (tls+tcp://) --------------------------------------------------- */

static char certs[300];

/* The throwaway PKI of spec/support/certs.sh, made once in tmpdir. */
static int make_certs(void) {
  char cmd[1024];
  const char *src = getenv("MYCELIUM_SOURCE_DIR");
  if (certs[0] != '\0')
    return 1;
  if (src == NULL) {
    fprintf(stderr, "MYCELIUM_SOURCE_DIR is not set (ctest sets it)\n");
    return 0;
  }
  snprintf(certs, sizeof certs, "%s/certs", tmpdir);
  snprintf(cmd, sizeof cmd, "sh %s/spec/support/certs.sh %s",
           src, certs);
  if (system(cmd) != 0) {
    certs[0] = '\0';
    return 0;
  }
  return 1;
}

/* "tls = { cert = ..., key = ..., ca = ... }" with the files named (NULL:
 * left out) and 'more' keys. */
static const char *tls_keys(char *out, size_t cap, const char *cert,
                            const char *ca, const char *more) {
  char c[700] = "", k[700] = "", a[700] = "";
  if (cert != NULL) {
    snprintf(c, sizeof c, "cert = \"%s/%s.crt\", ", certs, cert);
    snprintf(k, sizeof k, "key = \"%s/%s.key\", ", certs, cert);
  }
  if (ca != NULL)
    snprintf(a, sizeof a, "ca = \"%s/%s.crt\", ", certs, ca);
  snprintf(out, cap, "tls = { %s%s%s%s }", c, k, a, more ? more : "");
  return out;
}

/* Every log line of an engine, kept for the checks. */
typedef struct {
  uv_mutex_t lock;
  char text[1 << 16];
  size_t len;
} log_capture;

static void on_log(void *ud, int level, const char *line, size_t len) {
  log_capture *c = ud;
  (void)level;
  uv_mutex_lock(&c->lock);
  if (c->len + len + 2 < sizeof c->text) {
    memcpy(c->text + c->len, line, len);
    c->len += len;
    c->text[c->len++] = '\n';
    c->text[c->len] = '\0';
  }
  uv_mutex_unlock(&c->lock);
}

static void capture(myc_engine *e, log_capture *c) {
  c->len = 0;
  c->text[0] = '\0';
  e->log.fn = on_log;
  e->log.ud = c;
}

static int logged(log_capture *c, const char *what) {
  int found;
  uv_mutex_lock(&c->lock);
  found = strstr(c->text, what) != NULL;
  uv_mutex_unlock(&c->lock);
  return found;
}

/* A peer sending ever-new topic names fills the quota of "_links"
 * (max_topics_per_service), not the engine's topic table: past it its
 * messages on new topics are dropped, said once in the log, while those
 * on topics that exist go on. */
static void a_peer_is_bounded_by_the_topic_quota(void) {
  char path[256], a_links[512], b_links[512], topic[32];
  static log_capture lc;
  static sink s;
  myc_engine *a, *b;
  int i;
  memset(&s, 0, sizeof s);
  uv_mutex_init(&lc.lock);
  snprintf(path, sizeof path, "%s/quota.sock", tmpdir);
  snprintf(a_links, sizeof a_links, "listen = { \"unix://%s\" }", path);
  snprintf(b_links, sizeof b_links,
           "max_topics_per_service = 3, connect = { \"unix://%s\" }, "
           "link = { reconnect_initial_ms = 20, reconnect_max_ms = 100 }",
           path);
  a = engine("a", a_links);
  b = engine("b", b_links);
  CHECK(a != NULL && b != NULL);
  capture(b, &lc);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "t.*", on_sink, &s, -1), 0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  /* t.1 to t.3 are made (the quota), t.4 to t.10 refused. */
  for (i = 1; i <= 10; i++) {
    snprintf(topic, sizeof topic, "t.%d", i);
    publish_seq(a, topic, (uint64_t)(i <= 3 ? i : 100 + i), 1);
  }
  publish_seq(a, "t.1", 4, 1);
  CHECK(wait_count(&s.n, 4));
  sleep_ms(100);
  CHECK_EQ(atomic_load(&s.n), 4);
  CHECK_EQ(atomic_load(&s.bad_order), 0);
  CHECK(logged(&lc, "link a: messages on new topics dropped from now on: "
                    "topic 't.4' not created: service '_links' has made 3 "
                    "topics of the engine's topic table, its "
                    "max_topics_per_service"));
  CHECK(!logged(&lc, "topic 't.5'"));
  myc_engine_free(b);
  myc_engine_free(a);
  uv_mutex_destroy(&lc.lock);
}

/* Writes 'n' SUB frames of distinct patterns, from the last name to the
 * first (each goes before all the others in sorted order): 0 once all
 * are written. */
static int subscribe_many(int fd, uint32_t from, uint32_t n) {
  uint8_t f[64];
  uint32_t i;
  for (i = from + n; i > from; i--) {
    int len = snprintf((char *)f + MYC_WIRE_TLV, sizeof f - MYC_WIRE_TLV,
                       "many.%08u.*", i - 1);
    myc__wire_put_tlv(f, MYC_WIRE_SUB, (uint32_t)len);
    if (write(fd, f, MYC_WIRE_TLV + (size_t)len) != MYC_WIRE_TLV + len)
      return -1;
  }
  return 0;
}

static int count_pattern(void *ud, const char *pattern, size_t len) {
  (void)pattern;
  (void)len;
  ++*(uint32_t *)ud;
  return 0;
}

/* The patterns every service of 'e' is subscribed to. */
static uint32_t engine_patterns(myc_engine *e) {
  uint32_t n = 0;
  myc__topics_patterns(&e->topics, NULL, count_pattern, &n);
  return n;
}

/* Seconds since 't0'. */
static double since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* A peer that subscribes without end loses its link at
 * link.max_subscriptions, is told why, and what it held is released;
 * one at the default bound is served in bounded time, and so is its
 * release. */
static void a_peer_is_bounded_by_max_subscriptions(void) {
  char path[PATH_CAP], why[512];
  static log_capture lc;
  myc_engine *a;
  struct timespec t0;
  double took;
  int fd, other, i;
  uv_mutex_init(&lc.lock);
  a = listening("subs", "subs.sock", "max_subscriptions = 1000", path);
  CHECK(a != NULL);
  capture(a, &lc);
  CHECK_EQ(start(a), 0);
  other = swaps_peer(a, path, "modest");
  CHECK(other >= 0);
  fd = dial_unix(path);
  CHECK(fd >= 0);
  CHECK_EQ(subscribe_swaps(fd, "greedy"), 0);
  /* 999 more: at the bound, and one said again, which adds nothing. */
  CHECK_EQ(subscribe_many(fd, 0, 999), 0);
  CHECK_EQ(subscribe_many(fd, 500, 1), 0);
  CHECK(wait_link(a, "greedy", "up", 1000, NULL));
  CHECK_EQ(engine_patterns(a), 1000); /* swaps.* is the two peers' */
  CHECK_EQ(subscribe_many(fd, 999, 1), 0);
  CHECK(read_close(fd, why, sizeof why));
  CHECK(strstr(why, "subscribed to more than 1000 patterns, the "
                    "link.max_subscriptions") != NULL);
  close(fd);
  /* Logged once the CLOSE frame is on its way, and released after. */
  for (i = 0; i < 500 && engine_patterns(a) != 1; i++)
    sleep_ms(10);
  CHECK(logged(&lc, "link greedy (unix://"));
  CHECK(logged(&lc, "refused: subscribed to more than 1000 patterns"));
  CHECK_EQ(engine_patterns(a), 1);
  CHECK(wait_link(a, "modest", "up", 1, NULL));
  close(other);
  myc_engine_free(a);

  /* The default bound, each pattern going first in sorted order. */
  a = listening("subs", "subs.sock", "", path);
  CHECK(a != NULL);
  CHECK_EQ(start(a), 0);
  fd = dial_unix(path);
  CHECK(fd >= 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK_EQ(subscribe_swaps(fd, "greedy"), 0);
  CHECK_EQ(subscribe_many(fd, 0, 9999), 0);
  CHECK(wait_link(a, "greedy", "up", 10000, NULL));
  took = since(&t0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  close(fd);
  for (i = 0; i < 3000 && engine_patterns(a) != 0; i++)
    sleep_ms(10);
  CHECK_EQ(engine_patterns(a), 0);
  fprintf(stderr, "10000 subscriptions from a peer: %.2f s, their release "
          "%.2f s\n", took, since(&t0));
  myc_engine_free(a);
  uv_mutex_destroy(&lc.lock);
}

/* Mutual TLS: a requires b's certificate; everything that crosses a
 * TCP link crosses this one (20000 messages in order, subscription
 * changes, a redial after a restart). */
static void tls_links_carry_what_tcp_links_do(void) {
  char url[128], ka[1024], kb[1024];
  CHECK(make_certs());
  snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", test_free_port());
  tls_keys(ka, sizeof ka, "srv", "ca", "verify_client = true");
  tls_keys(kb, sizeof kb, "client", "ca", NULL);
  subscriptions_and_messages_cross(url, url, ka, kb);
}

/* TLS on worker 1's loop: sealed and opened there, as the link thread
 * does. */
static void tls_on_a_worker_loop(void) {
  char url[128], ka[1100], kb[1100], t[1024];
  CHECK(make_certs());
  snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", test_free_port());
  snprintf(ka, sizeof ka, "worker = 1, %s",
           tls_keys(t, sizeof t, "srv", "ca", "verify_client = true"));
  snprintf(kb, sizeof kb, "worker = 1, %s",
           tls_keys(t, sizeof t, "client", "ca", NULL));
  subscriptions_and_messages_cross(url, url, ka, kb);
}

typedef struct {
  _Atomic uint64_t n, bad;
  _Atomic size_t len;
} big_sink;

static void on_big(void *ud, const myc_message *m) {
  big_sink *s = ud;
  size_t i;
  const uint8_t *d = m->data;
  for (i = 0; i < m->len; i++)
    if (d[i] != (uint8_t)(i * 31 + i / 4096)) {
      atomic_fetch_add(&s->bad, 1);
      break;
    }
  atomic_store(&s->len, m->len);
  atomic_fetch_add(&s->n, 1);
}

/* A 6 MiB message (hundreds of records) arrives whole, then small ones
 * behind it. */
static void tls_carries_a_large_message_intact(void) {
  char url[128], ka[1024], kb[1024], links[2048];
  static big_sink s;
  size_t len = 6u << 20, i;
  uint8_t *big = malloc(len);
  myc_engine *a, *b;
  CHECK(big != NULL && make_certs());
  for (i = 0; i < len; i++)
    big[i] = (uint8_t)(i * 31 + i / 4096);
  memset(&s, 0, sizeof s);
  snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", test_free_port());
  snprintf(links, sizeof links, "listen = { \"%s\" }, link = { %s }", url,
           tls_keys(ka, sizeof ka, "srv", NULL, NULL));
  a = engine("la", links);
  snprintf(links, sizeof links, "connect = { \"%s\" }, link = { %s }", url,
           tls_keys(kb, sizeof kb, NULL, "ca", NULL));
  b = engine("lb", links);
  CHECK(a != NULL && b != NULL);
  CHECK_EQ(myc_engine_add_c_service(b, "big", "big.*", on_big, &s, -1), 0);
  CHECK_EQ(start(a), 0);
  CHECK_EQ(start(b), 0);
  CHECK(wait_peer(a, "up", 1, NULL));
  CHECK_EQ(myc_publish(a, "big.one", MYC_KIND_RAW, 0, big, len), 0);
  for (i = 0; i < 100; i++)
    CHECK_EQ(myc_publish(a, "big.small", MYC_KIND_RAW, 0, big, 64), 0);
  CHECK(wait_count(&s.n, 101));
  CHECK_EQ(atomic_load(&s.bad), 0);
  CHECK_EQ(atomic_load(&s.len), 64);
  myc_engine_free(b);
  myc_engine_free(a);
  free(big);
}

/* Frame errors of 'e' (links open or closed) and whether one is up. */
static int refused_both(myc_engine *a, myc_engine *b) {
  int i, up_a = 0, up_b = 0;
  for (i = 0; i < 500; i++) {
    up_a = up_b = 0;
    if (link_errors(a, &up_a) > 0 && link_errors(b, &up_b) > 0)
      break;
    sleep_ms(10);
  }
  return link_errors(a, &up_a) > 0 && link_errors(b, &up_b) > 0 && !up_a &&
         !up_b;
}

/* Each way a TLS link can be refused: both sides log why, naming the
 * peer, count it, and neither is up. */
static void tls_refusals_are_clear_on_both_sides(void) {
  static const struct {
    const char *a_scheme, *a_cert;
    int a_verify_client;
    const char *b_scheme, *b_ca;
    const char *a_says, *b_says;
  } R[] = {
      /* b trusts another CA */
      {"tls+tcp", "srv", 0, "tls+tcp", "wrongca",
       "does not trust this node's certificate",
       "certificate verification failed: unable to get local issuer "
       "certificate (the peer's certificate is not signed by a CA in "
       "link.tls.ca)"},
      /* a's certificate expired */
      {"tls+tcp", "expired", 0, "tls+tcp", "ca",
       "certificate expired", "certificate has expired"},
      /* a's certificate is self-signed */
      {"tls+tcp", "self", 0, "tls+tcp", "ca",
       "does not trust this node's certificate", "self-signed certificate"},
      /* a's certificate names another host */
      {"tls+tcp", "other", 0, "tls+tcp", "ca", "alert bad certificate",
       "does not name the address dialled"},
      /* a requires a client certificate, b has none */
      {"tls+tcp", "srv", 1, "tls+tcp",
       "ca", "peer did not return a certificate",
       "alert certificate required"},
      /* a plain client at a TLS listener */
      {"tls+tcp", "srv", 0, "tcp", NULL,
       "refused: this listener (tls+tcp://", "speaks TLS: dial it with "
       "tls+tcp://"},
      /* a TLS client at a plain listener */
      {"tcp", NULL, 0, "tls+tcp", "ca",
       "refused: the peer speaks TLS and this link",
       "the peer answered in plain text"},
  };
  static log_capture la, lb;
  size_t r;
  CHECK(make_certs());
  uv_mutex_init(&la.lock);
  uv_mutex_init(&lb.lock);
  for (r = 0; r < sizeof R / sizeof R[0]; r++) {
    char links[4096], keys[1024], more[512], url[128];
    int port = test_free_port();
    myc_engine *a, *b;
    more[0] = '\0';
    if (R[r].a_verify_client)
      snprintf(more, sizeof more, "ca = \"%s/ca.crt\", verify_client = true",
               certs);
    if (R[r].a_cert != NULL)
      snprintf(links, sizeof links,
               "listen = { \"%s://127.0.0.1:%d\" }, link = { %s }",
               R[r].a_scheme, port,
               tls_keys(keys, sizeof keys, R[r].a_cert, NULL, more));
    else
      snprintf(links, sizeof links, "listen = { \"%s://127.0.0.1:%d\" }",
               R[r].a_scheme, port);
    a = engine("ra", links);
    snprintf(url, sizeof url, "%s://127.0.0.1:%d", R[r].b_scheme, port);
    snprintf(links, sizeof links,
             "connect = { \"%s\" }, link = { reconnect_initial_ms = 50, "
             "reconnect_max_ms = 200, %s }",
             url, R[r].b_ca ? tls_keys(keys, sizeof keys, NULL, R[r].b_ca,
                                       NULL)
                            : "");
    b = engine("rb", links);
    CHECK(a != NULL && b != NULL);
    capture(a, &la);
    capture(b, &lb);
    CHECK_EQ(start(a), 0);
    CHECK_EQ(start(b), 0);
    CHECK(refused_both(a, b));
    myc_engine_free(b);
    myc_engine_free(a);
    {
      int ok = logged(&la, R[r].a_says) && logged(&lb, R[r].b_says) &&
               logged(&lb, url) && logged(&la, "link 127.0.0.1 (");
      if (!ok || getenv("MYC_TEST_SHOW_LOGS") != NULL)
        fprintf(stderr, "case %zu\na logged:\n%s\nb logged:\n%s\n", r,
                la.text, lb.text);
      CHECK(ok);
    }
  }
  uv_mutex_destroy(&la.lock);
  uv_mutex_destroy(&lb.lock);
}

/* A raw TCP listener that accepts one connection, reads what comes (a
 * ClientHello) and closes: the peer died mid-handshake. */
static int raw_listener(int *port) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4) != 0)
    return -1;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  *port = ntohs(sa.sin_port);
  return fd;
}

/* Peers that die or stall in the TLS handshake cost only their
 * connection: the listener goes on and links a good peer after them. */
static void tls_peers_dying_mid_handshake(void) {
  char url[128], keys[1024], links[2048];
  static log_capture la, lb;
  static sink s;
  uint8_t hello[16] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc};
  myc_engine *a, *b;
  int port = test_free_port(), fd, lfd, rport, cfd;
  char buf[4096];
  CHECK(make_certs());
  memset(&s, 0, sizeof s);
  uv_mutex_init(&la.lock);
  uv_mutex_init(&lb.lock);
  snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", port);
  snprintf(links, sizeof links,
           "listen = { \"%s\" }, link = { handshake_timeout_ms = 300, %s }",
           url, tls_keys(keys, sizeof keys, "srv", NULL, NULL));
  a = engine("da", links);
  CHECK(a != NULL);
  capture(a, &la);
  CHECK_EQ(start(a), 0);
  /* A client that sends half a ClientHello and hangs up. */
  for (fd = -1, cfd = 0; fd < 0 && cfd < 100; cfd++)
    if ((fd = dial_tcp(port)) < 0)
      sleep_ms(10);
  CHECK(fd >= 0);
  CHECK(write(fd, hello, sizeof hello) == (ssize_t)sizeof hello);
  sleep_ms(50);
  close(fd);
  /* One that sends half and stalls. */
  fd = dial_tcp(port);
  CHECK(fd >= 0);
  CHECK(write(fd, hello, sizeof hello) == (ssize_t)sizeof hello);
  CHECK(closed_by_peer(fd));
  close(fd);
  CHECK(logged(&la, "hung up during the TLS handshake"));
  CHECK(logged(&la, "handshake not finished within 300 ms"));
  /* A listener that dies once it has b's ClientHello. */
  lfd = raw_listener(&rport);
  CHECK(lfd >= 0);
  snprintf(links, sizeof links,
           "connect = { \"tls+tcp://127.0.0.1:%d\", \"%s\" }, link = { "
           "reconnect_initial_ms = 20, reconnect_max_ms = 100, %s }",
           rport, url, tls_keys(keys, sizeof keys, NULL, "ca", NULL));
  b = engine("db", links);
  CHECK(b != NULL);
  capture(b, &lb);
  CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &s, -1), 0);
  CHECK_EQ(start(b), 0);
  cfd = accept(lfd, NULL, NULL);
  CHECK(cfd >= 0);
  CHECK(read(cfd, buf, sizeof buf) > 0);
  close(cfd);
  close(lfd);
  /* b's other link, to a, works all along. */
  CHECK(wait_peer(a, "up", 1, NULL));
  publish_seq(a, "swaps.v2", 1, 100);
  CHECK(wait_count(&s.n, 100));
  CHECK(logged(&lb, "hung up during the TLS handshake"));
  myc_engine_free(b);
  myc_engine_free(a);
  uv_mutex_destroy(&la.lock);
  uv_mutex_destroy(&lb.lock);
}

/* A pre-shared key proven inside TLS: the same key links, another is
 * refused on both sides. */
static void tls_with_pre_shared_keys(void) {
  char k1[256], k2[256], url[128], keys[1024], links[3072];
  static log_capture la, lb;
  static sink s;
  int round;
  CHECK(make_certs());
  key_file("tk1", "a-key-of-thirty-two-bytes-here!!\n", 0600, k1, sizeof k1);
  key_file("tk2", "another-key-of-thirty-two-bytes!\n", 0600, k2, sizeof k2);
  uv_mutex_init(&la.lock);
  uv_mutex_init(&lb.lock);
  for (round = 0; round < 2; round++) {
    myc_engine *a, *b;
    snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", test_free_port());
    snprintf(links, sizeof links,
             "listen = { \"%s\" }, link = { psk_file = \"%s\", %s }", url, k1,
             tls_keys(keys, sizeof keys, "srv", NULL, NULL));
    a = engine("ka", links);
    snprintf(links, sizeof links,
             "connect = { \"%s\" }, link = { psk_file = \"%s\", %s }", url,
             round == 0 ? k1 : k2, tls_keys(keys, sizeof keys, NULL, "ca", NULL));
    b = engine("kb", links);
    CHECK(a != NULL && b != NULL);
    capture(a, &la);
    capture(b, &lb);
    memset(&s, 0, sizeof s);
    CHECK_EQ(myc_engine_add_c_service(b, "sink", "swaps.*", on_sink, &s, -1),
             0);
    CHECK_EQ(start(a), 0);
    CHECK_EQ(start(b), 0);
    if (round == 0) {
      CHECK(wait_peer(a, "up", 1, NULL));
      publish_seq(a, "swaps.v2", 1, 1000);
      CHECK(wait_count(&s.n, 1000));
    } else {
      CHECK(refused_both(a, b));
    }
    myc_engine_free(b);
    myc_engine_free(a);
    if (round == 1)
      CHECK(logged(&la, "proof does not match") &&
            logged(&lb, "proof does not match"));
  }
  uv_mutex_destroy(&la.lock);
  uv_mutex_destroy(&lb.lock);
}

/* Bad TLS settings stop the engine before it starts, saying which. */
static void tls_settings_are_checked(void) {
  char links[2048];
  CHECK(make_certs());
  /* A listener without a certificate. */
  CHECK(engine("xa", "listen = { \"tls+tcp://127.0.0.1:0\" }") == NULL);
  CHECK(strstr(last_err, "a tls+tcp:// listener needs link.tls.cert and "
                         "link.tls.key") != NULL);
  /* A key that is not the certificate's. */
  snprintf(links, sizeof links,
           "listen = { \"tls+tcp://127.0.0.1:0\" }, link = { tls = { cert = "
           "\"%s/srv.crt\", key = \"%s/client.key\" } }",
           certs, certs);
  CHECK(engine("xb", links) == NULL);
  CHECK(strstr(last_err, "cannot load private key: key values mismatch") !=
        NULL);
  /* A CA file that is not there. */
  snprintf(links, sizeof links,
           "connect = { \"tls+tcp://127.0.0.1:9\" }, link = { tls = { ca = "
           "\"%s/nope.crt\" } }",
           certs);
  CHECK(engine("xc", links) == NULL);
  CHECK(strstr(last_err, "link.tls.ca '") != NULL &&
        strstr(last_err, "nope.crt': cannot open: No such file") != NULL);
  {
    myc__link_config c;
    myc__links *L;
    myc_engine *e = engine("xd", "workers = 1");
    const char *u = "tls+tcp://127.0.0.1:0";
    char err[512];
    CHECK(e != NULL);
    myc__link_config_init(&c);
    CHECK_EQ(myc__links_attach(e, &c, &u, 1, NULL, 0, &L, err, sizeof err),
             MYC_EINVAL);
    CHECK(strstr(err, "needs link.tls.cert and link.tls.key") != NULL);
    myc_engine_free(e);
  }
}

int main(void) {
  static const test_case cases[] = {
      {"over_unix", over_unix},
      {"a_peer_is_bounded_by_the_topic_quota",
       a_peer_is_bounded_by_the_topic_quota},
      {"a_peer_is_bounded_by_max_subscriptions",
       a_peer_is_bounded_by_max_subscriptions},
      {"over_tcp", over_tcp},
      {"over_unix_on_a_worker_loop", over_unix_on_a_worker_loop},
      {"over_tcp_on_a_worker_loop", over_tcp_on_a_worker_loop},
      {"hostile_peers_on_a_worker_loop", hostile_peers_on_a_worker_loop},
      {"tls_on_a_worker_loop", tls_on_a_worker_loop},
      {"long_queues_are_written_a_part_at_a_time",
       long_queues_are_written_a_part_at_a_time},
      {"emits_on_the_links_worker_skip_the_mailbox",
       emits_on_the_links_worker_skip_the_mailbox},
      {"emits_on_the_links_worker_are_bounded_by_the_queue",
       emits_on_the_links_worker_are_bounded_by_the_queue},
      {"a_turn_emitting_past_the_queue_writes_it_out",
       a_turn_emitting_past_the_queue_writes_it_out},
      {"a_long_queue_taken_in_parts_keeps_order",
       a_long_queue_taken_in_parts_keeps_order},
      {"messages_of_one_shape_are_checked_once",
       messages_of_one_shape_are_checked_once},
      {"a_start_failing_on_a_worker_loop_closes_everything",
       a_start_failing_on_a_worker_loop_closes_everything},
      {"three_engines_fan_out_one_hop", three_engines_fan_out_one_hop},
      {"reads_leave_turns_to_the_handlers", reads_leave_turns_to_the_handlers},
      {"a_full_reject_mailbox_pauses_the_link_thread",
       a_full_reject_mailbox_pauses_the_link_thread},
      {"a_full_reject_mailbox_pauses_a_worker_loop",
       a_full_reject_mailbox_pauses_a_worker_loop},
      {"a_full_drop_oldest_mailbox_drops", a_full_drop_oldest_mailbox_drops},
      {"pattern_changes_apply_to_the_topic_being_sent",
       pattern_changes_apply_to_the_topic_being_sent},
      {"hostile_peers_lose_only_their_link",
       hostile_peers_lose_only_their_link},
      {"direct_writes_keep_order_through_partial_writes",
       direct_writes_keep_order_through_partial_writes},
      {"v1_peer_gets_typed_messages", v1_peer_gets_typed_messages},
      {"unix_peers_are_checked_against_allow_uids",
       unix_peers_are_checked_against_allow_uids},
      {"unknown_v1_types_follow_the_policy", unknown_v1_types_follow_the_policy},
      {"links_run_on_the_worker_they_are_given",
       links_run_on_the_worker_they_are_given},
      {"bad_urls_are_refused_with_the_key", bad_urls_are_refused_with_the_key},
      {"pre_shared_keys_guard_tcp_links", pre_shared_keys_guard_tcp_links},
      {"tls_links_carry_what_tcp_links_do", tls_links_carry_what_tcp_links_do},
      {"tls_carries_a_large_message_intact",
       tls_carries_a_large_message_intact},
      {"tls_refusals_are_clear_on_both_sides",
       tls_refusals_are_clear_on_both_sides},
      {"tls_peers_dying_mid_handshake", tls_peers_dying_mid_handshake},
      {"tls_with_pre_shared_keys", tls_with_pre_shared_keys},
      {"tls_settings_are_checked", tls_settings_are_checked},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
