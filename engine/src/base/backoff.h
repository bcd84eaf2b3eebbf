/* backoff.h -- the one reconnect and restart delay of the engine:
 * exponential, capped, then varied at random so that many clients (or
 * services) that failed together do not all come back in the same
 * millisecond.  The supervisor, the WebSocket client and the Redis client
 * all draw their delays here, with the same jitter rule.
 */
#ifndef MYC_BACKOFF_H
#define MYC_BACKOFF_H

#include "base/clock.h"
#include "base/rng.h"

#include <stdint.h>

typedef struct {
  double initial_ms; /* the first delay; 0: retry at once, always */
  double max_ms;     /* the exponential part never grows past this */
  double multiplier; /* growth per consecutive failure (>= 1) */
  double jitter;     /* 0..1: the delay varies by +- this fraction */
} myc__backoff;

/* The delay before retry number 'n' + 1 (n = 0: the first retry), in ms:
 * min(initial_ms * multiplier^n, max_ms) * (1 + jitter * u), u uniform in
 * [-1, 1) drawn from 'rng'.  Never negative; an infinite or NaN growth
 * counts as max_ms.  Cannot fail. */
double myc__backoff_ms(const myc__backoff *b, uint32_t n, myc__rng *rng);

#define MYC_BACKOFF_MAX_MULTIPLIER 1000

/* Nonzero when 'b' holds usable values: delays from 0 to MYC_MAX_MS,
 * multiplier from 1 to MYC_BACKOFF_MAX_MULTIPLIER, jitter in [0, 1] (NaN
 * and infinities are not). */
int myc__backoff_ok(const myc__backoff *b);

#endif
