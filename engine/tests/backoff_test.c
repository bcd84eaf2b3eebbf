/* backoff_test.c -- the one backoff: exponential, capped, +-jitter. */
#include "test.h"

#include "base/backoff.h"

static void grows_then_caps_without_jitter(void) {
  myc__backoff b = {10, 100, 2, 0};
  myc__rng r;
  myc__rng_seed(&r);
  CHECK(myc__backoff_ms(&b, 0, &r) == 10);
  CHECK(myc__backoff_ms(&b, 1, &r) == 20);
  CHECK(myc__backoff_ms(&b, 3, &r) == 80);
  CHECK(myc__backoff_ms(&b, 4, &r) == 100);
  CHECK(myc__backoff_ms(&b, 4000, &r) == 100); /* pow overflows to inf */
}

static void jitter_stays_within_its_share_both_ways(void) {
  myc__backoff b = {100, 1000, 2, 0.2};
  myc__rng r;
  double lo = 1e9, hi = 0;
  int i;
  myc__rng_seed(&r);
  for (i = 0; i < 20000; i++) {
    double d = myc__backoff_ms(&b, 0, &r);
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  CHECK(lo >= 80 && lo < 81);  /* reaches down to -20% */
  CHECK(hi < 120 && hi > 119); /* and up to +20% */
}

static void zero_initial_is_always_zero(void) {
  myc__backoff b = {0, 5000, 2, 1};
  myc__rng r;
  myc__rng_seed(&r);
  CHECK(myc__backoff_ms(&b, 7, &r) == 0);
}

static void settings_are_checked(void) {
  myc__backoff ok = {10, 5000, 2, 0.2}, bad_mult = {10, 5000, 0.5, 0.2},
               bad_jitter = {10, 5000, 2, 1.5}, bad_delay = {-1, 5000, 2, 0};
  CHECK(myc__backoff_ok(&ok));
  CHECK(!myc__backoff_ok(&bad_mult));
  CHECK(!myc__backoff_ok(&bad_jitter));
  CHECK(!myc__backoff_ok(&bad_delay));
}

int main(void) {
  static const test_case cases[] = {
      {"grows_then_caps_without_jitter", grows_then_caps_without_jitter},
      {"jitter_stays_within_its_share_both_ways",
       jitter_stays_within_its_share_both_ways},
      {"zero_initial_is_always_zero", zero_initial_is_always_zero},
      {"settings_are_checked", settings_are_checked},
      {NULL, NULL}};
  return run_tests(cases);
}
