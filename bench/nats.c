/* nats.c -- scenario: Lua -> Lua across two `mycelium run` processes
 * through one nats-server (127.0.0.1), 64-byte and 1 KiB messages:
 * one-way throughput from the consumer's first message to its last, and
 * the round trip of a ping-pong; against raw libnats C publish/subscribe
 * between two processes through the same server, measured the same way in
 * the same run.  MYC_BENCH_BEFORE=/path/to/another/mycelium adds that
 * binary's round trips (a build before a change), alternated with ours and
 * raw libnats in each run; MYC_BENCH_MYCELIUM=/path/to/mycelium runs that
 * binary as "ours" (to alternate two builds' throughput rows). */
#include "bench.h"

#ifdef MYC_BENCH_NATS

#include <nats/nats.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char dir[] = "/tmp/myc_bench_nats_XXXXXX";
static char server_url[64];
static pid_t server;
static const char *mycelium_bin = MYC_BUILD_DIR "/mycelium";

/* CPU seconds (user + system) of this process, of its waited-for
 * children, and of the nats-server: a run's cost per message is their
 * difference over the run, which the other jobs of a loaded machine do
 * not change as they change wall-clock time. */
static double cpu_of(int who) {
  struct rusage ru;
  getrusage(who, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static double cpu_server(void) {
  char path[64], buf[1024], *p;
  unsigned long ut = 0, st = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)server);
  if ((f = fopen(path, "r")) == NULL)
    return 0;
  p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
  fclose(f);
  /* after "(comm)": state and 10 more fields, then utime and stime */
  if (p == NULL || sscanf(p + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                          "%*u %lu %lu",
                          &ut, &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU microseconds per message of the two clients and of the server. */
typedef struct {
  double clients, server;
} cpu_cost;

static void cpu_start(double t[3]) {
  t[0] = cpu_of(RUSAGE_SELF);
  t[1] = cpu_of(RUSAGE_CHILDREN);
  t[2] = cpu_server();
}

static cpu_cost cpu_end(const double t[3], uint64_t n) {
  cpu_cost c;
  c.clients = (cpu_of(RUSAGE_SELF) - t[0] + cpu_of(RUSAGE_CHILDREN) - t[1]) *
              1e6 / (double)n;
  c.server = (cpu_server() - t[2]) * 1e6 / (double)n;
  return c;
}

static pid_t spawn_argv(char *const argv[]) {
  pid_t pid;
  if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
    return -1;
  return pid;
}

static void write_file(const char *name, const char *text) {
  char path[256];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  if (f != NULL) {
    fputs(text, f);
    fclose(f);
  }
}

static pid_t spawn_run(const char *config) {
  char path[256];
  char *argv[] = {(char *)mycelium_bin, "run", path, NULL};
  snprintf(path, sizeof path, "%s/%s", dir, config);
  return spawn_argv(argv);
}

/* Node a runs 'amod', node b 'bmod' (which stops its engine when done and
 * writes two numbers to 'out'); both reach each other only through the
 * nats-server.  Each node's service shares worker 0 with "_nats"
 * (nats.worker, docs/TUNING.md): its publishes reach the NATS thread
 * without crossing workers, as raw libnats publishes from the thread of
 * its callback.  Returns 0 or -1. */
static int two_nodes(const char *amod, const char *bmod, const char *opts,
                     const char *out) {
  char cfg[2048];
  pid_t a, b;
  int status, i;
  unlink(out);
  snprintf(cfg, sizeof cfg,
           "return { node = \"a\", workers = 2, log = { level = \"error\" },\n"
           "  connect = { \"%s\" }, nats = { worker = 0 },\n"
           "  services = { { name = \"a\", worker = 0, module = \"%s/%s\","
           " opts = { %s } } } }\n",
           server_url, MYC_BENCH_LUA_DIR, amod, opts);
  write_file("a.lua", cfg);
  snprintf(cfg, sizeof cfg,
           "return { node = \"b\", workers = 2, log = { level = \"error\" },\n"
           "  connect = { \"%s\" }, nats = { worker = 0 },\n"
           "  services = { { name = \"b\", worker = 0, module = \"%s/%s\","
           " opts = { %s, out = \"%s\" } } } }\n",
           server_url, MYC_BENCH_LUA_DIR, bmod, opts, out);
  write_file("b.lua", cfg);
  a = spawn_run("a.lua");
  b = spawn_run("b.lua");
  if (a < 0 || b < 0)
    return -1;
  for (i = 0; i < 12000 && waitpid(b, &status, WNOHANG) == 0; i++)
    usleep(10000);
  if (i == 12000) {
    kill(b, SIGKILL);
    waitpid(b, &status, 0);
  }
  kill(a, SIGTERM);
  waitpid(a, &status, 0);
  return 0;
}

static double ours_once(uint64_t n, int size, cpu_cost *cpu) {
  char out[256], opts[96];
  double got = 0, secs = 0, t[3];
  FILE *f;
  cpu_start(t);
  snprintf(out, sizeof out, "%s/result", dir);
  snprintf(opts, sizeof opts, "n = %llu, size = %d", (unsigned long long)n,
           size);
  if (two_nodes("link_producer.lua", "link_consumer.lua", opts, out) != 0)
    return 0;
  *cpu = cpu_end(t, n);
  f = fopen(out, "r");
  if (f == NULL || fscanf(f, "%lf %lf", &got, &secs) != 2 || got != (double)n ||
      secs <= 0) {
    if (f != NULL)
      fclose(f);
    return 0;
  }
  fclose(f);
  return (double)(n - 1) / secs;
}

static int ours_rtt(int n, int size, double *p50, double *p99) {
  char out[256], opts[96];
  FILE *f;
  int ok;
  snprintf(out, sizeof out, "%s/rtt", dir);
  snprintf(opts, sizeof opts, "n = %d, warmup = 1000, size = %d", n, size);
  if (two_nodes("link_ponger.lua", "link_pinger.lua", opts, out) != 0)
    return -1;
  f = fopen(out, "r");
  ok = f != NULL && fscanf(f, "%lf %lf", p50, p99) == 2;
  if (f != NULL)
    fclose(f);
  return ok ? 0 : -1;
}

static natsConnection *raw_connect(int asap) {
  natsOptions *o = NULL;
  natsConnection *nc = NULL;
  natsOptions_Create(&o);
  natsOptions_SetURL(o, server_url);
  if (asap)
    natsOptions_SetSendAsap(o, true);
  if (natsConnection_Connect(&nc, o) != NATS_OK)
    nc = NULL;
  natsOptions_Destroy(o);
  return nc;
}

/* Raw libnats: this process publishes 'n' messages of 'size' bytes (the
 * default buffered writes, a PING/PONG flush every 32768 as the window the
 * Lua producer keeps), a child reads them with a synchronous
 * subscription.  Messages per second, first to last message read. */
static double raw_once(uint64_t n, int size, cpu_cost *cpu) {
  int fds[2];
  pid_t child;
  double secs = 0, c0[3];
  cpu_start(c0);
  if (pipe(fds) != 0)
    return 0;
  child = fork();
  if (child == 0) {
    natsConnection *nc = raw_connect(0);
    natsSubscription *sub = NULL;
    double t0 = 0, t;
    uint64_t i;
    close(fds[0]);
    if (nc == NULL ||
        natsConnection_SubscribeSync(&sub, nc, "raw.bench") != NATS_OK ||
        natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK || write(fds[1], "r", 1) != 1)
      _exit(1);
    for (i = 0; i < n; i++) {
      natsMsg *m = NULL;
      if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK)
        _exit(1);
      if (i == 0)
        t0 = bench_now();
      natsMsg_Destroy(m);
    }
    t = bench_now() - t0;
    if (write(fds[1], &t, sizeof t) != sizeof t)
      _exit(1);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    _exit(0);
  }
  close(fds[1]);
  {
    char r, *msg = malloc((size_t)size);
    natsConnection *nc = raw_connect(0);
    uint64_t i;
    if (msg == NULL || nc == NULL || read(fds[0], &r, 1) != 1) {
      kill(child, SIGKILL);
      waitpid(child, NULL, 0);
      return 0;
    }
    memset(msg, 'x', (size_t)size);
    for (i = 0; i < n; i++) {
      natsConnection_Publish(nc, "raw.bench", msg, size);
      if ((i + 1) % 32768 == 0)
        natsConnection_FlushTimeout(nc, 10000);
    }
    natsConnection_FlushTimeout(nc, 10000);
    if (read(fds[0], &secs, sizeof secs) != sizeof secs)
      secs = 0;
    natsConnection_Destroy(nc);
    free(msg);
  }
  close(fds[0]);
  waitpid(child, NULL, 0);
  *cpu = cpu_end(c0, n);
  return secs > 0 ? (double)(n - 1) / secs : 0;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* Raw libnats ping-pong between this process and a child, each message
 * written at once (SendAsap). */
static int raw_rtt(int n, int size, double *p50, double *p99) {
  int fds[2], i, warm = 1000;
  pid_t child;
  double *v = malloc((size_t)n * sizeof *v);
  char *msg = malloc((size_t)size), r;
  if (v == NULL || msg == NULL || pipe(fds) != 0)
    return -1;
  child = fork();
  if (child == 0) {
    natsConnection *nc = raw_connect(1);
    natsSubscription *sub = NULL;
    close(fds[0]);
    if (nc == NULL ||
        natsConnection_SubscribeSync(&sub, nc, "raw.ping") != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK || write(fds[1], "r", 1) != 1)
      _exit(1);
    for (i = 0; i < n + warm; i++) {
      natsMsg *m = NULL;
      if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK)
        _exit(1);
      natsConnection_Publish(nc, "raw.pong", natsMsg_GetData(m),
                             natsMsg_GetDataLength(m));
      natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    _exit(0);
  }
  close(fds[1]);
  {
    natsConnection *nc = raw_connect(1);
    natsSubscription *sub = NULL;
    if (nc == NULL ||
        natsConnection_SubscribeSync(&sub, nc, "raw.pong") != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK || read(fds[0], &r, 1) != 1) {
      kill(child, SIGKILL);
      waitpid(child, NULL, 0);
      return -1;
    }
    memset(msg, 'p', (size_t)size);
    for (i = 0; i < n + warm; i++) {
      natsMsg *m = NULL;
      double t0 = bench_now();
      natsConnection_Publish(nc, "raw.ping", msg, size);
      if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK)
        break;
      natsMsg_Destroy(m);
      if (i >= warm)
        v[i - warm] = (bench_now() - t0) * 1e6;
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
  }
  close(fds[0]);
  waitpid(child, NULL, 0);
  free(msg);
  if (i < n + warm) {
    free(v);
    return -1;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  *p50 = v[(n - 1) / 2];
  *p99 = v[(int)((n - 1) * 0.99)];
  free(v);
  return 0;
}

int bench_nats(void) {
  uint64_t n = (uint64_t)(1e6 * bench_scale());
  int rt = (int)(10000 * bench_scale());
  int port = 18000 + (int)(getpid() % 20000), r, s, rc = 0;
  const char *before = getenv("MYC_BENCH_BEFORE");
  static const int sizes[2] = {64, 1024};
  char port_s[16];
  char *argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port_s, NULL};
  if (getenv("MYC_BENCH_MYCELIUM") != NULL)
    mycelium_bin = getenv("MYC_BENCH_MYCELIUM");
  if (mkdtemp(dir) == NULL)
    return 1;
  snprintf(port_s, sizeof port_s, "%d", port);
  snprintf(server_url, sizeof server_url, "nats://127.0.0.1:%d", port);
  server = spawn_argv(argv);
  if (server < 0) {
    fprintf(stderr, "bench nats: cannot run nats-server (scripts/deps.sh)\n");
    return 1;
  }
  usleep(300000);
  nats_Open(-1);
  for (s = 0; s < 2; s++) {
    double ours[BENCH_RUNS], raw[BENCH_RUNS], p50[BENCH_RUNS],
        p99[BENCH_RUNS], rp50[BENCH_RUNS], rp99[BENCH_RUNS], m;
    double bp50[BENCH_RUNS], bp99[BENCH_RUNS], ratio[4][BENCH_RUNS];
    double cpu_ours[BENCH_RUNS], cpu_raw[BENCH_RUNS], srv_ours[BENCH_RUNS],
        srv_raw[BENCH_RUNS];
    char metric[64];
    for (r = 0; r < BENCH_RUNS; r++) {
      cpu_cost c = {0, 0};
      ours[r] = ours_once(n, sizes[s], &c);
      cpu_ours[r] = c.clients;
      srv_ours[r] = c.server;
      raw[r] = raw_once(n, sizes[s], &c);
      cpu_raw[r] = c.clients;
      srv_raw[r] = c.server;
    }
    snprintf(metric, sizeof metric, "lua_%dB", sizes[s]);
    bench_report_median("nats", metric, ours, BENCH_RUNS, "msg/s",
                        "Lua -> Lua, 2 processes, 1 nats-server");
    snprintf(metric, sizeof metric, "raw_libnats_%dB", sizes[s]);
    bench_report_median("nats", metric, raw, BENCH_RUNS, "msg/s",
                        "libnats C publish -> sync subscription, 2 processes");
    snprintf(metric, sizeof metric, "ratio_%dB", sizes[s]);
    bench_report("nats", metric,
                 bench_median(ours, BENCH_RUNS) / bench_median(raw, BENCH_RUNS),
                 "x", "Lua over NATS / raw libnats throughput (medians)");
    /* CPU per message: what a loaded machine does not distort. */
    snprintf(metric, sizeof metric, "cpu_lua_%dB", sizes[s]);
    bench_report_median("nats", metric, cpu_ours, BENCH_RUNS, "us",
                        "both engines, user+sys, per message");
    snprintf(metric, sizeof metric, "cpu_raw_libnats_%dB", sizes[s]);
    bench_report_median("nats", metric, cpu_raw, BENCH_RUNS, "us",
                        "publisher + subscriber, user+sys, per message");
    snprintf(metric, sizeof metric, "cpu_ratio_%dB", sizes[s]);
    bench_report("nats", metric,
                 bench_median(cpu_ours, BENCH_RUNS) /
                     bench_median(cpu_raw, BENCH_RUNS),
                 "x", "client CPU per message, Lua over NATS / raw (medians)");
    snprintf(metric, sizeof metric, "cpu_server_lua_%dB", sizes[s]);
    bench_report_median("nats", metric, srv_ours, BENCH_RUNS, "us",
                        "nats-server, user+sys, per message");
    snprintf(metric, sizeof metric, "cpu_server_raw_%dB", sizes[s]);
    bench_report_median("nats", metric, srv_raw, BENCH_RUNS, "us",
                        "nats-server, user+sys, per message");
    /* Alternated, BENCH_RUNS of each: one pair would be one draw of
     * the VM's scheduling. */
    for (r = 0; r < BENCH_RUNS; r++) {
      int k;
      bp50[r] = bp99[r] = 0;
      /* Ours, raw, before; every other run before, raw, ours: the first
       * after the throughput rows meets the server still busy with them. */
      for (k = 0; k < 3; k++) {
        int which = r % 2 ? 2 - k : k;
        if (which == 0 && ours_rtt(rt, sizes[s], &p50[r], &p99[r]) != 0)
          p50[r] = p99[r] = 0, rc = 1;
        if (which == 1 && raw_rtt(rt, sizes[s], &rp50[r], &rp99[r]) != 0)
          rp50[r] = rp99[r] = 0, rc = 1;
        if (which == 2 && before != NULL) {
          mycelium_bin = before;
          if (ours_rtt(rt, sizes[s], &bp50[r], &bp99[r]) != 0)
            bp50[r] = bp99[r] = 0, rc = 1;
          mycelium_bin = getenv("MYC_BENCH_MYCELIUM") != NULL
                             ? getenv("MYC_BENCH_MYCELIUM")
                             : MYC_BUILD_DIR "/mycelium";
        }
      }
      /* Each run's ratios, against the raw round trip of the same run. */
      ratio[0][r] = rp50[r] > 0 ? p50[r] / rp50[r] : 0;
      ratio[1][r] = rp99[r] > 0 ? p99[r] / rp99[r] : 0;
      ratio[2][r] = rp50[r] > 0 ? bp50[r] / rp50[r] : 0;
      ratio[3][r] = rp99[r] > 0 ? bp99[r] / rp99[r] : 0;
    }
    for (r = 0; r < (before != NULL ? 4 : 2); r++) {
      static const char *const RN[4] = {"rtt_p50_ratio_runs",
                                        "rtt_p99_ratio_runs",
                                        "before_rtt_p50_ratio_runs",
                                        "before_rtt_p99_ratio_runs"};
      snprintf(metric, sizeof metric, "%s_%dB", RN[r], sizes[s]);
      bench_report_median("nats", metric, ratio[r], BENCH_RUNS, "x",
                          r < 2 ? "ours / raw libnats, each run's ratio"
                                : "MYC_BENCH_BEFORE binary / raw libnats, "
                                  "each run's ratio");
    }
    if (before != NULL) {
      snprintf(metric, sizeof metric, "before_rtt_lua_%dB_p50", sizes[s]);
      bench_report_median("nats", metric, bp50, BENCH_RUNS, "us",
                          "MYC_BENCH_BEFORE binary, Lua ping-pong");
      snprintf(metric, sizeof metric, "before_rtt_lua_%dB_p99", sizes[s]);
      bench_report_median("nats", metric, bp99, BENCH_RUNS, "us",
                          "MYC_BENCH_BEFORE binary, Lua ping-pong");
    }
    snprintf(metric, sizeof metric, "rtt_lua_%dB_p99", sizes[s]);
    bench_report_median("nats", metric, p99, BENCH_RUNS, "us",
                        "Lua ping-pong through NATS");
    snprintf(metric, sizeof metric, "rtt_raw_libnats_%dB_p99", sizes[s]);
    bench_report_median("nats", metric, rp99, BENCH_RUNS, "us",
                        "libnats C ping-pong (SendAsap)");
    snprintf(metric, sizeof metric, "rtt_lua_%dB_p50", sizes[s]);
    bench_report_median("nats", metric, p50, BENCH_RUNS, "us",
                        "Lua ping-pong through NATS");
    snprintf(metric, sizeof metric, "rtt_raw_libnats_%dB_p50", sizes[s]);
    bench_report_median("nats", metric, rp50, BENCH_RUNS, "us",
                        "libnats C ping-pong (SendAsap)");
    snprintf(metric, sizeof metric, "rtt_ratio_%dB", sizes[s]);
    m = bench_median(rp50, BENCH_RUNS);
    bench_report("nats", metric, m > 0 ? bench_median(p50, BENCH_RUNS) / m : 0,
                 "x", "Lua / raw libnats round trip p50 (medians)");
  }
  kill(server, SIGTERM);
  waitpid(server, NULL, 0);
  {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
      return 1;
  }
  return rc;
}

#else

int bench_nats(void) {
  fprintf(stderr, "bench nats: built without NATS (libnats-dev)\n");
  return 1;
}

#endif
