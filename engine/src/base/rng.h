/* rng.h -- xoshiro256** for trace and span ids: a few ns per id, one
 * generator per worker so no state is shared between threads. */
#ifndef MYC_RNG_H
#define MYC_RNG_H

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} myc__rng;

/* Seeds from the OS (getrandom), falling back to time and address bits. */
void myc__rng_seed(myc__rng *r);

static inline uint64_t myc__rng_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t myc__rng_next(myc__rng *r) {
  uint64_t *s = r->s;
  uint64_t result = myc__rng_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = myc__rng_rotl(s[3], 45);
  return result;
}

/* A nonzero 64-bit value: W3C trace context forbids all-zero ids. */
static inline uint64_t myc__rng_id(myc__rng *r) {
  uint64_t v;
  do
    v = myc__rng_next(r);
  while (v == 0);
  return v;
}

#endif
