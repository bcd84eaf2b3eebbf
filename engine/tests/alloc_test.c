/* alloc_test.c -- the counting Lua allocator and its small-block cache. */
#include "test.h"

#include "base/alloc.h"

#include <string.h>
#ifdef MYC_MIMALLOC
#include <mimalloc.h>
#endif

static void *lua_alloc(myc__lua_budget *b, void *p, size_t o, size_t n) {
  return myc__lua_alloc(b, p, o, n);
}

static void small_blocks_are_reused(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  void *p, *q;

  memset(&b, 0, sizeof b);
  b.base = &a;
  p = lua_alloc(&b, NULL, 7 /* a type tag, not a size */, 20);
  CHECK(p != NULL);
  CHECK_EQ(atomic_load(&b.used), 20);
  CHECK_EQ(fa.live, 32); /* its class */
  lua_alloc(&b, p, 20, 0);
  CHECK_EQ(atomic_load(&b.used), 0);
  CHECK_EQ(fa.live, 32); /* cached */
  q = lua_alloc(&b, NULL, 0, 30);
  CHECK(q == p);
  CHECK_EQ(fa.count, 1);
  lua_alloc(&b, q, 30, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

static void resize_keeps_contents_and_balance(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  char *p;

  memset(&b, 0, sizeof b);
  b.base = &a;
  p = lua_alloc(&b, NULL, 0, 10);
  memcpy(p, "0123456789", 10);
  CHECK(lua_alloc(&b, p, 10, 12) == p); /* same class: in place */
  p = lua_alloc(&b, p, 12, 100);        /* another class */
  CHECK(memcmp(p, "0123456789", 10) == 0);
  p = lua_alloc(&b, p, 100, 1000); /* large */
  CHECK(memcmp(p, "0123456789", 10) == 0);
  p = lua_alloc(&b, p, 1000, 5000); /* large to large: base realloc */
  p = lua_alloc(&b, p, 5000, 40);   /* back to small */
  CHECK(memcmp(p, "0123456789", 10) == 0);
  CHECK_EQ(atomic_load(&b.used), 40);
  lua_alloc(&b, p, 40, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

/* Lua requires shrinking to succeed: without memory the block stays. */
static void shrinking_never_fails(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  void *p;

  memset(&b, 0, sizeof b);
  b.base = &a;
  p = lua_alloc(&b, NULL, 0, 200);
  fa.fail_at = fa.count + 1;
  CHECK(lua_alloc(&b, p, 200, 20) == p);
  CHECK_EQ(atomic_load(&b.used), 20);
  fa.fail_at = fa.count + 1;
  CHECK(lua_alloc(&b, NULL, 0, 300) == NULL); /* growing may fail */
  CHECK_EQ(atomic_load(&b.used), 20);
  /* The kept block is larger than its new class: it is only ever handed
   * out for smaller requests, and the base hook sees the smaller size
   * (the one imprecision, on this out-of-memory path). */
  lua_alloc(&b, p, 20, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 200 + 8 - 32);
}

static void the_limit_refuses_growth(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  void *p;

  memset(&b, 0, sizeof b);
  b.base = &a;
  b.limit = 100;
  p = lua_alloc(&b, NULL, 0, 64);
  CHECK(p != NULL);
  CHECK(lua_alloc(&b, NULL, 0, 64) == NULL);
  CHECK_EQ(b.refused, 1);
  p = lua_alloc(&b, p, 64, 16); /* shrinking passes the limit check */
  CHECK(p != NULL);
  CHECK_EQ(atomic_load(&b.used), 16);
  lua_alloc(&b, p, 16, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

/* The cache is bounded: past MYC_LUA_CACHE_BYTES blocks go back (a live
 * large block keeps the heap above the cap meanwhile). */
static void the_cache_is_bounded(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  enum { N = MYC_LUA_CACHE_BYTES / 256 + 100 };
  static void *blocks[N];
  void *big;
  size_t i;

  memset(&b, 0, sizeof b);
  b.base = &a;
  CHECK((big = lua_alloc(&b, NULL, 0, 2 * MYC_LUA_CACHE_BYTES)) != NULL);
  for (i = 0; i < N; i++)
    CHECK((blocks[i] = lua_alloc(&b, NULL, 0, 256)) != NULL);
  for (i = 0; i < N; i++)
    lua_alloc(&b, blocks[i], 256, 0);
  CHECK(b.cached <= MYC_LUA_CACHE_BYTES);
  CHECK(b.cached > MYC_LUA_CACHE_BYTES - 256);
  CHECK_EQ(fa.live, (long long)b.cached + 2 * MYC_LUA_CACHE_BYTES);
  lua_alloc(&b, big, 2 * MYC_LUA_CACHE_BYTES, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

/* Nor does it hold more than the live heap: a small state that freed
 * much once gives most of it back. */
static void the_cache_holds_no_more_than_the_live_heap(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  enum { N = 1000 };
  static void *blocks[N];
  size_t i;

  memset(&b, 0, sizeof b);
  b.base = &a;
  for (i = 0; i < N; i++)
    CHECK((blocks[i] = lua_alloc(&b, NULL, 0, 256)) != NULL);
  for (i = 10; i < N; i++) /* ten stay live: 2 560 bytes */
    lua_alloc(&b, blocks[i], 256, 0);
  CHECK(b.cached <= 2560 + 256);
  CHECK_EQ(fa.live, (long long)b.cached + 2560);
  for (i = 0; i < 10; i++)
    lua_alloc(&b, blocks[i], 256, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

/* With a slab, small blocks are cut from it (one base allocation), come
 * back to the cache uncounted, and the slab goes back whole at the
 * drain; past its end they come from the base hook again. */
static void small_blocks_come_from_the_slab(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  void *p[40], *big, *q;
  int i;

  memset(&b, 0, sizeof b);
  b.base = &a;
  b.slab_size = 1024;
  for (i = 0; i < 32; i++)
    CHECK((p[i] = lua_alloc(&b, NULL, 0, 20)) != NULL); /* 32 bytes each */
  CHECK_EQ(fa.count, 1);
  CHECK_EQ(fa.live, 1024);
  CHECK((char *)p[1] - (char *)p[0] == 32);
  big = lua_alloc(&b, NULL, 0, 600); /* large: not from the slab */
  q = lua_alloc(&b, NULL, 0, 20);    /* the slab is used up */
  CHECK_EQ(fa.count, 3);
  CHECK_EQ(atomic_load(&b.used), 33 * 20 + 600);
  lua_alloc(&b, p[5], 20, 0);
  CHECK_EQ(b.cached, 0);
  CHECK(lua_alloc(&b, NULL, 0, 20) == p[5]); /* reused */
  CHECK_EQ(fa.count, 3);
  CHECK_EQ(b.cached, 0); /* a slab block taken back is not uncounted */
  for (i = 0; i < 32; i++)
    lua_alloc(&b, p[i], 20, 0);
  lua_alloc(&b, q, 20, 0);
  CHECK_EQ(b.cached, 32); /* 'q' alone: it came from the base hook */
  lua_alloc(&b, big, 600, 0);
  CHECK_EQ(atomic_load(&b.used), 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
  CHECK(b.slab == NULL);
  /* The budget serves a next state with a new slab. */
  CHECK((q = lua_alloc(&b, NULL, 0, 20)) != NULL);
  CHECK_EQ(fa.live, 1024);
  lua_alloc(&b, q, 20, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

/* A prepared region is one base allocation with every page written;
 * blocks of any size are cut from it, a large one moves into it on a
 * resize, freed small ones are reused, and the region goes back whole at
 * the drain. */
static void the_prepared_region_serves_blocks_of_any_size(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  char *small, *big, *moved, *outside, *after;
  int i;

  memset(&b, 0, sizeof b);
  b.base = &a;
  outside = lua_alloc(&b, NULL, 0, 1000); /* before: from the base hook */
  memset(outside, 'x', 1000);
  CHECK_EQ(fa.count, 1);
  CHECK_EQ(myc__lua_budget_prepare(&b, 10000), 0);
  CHECK_EQ(fa.count, 2);
  CHECK_EQ(b.prep_size, 12288); /* whole pages */
  CHECK_EQ(myc__lua_budget_prepare(&b, 50000), 0); /* kept, not replaced */
  CHECK_EQ(fa.count, 2);
  small = lua_alloc(&b, NULL, 0, 20);
  big = lua_alloc(&b, NULL, 0, 3000);
  CHECK(small == b.prep && big == b.prep + 32);
  moved = lua_alloc(&b, outside, 1000, 2000);
  CHECK(moved == b.prep + 32 + 3008);
  for (i = 0; i < 1000; i++)
    CHECK(moved[i] == 'x');
  CHECK_EQ(fa.count, 2);
  CHECK_EQ(fa.live, 12288); /* 'outside' went back */
  lua_alloc(&b, small, 20, 0);
  CHECK(lua_alloc(&b, NULL, 0, 24) == small); /* reused through the cache */
  lua_alloc(&b, big, 3000, 0);                /* stays in the region */
  after = lua_alloc(&b, NULL, 0, 9000); /* past its end: the base hook */
  CHECK(after != NULL && !(after >= b.prep && after < b.prep + b.prep_size));
  CHECK_EQ(fa.count, 3);
  CHECK_EQ(atomic_load(&b.used), 24 + 2000 + 9000);
  lua_alloc(&b, small, 24, 0);
  lua_alloc(&b, moved, 2000, 0);
  lua_alloc(&b, after, 9000, 0);
  CHECK_EQ(atomic_load(&b.used), 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
  CHECK(b.prep == NULL && b.prep_size == 0);
}

/* In a build with mimalloc the default hook allocates from it (the
 * sanitizer builds keep malloc, which they watch). */
static void the_default_hook_uses_the_chosen_allocator(void) {
  void *p = myc__default_alloc(NULL, NULL, 0, 100);
  CHECK(p != NULL);
  p = myc__default_alloc(NULL, p, 100, 5000);
  CHECK(p != NULL);
#ifdef MYC_MIMALLOC
  CHECK(mi_is_in_heap_region(p));
  CHECK(mi_usable_size(p) >= 5000);
#endif
  myc__default_alloc(NULL, p, 5000, 0);
}

/* After a trim, freed heap blocks are gone from the cache and the next
 * block of their size is cut from the region; freed region blocks stay
 * cached. */
static void trim_returns_heap_blocks_keeps_the_region(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__lua_budget b;
  char *heap, *region, *next;

  memset(&b, 0, sizeof b);
  b.base = &a;
  heap = lua_alloc(&b, NULL, 0, 40); /* before the region: the base hook */
  CHECK_EQ(myc__lua_budget_prepare(&b, 4096), 0);
  region = lua_alloc(&b, NULL, 0, 100);
  CHECK(region == b.prep);
  lua_alloc(&b, heap, 40, 0);
  lua_alloc(&b, region, 100, 0);
  CHECK(b.cached > 0); /* 'heap' is cached, counted */
  myc__lua_budget_trim(&b);
  CHECK_EQ(b.cached, 0);
  CHECK_EQ(fa.live, 4096); /* 'heap' went back to the base hook */
  next = lua_alloc(&b, NULL, 0, 40);
  CHECK(next == b.prep + 112); /* from the region, not the old block */
  CHECK(lua_alloc(&b, NULL, 0, 100) == region); /* still cached */
  lua_alloc(&b, next, 40, 0);
  lua_alloc(&b, region, 100, 0);
  myc__lua_budget_drain(&b);
  CHECK_EQ(fa.live, 0);
}

int main(void) {
  static const test_case cases[] = {
      {"small_blocks_are_reused", small_blocks_are_reused},
      {"resize_keeps_contents_and_balance", resize_keeps_contents_and_balance},
      {"shrinking_never_fails", shrinking_never_fails},
      {"the_limit_refuses_growth", the_limit_refuses_growth},
      {"the_cache_is_bounded", the_cache_is_bounded},
      {"small_blocks_come_from_the_slab", small_blocks_come_from_the_slab},
      {"the_cache_holds_no_more_than_the_live_heap",
       the_cache_holds_no_more_than_the_live_heap},
      {"the_default_hook_uses_the_chosen_allocator",
       the_default_hook_uses_the_chosen_allocator},
      {"the_prepared_region_serves_blocks_of_any_size",
       the_prepared_region_serves_blocks_of_any_size},
      {"trim_returns_heap_blocks_keeps_the_region",
       trim_returns_heap_blocks_keeps_the_region},
      {NULL, NULL}};
  return run_tests(cases);
}
