/* mailbox_test.c -- bounded queue and its overflow policies. */
#include "test.h"

#include "core/mailbox.h"

static myc__alloc alloc = {myc__default_alloc, NULL};

/* Stand-ins for messages: the mailbox reads their topic id and payload
 * length, and releases what it evicts.  Each holds a second reference,
 * the test's, so that a release shows as a count of one. */
static myc_buf bufs[1100];

static myc_buf *sized(uintptr_t n, uint32_t payload_len) {
  bufs[n].topic_id = (uint32_t)(n % 3 + 1);
  bufs[n].hdr.payload_len = payload_len;
  atomic_store(&bufs[n].refs, 2);
  return &bufs[n];
}

static myc_buf *fake(uintptr_t n) { return sized(n, 0); }

static int push(myc__mailbox *mb, myc_buf *b) {
  return myc__mailbox_push(mb, b, b->hdr.payload_len, NULL, &alloc);
}

static int released(uintptr_t n) { return atomic_load(&bufs[n].refs) == 1; }

static uint64_t topic_drops(myc__mailbox *mb, uint32_t topic, int reason) {
  int i;
  for (i = 0; i < MYC_DROP_TOPICS; i++)
    if (atomic_load(&mb->by_topic[i].topic_id) == topic)
      return atomic_load(&mb->by_topic[i].n[reason]);
  return 0;
}

static void fifo_order_and_wraparound(void) {
  myc_mailbox_config cfg = {5, MYC_POLICY_REJECT, 0.8, 0, 0};
  myc__mailbox mb;
  myc_buf *out[8];
  uintptr_t next = 1, expect = 1;
  int round, i;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  for (round = 0; round < 20; round++) {
    for (i = 0; i < 3; i++, next++)
      CHECK_EQ(push(&mb, fake(next)), 0);
    CHECK_EQ(myc__mailbox_depth(&mb), 3);
    CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 3);
    for (i = 0; i < 3; i++)
      CHECK(out[i] == fake(expect++));
    CHECK_EQ(myc__mailbox_depth(&mb), 3); /* in flight until done */
    myc__mailbox_done(&mb, 3, 0);
    CHECK_EQ(myc__mailbox_depth(&mb), 0);
  }
  myc__mailbox_destroy(&mb, &alloc);
}

static void fill(myc__mailbox *mb, int n) {
  int i;
  for (i = 1; i <= n; i++)
    (void)push(mb, fake((uintptr_t)i));
}

static void reject_keeps_the_queue(void) {
  myc_mailbox_config cfg = {3, MYC_POLICY_REJECT, 0.8, 0, 0};
  myc__mailbox mb;
  myc_buf *out[8];
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  fill(&mb, 3);
  CHECK_EQ(push(&mb, fake(9)), MYC_EFULL);
  CHECK(!released(9));
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_REJECTED]), 1);
  CHECK_EQ(topic_drops(&mb, 1, MYC_DROP_REJECTED), 1); /* 9 % 3 + 1 */
  CHECK_EQ(topic_drops(&mb, 2, MYC_DROP_REJECTED), 0);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 3);
  CHECK(out[0] == fake(1) && out[2] == fake(3));
  myc__mailbox_destroy(&mb, &alloc);
}

static void drop_newest_discards_the_new_one(void) {
  myc_mailbox_config cfg = {3, MYC_POLICY_DROP_NEWEST, 0.8, 0, 0};
  myc__mailbox mb;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  fill(&mb, 5);
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_NEWEST]), 2);
  CHECK_EQ(push(&mb, fake(9)), MYC_EFULL);
  CHECK_EQ(myc__mailbox_depth(&mb), 3);
  myc__mailbox_destroy(&mb, &alloc);
}

static void drop_oldest_evicts_the_head(void) {
  myc_mailbox_config cfg = {3, MYC_POLICY_DROP_OLDEST, 0.8, 0, 0};
  myc__mailbox mb;
  myc_buf *out[8];
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  fill(&mb, 3);
  CHECK_EQ(push(&mb, fake(4)), 0);
  CHECK(released(1));
  CHECK_EQ(push(&mb, fake(5)), 0);
  CHECK(released(2));
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_OLDEST]), 2);
  CHECK_EQ(topic_drops(&mb, 2, MYC_DROP_OLDEST), 1); /* evicted 1 and 2 */
  CHECK_EQ(topic_drops(&mb, 3, MYC_DROP_OLDEST), 1);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 3);
  CHECK(out[0] == fake(3) && out[1] == fake(4) && out[2] == fake(5));
  /* everything in flight: no oldest to give up, the new one goes */
  CHECK_EQ(push(&mb, fake(6)), MYC_EFULL);
  CHECK(!released(3) && !released(6));
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_NEWEST]), 1);
  myc__mailbox_done(&mb, 3, 0);
  CHECK_EQ(push(&mb, fake(7)), 0);
  myc__mailbox_destroy(&mb, &alloc);
}

static void nothing_lost_below_capacity(void) {
  myc_mailbox_config cfg = {1000, MYC_POLICY_DROP_OLDEST, 0.8, 0, 0};
  myc__mailbox mb;
  int i, r;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(mb.threshold, 800);
  for (i = 1; i <= 1000; i++)
    CHECK_EQ(push(&mb, fake((uintptr_t)i)), 0);
  for (r = 0; r < MYC_DROP_REASONS; r++)
    CHECK_EQ(atomic_load(&mb.dropped[r]), 0);
  myc__mailbox_destroy(&mb, &alloc);
}

static void many_topics_share_an_overflow_bucket(void) {
  myc_mailbox_config cfg = {1, MYC_POLICY_REJECT, 0.8, 0, 0};
  myc__mailbox mb;
  uint32_t t;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(push(&mb, fake(0)), 0);
  for (t = 1; t <= 100; t++) {
    bufs[1000].topic_id = t;
    CHECK_EQ(push(&mb, &bufs[1000]), MYC_EFULL);
  }
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_REJECTED]), 100);
  CHECK_EQ(atomic_load(&mb.other_topics.n[MYC_DROP_REJECTED]), 100 - MYC_DROP_TOPICS);
  myc__mailbox_destroy(&mb, &alloc);
}

static void bad_configs_are_refused(void) {
  myc__mailbox mb;
  myc_mailbox_config zero = {0, MYC_POLICY_REJECT, 0.8, 0, 0};
  myc_mailbox_config thr = {4, MYC_POLICY_REJECT, 1.5, 0, 0};
  myc_mailbox_config pol = {4, (myc_policy)7, 0.8, 0, 0};
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &zero), MYC_EINVAL);
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &thr), MYC_EINVAL);
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &pol), MYC_EINVAL);
}

/* ---- the byte bound ------------------------------------------------------ */

static void drop_oldest_evicts_until_the_bytes_fit(void) {
  myc_mailbox_config cfg = {64, MYC_POLICY_DROP_OLDEST, 0.8, 1000, 0};
  myc__mailbox mb;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(mb.max_message, 1000); /* the default cut to max_bytes */
  CHECK_EQ(push(&mb, sized(1, 300)), 0);
  CHECK_EQ(push(&mb, sized(2, 300)), 0);
  CHECK_EQ(push(&mb, sized(3, 300)), 0);
  CHECK_EQ(atomic_load(&mb.bytes), 900);
  CHECK_EQ(push(&mb, sized(4, 300)), 0);
  CHECK(released(1) && !released(2));
  CHECK_EQ(atomic_load(&mb.bytes), 900);
  /* One large message takes the place of three. */
  CHECK_EQ(push(&mb, sized(5, 1000)), 0);
  CHECK(released(2) && released(3) && released(4));
  CHECK_EQ(atomic_load(&mb.bytes), 1000);
  CHECK_EQ(myc__mailbox_depth(&mb), 1);
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_OLDEST]), 4);
  myc__mailbox_destroy(&mb, &alloc);
}

static void reject_and_drop_newest_refuse_past_the_bytes(void) {
  int policy;
  for (policy = MYC_POLICY_DROP_NEWEST; policy <= MYC_POLICY_REJECT; policy++) {
    myc_mailbox_config cfg = {64, (myc_policy)policy, 0.8, 1000, 0};
    myc__mailbox mb;
    myc_buf *out[4];
    int reason = policy == MYC_POLICY_REJECT ? MYC_DROP_REJECTED
                                             : MYC_DROP_NEWEST;
    CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
    CHECK_EQ(push(&mb, sized(1, 600)), 0);
    CHECK_EQ(push(&mb, sized(2, 401)), MYC_EFULL);
    CHECK_EQ(push(&mb, sized(3, 400)), 0);
    CHECK(!released(1) && !released(2));
    CHECK_EQ(atomic_load(&mb.dropped[reason]), 1);
    CHECK_EQ(topic_drops(&mb, 3, reason), 1); /* 2 % 3 + 1 */
    /* Bytes in flight still count until the batch is done. */
    CHECK_EQ(myc__mailbox_pop(&mb, out, 4), 2);
    CHECK_EQ(push(&mb, sized(4, 1)), MYC_EFULL);
    myc__mailbox_done(&mb, 2, 1000);
    CHECK_EQ(atomic_load(&mb.bytes), 0);
    CHECK_EQ(push(&mb, sized(5, 1000)), 0);
    myc__mailbox_destroy(&mb, &alloc);
  }
}

/* drop_oldest gives nothing up when even an empty queue would not take
 * the new message (the batch in flight holds the bytes). */
static void drop_oldest_keeps_the_queue_when_eviction_cannot_help(void) {
  myc_mailbox_config cfg = {64, MYC_POLICY_DROP_OLDEST, 0.8, 1000, 0};
  myc__mailbox mb;
  myc_buf *out[4];
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(push(&mb, sized(1, 400)), 0);
  CHECK_EQ(push(&mb, sized(2, 400)), 0);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 2), 2);
  CHECK_EQ(push(&mb, sized(3, 100)), 0);
  CHECK_EQ(myc__mailbox_refusal(&mb, 300), MYC_DROP_NEWEST);
  CHECK_EQ(push(&mb, sized(4, 300)), MYC_EFULL);
  CHECK(!released(3) && !released(4));
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_NEWEST]), 1);
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_OLDEST]), 0);
  CHECK_EQ(myc__mailbox_refusal(&mb, 150), -1); /* by evicting 3 */
  myc__mailbox_done(&mb, 2, 800);
  CHECK_EQ(push(&mb, sized(5, 900)), 0);
  CHECK_EQ(atomic_load(&mb.bytes), 1000);
  myc__mailbox_destroy(&mb, &alloc);
}

static void messages_over_max_message_are_refused_by_every_policy(void) {
  int policy;
  for (policy = MYC_POLICY_DROP_OLDEST; policy <= MYC_POLICY_REJECT; policy++) {
    myc_mailbox_config cfg = {64, (myc_policy)policy, 0.8, 10000, 500};
    myc__mailbox mb;
    CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
    CHECK_EQ(push(&mb, sized(1, 500)), 0);
    CHECK_EQ(push(&mb, sized(2, 501)), MYC_ETOOBIG);
    CHECK(!released(1) && !released(2));
    CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_TOO_LARGE]), 1);
    CHECK_EQ(topic_drops(&mb, 3, MYC_DROP_TOO_LARGE), 1);
    CHECK_EQ(myc__mailbox_depth(&mb), 1);
    CHECK_EQ(myc__mailbox_transit_refusal(&mb, 501, 0, 1), MYC_DROP_TOO_LARGE);
    myc__mailbox_destroy(&mb, &alloc);
  }
}

static void transit_is_bounded_in_bytes(void) {
  myc_mailbox_config cfg = {64, MYC_POLICY_DROP_OLDEST, 0.8, 1000, 0};
  myc__mailbox mb;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(myc__mailbox_transit_refusal(&mb, 1000, 0, 1), -1);
  atomic_store(&mb.incoming_bytes, 1500);
  CHECK_EQ(myc__mailbox_transit_refusal(&mb, 500, 0, 1), -1);
  CHECK_EQ(myc__mailbox_transit_refusal(&mb, 501, 0, 0), MYC_DROP_NEWEST);
  CHECK_EQ(myc__mailbox_transit_refusal(&mb, 0, 128, 1), MYC_DROP_NEWEST);
  CHECK_EQ(myc__mailbox_transit_refusal(&mb, 0, 128, 0), -1);
  myc__mailbox_destroy(&mb, &alloc);
}

/* A consumer on another worker, full, with two mailboxes' worth on their
 * way to it (what a flood across workers reaches): the producers' signal
 * is "full", not 3. */
static void pressure_stays_within_one(void) {
  myc_mailbox_config cfg = {256, MYC_POLICY_DROP_NEWEST, 0.8, 0, 0};
  myc__mailbox mb;
  int i;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK(myc__mailbox_pressure(&mb) == 0);
  atomic_store(&mb.incoming, 64);
  CHECK(myc__mailbox_pressure(&mb) == 0.25);
  for (i = 1; i <= 128; i++)
    CHECK_EQ(push(&mb, fake((uintptr_t)i)), 0);
  CHECK(myc__mailbox_pressure(&mb) == 0.75);
  for (i = 129; i <= 256; i++)
    CHECK_EQ(push(&mb, fake((uintptr_t)i)), 0);
  atomic_store(&mb.incoming, 2 * 256);
  CHECK(myc__mailbox_pressure(&mb) == 1);
  atomic_store(&mb.incoming, 0);
  atomic_store(&mb.incoming_bytes, 3 * mb.max_bytes);
  CHECK(myc__mailbox_pressure(&mb) == 1);
  atomic_store(&mb.incoming_bytes, 0);
  while (myc__mailbox_depth(&mb) > 0) {
    myc_buf *out[64];
    uint32_t n = myc__mailbox_pop(&mb, out, 64);
    myc__mailbox_done(&mb, n, 0);
  }
  myc__mailbox_destroy(&mb, &alloc);
}

static void byte_bounds_default_and_cut(void) {
  myc_mailbox_config dflt = {4, MYC_POLICY_REJECT, 0.8, 0, 0};
  myc_mailbox_config cut = {4, MYC_POLICY_REJECT, 0.8, 100, 5000};
  myc__mailbox mb;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &dflt), 0);
  CHECK(mb.max_bytes == MYC_MAILBOX_MAX_BYTES);
  CHECK_EQ(mb.max_message, MYC_MAILBOX_MAX_MESSAGE);
  myc__mailbox_destroy(&mb, &alloc);
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cut), 0);
  CHECK_EQ(mb.max_message, 100);
  myc__mailbox_destroy(&mb, &alloc);
}

/* A ring starts small and doubles as messages queue up, keeping their
 * order across the wrap, up to what the capacity needs. */
static void the_ring_grows_to_the_capacity(void) {
  myc_mailbox_config cfg = {1000, MYC_POLICY_REJECT, 0.8, 0, 0};
  myc__mailbox mb;
  myc_buf *out[1000];
  uintptr_t next = 1, expect = 1;
  uint32_t i, n;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(mb.mask + 1, MYC_MAILBOX_RING_MIN);
  /* Move the head off slot 0 so that the first growth unwraps. */
  for (i = 0; i < 10; i++, next++)
    CHECK_EQ(push(&mb, fake(next)), 0);
  n = myc__mailbox_pop(&mb, out, 7);
  for (i = 0; i < n; i++)
    CHECK(out[i] == fake(expect++));
  myc__mailbox_done(&mb, n, 0);
  while (myc__mailbox_depth(&mb) < 1000)
    CHECK_EQ(push(&mb, fake(next++)), 0);
  CHECK_EQ(mb.mask + 1, 1024);
  CHECK_EQ(push(&mb, fake(next)), MYC_EFULL);
  n = myc__mailbox_pop(&mb, out, 1000);
  CHECK_EQ(n, 1000);
  for (i = 0; i < n; i++)
    CHECK(out[i] == fake(expect++));
  myc__mailbox_done(&mb, n, 0);
  myc__mailbox_destroy(&mb, &alloc);
}

/* Out of memory while growing, the new message is refused as by a full
 * mailbox, counted, and the queue is kept. */
static void a_ring_that_cannot_grow_refuses(void) {
  myc_mailbox_config cfg = {100, MYC_POLICY_DROP_OLDEST, 0.8, 0, 0};
  failing_alloc fa = {0};
  myc__alloc fail = {failing_alloc_fn, &fa};
  myc__mailbox mb;
  myc_buf *out[32];
  uint32_t i;
  CHECK_EQ(myc__mailbox_init(&mb, &fail, &cfg), 0);
  for (i = 1; i <= MYC_MAILBOX_RING_MIN; i++)
    CHECK_EQ(myc__mailbox_push(&mb, fake(i), 0, NULL, &fail), 0);
  fa.fail_at = fa.count + 1;
  CHECK_EQ(myc__mailbox_push(&mb, fake(99), 0, NULL, &fail), MYC_EFULL);
  CHECK(!released(99));
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_NEWEST]), 1);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 32), MYC_MAILBOX_RING_MIN);
  CHECK(out[0] == fake(1) && out[MYC_MAILBOX_RING_MIN - 1] ==
                                 fake(MYC_MAILBOX_RING_MIN));
  myc__mailbox_done(&mb, MYC_MAILBOX_RING_MIN, 0);
  myc__mailbox_destroy(&mb, &fail);
  CHECK_EQ(fa.live, 0);
}

/* A run queued in one go is what as many pushes would queue without
 * their slow path: it fits up to the capacity (counting the batch in
 * flight), the byte bound and the longest message, in order across the
 * ring's end. */
static void a_run_fits_as_its_pushes_would(void) {
  myc_mailbox_config cfg = {6, MYC_POLICY_REJECT, 0.8, 100, 40};
  myc__mailbox mb;
  myc_buf *out[8];
  uint32_t at, j;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  /* The ring starts at 8 slots: move its head near the end. */
  fill(&mb, 5);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 5);
  myc__mailbox_done(&mb, 5, 0);
  CHECK_EQ(push(&mb, sized(10, 10)), 0);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 1), 1); /* one in flight */
  CHECK(!myc__mailbox_fits_n(&mb, 6, 10, 10)); /* 1 + 6 > 6 */
  CHECK(myc__mailbox_fits_n(&mb, 5, 90, 10));
  CHECK(!myc__mailbox_fits_n(&mb, 5, 91, 10)); /* 10 + 91 > 100 bytes */
  CHECK(!myc__mailbox_fits_n(&mb, 1, 41, 41)); /* over max_message */
  at = myc__mailbox_tail(&mb);
  for (j = 0; j < 5; j++)
    myc__mailbox_put(&mb, at + j, sized(11 + j, 18), 18);
  myc__mailbox_commit(&mb, 5, 90);
  CHECK_EQ(myc__mailbox_depth(&mb), 6);
  CHECK_EQ(atomic_load(&mb.bytes), 100);
  CHECK_EQ(push(&mb, fake(20)), MYC_EFULL);
  CHECK_EQ(myc__mailbox_pop(&mb, out + 1, 8), 5);
  for (j = 0; j < 5; j++)
    CHECK(out[1 + j] == &bufs[11 + j]);
  myc__mailbox_done(&mb, 6, 100);
  CHECK_EQ(myc__mailbox_depth(&mb), 0);
  CHECK_EQ(atomic_load(&mb.bytes), 0);
  myc__mailbox_destroy(&mb, &alloc);
}

int main(void) {
  static const test_case cases[] = {
      {"fifo_order_and_wraparound", fifo_order_and_wraparound},
      {"reject_keeps_the_queue", reject_keeps_the_queue},
      {"drop_newest_discards_the_new_one", drop_newest_discards_the_new_one},
      {"drop_oldest_evicts_the_head", drop_oldest_evicts_the_head},
      {"nothing_lost_below_capacity", nothing_lost_below_capacity},
      {"many_topics_share_an_overflow_bucket",
       many_topics_share_an_overflow_bucket},
      {"bad_configs_are_refused", bad_configs_are_refused},
      {"drop_oldest_evicts_until_the_bytes_fit",
       drop_oldest_evicts_until_the_bytes_fit},
      {"reject_and_drop_newest_refuse_past_the_bytes",
       reject_and_drop_newest_refuse_past_the_bytes},
      {"drop_oldest_keeps_the_queue_when_eviction_cannot_help",
       drop_oldest_keeps_the_queue_when_eviction_cannot_help},
      {"messages_over_max_message_are_refused_by_every_policy",
       messages_over_max_message_are_refused_by_every_policy},
      {"transit_is_bounded_in_bytes", transit_is_bounded_in_bytes},
      {"byte_bounds_default_and_cut", byte_bounds_default_and_cut},
      {"pressure_stays_within_one", pressure_stays_within_one},
      {"the_ring_grows_to_the_capacity", the_ring_grows_to_the_capacity},
      {"a_ring_that_cannot_grow_refuses", a_ring_that_cannot_grow_refuses},
      {"a_run_fits_as_its_pushes_would", a_run_fits_as_its_pushes_would},
      {NULL, NULL}};
  return run_tests(cases);
}
