/* emit.c -- the engine's hot path on one worker: a Lua producer emitting
 * 64-byte raw payloads to a Lua consumer (counting, or also reading each
 * payload) and to a C consumer callback.  Reports ns per ctx:emit and per
 * publisher call (measured inside the producer) and end-to-end msgs/s
 * (first to last message at the consumer, as for ZeroMQ). */
#include "bench.h"

#include "mycelium.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  myc_engine *e;
  int have_producer, have_consumer;
  double sent, emit_secs, received, recv_secs;
  /* C consumer */
  uint64_t count, total;
  double first, last;
} run_state;

static void on_result(void *ud, const myc_message *m) {
  run_state *st = ud;
  char text[128];
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  static const char producer[] = "bench.result.producer";
  if (m->topic_len == sizeof producer - 1 &&
      memcmp(m->topic, producer, m->topic_len) == 0) {
    sscanf(text, "%lf %lf", &st->sent, &st->emit_secs);
    st->have_producer = 1;
  } else {
    sscanf(text, "%lf %lf", &st->received, &st->recv_secs);
    st->have_consumer = 1;
  }
  if (st->have_producer && st->have_consumer)
    myc_engine_stop(st->e, 0);
}

static void on_data(void *ud, const myc_message *m) {
  run_state *st = ud;
  (void)m;
  if (st->count++ == 0)
    st->first = bench_now();
  if (st->count == st->total) {
    st->last = bench_now();
    st->received = (double)st->count;
    st->recv_secs = st->last - st->first;
    st->have_consumer = 1;
    if (st->have_producer)
      myc_engine_stop(st->e, 0);
  }
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v) {
  msgpack_pack_str_with_body(pk, k, strlen(k));
  msgpack_pack_str_with_body(pk, v, strlen(v));
}

static int add_lua(myc_engine *e, const char *name, const char *file,
                   uint64_t total, const char *mode, int read) {
  char path[1024], err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  int rc;
  snprintf(path, sizeof path, "%s/%s", MYC_BENCH_LUA_DIR, file);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 4);
  msgpack_pack_str_with_body(&pk, "total", 5);
  msgpack_pack_uint64(&pk, total);
  pack_kv_str(&pk, "mode", mode);
  pack_kv_str(&pk, "topic", "bench.data");
  msgpack_pack_str_with_body(&pk, "read", 4);
  if (read)
    msgpack_pack_true(&pk);
  else
    msgpack_pack_false(&pk);
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

/* consumer: "lua", "lua_read" or "c". */
static int run_once(uint64_t total, const char *mode, const char *consumer,
                    run_state *st) {
  myc_engine_config cfg;
  char err[1024];
  int rc;
  memset(st, 0, sizeof *st);
  st->total = total;
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_level = MYC_LOG_WARN;
  if (myc_engine_new(&st->e, &cfg) != 0)
    return 1;
  rc = add_lua(st->e, "producer", "producer.lua", total, mode, 0);
  if (rc == 0 && strcmp(consumer, "c") == 0)
    rc = myc_engine_add_c_service(st->e, "consumer", "bench.data", on_data, st, 0);
  else if (rc == 0)
    rc = add_lua(st->e, "consumer", "consumer.lua", total, mode,
                 strcmp(consumer, "lua_read") == 0);
  if (rc == 0)
    rc = myc_engine_add_c_service(st->e, "results", "bench.result.*", on_result,
                                  st, 0);
  if (rc == 0)
    rc = myc_engine_start(st->e, err, sizeof err);
  if (rc == 0)
    rc = myc_engine_run(st->e, 0);
  myc_engine_free(st->e);
  if (rc != 0 || st->received != (double)total) {
    fprintf(stderr, "bench: %s/%s run failed (rc %d, %.0f of %llu received)\n",
            mode, consumer, rc, st->received, (unsigned long long)total);
    return 1;
  }
  return 0;
}

typedef struct {
  const char *mode, *consumer, *metric_rate, *metric_ns, *note;
} variant;

int bench_emit(void) {
  static const variant variants[] = {
      {"emit", "lua", "lua_to_lua_msgs_per_s", "ctx_emit_ns",
       "ctx:emit, consumer counts"},
      {"publisher", "lua", "lua_to_lua_publisher_msgs_per_s", "publisher_emit_ns",
       "publisher(), consumer counts"},
      {"publisher", "lua_read", "lua_to_lua_read_msgs_per_s", NULL,
       "publisher(), consumer reads msg.data"},
      {"publisher", "c", "lua_to_c_msgs_per_s", NULL, "C consumer callback"},
  };
  uint64_t total = (uint64_t)(2e7 * bench_scale());
  size_t v;
  for (v = 0; v < sizeof variants / sizeof *variants; v++) {
    const variant *x = &variants[v];
    double rate[BENCH_RUNS], ns[BENCH_RUNS];
    run_state st;
    int r;
    for (r = 0; r < BENCH_RUNS; r++) {
      if (run_once(total, x->mode, x->consumer, &st) != 0)
        return 1;
      rate[r] = st.received / st.recv_secs;
      ns[r] = st.emit_secs / st.sent * 1e9;
    }
    if (x->metric_ns != NULL)
      bench_report("emit", x->metric_ns, bench_median(ns, BENCH_RUNS), "ns",
                   x->note);
    bench_report("emit", x->metric_rate, bench_median(rate, BENCH_RUNS),
                 "msg/s", x->note);
    if (bench_zmq_inproc_rate > 0) {
      char metric[96];
      snprintf(metric, sizeof metric, "%s_vs_zmq", x->metric_rate);
      bench_report("emit", metric,
                   bench_median(rate, BENCH_RUNS) / bench_zmq_inproc_rate, "x",
                   "ratio to ZeroMQ inproc, same run");
    }
  }
  return 0;
}
