/* lifecycle_test.c -- engines started and stopped over and over in one
 * process leave nothing behind: every byte the engine and its Lua states
 * allocated is freed when each engine is, and the resident set stops
 * growing after a warm-up.  Half the engines run on their own threads,
 * half on a host loop (myc_engine_start_on_loop).
 *
 *   MYC_LIFECYCLE_ITERATIONS=N build/tests/lifecycle_test_asan  (default 1000)
 */
#include "test.h"
#include "test_engine.h"

#include <stdatomic.h>
#include <unistd.h>
#include <uv.h>

#ifdef MYC_TEST_ASAN
/* Freed blocks wait in ASan's quarantine (256 MB by default) before they
 * are reused: a small one lets the resident set settle within the
 * warm-up, so growth after it means memory kept. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "quarantine_size_mb=8";
}
#endif

/* Live bytes and blocks of everything an engine allocates, from any
 * thread. */
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

static long rss_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static char tmpdir[] = "/tmp/myc_lifecycle_XXXXXX";
static char echo_path[512];

typedef struct {
  _Atomic int got;
  int stopped, code;
} sink;

static void on_out(void *ud, const myc_message *m) {
  sink *s = ud;
  if (m->len == 3 && memcmp(m->data, "hi!", 3) == 0)
    atomic_fetch_add(&s->got, 1);
}

static void on_stopped(void *ud, int code) {
  sink *s = ud;
  s->stopped = 1;
  s->code = code;
}

/* When the echo arrives on a host loop: asks for the stop. */
static myc_engine *loop_engine;
static sink *loop_sink;

static void on_out_loop(void *ud, const myc_message *m) {
  on_out(ud, m);
  if (atomic_load(&loop_sink->got) == 1)
    myc_engine_stop(loop_engine, 3);
}

/* One engine's life: new, a Lua and a C service, start, one message
 * through both, stop, free.  Returns 0 or the line that failed. */
static int one_engine(counter *c, uv_loop_t *loop, int on_loop) {
  myc_engine_config cfg;
  myc_service_config sc;
  myc_engine *e;
  sink s;
  char err[512];
  int i;
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_level = MYC_LOG_ERROR;
  cfg.alloc = cfg.lua_alloc = counting_alloc;
  cfg.alloc_ud = cfg.lua_alloc_ud = c;
  memset(&s, 0, sizeof s);
  if (myc_engine_new(&e, &cfg) != 0)
    return __LINE__;
  memset(&sc, 0, sizeof sc);
  sc.name = "echo";
  sc.module = echo_path;
  sc.worker = 1;
  if (myc_engine_add_service(e, &sc, err, sizeof err) != 0 ||
      myc_engine_add_c_service(e, "sink", "out", on_loop ? on_out_loop : on_out,
                               &s, 0) != 0) {
    fprintf(stderr, "%s\n", err);
    myc_engine_free(e);
    return __LINE__;
  }
  if (on_loop) {
    loop_engine = e;
    loop_sink = &s;
    if (myc_engine_start_on_loop(e, loop, on_stopped, &s, err, sizeof err) !=
            0 ||
        myc_publish(e, "in", MYC_KIND_RAW, 0, "hi", 2) != 0) {
      myc_engine_free(e);
      return __LINE__;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    myc_engine_free(e);
    return s.stopped && s.code == 3 && atomic_load(&s.got) == 1 ? 0 : __LINE__;
  }
  if (myc_engine_start(e, err, sizeof err) != 0 ||
      myc_publish(e, "in", MYC_KIND_RAW, 0, "hi", 2) != 0) {
    myc_engine_free(e);
    return __LINE__;
  }
  for (i = 0; i < 5000 && atomic_load(&s.got) == 0; i++)
    uv_sleep(1);
  myc_engine_stop(e, 0);
  if (myc_engine_run(e, 0) != 0 || atomic_load(&s.got) != 1) {
    myc_engine_free(e);
    return __LINE__;
  }
  myc_engine_free(e);
  return 0;
}

static void start_stop_loop_leaves_nothing_behind(void) {
  const char *env = getenv("MYC_LIFECYCLE_ITERATIONS");
  int n = env ? atoi(env) : 1000, warm = n / 5, i;
  long rss_warm = 0, rss_end;
  counter c;
  uv_loop_t loop;
  uint64_t t0 = uv_hrtime();
  CHECK(n >= 10);
  atomic_init(&c.bytes, 0);
  atomic_init(&c.blocks, 0);
  CHECK_EQ(uv_loop_init(&loop), 0);
  for (i = 0; i < n; i++) {
    int line = one_engine(&c, &loop, i % 2);
    if (line != 0)
      fprintf(stderr, "iteration %d failed at line %d\n", i, line);
    CHECK_EQ(line, 0);
    /* Everything is freed with the engine, each time. */
    CHECK_EQ(atomic_load(&c.bytes), 0);
    CHECK_EQ(atomic_load(&c.blocks), 0);
    if (i == warm)
      rss_warm = rss_kb();
  }
  rss_end = rss_kb();
  CHECK_EQ(uv_loop_close(&loop), 0);
  printf("%d engines in %.1f s; resident set %ld kB after %d, %ld kB after "
         "%d\n",
         n, (double)(uv_hrtime() - t0) / 1e9, rss_warm, warm + 1, rss_end, n);
  /* A Lua state kept per engine would be hundreds of kB each. */
  CHECK(rss_warm > 0 && rss_end > 0);
  CHECK(rss_end - rss_warm < 8 * 1024);
}

int main(void) {
  static const test_case cases[] = {{"start_stop_loop_leaves_nothing_behind",
                                     start_stop_loop_leaves_nothing_behind},
                                    {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  snprintf(echo_path, sizeof echo_path, "%s",
           test_module(tmpdir, "echo.lua",
                       "return { handlers = { ['in'] = function(ctx, msg)\n"
                       "  ctx:emit('out', msg.data .. '!') end } }\n"));
  rc = run_tests(cases);
  unlink(echo_path);
  rmdir(tmpdir);
  return rc;
}
