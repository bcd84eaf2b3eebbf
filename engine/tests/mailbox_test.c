/* mailbox_test.c -- bounded queue and its overflow policies. */
#include "test.h"

#include "core/mailbox.h"

static myc__alloc alloc = {myc__default_alloc, NULL};

/* Stand-ins for messages: the mailbox only reads their topic id. */
static myc_buf bufs[1100];

static myc_buf *fake(uintptr_t n) {
  bufs[n].topic_id = (uint32_t)(n % 3 + 1);
  return &bufs[n];
}

static uint64_t topic_drops(myc__mailbox *mb, uint32_t topic, int reason) {
  int i;
  for (i = 0; i < MYC_DROP_TOPICS; i++)
    if (atomic_load(&mb->by_topic[i].topic_id) == topic)
      return atomic_load(&mb->by_topic[i].n[reason]);
  return 0;
}

static void fifo_order_and_wraparound(void) {
  myc_mailbox_config cfg = {5, MYC_POLICY_REJECT, 0.8};
  myc__mailbox mb;
  myc_buf *out[8], *ev;
  uintptr_t next = 1, expect = 1;
  int round, i;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  for (round = 0; round < 20; round++) {
    for (i = 0; i < 3; i++, next++)
      CHECK_EQ(myc__mailbox_push(&mb, fake(next), &ev), 0);
    CHECK_EQ(myc__mailbox_depth(&mb), 3);
    CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 3);
    for (i = 0; i < 3; i++)
      CHECK(out[i] == fake(expect++));
    CHECK_EQ(myc__mailbox_depth(&mb), 3); /* in flight until done */
    myc__mailbox_done(&mb, 3);
    CHECK_EQ(myc__mailbox_depth(&mb), 0);
  }
  myc__mailbox_destroy(&mb, &alloc);
}

static void fill(myc__mailbox *mb, int n) {
  myc_buf *ev;
  int i;
  for (i = 1; i <= n; i++)
    (void)myc__mailbox_push(mb, fake((uintptr_t)i), &ev);
}

static void reject_keeps_the_queue(void) {
  myc_mailbox_config cfg = {3, MYC_POLICY_REJECT, 0.8};
  myc__mailbox mb;
  myc_buf *out[8], *ev;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  fill(&mb, 3);
  CHECK_EQ(myc__mailbox_push(&mb, fake(9), &ev), MYC_EFULL);
  CHECK(ev == NULL);
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_REJECTED]), 1);
  CHECK_EQ(topic_drops(&mb, 1, MYC_DROP_REJECTED), 1); /* 9 % 3 + 1 */
  CHECK_EQ(topic_drops(&mb, 2, MYC_DROP_REJECTED), 0);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 3);
  CHECK(out[0] == fake(1) && out[2] == fake(3));
  myc__mailbox_destroy(&mb, &alloc);
}

static void drop_newest_discards_the_new_one(void) {
  myc_mailbox_config cfg = {3, MYC_POLICY_DROP_NEWEST, 0.8};
  myc__mailbox mb;
  myc_buf *ev;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  fill(&mb, 5);
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_NEWEST]), 2);
  CHECK_EQ(myc__mailbox_push(&mb, fake(9), &ev), MYC_EFULL);
  CHECK_EQ(myc__mailbox_depth(&mb), 3);
  myc__mailbox_destroy(&mb, &alloc);
}

static void drop_oldest_evicts_the_head(void) {
  myc_mailbox_config cfg = {3, MYC_POLICY_DROP_OLDEST, 0.8};
  myc__mailbox mb;
  myc_buf *out[8], *ev;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  fill(&mb, 3);
  CHECK_EQ(myc__mailbox_push(&mb, fake(4), &ev), 0);
  CHECK(ev == fake(1));
  CHECK_EQ(myc__mailbox_push(&mb, fake(5), &ev), 0);
  CHECK(ev == fake(2));
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_OLDEST]), 2);
  CHECK_EQ(topic_drops(&mb, 2, MYC_DROP_OLDEST), 1); /* evicted 1 and 2 */
  CHECK_EQ(topic_drops(&mb, 3, MYC_DROP_OLDEST), 1);
  CHECK_EQ(myc__mailbox_pop(&mb, out, 8), 3);
  CHECK(out[0] == fake(3) && out[1] == fake(4) && out[2] == fake(5));
  /* everything in flight: no oldest to give up, the new one goes */
  CHECK_EQ(myc__mailbox_push(&mb, fake(6), &ev), MYC_EFULL);
  CHECK(ev == NULL);
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_NEWEST]), 1);
  myc__mailbox_done(&mb, 3);
  CHECK_EQ(myc__mailbox_push(&mb, fake(7), &ev), 0);
  myc__mailbox_destroy(&mb, &alloc);
}

static void nothing_lost_below_capacity(void) {
  myc_mailbox_config cfg = {1000, MYC_POLICY_DROP_OLDEST, 0.8};
  myc__mailbox mb;
  myc_buf *ev;
  int i, r;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(mb.threshold, 800);
  for (i = 1; i <= 1000; i++)
    CHECK_EQ(myc__mailbox_push(&mb, fake((uintptr_t)i), &ev), 0);
  for (r = 0; r < MYC_DROP_REASONS; r++)
    CHECK_EQ(atomic_load(&mb.dropped[r]), 0);
  myc__mailbox_destroy(&mb, &alloc);
}

static void many_topics_share_an_overflow_bucket(void) {
  myc_mailbox_config cfg = {1, MYC_POLICY_REJECT, 0.8};
  myc__mailbox mb;
  myc_buf *ev;
  uint32_t t;
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &cfg), 0);
  CHECK_EQ(myc__mailbox_push(&mb, fake(0), &ev), 0);
  for (t = 1; t <= 100; t++) {
    bufs[1000].topic_id = t;
    CHECK_EQ(myc__mailbox_push(&mb, &bufs[1000], &ev), MYC_EFULL);
  }
  CHECK_EQ(atomic_load(&mb.dropped[MYC_DROP_REJECTED]), 100);
  CHECK_EQ(atomic_load(&mb.other_topics.n[MYC_DROP_REJECTED]), 100 - MYC_DROP_TOPICS);
  myc__mailbox_destroy(&mb, &alloc);
}

static void bad_configs_are_refused(void) {
  myc__mailbox mb;
  myc_mailbox_config zero = {0, MYC_POLICY_REJECT, 0.8};
  myc_mailbox_config thr = {4, MYC_POLICY_REJECT, 1.5};
  myc_mailbox_config pol = {4, (myc_policy)7, 0.8};
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &zero), MYC_EINVAL);
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &thr), MYC_EINVAL);
  CHECK_EQ(myc__mailbox_init(&mb, &alloc, &pol), MYC_EINVAL);
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
      {NULL, NULL}};
  return run_tests(cases);
}
