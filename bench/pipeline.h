/* pipeline.h -- a producer -> consumers pipeline on a threaded engine,
 * shared by the engine scenarios. */
#ifndef MYC_BENCH_PIPELINE_H
#define MYC_BENCH_PIPELINE_H

#include "bench.h"
#include "mycelium.h"

enum { BENCH_LUA, BENCH_LUA_READ, BENCH_C };

typedef struct {
  int kind;
  int worker;
} bench_consumer;

typedef struct {
  uint32_t workers;
  int producer_worker;
  const char *mode; /* "emit", "publisher", "flood" (ignores pressure) */
  uint64_t total;
  double pause_at;      /* producer pauses above this pressure (0: 0.5) */
  double consumer_work; /* busy-loop iterations per message (slow consumer) */
  myc_mailbox_config mailbox; /* capacity 0: engine default */
  int drops_expected;   /* consumers may not see everything: don't wait */
  int nconsumers;
  bench_consumer consumers[8];
  /* Span export (NULL: tracing off): format, endpoint and sample. */
  const char *trace_export, *trace_endpoint;
  double trace_sample;
} bench_pipeline;

typedef struct {
  double sent, emit_secs, refused;
  int nconsumers;
  double received[8], recv_secs[8];
  double dropped;         /* every loss the consumers' stats count */
  double mailbox_dropped; /* of which evicted at a mailbox (drop_oldest) */
} bench_pipeline_result;

/* Runs the pipeline once.  Returns 0, or 1 (with a message) when it did
 * not complete. */
int bench_pipeline_run(const bench_pipeline *p, bench_pipeline_result *r);

/* The slowest consumer's msgs/s. */
double bench_pipeline_rate(const bench_pipeline_result *r);

#endif
