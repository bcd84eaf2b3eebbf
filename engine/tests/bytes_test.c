/* bytes_test.c -- the byte bounds of mailboxes end to end, with threads
 *: a flood of large messages across workers, or from a host
 * thread, holds at most a few mailboxes' worth of bytes in the engine, and
 * every message is handled or counted as lost. */
#include "test.h"

#include "test_engine.h"

#include "base/alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_bytes_test_XXXXXX";

#define MB (1024 * 1024)

/* Counts the engine's live bytes and their peak (messages are the large
 * part); the Lua heaps go to the default allocator, not counted. */
static _Atomic long long live, peak;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  void *p;
  long long now;
  (void)ud;
  if (nsize == 0) {
    if (ptr != NULL)
      atomic_fetch_sub(&live, (long long)osize);
    free(ptr);
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p == NULL)
    return NULL;
  now = atomic_fetch_add(&live, (long long)nsize - (ptr ? (long long)osize : 0)) +
        (long long)nsize - (ptr ? (long long)osize : 0);
  for (long long old = atomic_load(&peak); now > old;)
    if (atomic_compare_exchange_weak(&peak, &old, now))
      break;
  return p;
}

static _Atomic uint64_t handled;
static _Atomic int gate_closed;

/* The consumer: stuck until the test opens the gate, so that the flood
 * meets full bounds however fast each side runs. */
static void slow_cb(void *ud, const myc_message *m) {
  (void)ud;
  (void)m;
  while (atomic_load(&gate_closed))
    usleep(1000);
  atomic_fetch_add(&handled, 1);
}

static const char flood_src[] =
    "local M = { subscribe = { 'go' } }\n"
    "local big = string.rep('x', 1024 * 1024)\n"
    "local sent = 0\n"
    "function M.init(ctx) ctx:emit('go', '') end\n"
    "function M.on_message(ctx)\n"
    "  for i = 1, 10 do sent = sent + 1 ctx:emit('data', big) end\n"
    "  if sent < 300 then ctx:emit('go', '') end\n"
    "end\n"
    "return M\n";

/* A 1 MiB message at a time to a consumer on another worker, 300 of them,
 * against a mailbox of 64 messages and 8 MiB: without the byte bound the
 * engine held 64 in the mailbox and 128 in transit, 192 MiB. */
static void cross_worker_flood_of_large_messages_is_bounded(void) {
  myc_engine_config cfg;
  myc_service_config sc;
  myc_service_stats st;
  myc_engine *e;
  char err[512], path[512];

  atomic_store(&live, 0);
  atomic_store(&peak, 0);
  atomic_store(&handled, 0);
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.alloc = counting_alloc;
  cfg.lua_alloc = myc__default_alloc;
  cfg.mailbox.capacity = 64;
  cfg.mailbox.policy = MYC_POLICY_DROP_NEWEST;
  cfg.mailbox.max_bytes = 8 * MB;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  snprintf(path, sizeof path, "%s", test_module(tmpdir, "flood.lua", flood_src));
  memset(&sc, 0, sizeof sc);
  sc.name = "flood";
  sc.module = path;
  sc.worker = 0;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "slow", "data", slow_cb, NULL, 1), 0);
  atomic_store(&gate_closed, 1);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  do {
    usleep(10000);
    myc_engine_service_stats(e, 0, &st);
  } while (st.out < 300 + 30); /* the data and its 'go's */
  atomic_store(&gate_closed, 0);
  do {
    usleep(10000);
    myc_engine_service_stats(e, 1, &st);
  } while (atomic_load(&handled) + st.dropped < 300);
  myc_engine_stop(e, 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  myc_engine_service_stats(e, 1, &st);
  myc_engine_free(e);
  remove(path);
  CHECK(st.dropped_newest > 0);
  CHECK_EQ(atomic_load(&handled) + st.dropped, 300);
  /* 8 MiB queued, 16 in transit, a run staged, the frame being made. */
  printf("  (peak %lld MiB)\n", atomic_load(&peak) / MB);
  CHECK(atomic_load(&peak) < 40LL * MB);
}

typedef struct {
  myc_engine *e;
  int refused;
} publisher;

static void *publish_flood(void *arg) {
  publisher *p = arg;
  char *big = calloc(1, MB);
  int i;
  for (i = 0; i < 200; i++)
    if (myc_publish(p->e, "data", MYC_KIND_RAW, 0, big, MB) != 0)
      p->refused++;
  free(big);
  return NULL;
}

/* A host thread publishing faster than the consumer takes: bounded in
 * bytes in transit too (not in messages: that is unchanged). */
static void host_flood_of_large_messages_is_bounded(void) {
  myc_engine_config cfg;
  myc_service_stats st;
  myc_engine *e;
  publisher pub = {NULL, 0};
  pthread_t th;
  char err[256];

  atomic_store(&live, 0);
  atomic_store(&peak, 0);
  atomic_store(&handled, 0);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.alloc = counting_alloc;
  cfg.mailbox.capacity = 1024;
  cfg.mailbox.policy = MYC_POLICY_REJECT;
  cfg.mailbox.max_bytes = 8 * MB;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "slow", "data", slow_cb, NULL, 0), 0);
  atomic_store(&gate_closed, 1);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  pub.e = e;
  CHECK_EQ(pthread_create(&th, NULL, publish_flood, &pub), 0);
  pthread_join(th, NULL);
  atomic_store(&gate_closed, 0);
  myc_engine_stop(e, 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  myc_engine_service_stats(e, 0, &st);
  myc_engine_free(e);
  /* Refused at the sender (the bytes in transit), then by the mailbox
   * once handed over. */
  CHECK(pub.refused > 0);
  CHECK(st.rejected >= (uint64_t)pub.refused);
  CHECK_EQ(atomic_load(&handled) + st.dropped, 200);
  printf("  (peak %lld MiB)\n", atomic_load(&peak) / MB);
  CHECK(atomic_load(&peak) < 40LL * MB);
}

int main(void) {
  static const test_case cases[] = {
      {"cross-worker flood of large messages is bounded",
       cross_worker_flood_of_large_messages_is_bounded},
      {"host flood of large messages is bounded",
       host_flood_of_large_messages_is_bounded},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  rmdir(tmpdir);
  return rc;
}
