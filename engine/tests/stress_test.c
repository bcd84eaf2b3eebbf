/* stress_test.c -- several producers on several workers against several
 * consumers: per-producer order, no duplicates, exact counts, and a stop
 * under full load that loses nothing it accepted (everything is either
 * handled or counted as dropped).  Also built with ThreadSanitizer. */
#include "test.h"

#include "mycelium.h"

#include <stdatomic.h>
#include <unistd.h>
#include <uv.h>

#define PRODUCERS 4
#define CONSUMERS 3

static char tmpdir[] = "/tmp/myc_stress_test_XXXXXX";

/* Producer 'opts.id' emits "id seq" on stress.data, 500 per turn, pausing
 * while consumers are over half full; with opts.total = 0 it never stops.
 * Its stop logs how many emits were accepted. */
static const char producer_src[] =
    "local M = {}\n"
    "local id, total, sent, pub, go\n"
    "function M.init(ctx, opts)\n"
    "  id, total, sent = opts.id, opts.total, 0\n"
    "  pub = ctx:publisher('stress.data')\n"
    "  go = 'stress.go.' .. id\n"
    "  ctx:subscribe(go)\n"
    "  ctx:emit(go, '')\n"
    "end\n"
    "function M.on_message(ctx)\n"
    "  if ctx:pressure('stress.data') > 0.5 then return ctx:emit(go, '') end\n"
    "  for _ = 1, 500 do\n"
    "    if total > 0 and sent == total then return end\n"
    "    if pub(id .. ' ' .. (sent + 1)) then sent = sent + 1 end\n"
    "  end\n"
    "  ctx:emit(go, '')\n"
    "end\n"
    "function M.stop(ctx) ctx.log:info('sent', { id = id, n = sent }) end\n"
    "return M\n";

typedef struct {
  _Atomic uint64_t received;
  _Atomic uint64_t errors; /* out of order, duplicated or unreadable */
  uint64_t last[PRODUCERS];
} checker;

static void check_cb(void *ud, const myc_message *m) {
  checker *c = ud;
  char text[64];
  unsigned id = 0;
  unsigned long long seq = 0;
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  /* Gaps are allowed here (a message dropped for a full mailbox is
   * counted, and the tests check the counts); going back is not. */
  if (sscanf(text, "%u %llu", &id, &seq) != 2 || id >= PRODUCERS ||
      seq <= c->last[id])
    atomic_fetch_add(&c->errors, 1);
  else
    c->last[id] = seq;
  atomic_fetch_add(&c->received, 1);
}

typedef struct {
  _Atomic uint64_t sent;
  _Atomic int reports;
} sent_log;

static void log_cb(void *ud, int level, const char *line, size_t len) {
  sent_log *s = ud;
  const char *p = strstr(line, " n=");
  (void)level;
  (void)len;
  if (strstr(line, "] sent ") != NULL && p != NULL) {
    atomic_fetch_add(&s->sent, strtoull(p + 3, NULL, 10));
    atomic_fetch_add(&s->reports, 1);
  }
}

static size_t pack_opts(unsigned char *buf, unsigned id, uint32_t total) {
  /* {id = id, total = total}: fixmap(2), "id" fixint, "total" uint32 */
  buf[0] = 0x82;
  buf[1] = 0xa2;
  buf[2] = 'i';
  buf[3] = 'd';
  buf[4] = (unsigned char)id;
  buf[5] = 0xa5;
  memcpy(buf + 6, "total", 5);
  buf[11] = 0xce;
  buf[12] = (unsigned char)(total >> 24);
  buf[13] = (unsigned char)(total >> 16);
  buf[14] = (unsigned char)(total >> 8);
  buf[15] = (unsigned char)total;
  return 16;
}

typedef struct {
  myc_engine *e;
  checker c[CONSUMERS];
  sent_log log;
} rig;

static int build(rig *r, uint32_t total) {
  static const int pworker[PRODUCERS] = {0, 0, 1, 2};
  myc_engine_config cfg;
  myc_service_config sc = {0};
  unsigned char opts[PRODUCERS][16];
  char path[256], name[32], err[512];
  FILE *f;
  int i, rc;

  memset(r, 0, sizeof *r);
  snprintf(path, sizeof path, "%s/producer.lua", tmpdir);
  f = fopen(path, "w");
  fputs(producer_src, f);
  fclose(f);
  myc_engine_config_init(&cfg);
  cfg.workers = 3;
  cfg.log_fn = log_cb;
  cfg.log_ud = &r->log;
  if ((rc = myc_engine_new(&r->e, &cfg)) != 0)
    return rc;
  for (i = 0; i < PRODUCERS; i++) {
    snprintf(name, sizeof name, "producer%d", i);
    sc.name = name;
    sc.module = path;
    sc.opts = opts[i];
    sc.opts_len = pack_opts(opts[i], (unsigned)i, total);
    sc.worker = pworker[i];
    if ((rc = myc_engine_add_service(r->e, &sc, err, sizeof err)) != 0) {
      fprintf(stderr, "%s\n", err);
      return rc;
    }
  }
  for (i = 0; i < CONSUMERS; i++) {
    snprintf(name, sizeof name, "consumer%d", i);
    rc = myc_engine_add_c_service(r->e, name, "stress.data", check_cb, &r->c[i],
                                  i % 3);
    if (rc != 0)
      return rc;
  }
  return myc_engine_start(r->e, err, sizeof err);
}

static uint64_t dropped(myc_engine *e, uint32_t index) {
  myc_service_stats st;
  myc_engine_service_stats(e, index, &st);
  return st.dropped;
}

static void watcher(void *arg) {
  rig *r = arg;
  uint64_t want = (uint64_t)PRODUCERS * 30000;
  int i, spins;
  /* Stop once every consumer has everything (bounded: 60 s). */
  for (spins = 0; spins < 60000; spins++) {
    int done = 1;
    for (i = 0; i < CONSUMERS; i++)
      done &= atomic_load(&r->c[i].received) == want;
    if (done)
      break;
    usleep(1000);
  }
  myc_engine_stop(r->e, 0);
}

static void order_and_counts_across_workers(void) {
  rig r;
  uv_thread_t t;
  int i;
  CHECK_EQ(build(&r, 30000), 0);
  uv_thread_create(&t, watcher, &r);
  CHECK_EQ(myc_engine_run(r.e, 0), 0);
  uv_thread_join(&t);
  for (i = 0; i < CONSUMERS; i++) {
    CHECK_EQ(atomic_load(&r.c[i].received), PRODUCERS * 30000);
    CHECK_EQ(atomic_load(&r.c[i].errors), 0);
    CHECK_EQ(dropped(r.e, PRODUCERS + (uint32_t)i), 0);
  }
  CHECK_EQ(atomic_load(&r.log.sent), PRODUCERS * 30000);
  myc_engine_free(r.e);
}

static void stopper(void *arg) {
  rig *r = arg;
  usleep(300000);
  myc_engine_stop(r->e, 0);
}

static void stop_under_load_accounts_for_everything(void) {
  rig r;
  uv_thread_t t;
  uint64_t sent;
  int i;
  CHECK_EQ(build(&r, 0), 0);
  uv_thread_create(&t, stopper, &r);
  CHECK_EQ(myc_engine_run(r.e, 0), 0);
  uv_thread_join(&t);
  CHECK_EQ(atomic_load(&r.log.reports), PRODUCERS);
  sent = atomic_load(&r.log.sent);
  CHECK(sent > 0);
  /* once run returns, every accepted message was handled or counted as
   * dropped (at shutdown, or while running for a full mailbox) */
  for (i = 0; i < CONSUMERS; i++) {
    CHECK_EQ(atomic_load(&r.c[i].errors), 0);
    CHECK_EQ(atomic_load(&r.c[i].received) +
                 dropped(r.e, PRODUCERS + (uint32_t)i),
             sent);
  }
  myc_engine_free(r.e);
}

int main(void) {
  static const test_case cases[] = {
      {"order_and_counts_across_workers", order_and_counts_across_workers},
      {"stop_under_load_accounts_for_everything",
       stop_under_load_accounts_for_everything},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
