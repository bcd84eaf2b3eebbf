/* peer_zmq.c -- peer: ZeroMQ inproc PUSH/PULL with 64-byte messages, one
 * sender and one receiver thread in one context (default HWM), measured
 * from the receiver's first message to its last. */
#include "bench.h"

#include <string.h>
#include <uv.h>
#include <zmq.h>

typedef struct {
  void *ctx;
  uint64_t n;
  double secs;
  int ok;
} zjob;

static void receiver(void *arg) {
  zjob *j = arg;
  void *s = zmq_socket(j->ctx, ZMQ_PULL);
  char buf[64];
  uint64_t i;
  double t0 = 0;
  zmq_bind(s, "inproc://bench");
  j->ok = 1;
  for (i = 0; i < j->n; i++) {
    if (zmq_recv(s, buf, sizeof buf, 0) != 64) {
      j->ok = 0;
      break;
    }
    if (i == 0)
      t0 = bench_now();
  }
  j->secs = bench_now() - t0;
  zmq_close(s);
}

static double run_once(uint64_t n) {
  zjob j = {zmq_ctx_new(), n, 0, 0};
  uv_thread_t t;
  void *s;
  char msg[64];
  uint64_t i;
  memset(msg, 'z', sizeof msg);
  uv_thread_create(&t, receiver, &j);
  while (!j.ok) /* inproc: bind before connect */
    uv_sleep(1);
  s = zmq_socket(j.ctx, ZMQ_PUSH);
  zmq_connect(s, "inproc://bench");
  for (i = 0; i < n; i++)
    zmq_send(s, msg, sizeof msg, 0);
  uv_thread_join(&t);
  zmq_close(s);
  zmq_ctx_term(j.ctx);
  return j.ok ? (double)(n - 1) / j.secs : 0;
}

int bench_peer_zmq(void) {
  double runs[BENCH_RUNS];
  uint64_t n = (uint64_t)(5e6 * bench_scale());
  int r;
  for (r = 0; r < BENCH_RUNS; r++)
    runs[r] = run_once(n);
  bench_zmq_inproc_rate = bench_median(runs, BENCH_RUNS);
  bench_report("zmq", "inproc_pushpull_64B_msgs_per_s", bench_zmq_inproc_rate,
               "msg/s", "peer, 2 threads");
  return 0;
}
