/* clock.c -- engine clock (see clock.h). */
#include "base/clock.h"

#include <sys/resource.h>
#include <time.h>

static int64_t read_clock(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void myc__clock_init(myc__clock *c, int is_virtual) {
  int64_t mono = read_clock(CLOCK_MONOTONIC);
  c->epoch_offset_ns = read_clock(CLOCK_REALTIME) - mono;
  c->is_virtual = is_virtual;
  atomic_init(&c->virtual_ns, mono + c->epoch_offset_ns);
}

int64_t myc__clock_now(const myc__clock *c) {
  if (c->is_virtual)
    return atomic_load_explicit(&c->virtual_ns, memory_order_relaxed);
  return read_clock(CLOCK_MONOTONIC) + c->epoch_offset_ns;
}

void myc__clock_set(myc__clock *c, int64_t ns) {
  if (ns > atomic_load_explicit(&c->virtual_ns, memory_order_relaxed))
    atomic_store_explicit(&c->virtual_ns, ns, memory_order_relaxed);
}

int64_t myc__mono_ns(void) { return read_clock(CLOCK_MONOTONIC); }

int64_t myc__thread_cpu_ns(void) { return read_clock(CLOCK_THREAD_CPUTIME_ID); }

uint64_t myc__thread_faults(void) {
#ifdef RUSAGE_THREAD
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) == 0)
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
#endif
  return 0;
}
