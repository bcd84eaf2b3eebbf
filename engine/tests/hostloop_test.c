/* hostloop_test.c -- engines on a host's libuv loop
 * (myc_engine_start_on_loop), and services added after a start. */
#include "test.h"
#include "test_engine.h"

#include <stdatomic.h>
#include <unistd.h>
#include <uv.h>

static char tmpdir[] = "/tmp/myc_hostloop_XXXXXX";

/* What a C service saw, and on which thread. */
typedef struct {
  _Atomic int got;
  _Atomic int off_host;
  uv_thread_t host;
  char last[64];
  int stopped, code;
} sink;

static void sink_init(sink *s) {
  memset(s, 0, sizeof *s);
  s->host = uv_thread_self();
  s->code = -1;
}

static void on_msg(void *ud, const myc_message *m) {
  sink *s = ud;
  uv_thread_t self = uv_thread_self();
  snprintf(s->last, sizeof s->last, "%.*s", (int)m->len, (const char *)m->data);
  if (!uv_thread_equal(&self, &s->host))
    atomic_fetch_add(&s->off_host, 1);
  atomic_fetch_add(&s->got, 1);
}

static void on_stopped(void *ud, int code) {
  sink *s = ud;
  s->stopped++;
  s->code = code;
}

static myc_engine *engine(uint32_t workers, myc_log_fn log, void *log_ud) {
  myc_engine_config cfg;
  myc_engine *e = NULL;
  myc_engine_config_init(&cfg);
  cfg.workers = workers;
  cfg.log_level = MYC_LOG_WARN;
  cfg.log_fn = log;
  cfg.log_ud = log_ud;
  return myc_engine_new(&e, &cfg) == 0 ? e : NULL;
}

static int add_lua(myc_engine *e, const char *name, const char *src,
                   int32_t worker) {
  myc_service_config sc;
  char file[64], path[512], err[512];
  int rc;
  snprintf(file, sizeof file, "%s.lua", name);
  snprintf(path, sizeof path, "%s", test_module(tmpdir, file, src));
  memset(&sc, 0, sizeof sc);
  sc.name = name;
  sc.module = path;
  sc.worker = worker;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "%s\n", err);
  return rc;
}

/* ---- an idle engine does not keep the host's loop busy ------------------ */

typedef struct {
  int iterations;
  uv_check_t check;
  uv_timer_t end;
  myc_engine *e;
} counting;

static void on_check(uv_check_t *h) {
  counting *c = h->data;
  c->iterations++;
}

static void on_end(uv_timer_t *t) {
  counting *c = t->data;
  myc_engine_stop(c->e, 0);
  uv_close((uv_handle_t *)&c->check, NULL);
  uv_close((uv_handle_t *)&c->end, NULL);
}

static void idle_engine_lets_the_loop_sleep(void) {
  myc_engine *e = engine(1, NULL, NULL);
  uv_loop_t loop;
  counting c;
  sink s;
  char err[256];
  CHECK(e != NULL);
  sink_init(&s);
  /* A timer of worker 0 every 50 ms: the host's loop must wake for it,
   * and sleep in between. */
  CHECK_EQ(add_lua(e, "ticker",
                   "return { init = function(ctx)\n"
                   "  ctx:every(50, function(ctx) ctx:emit('tick', 'x') end)\n"
                   "end }\n",
                   0),
           0);
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "tick", on_msg, &s, 0), 0);
  CHECK_EQ(uv_loop_init(&loop), 0);
  memset(&c, 0, sizeof c);
  c.e = e;
  uv_check_init(&loop, &c.check);
  uv_timer_init(&loop, &c.end);
  c.check.data = c.end.data = &c;
  uv_check_start(&c.check, on_check);
  uv_timer_start(&c.end, on_end, 500, 0);
  CHECK_EQ(myc_engine_start_on_loop(e, &loop, on_stopped, &s, err, sizeof err),
           0);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  printf("500 ms: %d ticks, %d loop iterations\n", atomic_load(&s.got),
         c.iterations);
  /* 500 ms of 50 ms ticks: about 10 (a loaded machine skips some), each
   * a few iterations (the timer, the turn); a loop spinning would run
   * thousands. */
  CHECK(atomic_load(&s.got) >= 3 && atomic_load(&s.got) <= 11);
  CHECK(c.iterations < 200);
  CHECK_EQ(atomic_load(&s.off_host), 0);
  CHECK_EQ(s.stopped, 1);
  myc_engine_free(e);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- worker 0 on the loop, worker 1 a thread ----------------------------- */

typedef struct {
  myc_engine *e;
  int rc;
} publisher;

static void publish_from_thread(void *arg) {
  publisher *p = arg;
  p->rc = myc_publish(p->e, "in", MYC_KIND_RAW, 0, "thread", 6);
}

static void stop_from_thread(void *arg) {
  myc_engine_stop(arg, 5);
}

static void messages_cross_between_the_loop_and_threads(void) {
  myc_engine *e = engine(2, NULL, NULL);
  uv_loop_t loop;
  uv_thread_t t;
  publisher p;
  sink s;
  char err[256];
  int i;
  CHECK(e != NULL);
  sink_init(&s);
  /* The Lua service on a thread, the C service on the loop's thread. */
  CHECK_EQ(add_lua(e, "echo",
                   "return { handlers = { ['in'] = function(ctx, msg)\n"
                   "  ctx:emit('out', msg.data .. '!') end } }\n",
                   1),
           0);
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "out", on_msg, &s, 0), 0);
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(myc_engine_start_on_loop(e, &loop, on_stopped, &s, err, sizeof err),
           0);
  /* Not while it runs on a loop: the stop comes through on_stopped. */
  CHECK_EQ(myc_engine_run(e, 0), MYC_ESTATE);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), MYC_ESTATE);
  p.e = e;
  p.rc = -1;
  CHECK_EQ(uv_thread_create(&t, publish_from_thread, &p), 0);
  uv_thread_join(&t);
  CHECK_EQ(p.rc, 0);
  for (i = 0; i < 5000 && atomic_load(&s.got) == 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_sleep(1);
  }
  CHECK_EQ(atomic_load(&s.got), 1);
  CHECK_STR(s.last, "thread!");
  CHECK_EQ(atomic_load(&s.off_host), 0);
  /* A stop from another thread reaches the loop. */
  CHECK_EQ(uv_thread_create(&t, stop_from_thread, e), 0);
  uv_thread_join(&t);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(s.stopped, 1);
  CHECK_EQ(s.code, 5);
  myc_engine_free(e);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- freed before it stopped --------------------------------------------- */

static void freed_while_running_stops_first(void) {
  myc_engine *e = engine(2, NULL, NULL);
  uv_loop_t loop;
  sink s;
  char err[256], path[512];
  FILE *f;
  int i;
  CHECK(e != NULL);
  sink_init(&s);
  snprintf(path, sizeof path, "%s/stopped.txt", tmpdir);
  unlink(path);
  /* Its stop writes a file: the services' stop ran. */
  {
    char src[1024];
    snprintf(src, sizeof src,
             "return { handlers = { ['in'] = function(ctx, msg)\n"
             "  ctx:emit('out', msg.data) end },\n"
             "  stop = function(ctx)\n"
             "    local f = io.open('%s', 'w') f:write('stopped') f:close()\n"
             "  end }\n",
             path);
    CHECK_EQ(add_lua(e, "keeper", src, 0), 0);
  }
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "out", on_msg, &s, 1), 0);
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(myc_engine_start_on_loop(e, &loop, on_stopped, &s, err, sizeof err),
           0);
  CHECK_EQ(myc_publish(e, "in", MYC_KIND_RAW, 0, "a", 1), 0);
  for (i = 0; i < 5000 && atomic_load(&s.got) == 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_sleep(1);
  }
  CHECK_EQ(atomic_load(&s.got), 1);
  /* Queued, not handled yet: the drain before the stop delivers it. */
  CHECK_EQ(myc_publish(e, "in", MYC_KIND_RAW, 0, "b", 1), 0);
  myc_engine_free(e);
  CHECK_EQ(atomic_load(&s.got), 2);
  CHECK_EQ(s.stopped, 0); /* freed: nobody is left to tell */
  f = fopen(path, "r");
  CHECK(f != NULL);
  fclose(f);
  unlink(path);
  /* The engine's handles close on the loop's next turn. */
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- what it refuses ---------------------------------------------------- */

static void bad_starts_are_refused(void) {
  myc_engine *e = test_manual_engine(), *t;
  uv_loop_t loop;
  char err[256];
  CHECK(e != NULL);
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(myc_engine_start_on_loop(e, &loop, NULL, NULL, err, sizeof err),
           MYC_ESTATE);
  CHECK(strstr(err, "manual") != NULL);
  myc_engine_free(e);
  t = engine(1, NULL, NULL);
  CHECK(t != NULL);
  CHECK_EQ(myc_engine_start_on_loop(t, NULL, NULL, NULL, err, sizeof err),
           MYC_EINVAL);
  /* A failing init: nothing is left on the loop. */
  CHECK_EQ(add_lua(t, "broken",
                   "return { init = function() error('no luck') end,\n"
                   "  on_message = function() end }\n",
                   0),
           0);
  CHECK_EQ(myc_engine_start_on_loop(t, &loop, NULL, NULL, err, sizeof err),
           MYC_ELUA);
  CHECK(strstr(err, "no luck") != NULL);
  myc_engine_free(t);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- services added after the start ------------------------------------- */

typedef struct {
  char line[1024];
} log_capture;

static void capture(void *ud, int level, const char *line, size_t len) {
  log_capture *c = ud;
  if (level == MYC_LOG_ERROR)
    snprintf(c->line, sizeof c->line, "%.*s", (int)len, line);
}

static void late_services_are_refused_with_the_reason(void) {
  log_capture logs;
  myc_engine *e;
  myc_service_config sc;
  sink s;
  char err[512];
  memset(&logs, 0, sizeof logs);
  e = engine(1, capture, &logs);
  CHECK(e != NULL);
  sink_init(&s);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "late", "x", on_msg, &s, -1),
           MYC_ESTATE);
  CHECK(strstr(logs.line, "service 'late' not added: the engine is running") !=
        NULL);
  CHECK(strstr(logs.line, "before myc_engine_start()") != NULL);
  memset(&sc, 0, sizeof sc);
  sc.name = "late_lua";
  sc.module = "unused.lua";
  sc.worker = -1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), MYC_ESTATE);
  CHECK(strstr(err, "service 'late_lua' not added: the engine is running") !=
        NULL);
  CHECK_EQ(myc_engine_service_count(e), 0);
  /* Freed while it runs: it stops first. */
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"idle_engine_lets_the_loop_sleep", idle_engine_lets_the_loop_sleep},
      {"messages_cross_between_the_loop_and_threads",
       messages_cross_between_the_loop_and_threads},
      {"freed_while_running_stops_first", freed_while_running_stops_first},
      {"bad_starts_are_refused", bad_starts_are_refused},
      {"late_services_are_refused_with_the_reason",
       late_services_are_refused_with_the_reason},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      rc = 1;
  }
  return rc;
}
