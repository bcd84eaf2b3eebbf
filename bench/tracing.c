/* tracing.c -- what span export costs the hot path: a Lua producer's
 * ctx:emit to a counting Lua consumer on one worker (as emit.c), with
 * tracing off, on at sample 0 (every batch checks its messages' trace
 * ids, none is kept) and on at sample 1 (every message's span is built and
 * queued).  The collector is absent, so at sample 1 the queue is full
 * after the first 4096 spans and the rest are dropped and counted: this
 * is the workers' cost of recording, not the exporter thread's.  Reports
 * min, median and max over 5 interleaved runs of ns per emit and of
 * msgs/s, and the ratios of the medians to tracing off, all in the same
 * invocation. */
#include "pipeline.h"

#include <stdio.h>

typedef struct {
  const char *name, *export_;
  double sample;
} setting;

static double min_of(const double *v, int n) {
  double m = v[0];
  int i;
  for (i = 1; i < n; i++)
    m = v[i] < m ? v[i] : m;
  return m;
}

static double max_of(const double *v, int n) {
  double m = v[0];
  int i;
  for (i = 1; i < n; i++)
    m = v[i] > m ? v[i] : m;
  return m;
}

#define RUNS 5
#define NSET 3

int bench_tracing(void) {
  static const setting settings[NSET] = {
      {"off", NULL, 0}, {"sample0", "zipkin", 0}, {"sample1", "zipkin", 1}};
  double ns[NSET][RUNS], rate[NSET][RUNS], base_ns = 0, base_rate = 0;
  size_t k;
  int i;
  /* Interleaved (off, sample 0, sample 1, off, ...): on a shared machine
   * the load drifts, and every setting then sees the same drift. */
  for (i = 0; i < RUNS; i++)
    for (k = 0; k < NSET; k++) {
      bench_pipeline p = {0};
      bench_pipeline_result r;
      p.workers = 1;
      p.mode = "emit";
      p.total = (uint64_t)(5e6 * bench_scale());
      p.nconsumers = 1;
      p.consumers[0].kind = BENCH_LUA;
      p.trace_export = settings[k].export_;
      /* Port 9 (discard) on loopback: nothing listens, posts fail. */
      p.trace_endpoint = "http://127.0.0.1:9/api/v2/spans";
      p.trace_sample = settings[k].sample;
      if (bench_pipeline_run(&p, &r) != 0)
        return 1;
      ns[k][i] = r.emit_secs / r.sent * 1e9;
      rate[k][i] = bench_pipeline_rate(&r);
    }
  for (k = 0; k < NSET; k++) {
    double med_ns = bench_median(ns[k], RUNS);
    double med_rate = bench_median(rate[k], RUNS);
    char metric[64], note[128];
    snprintf(note, sizeof note, "tracing %s: ctx:emit, Lua consumer counts",
             settings[k].name);
    snprintf(metric, sizeof metric, "%s_emit_ns_min", settings[k].name);
    bench_report("tracing", metric, min_of(ns[k], RUNS), "ns", note);
    snprintf(metric, sizeof metric, "%s_emit_ns", settings[k].name);
    bench_report("tracing", metric, med_ns, "ns", note);
    snprintf(metric, sizeof metric, "%s_emit_ns_max", settings[k].name);
    bench_report("tracing", metric, max_of(ns[k], RUNS), "ns", note);
    snprintf(metric, sizeof metric, "%s_msgs_per_s_min", settings[k].name);
    bench_report("tracing", metric, min_of(rate[k], RUNS), "msg/s", note);
    snprintf(metric, sizeof metric, "%s_msgs_per_s", settings[k].name);
    bench_report("tracing", metric, med_rate, "msg/s", note);
    snprintf(metric, sizeof metric, "%s_msgs_per_s_max", settings[k].name);
    bench_report("tracing", metric, max_of(rate[k], RUNS), "msg/s", note);
    if (k == 0) {
      base_ns = med_ns;
      base_rate = med_rate;
    } else {
      snprintf(metric, sizeof metric, "%s_vs_off_rate", settings[k].name);
      bench_report("tracing", metric, med_rate / base_rate, "x",
                   "median msgs/s over tracing off's, same run");
      snprintf(metric, sizeof metric, "%s_vs_off_emit_ns", settings[k].name);
      bench_report("tracing", metric, med_ns / base_ns, "x",
                   "median ns per emit over tracing off's, same run");
    }
  }
  return 0;
}
