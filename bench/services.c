/* services.c -- what a service costs: N trivial services (one
 * subscription, a counter; bench/lua/trivial.lua) on two workers.  Each
 * run is a child process, so that its RSS starts clean.  Reports, at
 * 1 000 and 10 000 services, the RSS added per service (after
 * myc_engine_start, over an engine with none) and the wall time per
 * service from the first myc_engine_add_service to the return of
 * myc_engine_start, and the CPU time per service over the same span (the
 * process has one thread then: on a loaded machine the wall time is
 * mostly waiting for a core); then one tick fanned out to every service,
 * which each acknowledges (proof they all run).  skynet's figures, measured on
 * the same machine kind (two workers, a one-handler service), are the
 * reference: about 53 KB and 0.45 ms per service. */
#include "bench.h"
#include "mycelium.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS 5

typedef struct {
  double rss_kb, start_ms, cpu_ms, fanout_ms, stop_ms;
} sample;

typedef struct {
  myc_engine *e;
  _Atomic long acks;
} acks;

static void discard(void *ud, int level, const char *line, size_t len) {
  (void)ud;
  (void)level;
  (void)line;
  (void)len;
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

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_ack(void *ud, const myc_message *m) {
  acks *a = ud;
  (void)m;
  atomic_fetch_add(&a->acks, 1);
}

static void *run_engine(void *arg) {
  myc_engine_run(arg, 0);
  return NULL;
}

/* One run in this process: 'n' services.  Returns 0 and fills 'out'. */
static int run_once(int n, void *arg) {
  sample *out = arg;
  myc_engine_config cfg;
  myc_service_config sc;
  myc_engine *e;
  acks a;
  char path[1024], name[32], err[1024];
  double rss0, t0, t1, c0;
  pthread_t th;
  int i;

  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.max_services = 1000000;
  cfg.log_fn = getenv("BENCH_LOG") ? NULL : discard;
  if (myc_engine_new(&e, &cfg) != 0)
    return 1;
  memset(&a, 0, sizeof a);
  a.e = e;
  if (myc_engine_add_c_service(e, "acks", "bench.ack", on_ack, &a, 0) != 0)
    return 1;
  snprintf(path, sizeof path, "%s/trivial.lua", MYC_BENCH_LUA_DIR);
  rss0 = rss_kb();
  c0 = cpu_now();
  t0 = bench_now();
  for (i = 0; i < n; i++) {
    memset(&sc, 0, sizeof sc);
    snprintf(name, sizeof name, "svc%d", i);
    sc.name = name;
    sc.module = path;
    sc.worker = -1;
    if (myc_engine_add_service(e, &sc, err, sizeof err) != 0) {
      fprintf(stderr, "bench: services: %s\n", err);
      return 1;
    }
  }
  if (myc_engine_start(e, err, sizeof err) != 0) {
    fprintf(stderr, "bench: services: %s\n", err);
    return 1;
  }
  t1 = bench_now();
  out->cpu_ms = (cpu_now() - c0) * 1e3 / n;
  out->rss_kb = (rss_kb() - rss0) / n;
  out->start_ms = (t1 - t0) * 1e3 / n;
  pthread_create(&th, NULL, run_engine, e);
  t0 = bench_now();
  myc_publish(e, "bench.tick", MYC_KIND_RAW, 0, "", 0);
  while (atomic_load(&a.acks) < n && bench_now() - t0 < 60)
    usleep(200);
  out->fanout_ms = (bench_now() - t0) * 1e3;
  t0 = bench_now();
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  if (atomic_load(&a.acks) != n) {
    fprintf(stderr, "bench: services: %ld acks of %d\n",
            atomic_load(&a.acks), n);
    return 1;
  }
  myc_engine_free(e);
  out->stop_ms = (bench_now() - t0) * 1e3;
  return 0;
}

int bench_services(void) {
  static const int sizes[] = {1000, 10000};
  const char *only = getenv("BENCH_SERVICES");
  size_t k;
  /* BENCH_SERVICES=churn: the spawn + kill part alone (churn.c). */
  if (only != NULL && strcmp(only, "churn") == 0)
    return bench_services_churn();
  for (k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    int n = (int)(sizes[k] * bench_scale());
    double rss[RUNS], start[RUNS], cpu[RUNS], fan[RUNS];
    char metric[64];
    int i;
    if (n < 10)
      n = 10;
    for (i = 0; i < RUNS; i++) {
      sample s;
      if (bench_in_child(run_once, n, &s, sizeof s) != 0) {
        fprintf(stderr, "bench: services: run with %d services failed\n", n);
        return 1;
      }
      /* Each run on stderr, for a look at the spread. */
      fprintf(stderr, "services: n=%d run %d: %.1f KB, %.3f ms (CPU %.3f ms) "
              "per service, fan-out %.1f ms, stop + free %.1f ms\n", n, i + 1,
              s.rss_kb, s.start_ms, s.cpu_ms, s.fanout_ms, s.stop_ms);
      rss[i] = s.rss_kb;
      start[i] = s.start_ms;
      cpu[i] = s.cpu_ms;
      fan[i] = s.fanout_ms;
    }
    snprintf(metric, sizeof metric, "n%d_rss_kb_per_service", n);
    bench_report_runs("services", metric, rss, RUNS, "KB", "skynet: about 53 KB");
    snprintf(metric, sizeof metric, "n%d_start_ms_per_service", n);
    bench_report_runs("services", metric, start, RUNS, "ms", "add + start; skynet: about 0.45 ms");
    snprintf(metric, sizeof metric, "n%d_start_cpu_ms_per_service", n);
    bench_report_runs("services", metric, cpu, RUNS, "ms", "CPU time of the same span");
    snprintf(metric, sizeof metric, "n%d_fanout_ms", n);
    bench_report_runs("services", metric, fan, RUNS, "ms", "one tick to every service, all acked");
  }
  return bench_services_churn();
}
