/* churn.c -- part of the "services" scenario: services spawned and killed
 * in a running engine (myc_engine_spawn/myc_engine_kill, two workers, the
 * trivial service of bench/lua/trivial.lua), a window of 100 alive at a
 * time while the host publishes to all of them.  Reports spawn + kill
 * pairs per second and the RSS after 10 000 and after 100 000 spawns
 * (flat: a removal gives everything back).  Baseline, in the same child
 * process: 1 000 configured services added and started
 * (myc_engine_add_service + myc_engine_start), per service.  Each run is
 * a child process, so that its RSS starts clean. */
#include "bench.h"
#include "mycelium.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHURN_RUNS 3
#define WINDOW 100

typedef struct {
  double pairs_per_s, ms_per_pair, rss_warm_kb, rss_end_kb, base_ms;
  double dropped;
} churn_sample;

static void quiet(void *ud, int level, const char *line, size_t len) {
  (void)ud, (void)level, (void)line, (void)len;
}

static double rss_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = 0;
  fclose(f);
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1024.0;
}

static void *run_engine(void *arg) {
  myc_engine_run(arg, 0);
  return NULL;
}

static myc_engine *new_engine(void) {
  myc_engine_config cfg;
  myc_engine *e = NULL;
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.max_services = 1000000;
  cfg.log_fn = getenv("BENCH_LOG") ? NULL : quiet;
  return myc_engine_new(&e, &cfg) == 0 ? e : NULL;
}

/* The baseline: 1 000 services added before the start, ms per service. */
static int baseline(const char *path, double *ms) {
  myc_engine *e = new_engine();
  myc_service_config sc;
  char name[32], err[1024];
  double t0;
  int i;
  if (e == NULL)
    return 1;
  t0 = bench_now();
  for (i = 0; i < 1000; i++) {
    memset(&sc, 0, sizeof sc);
    snprintf(name, sizeof name, "b%d", i);
    sc.name = name;
    sc.module = path;
    sc.worker = -1;
    if (myc_engine_add_service(e, &sc, err, sizeof err) != 0)
      return 1;
  }
  if (myc_engine_start(e, err, sizeof err) != 0)
    return 1;
  *ms = (bench_now() - t0) * 1e3 / 1000;
  myc_engine_free(e);
  return 0;
}

static int churn_once(int n, void *arg) {
  churn_sample *out = arg;
  myc_engine *e;
  myc_service_config sc;
  myc_lifecycle_stats st;
  char path[1024], name[32], err[1024];
  pthread_t th;
  double t0, waited;
  int i;

  snprintf(path, sizeof path, "%s/trivial.lua", MYC_BENCH_LUA_DIR);
  if (baseline(path, &out->base_ms) != 0 || (e = new_engine()) == NULL)
    return 1;
  if (myc_engine_start(e, err, sizeof err) != 0)
    return 1;
  pthread_create(&th, NULL, run_engine, e);
  memset(&sc, 0, sizeof sc);
  sc.module = path;
  sc.worker = -1;
  t0 = bench_now();
  for (i = 0; i < n; i++) {
    snprintf(name, sizeof name, "s%d", i);
    sc.name = name;
    if (myc_engine_spawn(e, &sc, err, sizeof err) != 0) {
      fprintf(stderr, "bench: services churn: %s\n", err);
      return 1;
    }
    if (i % 16 == 0)
      myc_publish(e, "bench.tick", MYC_KIND_RAW, 0, "", 0);
    if (i >= WINDOW) {
      snprintf(name, sizeof name, "s%d", i - WINDOW);
      if (myc_engine_kill(e, name, err, sizeof err) != 0) {
        fprintf(stderr, "bench: services churn: %s\n", err);
        return 1;
      }
    }
    if (i + 1 == n / 10)
      out->rss_warm_kb = rss_kb();
  }
  for (i = n - WINDOW; i < n; i++) {
    snprintf(name, sizeof name, "s%d", i);
    (void)myc_engine_kill(e, name, err, sizeof err);
  }
  /* Every removal freed, before the clock stops. */
  waited = bench_now();
  do {
    myc_engine_lifecycle_stats(e, &st);
    if (st.pending_free == 0 && st.services == 0)
      break;
    usleep(200);
  } while (bench_now() - waited < 30);
  out->pairs_per_s = n / (bench_now() - t0);
  out->ms_per_pair = 1e3 / out->pairs_per_s;
  out->rss_end_kb = rss_kb();
  out->dropped = (double)st.dropped;
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  if (st.pending_free != 0 || st.removed != (uint64_t)n) {
    fprintf(stderr, "bench: services churn: %u not freed, %llu removed\n",
            st.pending_free, (unsigned long long)st.removed);
    return 1;
  }
  myc_engine_free(e);
  return 0;
}

int bench_services_churn(void) {
  int n = (int)(100000 * bench_scale()), i;
  double rate[CHURN_RUNS], pair[CHURN_RUNS], warm[CHURN_RUNS], end[CHURN_RUNS],
      growth[CHURN_RUNS], base[CHURN_RUNS], ratio[CHURN_RUNS];
  char metric[64], note[128];
  if (n < 10 * WINDOW)
    n = 10 * WINDOW;
  for (i = 0; i < CHURN_RUNS; i++) {
    churn_sample s;
    if (bench_in_child(churn_once, n, &s, sizeof s) != 0) {
      fprintf(stderr, "bench: services: churn of %d spawns failed\n", n);
      return 1;
    }
    fprintf(stderr,
            "services churn: %d spawns run %d: %.0f spawn+kill/s "
            "(%.3f ms each), RSS %.0f KB after %d, %.0f KB after %d; "
            "baseline add+start %.3f ms per service\n",
            n, i + 1, s.pairs_per_s, s.ms_per_pair, s.rss_warm_kb, n / 10,
            s.rss_end_kb, n, s.base_ms);
    rate[i] = s.pairs_per_s;
    pair[i] = s.ms_per_pair;
    warm[i] = s.rss_warm_kb;
    end[i] = s.rss_end_kb;
    growth[i] = s.rss_end_kb - s.rss_warm_kb;
    base[i] = s.base_ms;
    ratio[i] = s.ms_per_pair / s.base_ms;
  }
  snprintf(metric, sizeof metric, "churn_n%d_spawn_kill_per_s", n);
  bench_report_runs("services", metric, rate, CHURN_RUNS, "/s",
                    "spawn + kill pairs, 100 alive, 2 workers");
  snprintf(metric, sizeof metric, "churn_n%d_ms_per_spawn_kill", n);
  bench_report_runs("services", metric, pair, CHURN_RUNS, "ms", "");
  bench_report_runs("services", "churn_baseline_add_start_ms", base, CHURN_RUNS,
                    "ms",
                    "1 000 configured services: add + start, per service");
  bench_report_runs("services", "churn_ratio_to_baseline", ratio, CHURN_RUNS,
                    "x", "spawn+kill / add+start");
  snprintf(metric, sizeof metric, "churn_rss_kb_after_%d", n / 10);
  bench_report_runs("services", metric, warm, CHURN_RUNS, "KB", "");
  snprintf(metric, sizeof metric, "churn_rss_kb_after_%d", n);
  bench_report_runs("services", metric, end, CHURN_RUNS, "KB", "");
  snprintf(note, sizeof note, "RSS after %d spawns minus after %d", n, n / 10);
  bench_report_runs("services", "churn_rss_growth_kb", growth, CHURN_RUNS, "KB",
                    note);
  return 0;
}
