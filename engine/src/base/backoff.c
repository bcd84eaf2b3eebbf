/* backoff.c -- exponential backoff with jitter (see backoff.h). */
#include "base/backoff.h"

#include <math.h>

double myc__backoff_ms(const myc__backoff *b, uint32_t n, myc__rng *rng) {
  double d, u;
  if (b->initial_ms <= 0)
    return 0;
  d = b->initial_ms * pow(b->multiplier, (double)n);
  if (!(d <= b->max_ms)) /* also inf and NaN */
    d = b->max_ms;
  /* 53 random bits: u uniform in [-1, 1). */
  u = (double)(myc__rng_next(rng) >> 11) * 0x1.0p-52 - 1;
  d *= 1 + b->jitter * u;
  return d > 0 ? d : 0;
}

int myc__backoff_ok(const myc__backoff *b) {
  return b->initial_ms >= 0 && b->initial_ms <= MYC_MAX_MS &&
         b->max_ms >= 0 && b->max_ms <= MYC_MAX_MS && b->multiplier >= 1 &&
         b->multiplier <= MYC_BACKOFF_MAX_MULTIPLIER && b->jitter >= 0 &&
         b->jitter <= 1;
}
