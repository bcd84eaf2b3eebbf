/* floor_ring.c -- floor: a bare single-producer/single-consumer ring of
 * 64-byte slots between two threads, copying every slot in and out; what
 * moving a message between cores costs with nothing else around it. */
#include "bench.h"

#include <stdatomic.h>
#include <string.h>
#include <uv.h>

#define SLOTS 4096

typedef struct {
  _Alignas(64) _Atomic uint64_t head;
  _Alignas(64) _Atomic uint64_t tail;
  _Alignas(64) unsigned char slot[SLOTS][64];
  uint64_t n;
  uint64_t checksum;
} ring;

static void consumer(void *arg) {
  ring *q = arg;
  uint64_t i, head = 0, tail = 0, sum = 0;
  unsigned char buf[64];
  for (i = 0; i < q->n; i++) {
    while (head == tail)
      tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    memcpy(buf, q->slot[head % SLOTS], 64);
    sum += buf[0];
    atomic_store_explicit(&q->head, ++head, memory_order_release);
  }
  q->checksum = sum;
}

static double run_once(uint64_t n) {
  static ring q;
  uv_thread_t t;
  uint64_t i, tail = 0, head = 0;
  unsigned char msg[64];
  double t0;
  memset(msg, 1, sizeof msg);
  atomic_store(&q.head, 0);
  atomic_store(&q.tail, 0);
  q.n = n;
  uv_thread_create(&t, consumer, &q);
  t0 = bench_now();
  for (i = 0; i < n; i++) {
    while (tail - head == SLOTS)
      head = atomic_load_explicit(&q.head, memory_order_acquire);
    memcpy(q.slot[tail % SLOTS], msg, 64);
    atomic_store_explicit(&q.tail, ++tail, memory_order_release);
  }
  uv_thread_join(&t);
  return (double)n / (bench_now() - t0);
}

int bench_floor_ring(void) {
  double runs[BENCH_RUNS];
  uint64_t n = (uint64_t)(5e7 * bench_scale());
  int r;
  for (r = 0; r < BENCH_RUNS; r++)
    runs[r] = run_once(n);
  bench_ring_floor_rate = bench_median(runs, BENCH_RUNS);
  bench_report("floor", "spsc_ring_64B_msgs_per_s", bench_ring_floor_rate,
               "msg/s", "2 threads");
  return 0;
}
