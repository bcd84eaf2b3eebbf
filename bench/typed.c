/* typed.c -- typed messages on one worker: a Lua producer emitting a
 * 96-byte SwapEvent (ctx:new, six field writes, a publisher) to a Lua
 * consumer that reads one field of msg.data, against a raw 96-byte string
 * and a 6-field table (MessagePack) on the same path.  Reports ns per
 * emit, measured inside the producer (making and filling included: the
 * median over the producer's chunks of 4096, and the mean), the
 * end-to-end rate (first to last message at the consumer), and the typed
 * to raw ratios (target: emit within 1.3x).  The raw string is built
 * once; the typed variants include filling the struct, except typed_same,
 * which emits a ready struct as raw emits a ready string. */
#include "bench.h"

#include "mycelium.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  myc_engine *e;
  int have_producer, have_consumer;
  double sent, emit_secs, chunk_ns, received, recv_secs;
} run_state;

static void on_result(void *ud, const myc_message *m) {
  static const char producer[] = "bench.result.producer";
  run_state *st = ud;
  char text[128];
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  if (m->topic_len == sizeof producer - 1 &&
      memcmp(m->topic, producer, m->topic_len) == 0) {
    sscanf(text, "%lf %lf %lf", &st->sent, &st->emit_secs, &st->chunk_ns);
    st->have_producer = 1;
  } else {
    sscanf(text, "%lf %lf", &st->received, &st->recv_secs);
    st->have_consumer = 1;
  }
  if (st->have_producer && st->have_consumer)
    myc_engine_stop(st->e, 0);
}

static int add_lua(myc_engine *e, const char *name, const char *file,
                   uint64_t total, const char *mode) {
  char path[1024], err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  int rc;
  snprintf(path, sizeof path, "%s/%s", MYC_BENCH_LUA_DIR, file);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 3);
  msgpack_pack_str_with_body(&pk, "total", 5);
  msgpack_pack_uint64(&pk, total);
  msgpack_pack_str_with_body(&pk, "mode", 4);
  msgpack_pack_str_with_body(&pk, mode, strlen(mode));
  msgpack_pack_str_with_body(&pk, "topic", 5);
  msgpack_pack_str_with_body(&pk, "bench.data", 10);
  sc.name = name;
  sc.module = path;
  sc.opts = sb.data;
  sc.opts_len = sb.size;
  sc.worker = 0;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: %s\n", err);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

static int set_contracts(myc_engine *e, int validate) {
  myc_contract_set *cs;
  int rc = myc_contract_load(&cs, MYC_BENCH_LUA_DIR "/contracts.yaml", NULL,
                             NULL);
  if (rc == 0)
    rc = myc_engine_set_contracts(e, cs, validate);
  if (rc != 0) {
    fprintf(stderr, "bench: contracts: %s\n",
            cs && myc_contract_error_count(cs) ? myc_contract_error(cs, 0)
                                               : myc_strerror(rc));
    myc_contract_free(cs);
  }
  return rc;
}

static int run_once(uint64_t total, const char *mode, int validate,
                    run_state *st) {
  myc_engine_config cfg;
  char err[1024];
  int rc;
  memset(st, 0, sizeof *st);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_level = MYC_LOG_WARN;
  if (myc_engine_new(&st->e, &cfg) != 0)
    return 1;
  rc = set_contracts(st->e, validate);
  if (rc == 0)
    rc = add_lua(st->e, "producer", "typed_producer.lua", total, mode);
  if (rc == 0)
    rc = add_lua(st->e, "consumer", "typed_consumer.lua", total, mode);
  if (rc == 0)
    rc = myc_engine_add_c_service(st->e, "results", "bench.result.*",
                                  on_result, st, 0);
  if (rc == 0)
    rc = myc_engine_start(st->e, err, sizeof err);
  if (rc == 0)
    rc = myc_engine_run(st->e, 0);
  myc_engine_free(st->e);
  if (rc != 0 || st->received != (double)total) {
    fprintf(stderr, "bench: typed %s run failed (rc %d, %.0f of %llu)\n", mode,
            rc, st->received, (unsigned long long)total);
    return 1;
  }
  return 0;
}

typedef struct {
  const char *name, *mode;
  int validate;
  double count; /* messages per run at scale 1 */
  const char *note;
} variant;

/* Reports the median, min and max over the rounds of num[r] / den[r]. */
static void ratio_row(const char *metric, const double *num, const double *den,
                      const char *note) {
  double q[BENCH_RUNS];
  int r;
  for (r = 0; r < BENCH_RUNS; r++)
    q[r] = num[r] / den[r];
  bench_report_median("typed", metric, q, BENCH_RUNS, "x", note);
}

int bench_typed(void) {
  static const variant variants[] = {
      {"typed", "typed", 1, 2e7, "96-byte SwapEvent: ctx:new, fill, validate"},
      {"raw", "raw", 1, 2e7, "96-byte string"},
      {"typed_novalidate", "typed", 0, 2e7, "the same, validate = false"},
      {"typed_reuse", "typed_reuse", 1, 2e7,
       "one Lua-owned SwapEvent refilled, copied on emit"},
      {"typed_same", "typed_same", 1, 2e7,
       "that SwapEvent emitted as is (emit alone)"},
      {"table", "table", 1, 4e6, "6-field table (MessagePack)"},
  };
  enum { TYPED, RAW, TYPED_NOVALIDATE, TYPED_REUSE, TYPED_SAME, TABLE,
         NVARIANTS };
  double emit_ns[NVARIANTS], rate[NVARIANTS];
  double r_rate[NVARIANTS][BENCH_RUNS], r_ns[NVARIANTS][BENCH_RUNS];
  double r_mean[NVARIANTS][BENCH_RUNS];
  char metric[96];
  size_t v;
  int r;
  const char *only = getenv("BENCH_VARIANT");
  /* Round by round, every variant once per round, typed then raw: on a
   * shared machine whose load drifts, a ratio then compares two runs made
   * one after the other, not runs of the one variant against runs of the
   * other made minutes later. */
  for (r = 0; r < BENCH_RUNS; r++)
    for (v = 0; v < sizeof variants / sizeof *variants; v++) {
      const variant *x = &variants[v];
      run_state st;
      if (only != NULL && strcmp(only, x->name) != 0)
        continue;
      if (run_once((uint64_t)(x->count * bench_scale()), x->mode, x->validate,
                   &st) != 0)
        return 1;
      r_rate[v][r] = st.received / st.recv_secs;
      r_ns[v][r] = st.chunk_ns;
      r_mean[v][r] = st.emit_secs / st.sent * 1e9;
    }
  for (v = 0; v < sizeof variants / sizeof *variants; v++) {
    const variant *x = &variants[v];
    if (only != NULL && strcmp(only, x->name) != 0)
      continue;
    double ns[BENCH_RUNS];
    memcpy(ns, r_ns[v], sizeof ns); /* bench_median reorders: the rounds'
                                       order is kept for the ratios */
    emit_ns[v] = bench_median(ns, BENCH_RUNS);
    rate[v] = bench_median(r_rate[v], BENCH_RUNS);
    snprintf(metric, sizeof metric, "%s_emit_ns", x->name);
    bench_report("typed", metric, emit_ns[v], "ns", x->note);
    snprintf(metric, sizeof metric, "%s_emit_ns_mean", x->name);
    bench_report_median("typed", metric, r_mean[v], BENCH_RUNS, "ns",
                        "the same, total time / messages (preemptions in)");
    snprintf(metric, sizeof metric, "%s_lua_to_lua_msgs_per_s", x->name);
    bench_report("typed", metric, rate[v], "msg/s", "consumer reads a field");
  }
  if (only != NULL)
    return 0;
  /* Each ratio is the median of the rounds' ratios: a run against the
   * raw run of its own round (typed and raw run one after the other). */
  ratio_row("typed_vs_raw_emit", r_ns[TYPED], r_ns[RAW],
            "ns per emit, ctx:new / raw, per round (target <= 1.3)");
  ratio_row("typed_novalidate_vs_raw_emit", r_ns[TYPED_NOVALIDATE], r_ns[RAW],
            "ns per emit, ctx:new without validation / raw");
  ratio_row("typed_reuse_vs_raw_emit", r_ns[TYPED_REUSE], r_ns[RAW],
            "ns per emit, reused struct refilled / raw");
  ratio_row("typed_same_vs_raw_emit", r_ns[TYPED_SAME], r_ns[RAW],
            "ns per emit, both payloads ready (target <= 1.3)");
  bench_report("typed", "typed_vs_raw_lua_to_lua", rate[TYPED] / rate[RAW], "x",
               "end-to-end rate, ctx:new / raw");
  return 0;
}
