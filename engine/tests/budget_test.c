/* budget_test.c -- the memory and load budgets on threaded engines, also
 * under ASan and TSan: a handler that goes over its memory limit in
 * JIT-compiled code crashes alone (its Lua state abandoned and closed,
 * nothing leaked), a reload whose module loops is refused within its
 * budget on the loader thread while the engine keeps working, and a stop
 * interrupts a load under way. */
#include "test.h"
#include "test_engine.h"

#include "control_client.h"

#include "mycelium.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_budget_test_XXXXXX";

static void count(void *ud, const myc_message *m) {
  (void)m;
  atomic_fetch_add((_Atomic int *)ud, 1);
}

typedef struct {
  myc_engine *e;
  int rc;
} runner;

static void *run_engine(void *arg) {
  runner *r = arg;
  r->rc = myc_engine_run(r->e, 0);
  return NULL;
}

/* Waits up to 'seconds' for service 'i' to have restarted 'n' times. */
static int restarted(myc_engine *e, uint32_t i, uint64_t n, double seconds) {
  myc_service_stats st;
  double t0 = test_now_s();
  do {
    myc_engine_service_stats(e, i, &st);
    if (st.restarts >= n && strcmp(st.state, "running") == 0)
      return 1;
    usleep(5000);
  } while (test_now_s() - t0 < seconds);
  return 0;
}

/* The report's handler (strings, the error caught three times), and one
 * whose compiled loop never leaves its trace (the collector stopped, the
 * table preallocated): only the ceiling stops it. */
static const char hog_src[] =
    "local ffi = require 'ffi'\n"
    "local keep = {}\n"
    "return { subscribe = { 'in' }, on_message = function(ctx, msg)\n"
    "  if msg.data == 'pcall' then\n"
    "    for j = 1, 3 do pcall(function()\n"
    "      for i = 1, 1e9 do keep[#keep + 1] = string.rep('y', 100) .. i end\n"
    "    end) end\n"
    "  elseif msg.data == 'cdata' then\n"
    "    collectgarbage('stop')\n"
    "    local t = require('table.new')(1e6, 0)\n"
    "    keep[1] = t\n"
    "    for i = 1, 1e9 do t[i % 1e6 + 1] = ffi.new('int[4]') end\n"
    "  end\n"
    "  ctx:emit('out', msg.data)\n"
    "end }\n";

static const char echo_src[] =
    "return { subscribe = { 'ping' },\n"
    "  on_message = function(ctx, msg) ctx:emit('pong', msg.data) end }\n";

static void memory_crash_in_compiled_code_is_contained(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  myc_service_stats st;
  _Atomic int pongs = 0, outs = 0;
  char err[512];
  runner r;
  pthread_t th;
  const char *ways[] = {"pcall", "cdata"};
  int k, i;

  myc_engine_config_init(&cfg);
  cfg.workers = 1; /* the echo shares the hog's worker */
  cfg.log_fn = test_quiet_log;
  cfg.supervisor.backoff_initial_ms = 1;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  sc.name = "hog";
  sc.module = test_module(tmpdir, "hog.lua", hog_src);
  sc.memory_limit_mb = 16;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  sc.name = "echo";
  sc.module = test_module(tmpdir, "echo.lua", echo_src);
  sc.memory_limit_mb = 0;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "pongs", "pong", count, &pongs, 0), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "outs", "out", count, &outs, 0), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  r.e = e;
  CHECK_EQ(pthread_create(&th, NULL, run_engine, &r), 0);
  for (k = 0; k < 2; k++) {
    CHECK_EQ(myc_publish(e, "in", MYC_KIND_RAW, 0, ways[k], strlen(ways[k])),
             0);
    CHECK(restarted(e, 0, (uint64_t)k + 1, 30));
    CHECK_EQ(myc_publish(e, "ping", MYC_KIND_RAW, 0, "x", 1), 0);
  }
  for (i = 0; i < 2000 && atomic_load(&pongs) < 2; i++)
    usleep(1000);
  CHECK_EQ(atomic_load(&pongs), 2);
  CHECK_EQ(atomic_load(&outs), 0); /* nothing ran past the limit */
  myc_engine_service_stats(e, 0, &st);
  CHECK_EQ(st.errors, 2);
  CHECK(st.memory_bytes < 16u << 20);
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  CHECK_EQ(r.rc, 0);
  myc_engine_free(e);
}

static const char worker_src[] =
    "return { subscribe = { 'in' },\n"
    "  on_message = function(ctx, msg) ctx:emit('out', msg.data) end }\n";

/* A threaded engine running service "w" (worker_src) with a load budget
 * of 'load_ms', and a C service counting its output in 'outs'; its
 * myc_engine_run() on thread '*th'.  NULL when it did not start. */
static myc_engine *start_worker(double load_ms, _Atomic int *outs,
                                runner *r, pthread_t *th) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  char err[512];
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  if (myc_engine_new(&e, &cfg) != 0)
    return NULL;
  sc.name = "w";
  sc.module = test_module(tmpdir, "w.lua", worker_src);
  sc.load_timeout_ms = load_ms;
  r->e = e;
  if (myc_engine_add_service(e, &sc, err, sizeof err) != 0 ||
      myc_engine_add_c_service(e, "outs", "out", count, outs, 0) != 0 ||
      myc_engine_start(e, err, sizeof err) != 0 ||
      pthread_create(th, NULL, run_engine, r) != 0) {
    myc_engine_free(e);
    return NULL;
  }
  return e;
}

static void looping_reload_is_refused_within_its_budget(void) {
  myc_engine *e;
  myc_service_stats st;
  _Atomic int outs = 0;
  char err[512];
  runner r;
  pthread_t th;
  double t0, took;
  int i;

  CHECK((e = start_worker(300, &outs, &r, &th)) != NULL);
  t0 = test_now_s();
  CHECK_EQ(myc_engine_reload(e, "w", test_module(tmpdir, "spin.lua", "while true do end"),
                             err, sizeof err),
           MYC_ELUA);
  took = test_now_s() - t0;
  CHECK(took >= 0.25 && took < 5);
  CHECK(strstr(err, "load budget of 300 ms") != NULL);
  CHECK_EQ(myc_publish(e, "in", MYC_KIND_RAW, 0, "x", 1), 0);
  for (i = 0; i < 2000 && atomic_load(&outs) < 1; i++)
    usleep(1000);
  CHECK_EQ(atomic_load(&outs), 1);
  myc_engine_service_stats(e, 0, &st);
  CHECK_EQ(st.version, 1);
  CHECK_EQ(st.reload_failures, 1);
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  myc_engine_free(e);
}

typedef struct {
  myc_engine *e;
  const char *module;
  int rc;
  char err[512];
} reloader;

static void *reload_thread(void *arg) {
  reloader *rl = arg;
  rl->rc = myc_engine_reload(rl->e, "w", rl->module, rl->err, sizeof rl->err);
  return NULL;
}

/* A load under way (5 s of budget) does not hold the stop. */
static void stop_interrupts_a_load(void) {
  myc_engine *e;
  _Atomic int outs = 0;
  runner r;
  reloader rl;
  pthread_t th, rt;
  double t0;

  CHECK((e = start_worker(5000, &outs, &r, &th)) != NULL);
  rl.e = e;
  rl.module = test_module(tmpdir, "spin.lua", "while true do end");
  CHECK_EQ(pthread_create(&rt, NULL, reload_thread, &rl), 0);
  usleep(300000);
  t0 = test_now_s();
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  pthread_join(rt, NULL);
  CHECK(test_now_s() - t0 < 3);
  CHECK(rl.rc != 0);
  myc_engine_free(e);
}

static const char slow_src[] =
    "jit.off()\n"
    "return { subscribe = { 'slow' }, on_message = function(ctx)\n"
    "  local t0 = os.clock()\n"
    "  while os.clock() - t0 < 5 do end\n"
    "end }\n";

typedef struct {
  const char *sock, *req;
  char reply[1024];
} requester;

static void *request_thread(void *arg) {
  requester *q = arg;
  if (control_request(q->sock, q->req, q->reply, sizeof q->reply) < 0)
    snprintf(q->reply, sizeof q->reply, "cannot connect");
  return NULL;
}

/* While a reload asked on the control socket loads code that loops, the
 * socket answers and the watchdog still interrupts a handler past its
 * budget: the load runs on the loader thread, not the monitor's. */
static void control_and_watchdog_answer_during_a_looping_reload(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  myc_service_stats st;
  char err[512], sock[300], url[320], req[400], reply[8192];
  runner r;
  requester q;
  pthread_t th, rt;
  double t0;
  int seen = 0;

  snprintf(sock, sizeof sock, "%s/ctl.sock", tmpdir);
  snprintf(url, sizeof url, "unix://%s", sock);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.control = url;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  sc.name = "w";
  sc.module = test_module(tmpdir, "w.lua", worker_src);
  /* The reload's budget: long enough for the watchdog to act meanwhile
   * on a loaded machine (and below the control channel's 10 s wait). */
  sc.load_timeout_ms = 5000;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  sc.name = "slow";
  sc.module = test_module(tmpdir, "slow.lua", slow_src);
  sc.handler_timeout_ms = 100;
  /* Loading (under a sanitizer, on a busy machine) may take more than
   * the 100 ms of a handler. */
  sc.load_timeout_ms = 30000;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  r.e = e;
  CHECK_EQ(pthread_create(&th, NULL, run_engine, &r), 0);
  snprintf(req, sizeof req, "reload w %s\n",
           test_module(tmpdir, "spin.lua", "while true do end"));
  q.sock = sock;
  q.req = req;
  CHECK_EQ(pthread_create(&rt, NULL, request_thread, &q), 0);
  usleep(200000);
  t0 = test_now_s();
  CHECK(control_request(sock, "ping\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "\"ok\":true") != NULL);
  CHECK_EQ(myc_publish(e, "slow", MYC_KIND_RAW, 0, "x", 1), 0);
  while (!seen && test_now_s() - t0 < 4) {
    usleep(5000);
    myc_engine_service_stats(e, 1, &st);
    seen = st.timeouts == 1 && st.errors == 1;
  }
  CHECK(seen); /* before the reload's 5 s */
  pthread_join(rt, NULL);
  CHECK(strstr(q.reply, "load budget of 5000 ms") != NULL);
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"memory_crash_in_compiled_code_is_contained",
       memory_crash_in_compiled_code_is_contained},
      {"looping_reload_is_refused_within_its_budget",
       looping_reload_is_refused_within_its_budget},
      {"stop_interrupts_a_load", stop_interrupts_a_load},
      {"control_and_watchdog_answer_during_a_looping_reload",
       control_and_watchdog_answer_during_a_looping_reload},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
