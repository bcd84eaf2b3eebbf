/* workers.c -- several workers: Lua -> Lua across two workers, fan-out to
 * four subscribers, and a flood of a slow consumer (drop_oldest mailbox)
 * where the producer's emit cost while the mailbox is full is compared
 * with a normal emit measured in the same run.  BENCH_VARIANT=cross,
 * fanout or flood runs one of the three. */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

int bench_pipeline_medians(const bench_pipeline *p, double *rate, double *ns,
                           double *losses);
void bench_report_vs_zmq(const char *bench, const char *metric, double rate);

static int cross_worker(void) {
  bench_pipeline p = {0};
  double rate, ns;
  p.workers = 2;
  p.producer_worker = 0;
  p.mode = "publisher";
  p.total = (uint64_t)(2e7 * bench_scale());
  p.pause_at = getenv("BENCH_PAUSE") ? atof(getenv("BENCH_PAUSE")) : 0;
  p.nconsumers = 1;
  /* The headline against ZeroMQ: two threads each, and the consumer
   * reads every payload, as a ZeroMQ receiver does. */
  p.consumers[0].kind = BENCH_LUA_READ;
  p.consumers[0].worker = 1;
  if (bench_pipeline_medians(&p, &rate, &ns, NULL) != 0)
    return 1;
  bench_report("workers", "cross_worker_lua_to_lua_read_msgs_per_s", rate,
               "msg/s", "producer on worker 0, consumer on 1 reads msg.data");
  bench_report("workers", "cross_worker_emit_ns", ns, "ns", "publisher()");
  bench_report_vs_zmq("workers", "cross_worker_lua_to_lua_read_msgs_per_s",
                      rate);
  if (bench_ring_floor_rate > 0)
    bench_report("workers", "cross_worker_vs_ring_floor",
                 rate / bench_ring_floor_rate, "x",
                 "ratio to the 2-thread SPSC ring floor, same run");
  return 0;
}

static int fan_out(void) {
  bench_pipeline p = {0};
  double rate, ns;
  int i;
  p.workers = 2;
  p.mode = "publisher";
  p.total = (uint64_t)(5e6 * bench_scale());
  p.pause_at = getenv("BENCH_PAUSE") ? atof(getenv("BENCH_PAUSE")) : 0;
  p.nconsumers = 4;
  for (i = 0; i < 4; i++) {
    p.consumers[i].kind = BENCH_LUA;
    p.consumers[i].worker = i % 2;
  }
  if (bench_pipeline_medians(&p, &rate, &ns, NULL) != 0)
    return 1;
  bench_report("workers", "fanout4_emits_per_s", rate, "msg/s",
               "4 Lua subscribers on 2 workers; emits/s at the slowest");
  bench_report("workers", "fanout4_deliveries_per_s", 4 * rate, "msg/s",
               "messages handled, all subscribers");
  bench_report("workers", "fanout4_emit_ns", ns, "ns", "publisher(), 4 subs");
  return 0;
}

static int flood(void) {
  bench_pipeline p = {0};
  double rate, full_ns, normal_ns, losses[3];
  p.workers = 2;
  p.mode = "flood";
  p.total = (uint64_t)(5e6 * bench_scale());
  p.consumer_work = 2000; /* a few µs per message: far slower than emit */
  p.mailbox.capacity = 1024;
  p.mailbox.policy = MYC_POLICY_DROP_OLDEST;
  p.mailbox.threshold = 0.8;
  p.drops_expected = 1;
  p.nconsumers = 1;
  p.consumers[0].kind = BENCH_LUA;
  p.consumers[0].worker = 1;
  if (bench_pipeline_medians(&p, &rate, &full_ns, losses) != 0)
    return 1;
  p.mode = "publisher";
  p.consumer_work = 0;
  p.mailbox.capacity = 0;
  p.drops_expected = 0;
  if (bench_pipeline_medians(&p, &rate, &normal_ns, NULL) != 0)
    return 1;
  bench_report("workers", "flood_emit_ns_mailbox_full", full_ns, "ns",
               "slow consumer, capacity 1024, drop_oldest");
  bench_report("workers", "flood_dropped", losses[0], "msgs",
               "all losses, each counted by the engine");
  bench_report("workers", "flood_refused_at_sender", losses[1], "msgs",
               "emits that returned false (in transit bound, before a mailbox)");
  bench_report("workers", "flood_dropped_at_mailbox", losses[2], "msgs",
               "taken, then evicted by drop_oldest");
  bench_report("workers", "flood_emit_vs_normal", full_ns / normal_ns, "x",
               "target <= 2");
  return 0;
}

/* BENCH_VARIANT=cross, fanout or flood runs that part alone (to profile
 * one of them, e.g. under callgrind). */
static int wanted(const char *name) {
  const char *only = getenv("BENCH_VARIANT");
  return only == NULL || strcmp(only, name) == 0;
}

int bench_workers(void) {
  return (wanted("cross") && cross_worker()) ||
         (wanted("fanout") && fan_out()) || (wanted("flood") && flood());
}
