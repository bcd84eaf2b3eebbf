/* links.c -- scenario: Lua -> Lua across two `mycelium run` processes
 * linked over a Unix socket, over TCP (127.0.0.1) and over TCP with TLS
 * (tls+tcp://, certificates of spec/support/certs.sh), 64-byte and 1 KiB
 * messages, one-way throughput from the consumer's first message to its
 * last; ZeroMQ PUSH/PULL over ipc and tcp between two processes (fork)
 * and raw Unix and TCP sockets (64 messages per write), measured the same
 * way in the same run.  MYC_BENCH_BEFORE=/path/to/another/mycelium adds
 * rows of that binary (a build before a change) to the same run. */
#include "bench.h"

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
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

/* The mycelium binary the next runs use. */
static const char *mycelium_bin = MYC_BUILD_DIR "/mycelium";

static pid_t spawn_run(const char *config) {
  char path[256];
  char *argv[] = {(char *)mycelium_bin, "run", path, NULL};
  pid_t pid;
  snprintf(path, sizeof path, "%s/%s", dir, config);
  if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
    return -1;
  return pid;
}

/* Runs node a (module 'amod', listening on 'url') and node b (module
 * 'bmod', dialling it) until b stops (120 s at most); b writes two
 * numbers to 'out'.  A tls+tcp:// link uses the certificates in
 * 'dir'/certs.  Each node's service shares worker 0 with "_links"
 * (link.worker, docs/LINKS.md): what it emits is queued and written by
 * its own worker, without waking another.  Returns 0 or -1. */
static int two_nodes(const char *url, const char *amod, const char *bmod,
                     const char *opts, const char *out) {
  char cfg[4096], tls_a[600] = "", tls_b[600] = "";
  pid_t a, b;
  int status;
  unlink(out);
  if (strncmp(url, "tls+tcp://", 10) == 0) {
    snprintf(tls_a, sizeof tls_a,
             " tls = { cert = \"%s/certs/srv.crt\", key = "
             "\"%s/certs/srv.key\" },", dir, dir);
    snprintf(tls_b, sizeof tls_b, " tls = { ca = \"%s/certs/ca.crt\" },",
             dir);
  }
  snprintf(cfg, sizeof cfg,
           "return { node = \"a\", workers = 2, log = { level = \"error\" },\n"
           "  listen = { \"%s\" }, link = { worker = 0,%s },\n"
           "  services = { { name = \"a\", worker = 0, module = \"%s/%s\","
           " opts = { %s } } } }\n",
           url, tls_a, MYC_BENCH_LUA_DIR, amod, opts);
  write_file("a.lua", cfg);
  snprintf(cfg, sizeof cfg,
           "return { node = \"b\", workers = 2, log = { level = \"error\" },\n"
           "  connect = { \"%s\" }, link = { worker = 0, reconnect_initial_ms"
           " = 10, reconnect_max_ms = 50,%s },\n"
           "  services = { { name = \"b\", worker = 0, module = \"%s/%s\","
           " opts = { %s, out = \"%s\" } } } }\n",
           url, tls_b, MYC_BENCH_LUA_DIR, bmod, opts, out);
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

/* CPU time (user + system) of the children reaped so far, in seconds. */
static double children_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* CPU of both processes of the last ours_once per message, in ns (their
 * start and stop included). */
static double last_cpu_ns;

/* One run of ours over 'url': messages per second, or 0. */
static double ours_once(const char *url, uint64_t n, int size) {
  char out[256], opts[64];
  double got = 0, secs = 0, cpu0 = children_cpu();
  FILE *f;
  snprintf(out, sizeof out, "%s/result", dir);
  /* The consumer reads every payload, as zmq_once's and raw_once's
   * readers do. */
  snprintf(opts, sizeof opts, "n = %llu, size = %d, read = true",
           (unsigned long long)n, size);
  if (two_nodes(url, "link_producer.lua", "link_consumer.lua", opts, out) != 0)
    return 0;
  last_cpu_ns = (children_cpu() - cpu0) * 1e9 / (double)n;
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
static double zmq_once(const char *endpoint, uint64_t n, int size) {
  int fds[2];
  pid_t child;
  double secs = 0;
  static char msg[1024];
  uint64_t i;
  if (pipe(fds) != 0)
    return 0;
  child = fork();
  if (child == 0) {
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_PULL);
    static char buf[1024];
    double t0 = 0, t;
    close(fds[0]);
    zmq_bind(s, endpoint);
    if (write(fds[1], "r", 1) != 1)
      _exit(1);
    for (i = 0; i < n; i++) {
      if (zmq_recv(s, buf, sizeof buf, 0) != size)
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
      zmq_send(s, msg, (size_t)size, 0);
    if (read(fds[0], &secs, sizeof secs) != sizeof secs)
      secs = 0;
    zmq_close(s);
    zmq_ctx_term(ctx);
  }
  close(fds[0]);
  waitpid(child, NULL, 0);
  return secs > 0 ? (double)(n - 1) / secs : 0;
}

/* A connected pair of stream sockets: a Unix socket pair, or a TCP
 * connection over 127.0.0.1 (TCP_NODELAY, as the links set it).
 * Returns 0 or -1. */
static int stream_pair(int tcp, int sv[2]) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int ls, one = 1;
  if (!tcp)
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  ls = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      listen(ls, 1) != 0 || getsockname(ls, (struct sockaddr *)&sa, &len) != 0)
    return -1;
  sv[0] = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(sv[0], (struct sockaddr *)&sa, sizeof sa) != 0)
    return -1;
  sv[1] = accept(ls, NULL, NULL);
  close(ls);
  if (sv[1] < 0)
    return -1;
  setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return 0;
}

/* The floor: a Unix or TCP stream between two processes, messages of
 * 'size' bytes written 64 per write, counted by the reader.  Messages per
 * second from the reader's first byte to its last. */
static double raw_once(uint64_t n, int size, int tcp) {
  int sv[2];
  pid_t child;
  double secs = 0;
  if (stream_pair(tcp, sv) != 0)
    return 0;
  child = fork();
  if (child == 0) {
    static char buf[1 << 16];
    uint64_t got = 0;
    double t0 = 0, t;
    close(sv[0]);
    while (got < n * (uint64_t)size) {
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
    static char batch[64 * 1024];
    uint64_t i;
    memset(batch, 'r', sizeof batch);
    for (i = 0; i < n; i += 64) {
      size_t len = (n - i >= 64 ? 64 : n - i) * (size_t)size, off = 0;
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

/* The round-trip floor: 64 bytes back and forth over a Unix or TCP
 * stream between two processes. */
static int raw_rtt(int n, int tcp, double *p50, double *p99) {
  int sv[2], i, warm = 1000;
  pid_t child;
  double *v = malloc((size_t)n * sizeof *v);
  char buf[64];
  if (v == NULL || stream_pair(tcp, sv) != 0)
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


int bench_links(void) {
  uint64_t n = (uint64_t)(2e6 * bench_scale());
  /* 1 KiB rows: a quarter of the messages (the same order of bytes). */
  uint64_t nk = n / 4;
  const char *before = getenv("MYC_BENCH_BEFORE");
  char url[256], ipc[256];
  enum { U64, T64, U1K, T1K, ZI64, ZT64, ZI1K, ZT1K, FU64, FT64, FU1K, FT1K,
         S64, S1K, BU64, BT64, BU1K, BT1K, CU64, CT64, CBU64, CBT64, NROWS };
  static const char *const NAME[NROWS] = {
      "unix_64B", "tcp_64B", "unix_1KiB", "tcp_1KiB", "zmq_ipc_64B",
      "zmq_tcp_64B", "zmq_ipc_1KiB", "zmq_tcp_1KiB", "floor_unix_64B",
      "floor_tcp_64B", "floor_unix_1KiB", "floor_tcp_1KiB", "tls_64B",
      "tls_1KiB", "before_unix_64B", "before_tcp_64B", "before_unix_1KiB",
      "before_tcp_1KiB", "cpu_ns_per_msg_unix_64B", "cpu_ns_per_msg_tcp_64B",
      "before_cpu_ns_per_msg_unix_64B", "before_cpu_ns_per_msg_tcp_64B"};
  static const char *const NOTE[NROWS] = {
      "Lua -> Lua, 2 processes", "Lua -> Lua, 2 processes",
      "Lua -> Lua, 2 processes", "Lua -> Lua, 2 processes",
      "ZeroMQ PUSH/PULL, 2 processes", "ZeroMQ PUSH/PULL, 2 processes",
      "ZeroMQ PUSH/PULL, 2 processes", "ZeroMQ PUSH/PULL, 2 processes",
      "Unix stream socket, 64 messages per write",
      "TCP stream, 64 messages per write",
      "Unix stream socket, 64 messages per write",
      "TCP stream, 64 messages per write",
      "Lua -> Lua, 2 processes, tls+tcp:// (TLS 1.3)",
      "Lua -> Lua, 2 processes, tls+tcp:// (TLS 1.3)",
      "MYC_BENCH_BEFORE binary, Lua -> Lua", "MYC_BENCH_BEFORE binary, Lua -> Lua",
      "MYC_BENCH_BEFORE binary, Lua -> Lua", "MYC_BENCH_BEFORE binary, Lua -> Lua",
      "both processes' CPU (user + system) per message",
      "both processes' CPU (user + system) per message",
      "MYC_BENCH_BEFORE binary, both processes' CPU per message",
      "MYC_BENCH_BEFORE binary, both processes' CPU per message"};
  double v[NROWS][BENCH_RUNS];
  int r, k, port = 17000 + (int)(getpid() % 20000);
  if (mkdtemp(dir) == NULL)
    return 1;
  {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sh %s/spec/support/certs.sh %s/certs",
             MYC_SOURCE_DIR, dir);
    if (system(cmd) != 0)
      return 1;
  }
  memset(v, 0, sizeof v);
  for (r = 0; r < BENCH_RUNS; r++) {
    /* Ours, and the binary before a change, alternating in each run. */
    for (k = 0; k < (before ? 2 : 1); k++) {
      int base = k ? BU64 : U64, sz;
      mycelium_bin = k ? before : MYC_BUILD_DIR "/mycelium";
      for (sz = 0; sz < 2; sz++) {
        snprintf(url, sizeof url, "unix://%s/l.sock", dir);
        v[base + 2 * sz][r] = ours_once(url, sz ? nk : n, sz ? 1024 : 64);
        if (sz == 0)
          v[k ? CBU64 : CU64][r] = last_cpu_ns;
        snprintf(url, sizeof url, "tcp://127.0.0.1:%d",
                 port + 40 * r + 10 * k + sz);
        v[base + 2 * sz + 1][r] = ours_once(url, sz ? nk : n, sz ? 1024 : 64);
        if (sz == 0)
          v[k ? CBT64 : CT64][r] = last_cpu_ns;
      }
    }
    mycelium_bin = MYC_BUILD_DIR "/mycelium";
    snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", port + 40 * r + 32);
    v[S64][r] = ours_once(url, n, 64);
    snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", port + 40 * r + 33);
    v[S1K][r] = ours_once(url, nk, 1024);
    snprintf(ipc, sizeof ipc, "ipc://%s/z.ipc", dir);
    v[ZI64][r] = zmq_once(ipc, n, 64);
    v[ZI1K][r] = zmq_once(ipc, nk, 1024);
    snprintf(ipc, sizeof ipc, "tcp://127.0.0.1:%d", port + 40 * r + 30);
    v[ZT64][r] = zmq_once(ipc, n, 64);
    snprintf(ipc, sizeof ipc, "tcp://127.0.0.1:%d", port + 40 * r + 31);
    v[ZT1K][r] = zmq_once(ipc, nk, 1024);
    v[FU64][r] = raw_once(n, 64, 0);
    v[FT64][r] = raw_once(n, 64, 1);
    v[FU1K][r] = raw_once(nk, 1024, 0);
    v[FT1K][r] = raw_once(nk, 1024, 1);
  }
  for (k = 0; k < NROWS; k++)
    if ((k < BU64 || k == CU64 || k == CT64) || before != NULL)
      bench_report_median("links", NAME[k], v[k], BENCH_RUNS,
                          k >= CU64 ? "ns" : "msg/s", NOTE[k]);
  {
    /* Round trips: one run each (20000 timed after 1000). */
    int rt = (int)(20000 * bench_scale());
    double p50 = 0, p99 = 0;
    char note[96];
    struct {
      const char *name, *url;
      int zmq;
    } rtt[5];
    snprintf(url, sizeof url, "unix://%s/r.sock", dir);
    snprintf(ipc, sizeof ipc, "ipc://%s/r.ipc", dir);
    rtt[0].name = "rtt_unix_p50", rtt[0].url = url, rtt[0].zmq = 0;
    rtt[1].name = "rtt_tcp_p50", rtt[1].url = "tcp://127.0.0.1:0", rtt[1].zmq = 0;
    rtt[2].name = "rtt_zmq_ipc_p50", rtt[2].url = ipc, rtt[2].zmq = 1;
    rtt[3].name = "rtt_zmq_tcp_p50", rtt[3].url = NULL, rtt[3].zmq = 1;
    rtt[4].name = "rtt_tls_p50", rtt[4].url = NULL, rtt[4].zmq = 0;
    for (r = 0; r < 5; r++) {
      char tcp[64];
      const char *u = rtt[r].url;
      if (r == 1 || r == 3 || r == 4) {
        snprintf(tcp, sizeof tcp, "%s://127.0.0.1:%d",
                 r == 4 ? "tls+tcp" : "tcp", port + 10 + r);
        u = tcp;
      }
      if ((rtt[r].zmq ? zmq_rtt(u, rt, &p50, &p99) : ours_rtt(u, rt, &p50, &p99)) != 0)
        p50 = p99 = 0;
      snprintf(note, sizeof note, "p99 %.1f us; %s, 64 B or less, 2 processes",
               p99, rtt[r].zmq ? "ZeroMQ REQ/REP" : "Lua ping-pong");
      bench_report("links", rtt[r].name, p50, "us", note);
    }
    if (before != NULL) {
      /* Ours and the binary before a change, alternating, BENCH_RUNS
       * runs each: p50 over Unix and TCP. */
      static const char *const RN[4] = {
          "rtt_unix_p50_alternated", "before_rtt_unix_p50",
          "rtt_tcp_p50_alternated", "before_rtt_tcp_p50"};
      double rv[4][BENCH_RUNS];
      int j;
      memset(rv, 0, sizeof rv);
      for (j = 0; j < BENCH_RUNS; j++)
        for (k = 0; k < 4; k++) {
          char u[256];
          mycelium_bin = k & 1 ? before : MYC_BUILD_DIR "/mycelium";
          if (k < 2)
            snprintf(u, sizeof u, "unix://%s/r.sock", dir);
          else
            snprintf(u, sizeof u, "tcp://127.0.0.1:%d", port + 200 + 4 * j + k);
          if (ours_rtt(u, rt, &p50, &p99) == 0)
            rv[k][j] = p50;
        }
      mycelium_bin = MYC_BUILD_DIR "/mycelium";
      for (k = 0; k < 4; k++)
        bench_report_median("links", RN[k], rv[k], BENCH_RUNS, "us",
                            k & 1 ? "MYC_BENCH_BEFORE binary, Lua ping-pong"
                                  : "Lua ping-pong, alternated with before");
    }
    for (r = 0; r < 2; r++) {
      if (raw_rtt(rt, r, &p50, &p99) != 0)
        p50 = p99 = 0;
      snprintf(note, sizeof note, "p99 %.1f us; %s, 64 B, 2 processes", p99,
               r ? "TCP stream" : "Unix stream socket");
      bench_report("links", r ? "rtt_floor_tcp_p50" : "rtt_floor_unix_p50",
                   p50, "us", note);
    }
  }
  {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
      return 1;
  }
  return 0;
}
