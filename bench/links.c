/* links.c -- scenario: Lua -> Lua across two `mycelium run` processes
 * linked over a Unix socket and over TCP (127.0.0.1), 64-byte messages,
 * one-way throughput from the consumer's first message to its last; and
 * ZeroMQ PUSH/PULL over ipc and tcp between two processes (fork), 64
 * bytes, measured the same way in the same run. */
#include "bench.h"

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

static char dir[] = "/tmp/myc_bench_links_XXXXXX";

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
  char *argv[] = {MYC_BUILD_DIR "/mycelium", "run", path, NULL};
  pid_t pid;
  snprintf(path, sizeof path, "%s/%s", dir, config);
  if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
    return -1;
  return pid;
}

/* Runs node a (module 'amod', listening on 'url') and node b (module
 * 'bmod', dialling it) until b stops (120 s at most); b writes two
 * numbers to 'out'.  Returns 0 or -1. */
static int two_nodes(const char *url, const char *amod, const char *bmod,
                     const char *opts, const char *out) {
  char cfg[2048];
  pid_t a, b;
  int status;
  unlink(out);
  snprintf(cfg, sizeof cfg,
           "return { node = \"a\", workers = 2, log = { level = \"error\" },\n"
           "  listen = { \"%s\" },\n"
           "  services = { { name = \"a\", module = \"%s/%s\","
           " opts = { %s } } } }\n",
           url, MYC_BENCH_LUA_DIR, amod, opts);
  write_file("a.lua", cfg);
  snprintf(cfg, sizeof cfg,
           "return { node = \"b\", workers = 2, log = { level = \"error\" },\n"
           "  connect = { \"%s\" }, link = { reconnect_initial_ms = 10,"
           " reconnect_max_ms = 50 },\n"
           "  services = { { name = \"b\", module = \"%s/%s\","
           " opts = { %s, out = \"%s\" } } } }\n",
           url, MYC_BENCH_LUA_DIR, bmod, opts, out);
  write_file("b.lua", cfg);
  a = spawn_run("a.lua");
  b = spawn_run("b.lua");
  if (a < 0 || b < 0)
    return -1;
  /* b stops by itself after n messages; 120 s at most. */
  {
    int i;
    for (i = 0; i < 12000 && waitpid(b, &status, WNOHANG) == 0; i++)
      usleep(10000);
    if (i == 12000) {
      kill(b, SIGKILL);
      waitpid(b, &status, 0);
    }
  }
  kill(a, SIGTERM);
  waitpid(a, &status, 0);
  return 0;
}

/* One run of ours over 'url': messages per second, or 0. */
static double ours_once(const char *url, uint64_t n) {
  char out[256], opts[64];
  double got = 0, secs = 0;
  FILE *f;
  snprintf(out, sizeof out, "%s/result", dir);
  snprintf(opts, sizeof opts, "n = %llu", (unsigned long long)n);
  if (two_nodes(url, "link_producer.lua", "link_consumer.lua", opts, out) != 0)
    return 0;
  f = fopen(out, "r");
  if (f == NULL || fscanf(f, "%lf %lf", &got, &secs) != 2 ||
      got != (double)n || secs <= 0) {
    if (f != NULL)
      fclose(f);
    return 0;
  }
  fclose(f);
  return (double)(n - 1) / secs;
}

/* Ping-pong over 'url' (b pings, a answers): p50 and p99 in us. */
static int ours_rtt(const char *url, int n, double *p50, double *p99) {
  char out[256], opts[64];
  FILE *f;
  int ok;
  snprintf(out, sizeof out, "%s/rtt", dir);
  snprintf(opts, sizeof opts, "n = %d, warmup = 1000", n);
  if (two_nodes(url, "link_ponger.lua", "link_pinger.lua", opts, out) != 0)
    return -1;
  f = fopen(out, "r");
  ok = f != NULL && fscanf(f, "%lf %lf", p50, p99) == 2;
  if (f != NULL)
    fclose(f);
  return ok ? 0 : -1;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* ZeroMQ REQ (this process) / REP (a child), 64 bytes: p50 and p99. */
static int zmq_rtt(const char *endpoint, int n, double *p50, double *p99) {
  int fds[2], i, warm = 1000;
  pid_t child;
  double *v = malloc((size_t)n * sizeof *v);
  char msg[64], buf[64], r;
  if (v == NULL || pipe(fds) != 0)
    return -1;
  child = fork();
  if (child == 0) {
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REP);
    close(fds[0]);
    zmq_bind(s, endpoint);
    if (write(fds[1], "r", 1) != 1)
      _exit(1);
    for (i = 0; i < n + warm; i++) {
      if (zmq_recv(s, buf, sizeof buf, 0) != 64 ||
          zmq_send(s, buf, 64, 0) != 64)
        _exit(1);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    _exit(0);
  }
  close(fds[1]);
  {
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
    if (read(fds[0], &r, 1) != 1)
      return -1;
    zmq_connect(s, endpoint);
    memset(msg, 'z', sizeof msg);
    for (i = 0; i < n + warm; i++) {
      double t0 = bench_now();
      zmq_send(s, msg, sizeof msg, 0);
      zmq_recv(s, buf, sizeof buf, 0);
      if (i >= warm)
        v[i - warm] = (bench_now() - t0) * 1e6;
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
  }
  close(fds[0]);
  waitpid(child, NULL, 0);
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  *p50 = v[(n - 1) / 2];
  *p99 = v[(int)((n - 1) * 0.99)];
  free(v);
  return 0;
}

/* ZeroMQ PUSH (this process) -> PULL (a child), 64-byte messages. */
static double zmq_once(const char *endpoint, uint64_t n) {
  int fds[2];
  pid_t child;
  double secs = 0;
  char msg[64];
  uint64_t i;
  if (pipe(fds) != 0)
    return 0;
  child = fork();
  if (child == 0) {
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_PULL);
    char buf[64];
    double t0 = 0, t;
    close(fds[0]);
    zmq_bind(s, endpoint);
    if (write(fds[1], "r", 1) != 1)
      _exit(1);
    for (i = 0; i < n; i++) {
      if (zmq_recv(s, buf, sizeof buf, 0) != 64)
        _exit(1);
      if (i == 0)
        t0 = bench_now();
    }
    t = bench_now() - t0;
    if (write(fds[1], &t, sizeof t) != sizeof t)
      _exit(1);
    zmq_close(s);
    zmq_ctx_term(ctx);
    _exit(0);
  }
  close(fds[1]);
  {
    char r;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_PUSH);
    if (read(fds[0], &r, 1) != 1)
      return 0;
    zmq_connect(s, endpoint);
    memset(msg, 'z', sizeof msg);
    for (i = 0; i < n; i++)
      zmq_send(s, msg, sizeof msg, 0);
    if (read(fds[0], &secs, sizeof secs) != sizeof secs)
      secs = 0;
    zmq_close(s);
    zmq_ctx_term(ctx);
  }
  close(fds[0]);
  waitpid(child, NULL, 0);
  return secs > 0 ? (double)(n - 1) / secs : 0;
}

/* The floor: a Unix stream socket pair between two processes, 64-byte
 * messages written 64 per write, counted by the reader.  Messages per
 * second from the reader's first byte to its last. */
static double raw_once(uint64_t n) {
  int sv[2];
  pid_t child;
  double secs = 0;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return 0;
  child = fork();
  if (child == 0) {
    static char buf[1 << 16];
    uint64_t got = 0;
    double t0 = 0, t;
    close(sv[0]);
    while (got < n * 64) {
      ssize_t k = read(sv[1], buf, sizeof buf);
      if (k <= 0)
        _exit(1);
      if (got == 0)
        t0 = bench_now();
      got += (uint64_t)k;
    }
    t = bench_now() - t0;
    if (write(sv[1], &t, sizeof t) != sizeof t)
      _exit(1);
    _exit(0);
  }
  close(sv[1]);
  {
    static char batch[64 * 64];
    uint64_t i;
    memset(batch, 'r', sizeof batch);
    for (i = 0; i < n; i += 64) {
      size_t len = (n - i >= 64 ? 64 : n - i) * 64, off = 0;
      while (off < len) {
        ssize_t k = write(sv[0], batch + off, len - off);
        if (k <= 0)
          break;
        off += (size_t)k;
      }
    }
    if (read(sv[0], &secs, sizeof secs) != sizeof secs)
      secs = 0;
  }
  close(sv[0]);
  waitpid(child, NULL, 0);
  return secs > 0 ? (double)(n - 1) / secs : 0;
}

/* The round-trip floor: 64 bytes back and forth over a Unix stream
 * socket pair between two processes. */
static int raw_rtt(int n, double *p50, double *p99) {
  int sv[2], i, warm = 1000;
  pid_t child;
  double *v = malloc((size_t)n * sizeof *v);
  char buf[64];
  if (v == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  child = fork();
  if (child == 0) {
    close(sv[0]);
    for (i = 0; i < n + warm; i++)
      if (read(sv[1], buf, 64) != 64 || write(sv[1], buf, 64) != 64)
        _exit(1);
    _exit(0);
  }
  close(sv[1]);
  memset(buf, 'r', sizeof buf);
  for (i = 0; i < n + warm; i++) {
    double t0 = bench_now();
    if (write(sv[0], buf, 64) != 64 || read(sv[0], buf, 64) != 64)
      break;
    if (i >= warm)
      v[i - warm] = (bench_now() - t0) * 1e6;
  }
  close(sv[0]);
  waitpid(child, NULL, 0);
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

static void report(const char *metric, double *runs, const char *note) {
  double lo = runs[0], hi = runs[0];
  char text[160];
  int r;
  for (r = 1; r < BENCH_RUNS; r++) {
    lo = runs[r] < lo ? runs[r] : lo;
    hi = runs[r] > hi ? runs[r] : hi;
  }
  snprintf(text, sizeof text, "min %.0f max %.0f; %s", lo, hi, note);
  bench_report("links", metric, bench_median(runs, BENCH_RUNS), "msg/s", text);
}

int bench_links(void) {
  uint64_t n = (uint64_t)(2e6 * bench_scale());
  char url[256], ipc[256];
  double ours_unix[BENCH_RUNS], ours_tcp[BENCH_RUNS], z_ipc[BENCH_RUNS],
      z_tcp[BENCH_RUNS], raw[BENCH_RUNS];
  int r, port = 17000 + (int)(getpid() % 20000);
  if (mkdtemp(dir) == NULL)
    return 1;
  for (r = 0; r < BENCH_RUNS; r++) {
    snprintf(url, sizeof url, "unix://%s/l.sock", dir);
    ours_unix[r] = ours_once(url, n);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port + 2 * r);
    ours_tcp[r] = ours_once(url, n);
    snprintf(ipc, sizeof ipc, "ipc://%s/z.ipc", dir);
    z_ipc[r] = zmq_once(ipc, n);
    snprintf(ipc, sizeof ipc, "tcp://127.0.0.1:%d", port + 2 * r + 1);
    z_tcp[r] = zmq_once(ipc, n);
    raw[r] = raw_once(n);
  }
  report("unix_64B", ours_unix, "Lua -> Lua, 2 processes");
  report("tcp_64B", ours_tcp, "Lua -> Lua, 2 processes");
  report("zmq_ipc_64B", z_ipc, "ZeroMQ PUSH/PULL, 2 processes");
  report("zmq_tcp_64B", z_tcp, "ZeroMQ PUSH/PULL, 2 processes");
  report("floor_unix_64B", raw, "Unix stream socket, 64 messages per write");
  {
    /* Round trips: one run each (20000 timed after 1000). */
    int rt = (int)(20000 * bench_scale());
    double p50 = 0, p99 = 0;
    char note[96];
    struct {
      const char *name, *url;
      int zmq;
    } rtt[4];
    snprintf(url, sizeof url, "unix://%s/r.sock", dir);
    snprintf(ipc, sizeof ipc, "ipc://%s/r.ipc", dir);
    rtt[0].name = "rtt_unix_p50", rtt[0].url = url, rtt[0].zmq = 0;
    rtt[1].name = "rtt_tcp_p50", rtt[1].url = "tcp://127.0.0.1:0", rtt[1].zmq = 0;
    rtt[2].name = "rtt_zmq_ipc_p50", rtt[2].url = ipc, rtt[2].zmq = 1;
    rtt[3].name = "rtt_zmq_tcp_p50", rtt[3].url = NULL, rtt[3].zmq = 1;
    for (r = 0; r < 4; r++) {
      char tcp[64];
      const char *u = rtt[r].url;
      if (r == 1 || r == 3) {
        snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", port + 10 + r);
        u = tcp;
      }
      if ((rtt[r].zmq ? zmq_rtt(u, rt, &p50, &p99) : ours_rtt(u, rt, &p50, &p99)) != 0)
        p50 = p99 = 0;
      snprintf(note, sizeof note, "p99 %.1f us; %s, 64 B or less, 2 processes",
               p99, rtt[r].zmq ? "ZeroMQ REQ/REP" : "Lua ping-pong");
      bench_report("links", rtt[r].name, p50, "us", note);
    }
    if (raw_rtt(rt, &p50, &p99) != 0)
      p50 = p99 = 0;
    snprintf(note, sizeof note, "p99 %.1f us; Unix stream socket, 64 B, "
             "2 processes", p99);
    bench_report("links", "rtt_floor_unix_p50", p50, "us", note);
  }
  {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
      return 1;
  }
  return 0;
}
