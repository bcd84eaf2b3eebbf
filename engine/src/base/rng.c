/* rng.c -- seeding for the per-worker id generators. */
#include "base/rng.h"

#include <sys/random.h>
#include <time.h>

void myc__rng_seed(myc__rng *r) {
  struct timespec ts;
  int i;
  if (getrandom(r->s, sizeof r->s, 0) == (ssize_t)sizeof r->s &&
      (r->s[0] | r->s[1] | r->s[2] | r->s[3]) != 0)
    return;
  clock_gettime(CLOCK_REALTIME, &ts);
  r->s[0] = (uint64_t)ts.tv_nsec ^ 0x9E3779B97F4A7C15ull;
  r->s[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)r;
  r->s[2] = 0xBF58476D1CE4E5B9ull;
  r->s[3] = 0x94D049BB133111EBull;
  for (i = 0; i < 16; i++)
    (void)myc__rng_next(r);
}
