/* emit.c -- the engine's hot path on one worker: a Lua producer emitting
 * 64-byte raw payloads to a Lua consumer (counting, or also reading each
 * payload) and to a C consumer callback.  Reports ns per ctx:emit and per
 * publisher call (measured inside the producer) and end-to-end msgs/s
 * (first to last message at the consumer, as for ZeroMQ). */
#include "pipeline.h"

typedef struct {
  const char *mode;
  int consumer;
  const char *metric_rate, *metric_ns, *note;
} variant;

/* Runs 'p' BENCH_RUNS times; medians of the slowest consumer's rate and
 * of the producer's ns per emit, and with 'losses' (3 values) of the
 * messages lost: all of them, those the sender's emit refused, those
 * evicted from a mailbox. */
int bench_pipeline_medians(const bench_pipeline *p, double *rate, double *ns,
                           double *losses) {
  double rates[BENCH_RUNS], nss[BENCH_RUNS], drops[BENCH_RUNS];
  double refused[BENCH_RUNS], evicted[BENCH_RUNS];
  bench_pipeline_result r;
  int i;
  for (i = 0; i < BENCH_RUNS; i++) {
    if (bench_pipeline_run(p, &r) != 0)
      return 1;
    rates[i] = bench_pipeline_rate(&r);
    nss[i] = r.emit_secs / r.sent * 1e9;
    drops[i] = r.dropped;
    refused[i] = r.refused;
    evicted[i] = r.mailbox_dropped;
  }
  *rate = bench_median(rates, BENCH_RUNS);
  *ns = bench_median(nss, BENCH_RUNS);
  if (losses != NULL) {
    losses[0] = bench_median(drops, BENCH_RUNS);
    losses[1] = bench_median(refused, BENCH_RUNS);
    losses[2] = bench_median(evicted, BENCH_RUNS);
  }
  return 0;
}

void bench_report_vs_zmq(const char *bench, const char *metric, double rate) {
  char name[96];
  if (bench_zmq_inproc_rate <= 0)
    return;
  snprintf(name, sizeof name, "%s_vs_zmq", metric);
  bench_report(bench, name, rate / bench_zmq_inproc_rate, "x",
               "ratio to ZeroMQ inproc, same run");
}

int bench_emit(void) {
  static const variant variants[] = {
      {"emit", BENCH_LUA, "lua_to_lua_msgs_per_s", "ctx_emit_ns",
       "ctx:emit, consumer counts"},
      {"publisher", BENCH_LUA, "lua_to_lua_publisher_msgs_per_s",
       "publisher_emit_ns", "publisher(), consumer counts"},
      {"publisher", BENCH_LUA_READ, "lua_to_lua_read_msgs_per_s", NULL,
       "headline: publisher(), consumer reads msg.data"},
      {"publisher", BENCH_C, "lua_to_c_msgs_per_s", NULL, "C consumer callback"},
  };
  size_t v;
  for (v = 0; v < sizeof variants / sizeof *variants; v++) {
    bench_pipeline p = {0};
    double rate, ns;
    p.workers = 1;
    p.mode = variants[v].mode;
    p.total = (uint64_t)(2e7 * bench_scale());
    p.nconsumers = 1;
    p.consumers[0].kind = variants[v].consumer;
    if (bench_pipeline_medians(&p, &rate, &ns, NULL) != 0)
      return 1;
    if (variants[v].metric_ns != NULL)
      bench_report("emit", variants[v].metric_ns, ns, "ns", variants[v].note);
    /* No ratio to ZeroMQ here: one thread against its two would not be
     * like for like (workers' cross-worker row is the comparison). */
    bench_report("emit", variants[v].metric_rate, rate, "msg/s",
                 variants[v].note);
  }
  return 0;
}
