/* buf_test.c -- pooled, reference-counted frame buffers. */
#include "test.h"

#include "core/buf.h"

static void layout_is_one_frame(void) {
  CHECK_EQ(sizeof(myc_frame), 64);
  CHECK_EQ(offsetof(myc_buf, hdr) % 8, 0);
  /* the wire prefix sits right before the header, so a transport can
   * write its framing and the frame in one contiguous write */
  CHECK_EQ(offsetof(myc_buf, wire_prefix) + sizeof(((myc_buf *)0)->wire_prefix),
           offsetof(myc_buf, hdr));
  CHECK_EQ(myc__frame_topic_offset(5), 64 + 8);
  CHECK_EQ(myc__frame_topic_offset(8), 64 + 8);
  CHECK_EQ(myc__frame_topic_offset(9), 64 + 16);
  CHECK_EQ(myc__frame_topic_offset(0), 64);
  CHECK_EQ(myc__frame_len(9, 3, 4), 64 + 16 + 7);
}

static void refcount_returns_to_the_pool(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__pool pool;
  myc_buf *b, *c;
  myc__pool_init(&pool, &a, 16, 0, 1);
  b = myc__buf_alloc(&pool, &a, 100);
  CHECK(b != NULL);
  CHECK_EQ(atomic_load(&b->refs), 1);
  CHECK(b->cap >= 100);
  myc__buf_ref(b, 2);
  myc__buf_release(&pool, &a, b);
  myc__buf_release(&pool, &a, b);
  CHECK_EQ(pool.nfree[0], 0);
  myc__buf_release(&pool, &a, b);
  CHECK_EQ(pool.nfree[0], 1);
  c = myc__buf_alloc(&pool, &a, 50);
  CHECK(c == b); /* recycled, not allocated again */
  CHECK_EQ(pool.recycled, 1);
  myc__buf_release(&pool, &a, c);
  myc__pool_destroy(&pool);
  CHECK_EQ(fa.live, 0);
}

static void shared_buffers_count_atomically(void) {
  myc__alloc a = {myc__default_alloc, NULL};
  myc__pool pool;
  myc_buf *b;
  myc__pool_init(&pool, &a, 16, 0, 1);
  b = myc__buf_alloc(&pool, &a, 10);
  b->shared = 1;
  myc__buf_ref(b, 3);
  CHECK_EQ(atomic_load(&b->refs), 4);
  myc__buf_release(&pool, &a, b);
  myc__buf_release(&pool, &a, b);
  myc__buf_release(&pool, &a, b);
  CHECK_EQ(pool.nfree[0], 0);
  myc__buf_release(&pool, &a, b);
  CHECK_EQ(pool.nfree[0], 1);
  myc__pool_destroy(&pool);
}

static void sizes_pick_classes_and_large_frames_bypass_the_pool(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__pool pool;
  myc_buf *small, *kib, *mid, *huge;
  myc__pool_init(&pool, &a, 16, 0, 1);
  small = myc__buf_alloc(&pool, &a, 64);
  /* A 1 KiB payload's frame (header, payload, an 11-byte tail) takes
   * 2 KiB, not 4. */
  kib = myc__buf_alloc(&pool, &a, myc__frame_len(1024, 10, 1));
  mid = myc__buf_alloc(&pool, &a, 3000);
  huge = myc__buf_alloc(&pool, &a, 1 << 20);
  CHECK(small && kib && mid && huge);
  CHECK_EQ(small->size_class, 0);
  CHECK_EQ(kib->size_class, 2);
  CHECK_EQ(offsetof(myc_buf, hdr) + kib->cap, 2048);
  CHECK_EQ(mid->size_class, 3);
  CHECK_EQ(huge->size_class, MYC_BUF_UNPOOLED);
  CHECK(huge->cap >= 1 << 20);
  memset(&huge->hdr, 0xAB, 1 << 20); /* the whole capacity is usable */
  myc__buf_release(&pool, &a, small);
  myc__buf_release(&pool, &a, kib);
  myc__buf_release(&pool, &a, mid);
  myc__buf_release(&pool, &a, huge);
  myc__pool_destroy(&pool);
  CHECK_EQ(fa.live, 0);
}

static void pool_caps_its_free_lists(void) {
  myc__alloc a = {myc__default_alloc, NULL};
  myc__pool pool;
  myc_buf *bs[10];
  int i;
  myc__pool_init(&pool, &a, 4, 0, 1);
  for (i = 0; i < 10; i++)
    bs[i] = myc__buf_alloc(&pool, &a, 10);
  for (i = 0; i < 10; i++)
    myc__buf_release(&pool, &a, bs[i]);
  CHECK_EQ(pool.nfree[0], 4);
  myc__pool_destroy(&pool);
}

static void allocation_failure_returns_null(void) {
  failing_alloc fa = {1, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  CHECK(myc__buf_alloc(NULL, &a, 10) == NULL);
  CHECK_EQ(fa.live, 0);
}

/* Buffers released on another worker come home in chains, several of
 * which may wait on the origin's pool before it takes them: every buffer
 * of every chain comes back exactly once and is counted, and a pool freed
 * with chains still waiting frees them. */
static void chains_handed_back_are_all_reclaimed(void) {
  failing_alloc fa = {0, 0, 0};
  myc__alloc a = {failing_alloc_fn, &fa};
  myc__pool home, away;
  myc_buf *bufs[7], *got[7];
  int i, j, seen;
  myc__pool_init(&home, &a, 64, 0, 2);
  myc__pool_init(&away, &a, 64, 1, 2);
  for (i = 0; i < 7; i++)
    bufs[i] = myc__buf_alloc(&home, &a, 64);
  /* Three hand-overs (3, 1 and 3 buffers) before the origin looks. */
  for (i = 0; i < 7; i++) {
    myc__buf_release(&away, &a, bufs[i]);
    CHECK_EQ(away.nfree[0], 0);
    if (i == 2 || i == 3 || i == 6)
      myc__pool_give_chain(&home, &away.returns[0]);
  }
  CHECK_EQ(away.returns[0].n, 0);
  CHECK_EQ(home.nfree[0], 0);
  for (i = 0; i < 7; i++) {
    got[i] = myc__buf_take(&home, 100);
    CHECK(got[i] != NULL);
    if (i == 0)
      CHECK_EQ(home.nfree[0], 6);
  }
  CHECK_EQ(home.nfree[0], 0);
  CHECK(myc__buf_take(&home, 100) == NULL);
  for (i = 0; i < 7; i++) {
    for (seen = 0, j = 0; j < 7; j++)
      seen += got[j] == bufs[i];
    CHECK_EQ(seen, 1);
  }
  /* Two chains left waiting at the end. */
  for (i = 0; i < 7; i++) {
    myc__buf_release(&away, &a, got[i]);
    if (i == 1 || i == 6)
      myc__pool_give_chain(&home, &away.returns[0]);
  }
  myc__pool_destroy(&away);
  myc__pool_destroy(&home);
  CHECK_EQ(fa.live, 0);
}

int main(void) {
  static const test_case cases[] = {
      {"layout_is_one_frame", layout_is_one_frame},
      {"refcount_returns_to_the_pool", refcount_returns_to_the_pool},
      {"shared_buffers_count_atomically", shared_buffers_count_atomically},
      {"sizes_pick_classes_and_large_frames_bypass_the_pool",
       sizes_pick_classes_and_large_frames_bypass_the_pool},
      {"pool_caps_its_free_lists", pool_caps_its_free_lists},
      {"allocation_failure_returns_null", allocation_failure_returns_null},
      {"chains_handed_back_are_all_reclaimed",
       chains_handed_back_are_all_reclaimed},
      {NULL, NULL}};
  return run_tests(cases);
}
