/* request.c -- scenario: Lua -> Lua request/reply (ctx:request from a
 * coroutine, ctx:reply) on one worker and across two: round-trip p50 and
 * p99 with one request outstanding, and requests per second with 1 and
 * 64 outstanding.  The baseline, measured in the same run: the same round
 * trip made of two ctx:emit (ping -> pong), whose half is the one-way
 * latency of an emit across workers.
 * BENCH_VARIANT=one_worker or two_workers runs that half alone;
 * ..._pingpong or ..._request (e.g. two_workers_request) one kind of
 * round trip of it, one outstanding, reporting its p50 and p99 alone (to
 * profile one side). */
#include "bench.h"
#include "mycelium.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  myc_engine *e;
  double p50, p99, rate;
  int got;
} run_state;

static void on_result(void *ud, const myc_message *m) {
  run_state *st = ud;
  char text[128];
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  st->got = sscanf(text, "%lf %lf %lf", &st->p50, &st->p99, &st->rate) == 3;
  myc_engine_stop(st->e, 0);
}

static int add(myc_engine *e, const char *name, const char *role, int worker,
               int n, int outstanding) {
  char path[1024], err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  int rc;
  snprintf(path, sizeof path, "%s/request_bench.lua", MYC_BENCH_LUA_DIR);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 4);
  msgpack_pack_str_with_body(&pk, "role", 4);
  msgpack_pack_str_with_body(&pk, role, strlen(role));
  msgpack_pack_str_with_body(&pk, "n", 1);
  msgpack_pack_int(&pk, n);
  msgpack_pack_str_with_body(&pk, "warmup", 6);
  msgpack_pack_int(&pk, n / 10);
  msgpack_pack_str_with_body(&pk, "outstanding", 11);
  msgpack_pack_int(&pk, outstanding);
  sc.name = name;
  sc.module = path;
  sc.opts = sb.data;
  sc.opts_len = sb.size;
  sc.worker = worker;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: %s\n", err);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

/* One run: 'client'/'server' are the roles ("requester"/"responder" or
 * "pinger"/"ponger"), the server on worker 'workers' - 1. */
static int run_once(const char *client, const char *server, int workers,
                    int n, int outstanding, run_state *st) {
  myc_engine_config cfg;
  char err[1024];
  int rc;
  memset(st, 0, sizeof *st);
  myc_engine_config_init(&cfg);
  cfg.workers = (uint32_t)workers;
  cfg.log_level = MYC_LOG_WARN;
  if (myc_engine_new(&st->e, &cfg) != 0)
    return 1;
  rc = add(st->e, "server", server, workers - 1, n, outstanding);
  if (rc == 0)
    rc = add(st->e, "client", client, 0, n, outstanding);
  if (rc == 0)
    rc = myc_engine_add_c_service(st->e, "results", "bench.result.*",
                                  on_result, st, 0);
  if (rc == 0)
    rc = myc_engine_start(st->e, err, sizeof err);
  if (rc == 0)
    rc = myc_engine_run(st->e, 0);
  myc_engine_free(st->e);
  if (rc != 0 || !st->got) {
    fprintf(stderr, "bench: request %s/%s on %d worker(s) failed (rc %d)\n",
            client, server, workers, rc);
    return 1;
  }
  return 0;
}

/* Medians over BENCH_RUNS runs, and min and max of the p50. */
static int measure(const char *client, const char *server, int workers,
                   int n, int outstanding, double out[5]) {
  double p50[BENCH_RUNS], p99[BENCH_RUNS], rate[BENCH_RUNS];
  int i;
  for (i = 0; i < BENCH_RUNS; i++) {
    run_state st;
    if (run_once(client, server, workers, n, outstanding, &st) != 0)
      return 1;
    p50[i] = st.p50;
    p99[i] = st.p99;
    rate[i] = st.rate;
  }
  out[0] = bench_median(p50, BENCH_RUNS);
  out[3] = p50[0]; /* sorted by bench_median */
  out[4] = p50[BENCH_RUNS - 1];
  out[1] = bench_median(p99, BENCH_RUNS);
  out[2] = bench_median(rate, BENCH_RUNS);
  return 0;
}

/* Only one kind of round trip of the half 'where': its p50 and p99. */
static int request_part(const char *where, const char *part, int workers,
                        int n) {
  double v[5];
  char metric[64];
  int ping = strcmp(part, "pingpong") == 0;
  if (!ping && strcmp(part, "request") != 0) {
    fprintf(stderr, "bench: request: no variant %s_%s\n", where, part);
    return 1;
  }
  if (measure(ping ? "pinger" : "requester", ping ? "ponger" : "responder",
              workers, n, 1, v))
    return 1;
  snprintf(metric, sizeof metric, "%s_%s_p50_ns", where,
           ping ? "emit_pingpong" : "rtt");
  bench_report("request", metric, v[0], "ns", "1 outstanding");
  snprintf(metric, sizeof metric, "%s_%s_p99_ns", where,
           ping ? "emit_pingpong" : "rtt");
  bench_report("request", metric, v[1], "ns", "1 outstanding");
  return 0;
}

int bench_request(void) {
  const char *only = getenv("BENCH_VARIANT");
  int workers;
  char metric[64], note[96];
  for (workers = 1; workers <= 2; workers++) {
    const char *where = workers == 1 ? "one_worker" : "two_workers";
    size_t wl = strlen(where);
    /* Fewer across workers: each round trip waits for two wake-ups. */
    int n = (int)((workers == 1 ? 200000 : 30000) * bench_scale());
    double ping[5], one[5], many[5];
    if (only != NULL && *only != '\0') {
      if (strncmp(only, where, wl) != 0 ||
          (only[wl] != '\0' && only[wl] != '_'))
        continue;
      if (only[wl] == '_') {
        if (request_part(where, only + wl + 1, workers, n))
          return 1;
        continue;
      }
    }
    if (measure("pinger", "ponger", workers, n, 1, ping) ||
        measure("requester", "responder", workers, n, 1, one) ||
        measure("requester", "responder", workers, n, 64, many))
      return 1;
    snprintf(metric, sizeof metric, "%s_rtt_p50_ns", where);
    snprintf(note, sizeof note, "1 outstanding; p50 min %.0f max %.0f",
             one[3], one[4]);
    bench_report("request", metric, one[0], "ns", note);
    snprintf(metric, sizeof metric, "%s_rtt_p99_ns", where);
    bench_report("request", metric, one[1], "ns", "1 outstanding");
    snprintf(metric, sizeof metric, "%s_req_per_s_1", where);
    bench_report("request", metric, one[2], "req/s", "1 outstanding");
    snprintf(metric, sizeof metric, "%s_req_per_s_64", where);
    bench_report("request", metric, many[2], "req/s", "64 outstanding");
    snprintf(metric, sizeof metric, "%s_emit_pingpong_p50_ns", where);
    snprintf(note, sizeof note, "baseline: ctx:emit there and back; "
             "p50 min %.0f max %.0f", ping[3], ping[4]);
    bench_report("request", metric, ping[0], "ns", note);
    snprintf(metric, sizeof metric, "%s_emit_pingpong_p99_ns", where);
    bench_report("request", metric, ping[1], "ns", "baseline");
    snprintf(metric, sizeof metric, "%s_rtt_vs_one_way_emit", where);
    bench_report("request", metric, one[0] / (ping[0] / 2), "x",
                 "request p50 / (emit ping-pong p50 / 2)");
  }
  return 0;
}
