/* many_services_test.c -- an engine of a few thousand Lua services on two
 * workers starts, every service handles a message fanned out to all of
 * them, and each service's Lua state stays small: what a service costs
 * does not hide a regression until a benchmark runs. */
#include "test.h"
#include "test_engine.h"

#include "runtime/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#ifdef MYC_TEST_ASAN
#define N 400 /* each state is several times slower to make under ASan */
#else
#define N 2000
#endif

static char tmpdir[] = "/tmp/myc_many_XXXXXX";

typedef struct {
  _Atomic int acks;
  _Atomic int bad;
  unsigned char seen[N];
} acks;

/* Each ack comes from "svc<i>": its source names the service. */
static void on_ack(void *ud, const myc_message *m) {
  acks *a = ud;
  char src[16];
  int i = -1;
  if (m->source_len > 3 && m->source_len < sizeof src) {
    memcpy(src, m->source, m->source_len);
    src[m->source_len] = '\0';
    i = atoi(src + 3);
  }
  if (i < 0 || i >= N || a->seen[i]++ != 0)
    atomic_fetch_add(&a->bad, 1);
  atomic_fetch_add(&a->acks, 1);
}

static void *run_engine(void *e) {
  myc_engine_run(e, 0);
  return NULL;
}

static void every_service_starts_and_handles_a_message(void) {
  static acks a;
  myc_engine_config cfg;
  myc_service_config sc;
  myc_engine *e;
  pthread_t th;
  char name[32], err[512];
  const char *path;
  size_t most = 0;
  double t0;
  int i;

  path = test_module(tmpdir, "tick.lua",
                     "local n = 0\n"
                     "return { handlers = { ['many.tick'] = function(ctx)\n"
                     "  n = n + 1\n"
                     "  ctx:emit('many.ack', 'ok')\n"
                     "end } }\n");
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_fn = test_quiet_log;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  memset(&a, 0, sizeof a);
  CHECK_EQ(myc_engine_add_c_service(e, "acks", "many.ack", on_ack, &a, 0), 0);
  for (i = 0; i < N; i++) {
    memset(&sc, 0, sizeof sc);
    snprintf(name, sizeof name, "svc%d", i);
    sc.name = name;
    sc.module = path;
    sc.worker = -1;
    CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  }
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  /* Before any handler ran: what loading the runtime and the module
   * left in each state. */
  for (i = 0; i < N; i++) {
    int len = snprintf(name, sizeof name, "svc%d", i);
    myc_service *s = myc__engine_find(e, name, (size_t)len);
    size_t used;
    CHECK(s != NULL);
    used = atomic_load(&s->mem[atomic_load(&s->mem_cur)].used);
    most = used > most ? used : most;
  }
  CHECK(most < 256u << 10);
  CHECK_EQ(pthread_create(&th, NULL, run_engine, e), 0);
  CHECK_EQ(myc_publish(e, "many.tick", MYC_KIND_RAW, 0, "", 0), 0);
  t0 = test_now_s();
  while (atomic_load(&a.acks) < N && test_now_s() - t0 < 60)
    usleep(1000);
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  CHECK_EQ(atomic_load(&a.acks), N);
  CHECK_EQ(atomic_load(&a.bad), 0);
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"every_service_starts_and_handles_a_message",
       every_service_starts_and_handles_a_message},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
