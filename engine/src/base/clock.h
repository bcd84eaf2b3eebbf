/* clock.h -- the engine clock: nanoseconds since the Unix epoch, monotonic
 * (wall time at start plus elapsed monotonic time), or virtual when a test
 * drives it. */
#ifndef MYC_CLOCK_H
#define MYC_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
  int64_t epoch_offset_ns; /* realtime - monotonic at creation */
  int is_virtual;
  _Atomic int64_t virtual_ns;
} myc__clock;

void myc__clock_init(myc__clock *c, int is_virtual);

/* Current engine time in ns.  Reads the vDSO clock (about 25 ns), so the
 * hot path caches it per batch instead of calling this per message. */
int64_t myc__clock_now(const myc__clock *c);

/* The monotonic clock in ns, whatever the engine clock is: for measuring
 * real durations (a reload's pause, how long a handler has run). */
int64_t myc__mono_ns(void);

/* CPU time the calling thread has used, in ns, and the page faults it
 * has taken (0 where the system does not count them per thread): what a
 * pause cost the thread itself, apart from time spent preempted. */
int64_t myc__thread_cpu_ns(void);
uint64_t myc__thread_faults(void);

/* The longest delay or duration the engine takes, in ms and in s (about
 * 31 years).  Converted to int64 ns, even added to the clock, it stays far
 * from overflowing; a larger value (or an infinite one) is refused where
 * it comes in: timers, supervision settings, budgets. */
#define MYC_MAX_MS 1e12
#define MYC_MAX_S 1e9

/* Virtual clocks only: sets the time (never backwards). */
void myc__clock_set(myc__clock *c, int64_t ns);

#endif
