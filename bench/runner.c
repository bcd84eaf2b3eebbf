/* runner.c -- the benchmark runner: runs every scenario (or those named on
 * the command line) and writes their results. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_scale(void) {
  const char *s = getenv("BENCH_SCALE");
  double v = s ? atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

void bench_report(const char *bench, const char *metric, double value,
                  const char *unit, const char *note) {
  printf("| %-10s | %-34s | %14.2f | %-8s | %s\n", bench, metric, value, unit,
         note ? note : "");
  fflush(stdout);
  if (jsonl != NULL) {
    fprintf(jsonl,
            "{\"bench\":\"%s\",\"metric\":\"%s\",\"value\":%.4f,\"unit\":\"%s\","
            "\"cpu\":\"%s\"}\n",
            bench, metric, value, unit, cpu_model);
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
           "       BENCH_VARIANT=NAME runs one variant of typed)\n");
    for (s = scenarios; s->name != NULL; s++)
      printf("  %-10s %s\n", s->name, s->about);
    return 0;
  }
  read_cpu_model();
  printf("cpu: %s, %ld online; values are medians of %d runs\n", cpu_model,
         sysconf(_SC_NPROCESSORS_ONLN), BENCH_RUNS);
  jsonl = fopen(out ? out : "build/bench/results.jsonl", "w");
  if (jsonl == NULL)
    perror("results.jsonl");
  printf("| %-10s | %-34s | %14s | %-8s | %s\n", "bench", "metric", "value",
         "unit", "note");
  printf("|------------|------------------------------------|----------------|----------|-----\n");
  for (s = scenarios; s->name != NULL; s++)
    if (wanted(argc, argv, s->name) && s->run() != 0) {
      fprintf(stderr, "myc-bench: scenario %s failed\n", s->name);
      rc = 1;
    }
  if (jsonl != NULL)
    fclose(jsonl);
  return rc;
}
