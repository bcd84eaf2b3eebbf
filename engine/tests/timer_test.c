/* timer_test.c -- a worker's timer heap (timer.h): deadlines in order and
 * ties in the order they were set, nothing popped before it is due, the
 * timers of one owner and id range forgotten and the heap still in
 * order, and a failed growth that adds nothing.
 */
#include "test.h"

#include "core/timer.h"

static int fire(void *arg, uint64_t id) {
  (void)arg;
  (void)id;
  return 0;
}

static int other(void *arg, uint64_t id) {
  (void)arg;
  (void)id;
  return 1;
}

static const myc__alloc heap = {myc__default_alloc, NULL};

static void test_empty(void) {
  myc__timers t;
  myc__timer out;
  myc__timers_init(&t, &heap);
  CHECK(myc__timers_next(&t) == INT64_MAX);
  CHECK_EQ(myc__timers_pop_due(&t, INT64_MAX, &out), 0);
  myc__timers_forget(&t, fire, NULL, 0, UINT64_MAX);
  myc__timers_destroy(&t);
}

static void test_order_and_ties(void) {
  myc__timers t;
  myc__timer out;
  static const int64_t deadlines[] = {50, 10, 30, 10, 50, 20, 10};
  static const uint64_t want[] = {1, 3, 6, 5, 2, 0, 4}; /* ids by fire order */
  int x;
  myc__timers_init(&t, &heap);
  for (uint64_t i = 0; i < 7; i++)
    CHECK_EQ(myc__timers_add(&t, deadlines[i], i == 2 ? 5 : 0, fire, &x, i),
             0);
  CHECK_EQ(myc__timers_next(&t), 10);
  /* nothing is due before its deadline */
  CHECK_EQ(myc__timers_pop_due(&t, 9, &out), 0);
  for (int i = 0; i < 7; i++) {
    CHECK_EQ(myc__timers_pop_due(&t, 1000, &out), 1);
    CHECK_EQ(out.id, want[i]);
    CHECK(out.fn == fire && out.arg == &x);
    CHECK_EQ(out.interval, out.id == 2 ? 5 : 0);
  }
  CHECK_EQ(myc__timers_pop_due(&t, 1000, &out), 0);
  CHECK(myc__timers_next(&t) == INT64_MAX);
  myc__timers_destroy(&t);
}

/* Pops only what is due at each instant, across growth of the heap. */
static void test_many_in_order(void) {
  myc__timers t;
  myc__timer out;
  uint64_t seed = 12345;
  int64_t last = INT64_MIN, now;
  uint64_t last_seq = 0;
  uint32_t popped = 0;
  myc__timers_init(&t, &heap);
  for (uint64_t i = 0; i < 5000; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    CHECK_EQ(myc__timers_add(&t, (int64_t)(seed >> 54), 0, fire, NULL, i), 0);
  }
  CHECK_EQ(t.n, 5000);
  for (now = 0; now < 1100; now += 7) {
    while (myc__timers_pop_due(&t, now, &out)) {
      CHECK(out.deadline <= now);
      CHECK(out.deadline > last ||
            (out.deadline == last && out.seq > last_seq));
      last = out.deadline;
      last_seq = out.seq;
      popped++;
    }
    CHECK(myc__timers_next(&t) > now);
  }
  CHECK_EQ(popped, 5000);
  myc__timers_destroy(&t);
}

static void test_forget(void) {
  myc__timers t;
  myc__timer out;
  int a, b;
  int64_t last = INT64_MIN;
  uint32_t left = 0;
  myc__timers_init(&t, &heap);
  for (uint64_t i = 0; i < 300; i++) {
    int64_t d = (int64_t)((i * 7919) % 301);
    CHECK_EQ(myc__timers_add(&t, d, 0, fire, i % 2 ? &a : &b, i), 0);
    CHECK_EQ(myc__timers_add(&t, d, 0, other, &a, i), 0);
  }
  /* fire/&a with ids in [100, 200): the odd ones there, 50 timers */
  myc__timers_forget(&t, fire, &a, 100, 200);
  CHECK_EQ(t.n, 550);
  while (myc__timers_pop_due(&t, INT64_MAX, &out)) {
    CHECK(out.deadline >= last);
    last = out.deadline;
    CHECK(!(out.fn == fire && out.arg == &a && out.id >= 100 && out.id < 200));
    left++;
  }
  CHECK_EQ(left, 550);
  myc__timers_destroy(&t);
}

static void test_alloc_failure(void) {
  failing_alloc fa = {0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__timers t;
  myc__timer out;
  myc__timers_init(&t, &a);
  /* the first growth fails: nothing added */
  fa.fail_at = 1;
  CHECK_EQ(myc__timers_add(&t, 5, 0, fire, NULL, 1), MYC_ENOMEM);
  CHECK_EQ(t.n, 0);
  CHECK(myc__timers_next(&t) == INT64_MAX);
  for (uint64_t i = 0; i < 16; i++)
    CHECK_EQ(myc__timers_add(&t, (int64_t)i, 0, fire, NULL, i), 0);
  /* the second growth (16 -> 32) fails: the 16 stay, in order */
  fa.fail_at = fa.count + 1;
  CHECK_EQ(myc__timers_add(&t, 0, 0, fire, NULL, 99), MYC_ENOMEM);
  CHECK_EQ(t.n, 16);
  for (uint64_t i = 0; i < 16; i++) {
    CHECK_EQ(myc__timers_pop_due(&t, 100, &out), 1);
    CHECK_EQ(out.id, i);
  }
  myc__timers_destroy(&t);
  CHECK_EQ(fa.live, 0);
}

int main(void) {
  static const test_case cases[] = {
      {"empty", test_empty},
      {"order_and_ties", test_order_and_ties},
      {"many_in_order", test_many_in_order},
      {"forget", test_forget},
      {"alloc_failure", test_alloc_failure},
      {NULL, NULL},
  };
  return run_tests(cases);
}
