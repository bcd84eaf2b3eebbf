/* slabs_test.c -- the pool of Lua slabs: slabs are distinct, reused once
 * given back, cut from few chunks of the hook, and all returned at the
 * end; a budget with a pool takes its slab there and gives it back. */
#include "test.h"

#include "base/slabs.h"

#include <string.h>

#define SLAB (64u << 10)

static void slabs_are_distinct_and_reused(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__slabs p;
  enum { N = 150 }; /* more than one chunk holds */
  static unsigned char *s[N];
  int i;

  CHECK_EQ(myc__slabs_init(&p, &a, SLAB), 0);
  for (i = 0; i < N; i++) {
    CHECK((s[i] = myc__slabs_take(&p)) != NULL);
    memset(s[i], i, SLAB);
  }
  /* A slab overlapping another would have had its bytes overwritten. */
  for (i = 0; i < N; i++)
    CHECK(s[i][0] == (unsigned char)i && s[i][SLAB - 1] == (unsigned char)i);
  CHECK_EQ(fa.count, 2); /* two chunks, not a slab at a time */
  myc__slabs_give(&p, s[7]);
  myc__slabs_give(&p, s[3]);
  CHECK(myc__slabs_take(&p) == s[3]);
  CHECK(myc__slabs_take(&p) == s[7]);
  CHECK_EQ(fa.count, 2);
  myc__slabs_destroy(&p);
  CHECK_EQ(fa.live, 0);
}

/* Out of memory, no slab; the next take after the hook recovers works. */
static void a_refused_chunk_gives_no_slab(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__slabs p;
  CHECK_EQ(myc__slabs_init(&p, &a, SLAB), 0);
  fa.fail_at = 1;
  CHECK(myc__slabs_take(&p) == NULL);
  CHECK(myc__slabs_take(&p) != NULL);
  myc__slabs_destroy(&p);
  CHECK_EQ(fa.live, 0);
}

/* A budget's slab comes from its pool and goes back there at the drain,
 * for the next state. */
static void a_budget_takes_its_slab_from_the_pool(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__slabs p;
  myc__lua_budget b;
  void *x, *slab;

  CHECK_EQ(myc__slabs_init(&p, &a, SLAB), 0);
  memset(&b, 0, sizeof b);
  b.base = &a;
  b.pool = &p;
  b.slab_size = SLAB;
  x = myc__lua_alloc(&b, NULL, 0, 20);
  CHECK(x != NULL);
  slab = b.slab;
  CHECK(slab != NULL && (char *)x == (char *)slab);
  CHECK_EQ(fa.count, 1); /* the chunk */
  myc__lua_alloc(&b, x, 20, 0);
  myc__lua_budget_drain(&b);
  CHECK(b.slab == NULL);
  CHECK(p.free == slab);
  x = myc__lua_alloc(&b, NULL, 0, 40);
  CHECK(b.slab == slab);
  CHECK_EQ(fa.count, 1);
  myc__lua_alloc(&b, x, 40, 0);
  myc__lua_budget_drain(&b);
  myc__slabs_destroy(&p);
  CHECK_EQ(fa.live, 0);
}

int main(void) {
  static const test_case cases[] = {
      {"slabs_are_distinct_and_reused", slabs_are_distinct_and_reused},
      {"a_refused_chunk_gives_no_slab", a_refused_chunk_gives_no_slab},
      {"a_budget_takes_its_slab_from_the_pool",
       a_budget_takes_its_slab_from_the_pool},
      {NULL, NULL}};
  return run_tests(cases);
}
