/* reload.c -- supervision costs.  Reload pause: 100 hot reloads of a
 * service holding a 10 000-entry state table while a producer on another
 * worker streams sequence numbers to it (which it checks); the pause is
 * the time its worker hands it nothing (old snapshot -> copy into the new
 * state -> new init -> swap), measured by the engine.
 * Restart cost: a service that crashes on every message, restarted with
 * no backoff: wall time per crash (dead letter, log, new Lua state,
 * module load, init).
 * BENCH_VARIANT=flat10k, flat10k_loaded, pools10k or restart runs that
 * part alone; BENCH_LOG=1 prints every swap of the pause runs to stderr,
 * in order: wall pause, worker CPU and page faults (which reloads are the
 * slow ones). */
#include "bench.h"
#include "mycelium.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELOADS 100
#define ENTRIES 10000

static void discard(void *ud, int level, const char *line, size_t len) {
  (void)ud;
  (void)level;
  (void)line;
  (void)len;
}

/* What each swap cost the worker itself, from the engine's log line:
 * its CPU time and page faults do not count time spent preempted, which
 * on a shared machine can dwarf the copy. */
typedef struct {
  double wall_ms[RELOADS];
  double cpu_ms[RELOADS];
  double faults[RELOADS];
  int n;
} swap_costs;

static void on_log(void *ud, int level, const char *line, size_t len) {
  swap_costs *c = ud;
  char text[512];
  const char *p;
  double wall, cpu, faults;
  (void)level;
  if (len >= sizeof text || c->n == RELOADS)
    return;
  memcpy(text, line, len);
  text[len] = '\0';
  p = strstr(text, ", swap ");
  if (p != NULL &&
      sscanf(p, ", swap %lf ms, cpu %lf ms, %lf page faults", &wall, &cpu,
             &faults) == 3) {
    c->wall_ms[c->n] = wall;
    c->cpu_ms[c->n] = cpu;
    c->faults[c->n++] = faults;
  }
}

static void pack_num(msgpack_packer *pk, const char *k, double v) {
  msgpack_pack_str_with_body(pk, k, strlen(k));
  msgpack_pack_double(pk, v);
}

static void pack_str(msgpack_packer *pk, const char *k, const char *v) {
  msgpack_pack_str_with_body(pk, k, strlen(k));
  msgpack_pack_str_with_body(pk, v, strlen(v));
}

static int add(myc_engine *e, const char *name, const char *file, int worker,
               const msgpack_sbuffer *opts) {
  char path[1024], err[1024];
  myc_service_config sc = {0};
  int rc;
  snprintf(path, sizeof path, "%s/%s", MYC_BENCH_LUA_DIR, file);
  sc.name = name;
  sc.module = path;
  sc.worker = worker;
  sc.opts = opts ? opts->data : NULL;
  sc.opts_len = opts ? opts->size : 0;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: %s\n", err);
  return rc;
}

static void *run_engine(void *arg) {
  myc_engine_run(arg, 0);
  return NULL;
}

/* Percentile 'q' (0..1) of 'v' sorted in place. */
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(double *v, int n, double q) {
  int i = (int)(q * (n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

typedef struct {
  myc_engine *e;
  char text[128];
  _Atomic int done;
} result;

static void on_result(void *ud, const myc_message *m) {
  result *r = ud;
  size_t n = m->len < sizeof r->text - 1 ? m->len : sizeof r->text - 1;
  memcpy(r->text, m->data, n);
  r->text[n] = '\0';
  atomic_store(&r->done, 1);
  myc_engine_stop(r->e, 0);
}

/* What one run of 100 reloads measured. */
typedef struct {
  double p50, p99, max, cpu_p50, cpu_p99, first3, faults_max, call_p50;
  double cpu_first, cpu_min; /* the first swap (out of the state init
                                built), and the least disturbed one */
  double msgs, lost;
  int have_costs; /* the swap's log lines were all seen */
} pause_run;

/* 100 reloads of a service with 'entries' entries of 'shape', while the
 * producer streams sequence numbers to it ('load') or only now and then;
 * the service checks them all. */
static int pause_once(const char *shape, int entries, int load,
                      pause_run *out) {
  myc_engine_config cfg;
  myc_engine *e;
  msgpack_sbuffer st, prod;
  msgpack_packer pk;
  double pause[RELOADS], total[RELOADS], t0;
  long n = -1, dup = -1, gaps = -1, sent = -2;
  char err[1024];
  result res;
  swap_costs costs;
  double first3 = 0;
  pthread_t th;
  int i, rc = 0;

  memset(&res, 0, sizeof res);
  memset(&costs, 0, sizeof costs);
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_fn = on_log;
  cfg.log_ud = &costs;
  cfg.log_level = MYC_LOG_INFO;
  if (myc_engine_new(&e, &cfg) != 0)
    return 1;
  res.e = e;
  msgpack_sbuffer_init(&st);
  msgpack_packer_init(&pk, &st, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  pack_num(&pk, "entries", entries);
  pack_str(&pk, "shape", shape);
  msgpack_sbuffer_init(&prod);
  msgpack_packer_init(&pk, &prod, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  /* Without load: one chunk of 1024 every 50 ms. */
  pack_num(&pk, "every_ms", load ? 0 : 50);
  rc =
      add(e, "producer", "seq_producer.lua", 0, &prod) ||
      add(e, "stateful", "stateful.lua", 1, &st) ||
      myc_engine_add_c_service(e, "result", "bench.result", on_result, &res, 0);
  msgpack_sbuffer_destroy(&st);
  msgpack_sbuffer_destroy(&prod);
  if (rc != 0 || myc_engine_start(e, err, sizeof err) != 0) {
    myc_engine_free(e);
    return 1;
  }
  pthread_create(&th, NULL, run_engine, e);
  usleep(100000);
  for (i = 0; i < RELOADS && rc == 0; i++) {
    myc_service_stats s;
    t0 = bench_now();
    rc = myc_engine_reload(e, "stateful", NULL, err, sizeof err);
    total[i] = (bench_now() - t0) * 1e3;
    myc_engine_service_stats(e, 1, &s);
    pause[i] = s.last_pause_ms;
    if (rc != 0)
      fprintf(stderr, "bench: reload %d: %s\n", i, err);
    usleep(5000);
  }
  myc_publish(e, "bench.stop", MYC_KIND_RAW, 0, "", 0);
  pthread_join(th, NULL);
  myc_engine_free(e);
  if (rc != 0 || !atomic_load(&res.done) ||
      sscanf(res.text, "%ld %ld %ld %ld", &n, &dup, &gaps, &sent) != 4) {
    fprintf(stderr, "bench: reload: no result\n");
    return 1;
  }
  for (i = 0; i < 3 && i < costs.n; i++)
    first3 += costs.faults[i];
  out->cpu_first = costs.n > 0 ? costs.cpu_ms[0] : 0;
  if (getenv("BENCH_LOG") != NULL)
    for (i = 0; i < costs.n; i++)
      fprintf(stderr, "reload %s%s %3d: swap %.3f ms, cpu %.3f ms, %.0f "
              "faults\n", shape, load ? " loaded" : "", i, costs.wall_ms[i],
              costs.cpu_ms[i], costs.faults[i]);
  qsort(pause, RELOADS, sizeof *pause, cmp);
  qsort(total, RELOADS, sizeof *total, cmp);
  out->p50 = pct(pause, RELOADS, 0.5);
  out->p99 = pct(pause, RELOADS, 0.99);
  out->max = pause[RELOADS - 1];
  out->have_costs = costs.n == RELOADS;
  if (out->have_costs) {
    qsort(costs.cpu_ms, RELOADS, sizeof *costs.cpu_ms, cmp);
    qsort(costs.faults, RELOADS, sizeof *costs.faults, cmp);
    out->cpu_p50 = pct(costs.cpu_ms, RELOADS, 0.5);
    out->cpu_p99 = pct(costs.cpu_ms, RELOADS, 0.99);
    out->cpu_min = costs.cpu_ms[0];
    out->first3 = first3;
    out->faults_max = costs.faults[RELOADS - 1];
  }
  out->call_p50 = pct(total, RELOADS, 0.5);
  out->msgs = (double)n;
  out->lost = (double)(sent - n + dup + gaps);
  return sent == n && dup == 0 && gaps == 0 ? 0 : 1;
}

/* BENCH_RUNS runs of pause_once, each row their median with min / max. */
static int reload_pause(const char *shape, int entries, int load,
                        const char *name, const char *note) {
  pause_run r[BENCH_RUNS];
  double v[BENCH_RUNS];
  char metric[96];
  int i, costs = 1, rc = 0;
#define ROW(field, suffix, unit, text)                                         \
  do {                                                                         \
    for (i = 0; i < BENCH_RUNS; i++)                                           \
      v[i] = r[i].field;                                                       \
    snprintf(metric, sizeof metric, "%s_" suffix, name);                       \
    bench_report_median("reload", metric, v, BENCH_RUNS, unit, text);          \
  } while (0)
  for (i = 0; i < BENCH_RUNS && rc == 0; i++) {
    rc = pause_once(shape, entries, load, &r[i]);
    costs = costs && r[i].have_costs;
  }
  if (rc != 0)
    return rc;
  ROW(p50, "pause_p50_ms", "ms", note);
  ROW(p99, "pause_p99_ms", "ms",
      load ? "100 reloads a run, stream at full speed"
           : "100 reloads a run, light traffic");
  ROW(max, "pause_max_ms", "ms", "");
  if (costs) {
    ROW(cpu_p50, "pause_cpu_p50_ms", "ms",
        "the worker's CPU time in the swap (no preemption)");
    ROW(cpu_p99, "pause_cpu_p99_ms", "ms", "");
    ROW(cpu_first, "pause_cpu_first_ms", "ms",
        "the first swap: copies out of the state init built");
    ROW(cpu_min, "pause_cpu_min_ms", "ms",
        "the least disturbed swap: the copy's floor on this machine");
    ROW(first3, "pause_faults_first3", "faults",
        "page faults in the first 3 swaps");
    ROW(faults_max, "pause_faults_max", "faults", "");
  }
  ROW(call_p50, "reload_call_p50_ms", "ms",
      "myc_engine_reload: compile off the worker + swap");
  ROW(msgs, "stream_msgs", "msgs", "sequence-checked by the reloaded service");
  ROW(lost, "stream_lost_or_dup", "msgs", "must be 0 in every run");
#undef ROW
  return 0;
}

static int restart_once(double *cost_us) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_stats st;
  const int n = (int)(2000 * bench_scale()) + 10;
  char err[1024], payload[16];
  pthread_t th;
  double t0, secs;
  int i;

  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = discard;
  cfg.supervisor.backoff_initial_ms = 0;
  cfg.supervisor.jitter = 0;
  cfg.supervisor.max_restarts = 100000;
  if (myc_engine_new(&e, &cfg) != 0) {
    fprintf(stderr, "bench: restart: cannot create the engine\n");
    return 1;
  }
  if (add(e, "crasher", "crasher.lua", 0, NULL) != 0 ||
      myc_engine_start(e, err, sizeof err) != 0) {
    myc_engine_free(e);
    return 1;
  }
  pthread_create(&th, NULL, run_engine, e);
  t0 = bench_now();
  for (i = 0; i < n; i++) {
    int len = snprintf(payload, sizeof payload, "%d", i);
    myc_publish(e, "bench.crash", MYC_KIND_RAW, 0, payload, (size_t)len);
  }
  do {
    usleep(1000);
    myc_engine_service_stats(e, 0, &st);
  } while (st.restarts < (uint64_t)n && bench_now() - t0 < 60);
  secs = bench_now() - t0;
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  myc_engine_free(e);
  if (st.restarts < (uint64_t)n) {
    fprintf(stderr, "bench: restart: %llu restarts of %d in %.1f s (%s)\n",
            (unsigned long long)st.restarts, n, secs, st.state);
    return 1;
  }
  *cost_us = secs / n * 1e6;
  return 0;
}

static int restart_cost(void) {
  double us[BENCH_RUNS], per_s[BENCH_RUNS];
  int i;
  for (i = 0; i < BENCH_RUNS; i++) {
    if (restart_once(&us[i]) != 0)
      return 1;
    per_s[i] = 1e6 / us[i];
  }
  bench_report_median("reload", "restart_cost_us", us, BENCH_RUNS, "us",
                      "crash -> $dead -> new state -> init, backoff 0");
  bench_report_median("reload", "restarts_per_s", per_s, BENCH_RUNS, "1/s",
                      "");
  return 0;
}

/* Whether BENCH_VARIANT lets part 'name' run. */
static int wanted(const char *name) {
  const char *only = getenv("BENCH_VARIANT");
  return only == NULL || *only == '\0' || strcmp(only, name) == 0;
}

int bench_reload(void) {
  return (wanted("flat10k") &&
          reload_pause("flat", ENTRIES, 0, "flat10k",
                       "10 000 entries: address -> number (target p99 < 2)")) ||
         (wanted("flat10k_loaded") &&
          reload_pause("flat", ENTRIES, 1, "flat10k_loaded",
                       "the same under a full-speed stream")) ||
         (wanted("pools10k") &&
          reload_pause("pools", ENTRIES, 0, "pools10k",
                       "10 000 entries of 3 fields (40 000 values)")) ||
         (wanted("restart") && restart_cost());
}
