/* runner.c -- the benchmark runner: runs every scenario (or those named on
 * the command line) and writes their results. */
#include "bench.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static FILE *jsonl;
static char cpu_model[128] = "unknown";

/* The CPU model from /proc/cpuinfo: every result is stamped with it, as
 * numbers from different machines must not be compared. */
static void read_cpu_model(void) {
  char line[256];
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f == NULL)
    return;
  while (fgets(line, sizeof line, f) != NULL) {
    char *c = strchr(line, ':');
    if (strncmp(line, "model name", 10) == 0 && c != NULL) {
      snprintf(cpu_model, sizeof cpu_model, "%s", c + 2);
      cpu_model[strcspn(cpu_model, "\n\"\\")] = '\0';
      break;
    }
  }
  fclose(f);
}
double bench_zmq_inproc_rate;
double bench_ring_floor_rate;

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Each median remembers the min and max of its runs, so that bench_report
 * can print the spread of any value that is a median without every
 * scenario passing it along; derived values (ratios) have none. */
#define SPREADS 64
static struct {
  double med, min, max;
  int n;
} spreads[SPREADS];
static unsigned nspreads;

double bench_median(double *v, int n) {
  double med;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  spreads[nspreads % SPREADS].med = med;
  spreads[nspreads % SPREADS].min = v[0];
  spreads[nspreads % SPREADS].max = v[n - 1];
  spreads[nspreads % SPREADS].n = n;
  nspreads++;
  return med;
}

/* The newest spread whose median is 'value', or -1. */
static int spread_of(double value) {
  unsigned i, n = nspreads < SPREADS ? nspreads : SPREADS;
  for (i = 1; i <= n; i++)
    if (spreads[(nspreads - i) % SPREADS].med == value)
      return (int)((nspreads - i) % SPREADS);
  return -1;
}

double bench_scale(void) {
  const char *s = getenv("BENCH_SCALE");
  double v = s ? atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

/* What a row answers: the targets the engine is held to (docs/PERFORMANCE.md). */
typedef struct {
  const char *bench, *metric;
  int at_least; /* 1: value >= limit is met; 0: value < limit is met */
  double limit;
  const char *text;
} target;

static const target targets[] = {
    {"emit", "publisher_emit_ns", 0, 25.0001, "<= 25 ns"},
    {"emit", "lua_to_lua_read_msgs_per_s", 1, 20e6, ">= 20 M/s"},
    {"workers", "cross_worker_lua_to_lua_read_msgs_per_s", 1, 12e6,
     ">= 12 M/s"},
    {"workers", "cross_worker_lua_to_lua_read_msgs_per_s_vs_zmq", 1, 2,
     ">= 2x ZeroMQ"},
    {"workers", "cross_worker_vs_ring_floor", 1, 0.8, ">= 0.8 of the floor"},
    {"workers", "fanout4_emits_per_s", 1, 5e6, ">= 5 M/s"},
    {"workers", "flood_emit_vs_normal", 0, 2.0001, "<= 2x"},
    {"typed", "typed_vs_raw_emit", 0, 1.3001, "<= 1.3x"},
    {"reload", "flat10k_pause_p99_ms", 0, 2, "< 2 ms"},
    {"request", "one_worker_rtt_p50_ns", 0, 1000.0001, "<= 1 us"},
    {"bandit", "ws_flood_events_per_s", 1, 200000, ">= 200 k/s"},
    {"bandit", "inproc_flood_events_per_s", 1, 200000, ">= 200 k/s"},
    {"bandit", "ws_paced_signal_latency_p99", 0, 1000, "< 1000 us"},
    {"bandit", "ws_paced_signal_p99_cold", 0, 1000, "< 1000 us"},
    {"bandit", "ws_paced_signal_p99_steady", 0, 1000, "< 1000 us"},
    {"bandit", "inproc_paced_signal_latency_p99", 0, 1000, "< 1000 us"},
    {"bandit", "inproc_paced_signal_p99_cold", 0, 1000, "< 1000 us"},
    {"bandit", "inproc_paced_signal_p99_steady", 0, 1000, "< 1000 us"},
    {"request", "two_workers_rtt_vs_one_way_emit", 0, 2.0001, "<= 2x"},
    {"services", "n1000_rss_kb_per_service_median", 0, 50.0001, "<= 50 KB"},
    {"services", "n10000_rss_kb_per_service_median", 0, 50.0001, "<= 50 KB"},
    {"services", "n1000_start_ms_per_service_median", 0, 0.4001, "<= 0.4 ms"},
    {"services", "n10000_start_ms_per_service_median", 0, 0.4001,
     "<= 0.4 ms"},
    {"nats", "ratio_64B", 1, 0.8, ">= 0.8x raw"},
    {"nats", "ratio_1024B", 1, 0.8, ">= 0.8x raw"},
    {"nats", "rtt_ratio_64B", 0, 1.2001, "<= 1.2x raw"},
    {"nats", "rtt_ratio_1024B", 0, 1.2001, "<= 1.2x raw"},
    {NULL, NULL, 0, 0, NULL}};

static const target *target_of(const char *bench, const char *metric) {
  const target *t;
  for (t = targets; t->bench != NULL; t++)
    if (strcmp(t->bench, bench) == 0 && strcmp(t->metric, metric) == 0)
      return t;
  return NULL;
}

void bench_report(const char *bench, const char *metric, double value,
                  const char *unit, const char *note) {
  const target *t = target_of(bench, metric);
  int sp = spread_of(value), met = 0;
  char range[64] = "", goal[48] = "";
  if (sp >= 0)
    snprintf(range, sizeof range, "%.4g / %.4g", spreads[sp].min,
             spreads[sp].max);
  if (t != NULL) {
    met = t->at_least ? value >= t->limit : value < t->limit;
    snprintf(goal, sizeof goal, "%s %s", t->text, met ? "met" : "MISSED");
  }
  printf("| %-10s | %-34s | %14.2f | %-21s | %-8s | %-22s | %s\n", bench,
         metric, value, range, unit, goal, note ? note : "");
  fflush(stdout);
  if (jsonl != NULL) {
    fprintf(jsonl,
            "{\"bench\":\"%s\",\"metric\":\"%s\",\"value\":%.4f,\"unit\":\"%s\","
            "\"cpu\":\"%s\"",
            bench, metric, value, unit, cpu_model);
    if (sp >= 0)
      fprintf(jsonl, ",\"min\":%.4f,\"max\":%.4f,\"runs\":%d",
              spreads[sp].min, spreads[sp].max, spreads[sp].n);
    if (t != NULL)
      fprintf(jsonl, ",\"target\":\"%s\",\"met\":%s", t->text,
              met ? "true" : "false");
    fprintf(jsonl, "}\n");
    fflush(jsonl);
  }
}

/* Peers and floors first: the engine's results are compared with them. */
static const bench_scenario scenarios[] = {
    {"floor_ffi", "LuaJIT loop calling an empty C function via the FFI",
     bench_floor_ffi},
    {"floor_ring", "C SPSC ring of 64-byte slots, 2 threads", bench_floor_ring},
    {"zmq", "ZeroMQ inproc PUSH/PULL, 64-byte messages, 2 threads",
     bench_peer_zmq},
    {"emit", "Lua producer -> Lua / C consumer on one worker", bench_emit},
    {"tracing", "emit and dispatch with tracing off, at sample 0 and at "
     "sample 1, one worker", bench_tracing},
    {"workers", "across workers, fan-out to 4, flood of a slow consumer",
     bench_workers},
    {"request", "request/reply Lua -> Lua, one worker and two, vs emit "
                "ping-pong", bench_request},
    {"typed", "typed SwapEvent vs raw string vs table, Lua -> Lua, one worker",
     bench_typed},
    {"reload", "hot reload pause (10 000-entry state), restart cost",
     bench_reload},
    {"bandit", "Bandit end to end: capture loop -> adapter -> metadata -> "
     "detector", bench_bandit},
    {"links", "Lua -> Lua across 2 processes over Unix and TCP links, vs "
     "ZeroMQ ipc/tcp PUSH/PULL", bench_links},
    {"services", "cost of a trivial service: RSS and start time per service "
     "at 1 000 and 10 000", bench_services},
    {"pipeline", "Bandit in 1 process vs 3 over Unix / TCP links: events/s "
     "and arrival -> signal at 1k-100k events/s and flood", bench_processes},
    {"nats", "Lua -> Lua through one nats-server, 64 B and 1 KiB, vs raw "
     "libnats C publish/subscribe", bench_nats},
    {NULL, NULL, NULL}};

/* A scenario whose engine waits for a result that never comes (a
 * service that failed for good) would keep the whole run waiting: past
 * its bound the run ends with the scenario's name.  BENCH_TIMEOUT_S sets
 * the bound (0: none); the default grows with BENCH_SCALE. */
static char alarm_text[160];
static size_t alarm_len;

static void on_alarm(int sig) {
  ssize_t r = write(2, alarm_text, alarm_len); /* async-signal-safe */
  (void)r;
  (void)sig;
  _exit(3);
}

static unsigned scenario_bound(void) {
  const char *v = getenv("BENCH_TIMEOUT_S");
  double scale = bench_scale();
  if (v != NULL && *v != '\0')
    return (unsigned)atoi(v);
  return (unsigned)(900 * (scale > 1 ? scale : 1));
}

static int wanted(int argc, char **argv, const char *name) {
  int i;
  if (argc <= 1)
    return 1;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}

int main(int argc, char **argv) {
  const char *out = getenv("BENCH_RESULTS");
  const bench_scenario *s;
  int rc = 0;
  if (argc > 1 && strcmp(argv[1], "--help") == 0) {
    printf("usage: myc-bench [SCENARIO...]   (BENCH_SCALE=0.1 for a quick run;\n"
           "       BENCH_VARIANT=NAME runs one variant of typed, workers,\n"
           "       request, reload or bandit; BENCH_TIMEOUT_S bounds each\n"
           "       scenario, 900 s times BENCH_SCALE above 1 by default, 0 for\n"
           "       none)\n");
    for (s = scenarios; s->name != NULL; s++)
      printf("  %-10s %s\n", s->name, s->about);
    return 0;
  }
  read_cpu_model();
  printf("cpu: %s, %ld online; values are medians of %d runs (min / max "
         "beside them; none for a single measurement or a ratio)\n",
         cpu_model, sysconf(_SC_NPROCESSORS_ONLN), BENCH_RUNS);
  jsonl = fopen(out ? out : "build/bench/results.jsonl", "w");
  if (jsonl == NULL)
    perror("results.jsonl");
  printf("| %-10s | %-34s | %14s | %-21s | %-8s | %-22s | %s\n", "bench",
         "metric", "median", "min / max", "unit", "target", "note");
  printf("|------------|------------------------------------|----------------|"
         "-----------------------|----------|------------------------|-----\n");
  signal(SIGALRM, on_alarm);
  for (s = scenarios; s->name != NULL; s++) {
    if (!wanted(argc, argv, s->name))
      continue;
    alarm_len = (size_t)snprintf(
        alarm_text, sizeof alarm_text,
        "\nmyc-bench: scenario %s did not finish within its bound "
        "(BENCH_TIMEOUT_S); a service may have failed\n", s->name);
    if (alarm_len >= sizeof alarm_text)
      alarm_len = sizeof alarm_text - 1;
    fflush(stdout);
    alarm(scenario_bound());
    if (s->run() != 0) {
      fprintf(stderr, "myc-bench: scenario %s failed\n", s->name);
      rc = 1;
    }
    alarm(0);
  }
  if (jsonl != NULL)
    fclose(jsonl);
  return rc;
}

void bench_report_median(const char *bench, const char *metric, double *v,
                         int runs, const char *unit, const char *note) {
  bench_report(bench, metric, bench_median(v, runs), unit, note);
}

void bench_report_runs(const char *bench, const char *metric, double *v,
                       int runs, const char *unit, const char *note) {
  char name[96];
  double lo = v[0], hi = v[0];
  int i;
  for (i = 1; i < runs; i++) {
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
  }
  snprintf(name, sizeof name, "%s_min", metric);
  bench_report(bench, name, lo, unit, "");
  snprintf(name, sizeof name, "%s_median", metric);
  bench_report(bench, name, bench_median(v, runs), unit, note);
  snprintf(name, sizeof name, "%s_max", metric);
  bench_report(bench, name, hi, unit, "");
}

int bench_in_child(int (*fn)(int n, void *out), int n, void *out,
                   size_t size) {
  int fd[2], status;
  pid_t pid;
  ssize_t got;
  if (pipe(fd) != 0)
    return 1;
  fflush(stdout);
  pid = fork();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    int rc = fn(n, out);
    close(fd[0]);
    if (rc == 0 && write(fd[1], out, size) != (ssize_t)size)
      rc = 1;
    _exit(rc);
  }
  close(fd[1]);
  got = read(fd[0], out, size);
  close(fd[0]);
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0 || got != (ssize_t)size)
    return 1;
  return 0;
}
