/* bandit.c -- Bandit end to end: the bundled Polygon capture played in a
 * loop into PolygonAdapter -> MetadataService -> ArbitrageDetector (typed
 * messages, on one worker, then split over two), as fast as the pipeline takes
 * it and then at a steady 10 000 accepted events/s.  Two sources: the replay
 * server (myc-replay) over a real WebSocket, as in production, and
 * examples/bandit/feeder.lua injecting the lines in process (no socket,
 * no JSON-RPC routing: the services' own cost).
 * Reports accepted events and lines per second from the first line to the
 * detector's last, and the latency from a log's arrival at the adapter to
 * its signal (and to its EventApplied), p50 and p99, whole run, first 2 s
 * and after; the engine's CPU time per event in a flood.  Targets
 * (docs/PERFORMANCE.md): >= 200 000 events/s; p99 < 1 ms at 10 000
 * events/s.  Every run must lose nothing (mailbox drops = 0).
 * BENCH_LOG=1 prints each paced run's cold and steady p99, its minor
 * page faults and CPU time to stderr (which runs are the slow ones). */
#include "bench.h"

#include "mycelium.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define SAMPLE MYC_SOURCE_DIR "/examples/bandit/data/sample_capture.jsonl"
/* The sample: 59 notifications after the reply, 50 of them accepted. */
#define NOTES 59.0
#define ACCEPTED 50.0

typedef struct {
  myc_engine *e;
  int done;
  double lines, events, signals, seconds, sig_p50, sig_p99, ev_p50, ev_p99,
      dropped, p99_cold, p99_steady, n_cold, n_steady, refused;
  double cpu_secs; /* the engine process's CPU time over the run */
  double faults;   /* its minor page faults over the run (all threads) */
} run_state;

/* Where the detector runs: with the adapter and MetadataService on worker
 * 0 (one worker: no hand-over between workers, the default of the
 * examples), or alone on worker 1 (the split the examples used before). */
static int detector_worker;
/* LuaJIT's code areas switched between writable and executable per trace
 * (1), or kept both, as the Bandit example runs (0; docs/TUNING.md). */
static int mcode_protect;

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* The process's minor page faults so far: a run's heaps meeting fresh
 * pages or pages the allocator gave back, which differs from run to run
 * of one process (BENCH_LOG). */
static double faults_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_minflt;
}

typedef struct {
  const char *key, *str; /* a string option, or */
  double num;            /* a number when str is NULL */
} opt;

static void on_result(void *ud, const myc_message *m) {
  run_state *st = ud;
  char text[256];
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  if (sscanf(text, "%lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf",
             &st->lines, &st->events, &st->signals, &st->seconds, &st->sig_p50,
             &st->sig_p99, &st->ev_p50, &st->ev_p99, &st->dropped,
             &st->p99_cold, &st->p99_steady, &st->n_cold, &st->n_steady,
             &st->refused) == 14)
    st->done = 1;
  myc_engine_stop(st->e, 0);
}

static void pack_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Adds a Lua service with options 'o' (n of them) and, when 'list' is
 * set, an option "services" listing the bench's services. */
static int add(myc_engine *e, const char *name, const char *module, int worker,
               const opt *o, int n, int list) {
  static const char *const names[] = {"feeder", "polygon", "metadata", "arb"};
  char err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  int i, rc;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, (uint32_t)(n + (list ? 1 : 0)));
  for (i = 0; i < n; i++) {
    pack_str(&pk, o[i].key);
    if (o[i].str != NULL)
      pack_str(&pk, o[i].str);
    else
      msgpack_pack_double(&pk, o[i].num);
  }
  if (list) {
    pack_str(&pk, "services");
    msgpack_pack_array(&pk, 4);
    for (i = 0; i < 4; i++)
      pack_str(&pk, names[i]);
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

/* Starts the replay server on a free port ('loops' plays, 'rate' per
 * second or 0 for as fast as the client reads).  Returns its stdout
 * (pclose waits for it: --once ends it when the client has gone) and
 * fills 'url', or NULL. */
static FILE *replay_start(double loops, double rate, char *url, size_t n) {
  char cmd[1024], pace[64], line[512], *p;
  FILE *f;
  int port = 0;
  if (rate > 0)
    snprintf(pace, sizeof pace, "--rate %.0f", rate);
  else
    snprintf(pace, sizeof pace, "--fast");
  snprintf(cmd, sizeof cmd,
           "exec '%s/myc-replay' -q --once --ttl 600 --loop %.0f %s '%s'",
           MYC_BUILD_DIR, loops, pace, SAMPLE);
  f = popen(cmd, "r");
  if (f == NULL)
    return NULL;
  if (fgets(line, sizeof line, f) == NULL ||
      (p = strstr(line, "ws://127.0.0.1:")) == NULL ||
      sscanf(p, "ws://127.0.0.1:%d/", &port) != 1) {
    fprintf(stderr, "bench: myc-replay did not start (%s)\n", cmd);
    pclose(f);
    return NULL;
  }
  snprintf(url, n, "ws://127.0.0.1:%d/", port);
  return f;
}

static int setup(run_state *st) {
  myc_engine_config cfg;
  myc_contract_set *cs = NULL;
  int rc;
  /* As examples/bandit/mycelium.lua says (jit.mcode_protect = false),
   * except in the *_protected rows. */
  if (myc_jit_set_mcode_protect(mcode_protect) != 0)
    fprintf(stderr, "bench: jit.mcode_protect = false is not in effect\n");
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
  return rc;
}

/* One run: 'loops' plays of the sample at 'rate' lines per second (0: as
 * fast as the pipeline goes), over WebSocket when 'ws' is set. */
static int run_once(int ws, double loops, double rate, run_state *st) {
  char url[64], err[1024];
  FILE *server = NULL;
  opt feeder[] = {
      {"capture", SAMPLE, 0}, {"loops", NULL, loops}, {"rate", NULL, rate}};
  opt polygon[] = {{"source", "topic", 0},
                   {"url", url, 0},
                   {"end_after", NULL, 1 + loops * NOTES}};
  opt arb[] = {{"latency_samples", NULL, 200000}};
  int rc;
  memset(st, 0, sizeof *st);
  if (ws) {
    if ((server = replay_start(loops, rate, url, sizeof url)) == NULL)
      return 1;
    polygon[0].str = "ws";
  }
  st->cpu_secs = cpu_now();
  st->faults = faults_now();
  rc = setup(st);
  if (rc == 0 && !ws)
    rc = add(st->e, "feeder", MYC_SOURCE_DIR "/examples/bandit/feeder.lua", 0,
             feeder, rate > 0 ? 3 : 2, 0);
  if (rc == 0)
    rc = add(st->e, "polygon", MYC_SOURCE_DIR "/services/polygon_adapter.lua",
             0, polygon, ws ? 3 : 1, 0);
  if (rc == 0)
    rc = add(st->e, "metadata", MYC_SOURCE_DIR "/services/metadata_service.lua",
             0, NULL, 0, 0);
  if (rc == 0)
    rc = add(st->e, "arb", MYC_SOURCE_DIR "/services/arbitrage_detector.lua",
             detector_worker, arb, 1, 0);
  if (rc == 0)
    rc = add(st->e, "result", MYC_BENCH_LUA_DIR "/bandit_result.lua",
             detector_worker, NULL, 0, 1);
  if (rc == 0)
    rc = myc_engine_add_c_service(st->e, "results", "bench.result.*", on_result,
                                  st, 0);
  if (rc == 0 && (rc = myc_engine_start(st->e, err, sizeof err)) != 0)
    fprintf(stderr, "bench: bandit: %s\n", err);
  if (rc == 0)
    rc = myc_engine_run(st->e, 0);
  if (st->e != NULL)
    myc_engine_free(st->e);
  st->cpu_secs = cpu_now() - st->cpu_secs;
  st->faults = faults_now() - st->faults;
  if (server != NULL)
    pclose(server);
  if (rc != 0 || !st->done || st->dropped != 0 || st->refused != 0) {
    fprintf(stderr,
            "bench: bandit run failed (rc %d, done %d, refused at the "
            "sender %.0f, dropped at a mailbox %.0f)\n",
            rc, st->done, st->refused, st->dropped);
    return 1;
  }
  return 0;
}

/* BENCH_VARIANT=NAME (e.g. inproc_paced) runs that variant alone. */
static int skipped(const char *name) {
  const char *only = getenv("BENCH_VARIANT");
  return only != NULL && strcmp(only, name) != 0;
}

static int flood(int ws, const char *name) {
  double loops = 20000 * bench_scale(), thr[BENCH_RUNS], lps[BENCH_RUNS];
  double p50[BENCH_RUNS], p99[BENCH_RUNS], cpu[BENCH_RUNS];
  char metric[96];
  run_state st;
  int r;
  if (skipped(name))
    return 0;
  for (r = 0; r < BENCH_RUNS; r++) {
    if (run_once(ws, loops, 0, &st) != 0)
      return 1;
    thr[r] = st.events / st.seconds;
    lps[r] = st.lines / st.seconds;
    p50[r] = st.sig_p50 / 1e3;
    p99[r] = st.sig_p99 / 1e3;
    cpu[r] = st.cpu_secs / st.events * 1e6;
  }
  snprintf(metric, sizeof metric, "%s_events_per_s", name);
  bench_report("bandit", metric, bench_median(thr, BENCH_RUNS), "events/s",
               "accepted logs, as fast as it goes");
  snprintf(metric, sizeof metric, "%s_refused_at_sender", name);
  bench_report("bandit", metric, st.refused, "msgs",
               "last run; a run that refuses or drops fails");
  snprintf(metric, sizeof metric, "%s_dropped_at_mailbox", name);
  bench_report("bandit", metric, st.dropped, "msgs", "last run");
  snprintf(metric, sizeof metric, "%s_cpu_us_per_event", name);
  bench_report("bandit", metric, bench_median(cpu, BENCH_RUNS), "us",
               "engine process CPU (all threads) per accepted event; "
               "load-independent");
  snprintf(metric, sizeof metric, "%s_lines_per_s", name);
  bench_report("bandit", metric, bench_median(lps, BENCH_RUNS), "lines/s",
               "websocket messages, faults included");
  snprintf(metric, sizeof metric, "%s_signal_latency_p50", name);
  bench_report("bandit", metric, bench_median(p50, BENCH_RUNS), "us",
               "flooded: queueing included");
  snprintf(metric, sizeof metric, "%s_signal_latency_p99", name);
  bench_report("bandit", metric, bench_median(p99, BENCH_RUNS), "us",
               "flooded: queueing included");
  return 0;
}

/* 10 000 accepted events/s: the sample has 50 per 59 notifications. */
static int paced(int ws, const char *name) {
  double rate = 10000 * NOTES / ACCEPTED, secs = 5 * bench_scale() + 2;
  double p50[BENCH_RUNS], p99[BENCH_RUNS], e50[BENCH_RUNS], e99[BENCH_RUNS];
  double thr[BENCH_RUNS], cold[BENCH_RUNS], steady[BENCH_RUNS];
  char metric[96];
  run_state st;
  int r;
  if (skipped(name))
    return 0;
  for (r = 0; r < BENCH_RUNS; r++) {
    if (run_once(ws, secs * rate / NOTES, rate, &st) != 0)
      return 1;
    p50[r] = st.sig_p50 / 1e3;
    p99[r] = st.sig_p99 / 1e3;
    e50[r] = st.ev_p50 / 1e3;
    e99[r] = st.ev_p99 / 1e3;
    thr[r] = st.events / st.seconds;
    cold[r] = st.p99_cold / 1e3;
    steady[r] = st.p99_steady / 1e3;
    if (getenv("BENCH_LOG") != NULL)
      fprintf(stderr, "bandit %s run %d: p99 cold %.0f us, steady %.0f us, "
              "%.0f minor faults, %.2f s CPU\n", name, r + 1, cold[r],
              steady[r], st.faults, st.cpu_secs);
  }
  snprintf(metric, sizeof metric, "%s_events_per_s", name);
  bench_report("bandit", metric, bench_median(thr, BENCH_RUNS), "events/s",
               "paced at 11 800 messages/s");
  snprintf(metric, sizeof metric, "%s_signal_latency_p50", name);
  bench_report("bandit", metric, bench_median(p50, BENCH_RUNS), "us",
               "log arrival -> signal");
  snprintf(metric, sizeof metric, "%s_signal_latency_p99", name);
  bench_report("bandit", metric, bench_median(p99, BENCH_RUNS), "us",
               "whole run, cold start included");
  snprintf(metric, sizeof metric, "%s_signal_p99_cold", name);
  bench_report("bandit", metric, bench_median(cold, BENCH_RUNS), "us",
               "signals of logs that arrived in the first 2 s");
  snprintf(metric, sizeof metric, "%s_signal_p99_steady", name);
  bench_report("bandit", metric, bench_median(steady, BENCH_RUNS), "us",
               "signals of logs that arrived after 2 s");
  snprintf(metric, sizeof metric, "%s_applied_latency_p50", name);
  bench_report("bandit", metric, bench_median(e50, BENCH_RUNS), "us",
               "log arrival -> EventApplied");
  snprintf(metric, sizeof metric, "%s_applied_latency_p99", name);
  bench_report("bandit", metric, bench_median(e99, BENCH_RUNS), "us", "");
  return 0;
}

/* Every variant with the pipeline on one worker, the paced WebSocket one
 * again with LuaJIT's code protection on, then the paced ones with the
 * detector on a worker of its own, in the same invocation: the measured
 * reasons for the example's settings. */
int bench_bandit(void) {
  detector_worker = 0;
  if (flood(1, "ws_flood") != 0 || paced(1, "ws_paced") != 0 ||
      flood(0, "inproc_flood") != 0 || paced(0, "inproc_paced") != 0)
    return 1;
  mcode_protect = 1;
  if (paced(1, "ws_paced_protected") != 0)
    return 1;
  mcode_protect = 0;
  detector_worker = 1;
  if (paced(1, "ws_paced_split") != 0 || flood(1, "ws_flood_split") != 0)
    return 1;
  return 0;
}
