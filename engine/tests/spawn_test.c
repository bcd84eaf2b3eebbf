/* spawn_test.c -- services added and removed while a threaded engine runs
 * (myc_engine_spawn, myc_engine_kill, ctx:spawn, ctx:kill): spawned and
 * killed in a loop while other workers and a host thread keep emitting to
 * them, every byte is given back (a counting allocator here, and ASan's
 * leak check in the asan build); the refusals say why.
 *
 *   MYC_SPAWN_ITERATIONS=N build/tests/spawn_test_asan  (default 600)
 */
#include "test.h"
#include "test_engine.h"

#include "runtime/engine.h"
#include "supervise/control.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static char tmpdir[] = "/tmp/myc_spawn_XXXXXX";
static char child_path[512], pump_path[512], killer_path[512];
static char victim_path[512];

typedef struct {
  _Atomic long long bytes;
  _Atomic long long blocks;
} counter;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counter *c = ud;
  void *p;
  if (nsize == 0) {
    if (ptr != NULL) {
      atomic_fetch_sub(&c->bytes, (long long)osize);
      atomic_fetch_sub(&c->blocks, 1);
    }
    free(ptr);
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p == NULL)
    return NULL;
  atomic_fetch_add(&c->bytes, (long long)nsize - (ptr ? (long long)osize : 0));
  if (ptr == NULL)
    atomic_fetch_add(&c->blocks, 1);
  return p;
}

static myc_engine *threaded_engine(counter *c, int with_pump) {
  myc_engine_config cfg;
  myc_service_config sc;
  myc_engine *e = NULL;
  char err[512];
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.alloc = counting_alloc;
  cfg.alloc_ud = c;
  if (getenv("MYC_SPAWN_LOG") == NULL)
    cfg.log_fn = test_quiet_log;
  if (myc_engine_new(&e, &cfg) != 0)
    return NULL;
  if (with_pump) {
    memset(&sc, 0, sizeof sc);
    sc.name = "pump";
    sc.module = pump_path;
    sc.worker = 0;
    if (myc_engine_add_service(e, &sc, err, sizeof err) != 0) {
      fprintf(stderr, "%s\n", err);
      myc_engine_free(e);
      return NULL;
    }
  }
  if (myc_engine_start(e, err, sizeof err) != 0) {
    myc_engine_free(e);
    return NULL;
  }
  return e;
}

static void run_thread(void *arg) { myc_engine_run(arg, 0); }

/* Waits (at most 10 s) until the removals are freed and 'n' services
 * are left. */
static int settled(myc_engine *e, uint32_t n) {
  double until = test_now_s() + 10;
  myc_lifecycle_stats st;
  do {
    myc_engine_lifecycle_stats(e, &st);
    if (st.pending_free == 0 && st.services == n)
      return 1;
    uv_sleep(1);
  } while (test_now_s() < until);
  fprintf(stderr, "not settled: %u services, %u pending\n", st.services,
          st.pending_free);
  return 0;
}

static int iterations(void) {
  const char *s = getenv("MYC_SPAWN_ITERATIONS");
  return s ? atoi(s) : 600;
}

/* Children on both workers subscribe to "tick", which a service on
 * worker 0 and the host emit all the time, while they are spawned and
 * killed: no message may reach a freed service, nothing may stay. */
static void churn_under_traffic_leaves_nothing(void) {
  counter c = {0, 0};
  myc_engine *e = threaded_engine(&c, 1);
  uv_thread_t t;
  myc_service_config sc;
  myc_lifecycle_stats st;
  char name[32], err[512];
  int i, n = iterations(), rc;
  CHECK(e != NULL);
  CHECK_EQ(uv_thread_create(&t, run_thread, e), 0);
  memset(&sc, 0, sizeof sc);
  sc.module = child_path;
  sc.restart = MYC_RESTART_TRANSIENT;
  for (i = 0; i < n; i++) {
    snprintf(name, sizeof name, "c%d", i);
    sc.name = name;
    sc.worker = i % 2;
    rc = myc_engine_spawn(e, &sc, err, sizeof err);
    if (rc != 0)
      fprintf(stderr, "spawn %s: %s\n", name, err);
    CHECK_EQ(rc, 0);
    myc_publish(e, "tick", MYC_KIND_RAW, 0, "h", 1);
    /* A window of eight live ones: each is killed a little later. */
    if (i >= 8) {
      snprintf(name, sizeof name, "c%d", i - 8);
      CHECK_EQ(myc_engine_kill(e, name, err, sizeof err), 0);
    }
  }
  for (i = n - 8; i < n; i++) {
    snprintf(name, sizeof name, "c%d", i);
    CHECK_EQ(myc_engine_kill(e, name, err, sizeof err), 0);
  }
  CHECK(settled(e, 1));
  myc_engine_lifecycle_stats(e, &st);
  CHECK_EQ(st.spawned, (uint64_t)n);
  CHECK_EQ(st.removed, (uint64_t)n);
  myc_engine_stop(e, 0);
  uv_thread_join(&t);
  myc_engine_free(e);
  CHECK_EQ(atomic_load(&c.bytes), 0);
  CHECK_EQ(atomic_load(&c.blocks), 0);
}

/* Services that spawn and kill from their handlers on both workers, and
 * kill themselves, while the engine stops in the middle of it. */
static void services_spawn_and_kill_each_other(void) {
  counter c = {0, 0};
  myc_engine *e = threaded_engine(&c, 0);
  uv_thread_t t;
  myc_service_config sc;
  myc_lifecycle_stats st;
  char err[512];
  int i;
  CHECK(e != NULL);
  memset(&sc, 0, sizeof sc);
  sc.module = killer_path;
  for (i = 0; i < 2; i++) {
    sc.name = i ? "k1" : "k0";
    sc.worker = i;
    CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), 0);
  }
  CHECK_EQ(uv_thread_create(&t, run_thread, e), 0);
  for (i = 0; i < 200; i++) {
    myc_publish(e, "go", MYC_KIND_RAW, 0, i % 2 ? "k1" : "k0", 2);
    if (i % 20 == 0)
      uv_sleep(1);
  }
  /* Both kill themselves at their 60th "go" (of 100 each); of their
   * children, the last two of each may live. */
  {
    double until = test_now_s() + 20;
    do {
      myc_engine_lifecycle_stats(e, &st);
      uv_sleep(2);
    } while ((st.spawned < 2 + 2 * 60 || st.removed < 2 + 2 * 57) &&
             test_now_s() < until);
  }
  /* The engine stops while removals may still be under way. */
  myc_engine_stop(e, 0);
  uv_thread_join(&t);
  myc_engine_free(e);
  CHECK(st.spawned >= 2 + 2 * 60);
  CHECK(st.removed >= 2 + 2 * 57);
  CHECK_EQ(atomic_load(&c.bytes), 0);
}

static void refusals_say_why(void) {
  counter c = {0, 0};
  myc_engine *e = threaded_engine(&c, 1);
  uv_thread_t t;
  myc_service_config sc;
  char err[512];
  const char *bad = test_module(tmpdir, "bad.lua", "return {\n");
  CHECK(e != NULL);
  CHECK_EQ(uv_thread_create(&t, run_thread, e), 0);
  memset(&sc, 0, sizeof sc);
  sc.worker = -1;
  sc.name = "pump";
  sc.module = child_path;
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), MYC_EEXIST);
  CHECK_STR(err, "spawn of 'pump': the name is taken by a running service");
  sc.name = "broken";
  sc.module = bad;
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), MYC_ELUA);
  CHECK(strstr(err, "bad.lua:") != NULL);
  sc.module = child_path;
  sc.group = "g";
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), MYC_EINVAL);
  sc.group = NULL;
  sc.worker = 7;
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), MYC_EINVAL);
  CHECK_EQ(myc_engine_kill(e, "nobody", err, sizeof err), MYC_ENOENT);
  CHECK_STR(err, "kill: no service named 'nobody'");
  CHECK_EQ(myc_engine_kill(e, "bad name", err, sizeof err), MYC_EINVAL);
  CHECK_EQ(myc_engine_kill(e, "pump", err, sizeof err), 0);
  CHECK_EQ(myc_engine_kill(e, "pump", err, sizeof err), MYC_ENOENT);
  CHECK(settled(e, 0));
  myc_engine_stop(e, 0);
  uv_thread_join(&t);
  sc.worker = -1;
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), MYC_ESTOPPED);
  CHECK_EQ(myc_engine_kill(e, "broken", err, sizeof err), MYC_ESTATE);
  myc_engine_free(e);
  CHECK_EQ(atomic_load(&c.bytes), 0);
}

/* Status (text and JSON) lists a spawned service with its spawner, and
 * the engine's spawn and removal counts. */
static void status_lists_spawned(void) {
  myc_engine *e = test_manual_engine();
  myc_service_config sc;
  char err[512], *out = NULL;
  size_t len = 0;
  CHECK(e != NULL);
  memset(&sc, 0, sizeof sc);
  sc.name = "kid";
  sc.module = child_path;
  sc.worker = -1;
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), 0);
  sc.name = "gone";
  CHECK_EQ(myc_engine_spawn(e, &sc, err, sizeof err), 0);
  myc_engine_run_once(e, 0);
  CHECK_EQ(myc_engine_kill(e, "gone", err, sizeof err), 0);
  myc_engine_run_once(e, 0);
  CHECK_EQ(myc__control_status(e, 0, &out, &len), 0);
  CHECK(strstr(out, "\"lifecycle\":{\"spawned\":2,\"removed\":1,") != NULL);
  CHECK(strstr(out, "{\"name\":\"kid\"") != NULL);
  CHECK(strstr(out, "\"spawned_by\":\"\"") != NULL);
  CHECK(strstr(out, "\"gone\"") == NULL);
  myc__free(&e->alloc, out, len);
  CHECK_EQ(myc__control_status(e, 1, &out, &len), 0);
  CHECK(strstr(out, "1 service; 2 spawned, 1 removed") != NULL);
  CHECK(strstr(out, "\nkid ") != NULL);
  myc__free(&e->alloc, out, len);
  myc_engine_free(e);
}

static void count_cb(void *ud, const myc_message *msg) {
  (void)msg;
  (*(int *)ud)++;
}

/* max_services counts every service, C ones too; the default holds
 * MYC_DEFAULT_MAX_SERVICES. */
static void max_services_bounds_every_kind(void) {
  myc_engine_config cfg;
  myc_engine *e = NULL;
  char name[32];
  int i, got = 0;
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  for (i = 0; i < MYC_DEFAULT_MAX_SERVICES; i++) {
    snprintf(name, sizeof name, "c%d", i);
    CHECK_EQ(myc_engine_add_c_service(e, name, "tick", count_cb, &got, -1), 0);
  }
  CHECK_EQ(myc_engine_add_c_service(e, "one_more", "tick", count_cb, &got, -1),
           MYC_ELIMIT);
  myc_engine_free(e);
}

/* Removing N services one by one, oldest first, costs O(1) each in the
 * registry and in a topic all N subscribe to: counted in slots and
 * entries read or moved (e->registry_work, e->topics.work), not timed.
 * Moving the later services down on each removal, or copying the
 * subscriber list, is O(N^2) (2 * 10^8 here) and fails this.  The
 * services left stay listed in the order they came. */
static void removals_cost_o1(void) {
  enum { N = 20000 };
  myc_engine_config cfg;
  myc_engine *e = NULL;
  myc_service_stats st;
  char name[32];
  int i, got = 0;
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.max_services = N;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  for (i = 0; i < N; i++) {
    snprintf(name, sizeof name, "c%d", i);
    CHECK_EQ(myc_engine_add_c_service(e, name, "tick", count_cb, &got, -1), 0);
  }
  CHECK_EQ(myc_engine_start(e, NULL, 0), 0);
  e->registry_work = 0;
  e->topics.work = 0;
  for (i = 0; i < N; i++) {
    myc_service *s;
    if (i % 4 == 3)
      continue; /* every fourth stays */
    snprintf(name, sizeof name, "c%d", i);
    s = myc__engine_find(e, name, strlen(name));
    CHECK(s != NULL);
    CHECK_EQ(myc__engine_remove(e, s, "test"), 0);
    if (i % 1000 == 0)
      myc_engine_run_once(e, 0);
  }
  myc_engine_run_once(e, 0);
  CHECK(e->registry_work <= 4 * (uint64_t)N);
  /* The table's compactions count its whole hash tables: still O(N). */
  CHECK(e->topics.work <= 40 * (uint64_t)N);
  CHECK_EQ(myc_engine_service_count(e), N / 4);
  /* By rank, in the order they were added. */
  for (i = 0; i < N / 4; i++) {
    CHECK_EQ(myc_engine_service_stats(e, (uint32_t)i, &st), 0);
    snprintf(name, sizeof name, "c%d", 4 * i + 3);
    CHECK_STR(st.name, name);
  }
  CHECK_EQ(myc_engine_service_stats(e, N / 4, &st), MYC_ENOENT);
  CHECK_EQ(myc_engine_service_stats(e, 7, &st), 0); /* a jump back */
  CHECK_STR(st.name, "c31");
  CHECK(e->registry_work <= 6 * (uint64_t)N);
  /* Each one left gets the message once. */
  CHECK_EQ(myc_publish(e, "tick", MYC_KIND_RAW, 0, "x", 1), 0);
  myc_engine_run_once(e, 0);
  CHECK_EQ(got, N / 4);
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"churn_under_traffic_leaves_nothing", churn_under_traffic_leaves_nothing},
      {"services_spawn_and_kill_each_other", services_spawn_and_kill_each_other},
      {"refusals_say_why", refusals_say_why},
      {"status_lists_spawned", status_lists_spawned},
      {"removals_cost_o1", removals_cost_o1},
      {"max_services_bounds_every_kind", max_services_bounds_every_kind},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  snprintf(child_path, sizeof child_path, "%s",
           test_module(tmpdir, "child.lua",
                       "local n = 0\n"
                       "return { handlers = { tick = function(ctx, msg)\n"
                       "  n = n + 1\n"
                       "  ctx:emit('tock', msg.data) end },\n"
                       "  init = function(ctx) ctx:every(1, function()\n"
                       "    ctx:emit('tick', 't') end) end }\n"));
  snprintf(pump_path, sizeof pump_path, "%s",
           test_module(tmpdir, "pump.lua",
                       "return { handlers = { tock = function() end },\n"
                       "  init = function(ctx) ctx:every(1, function()\n"
                       "    for i = 1, 20 do ctx:emit('tick', 'p') end\n"
                       "  end) end }\n"));
  snprintf(victim_path, sizeof victim_path, "%s",
           test_module(tmpdir, "victim.lua",
                       "return { handlers = { die = function(ctx, msg)\n"
                       "  if msg.data == ctx.name then ctx:kill(ctx.name) end\n"
                       "end } }\n"));
  /* Relative to its own file: victim.lua is found beside it. */
  snprintf(killer_path, sizeof killer_path, "%s",
           test_module(tmpdir, "killer.lua",
                       "local n = 0\n"
                       "return { handlers = { go = function(ctx, msg)\n"
                       "  if msg.data ~= ctx.name then return end\n"
                       "  n = n + 1\n"
                       "  assert(ctx:spawn(ctx.name .. '.' .. n, 'victim.lua',\n"
                       "                   { restart = 'temporary' }))\n"
                       "  ctx:emit('die', ctx.name .. '.' .. (n - 1))\n"
                       "  ctx:kill(ctx.name .. '.' .. (n - 2))\n"
                       "  if n == 60 then ctx:kill(ctx.name) end\n"
                       "end } }\n"));
  rc = run_tests(cases);
  unlink(child_path);
  unlink(pump_path);
  unlink(killer_path);
  unlink(victim_path);
  unlink(test_module(tmpdir, "bad.lua", ""));
  rmdir(tmpdir);
  return rc;
}
