/* bandit.c -- Bandit end to end: the bundled Polygon capture played in a
 * loop by examples/bandit/feeder.lua into PolygonAdapter ->
 * MetadataService -> ArbitrageDetector (typed messages, two workers), as
 * fast as the pipeline takes it and then at a steady 10 000 events/s.
 * Reports lines and accepted events per second from the feeder's first
 * line to the detector's last, and the latency from a log's arrival at
 * the adapter to its signal (and to its EventApplied), p50 and p99.
 * Targets (docs/PERFORMANCE.md): >= 200 000 events/s; p99 < 1 ms at
 * 10 000 events/s.  Every run must lose nothing (mailbox drops = 0). */
#include "bench.h"

#include "mycelium.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLE MYC_SOURCE_DIR "/examples/bandit/data/sample_capture.jsonl"

typedef struct {
  myc_engine *e;
  int done;
  double lines, events, signals, seconds, sig_p50, sig_p99, ev_p50, ev_p99,
      dropped;
} run_state;

static void on_result(void *ud, const myc_message *m) {
  run_state *st = ud;
  char text[256];
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  if (sscanf(text, "%lf %lf %lf %lf %lf %lf %lf %lf %lf", &st->lines,
             &st->events, &st->signals, &st->seconds, &st->sig_p50,
             &st->sig_p99, &st->ev_p50, &st->ev_p99, &st->dropped) == 9)
    st->done = 1;
  myc_engine_stop(st->e, 0);
}

static void pack_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Adds a Lua service; 'kv' are option pairs (string values, or numbers
 * when 'num' has a non-negative value at that pair). */
static int add(myc_engine *e, const char *name, const char *module,
               int worker, int npairs, const char *const *keys,
               const char *const *strs, const double *nums) {
  char err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  int i, rc;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, (uint32_t)npairs);
  for (i = 0; i < npairs; i++) {
    pack_str(&pk, keys[i]);
    if (strs[i] != NULL)
      pack_str(&pk, strs[i]);
    else
      msgpack_pack_double(&pk, nums[i]);
  }
  sc.name = name;
  sc.module = module;
  sc.opts = sb.data;
  sc.opts_len = sb.size;
  sc.worker = worker;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: %s\n", err);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

static int add_result(myc_engine *e) {
  char err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  static const char *const names[] = {"feeder", "polygon", "metadata", "arb"};
  int i, rc;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "services");
  msgpack_pack_array(&pk, 4);
  for (i = 0; i < 4; i++)
    pack_str(&pk, names[i]);
  sc.name = "result";
  sc.module = MYC_BENCH_LUA_DIR "/bandit_result.lua";
  sc.opts = sb.data;
  sc.opts_len = sb.size;
  sc.worker = 1;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: %s\n", err);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

/* One run: 'loops' plays of the sample; 'rate' lines per second, or 0
 * for as fast as the pipeline goes. */
static int run_once(double loops, double rate, run_state *st) {
  static const char *const fkeys[] = {"capture", "loops", "rate", "chunk"};
  static const char *const akeys[] = {"source"};
  static const char *const asrc[] = {"topic"};
  static const char *const dkeys[] = {"latency_samples"};
  static const char *const dstr[] = {NULL};
  const char *fstr[] = {SAMPLE, NULL, NULL, NULL};
  double fnum[] = {0, loops, rate, 256};
  double dnum[] = {200000};
  myc_engine_config cfg;
  myc_contract_set *cs = NULL;
  char err[1024];
  int rc;
  memset(st, 0, sizeof *st);
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_level = MYC_LOG_ERROR;
  cfg.mailbox.policy = MYC_POLICY_REJECT;
  if (myc_engine_new(&st->e, &cfg) != 0)
    return 1;
  rc = myc_contract_load(&cs, MYC_SOURCE_DIR "/services/contracts.yaml", NULL,
                         NULL);
  if (rc == 0)
    rc = myc_engine_set_contracts(st->e, cs, 1);
  else
    myc_contract_free(cs);
  if (rc == 0)
    rc = add(st->e, "feeder", MYC_SOURCE_DIR "/examples/bandit/feeder.lua", 0,
             rate > 0 ? 4 : 2, fkeys, fstr, fnum);
  if (rc == 0)
    rc = add(st->e, "polygon", MYC_SOURCE_DIR "/services/polygon_adapter.lua",
             0, 1, akeys, asrc, NULL);
  if (rc == 0)
    rc = add(st->e, "metadata",
             MYC_SOURCE_DIR "/services/metadata_service.lua", 0, 0, NULL, NULL,
             NULL);
  if (rc == 0)
    rc = add(st->e, "arb", MYC_SOURCE_DIR "/services/arbitrage_detector.lua",
             1, 1, dkeys, dstr, dnum);
  if (rc == 0)
    rc = add_result(st->e);
  if (rc == 0)
    rc = myc_engine_add_c_service(st->e, "results", "bench.result.*",
                                  on_result, st, 0);
  if (rc == 0)
    rc = myc_engine_start(st->e, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: bandit: %s\n", err);
  if (rc == 0)
    rc = myc_engine_run(st->e, 0);
  myc_engine_free(st->e);
  if (rc != 0 || !st->done || st->dropped != 0) {
    fprintf(stderr, "bench: bandit run failed (rc %d, done %d, dropped %.0f)\n",
            rc, st->done, st->dropped);
    return 1;
  }
  return 0;
}

int bench_bandit(void) {
  double loops = 20000 * bench_scale(), thr[BENCH_RUNS], lps[BENCH_RUNS];
  double p50[BENCH_RUNS], p99[BENCH_RUNS], e50[BENCH_RUNS], e99[BENCH_RUNS];
  run_state st;
  int r;
  for (r = 0; r < BENCH_RUNS; r++) {
    if (run_once(loops, 0, &st) != 0)
      return 1;
    thr[r] = st.events / st.seconds;
    lps[r] = st.lines / st.seconds;
    p50[r] = st.sig_p50 / 1e3;
    p99[r] = st.sig_p99 / 1e3;
  }
  bench_report("bandit", "events_per_s", bench_median(thr, BENCH_RUNS),
               "events/s", "accepted logs, as fast as it goes (>= 200000)");
  bench_report("bandit", "lines_per_s", bench_median(lps, BENCH_RUNS),
               "lines/s", "websocket messages, faults included");
  bench_report("bandit", "flood_signal_latency_p50",
               bench_median(p50, BENCH_RUNS), "us", "queueing included");
  bench_report("bandit", "flood_signal_latency_p99",
               bench_median(p99, BENCH_RUNS), "us", "queueing included");
  /* 10 000 accepted events/s: the sample has 50 per 59 notifications. */
  for (r = 0; r < BENCH_RUNS; r++) {
    double secs = 5 * bench_scale() + 1;
    if (run_once(secs * 11800 / 59, 11800, &st) != 0)
      return 1;
    p50[r] = st.sig_p50 / 1e3;
    p99[r] = st.sig_p99 / 1e3;
    e50[r] = st.ev_p50 / 1e3;
    e99[r] = st.ev_p99 / 1e3;
    thr[r] = st.events / st.seconds;
  }
  bench_report("bandit", "paced_events_per_s", bench_median(thr, BENCH_RUNS),
               "events/s", "paced at 11800 lines/s");
  bench_report("bandit", "paced_signal_latency_p50",
               bench_median(p50, BENCH_RUNS), "us", "log arrival -> signal");
  bench_report("bandit", "paced_signal_latency_p99",
               bench_median(p99, BENCH_RUNS), "us", "target < 1000");
  bench_report("bandit", "paced_applied_latency_p50",
               bench_median(e50, BENCH_RUNS), "us",
               "log arrival -> EventApplied");
  bench_report("bandit", "paced_applied_latency_p99",
               bench_median(e99, BENCH_RUNS), "us", "");
  return 0;
}
