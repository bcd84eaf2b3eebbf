/* topic_test.c -- names, patterns and subscriber lists. */
#include "test.h"

#include "base/alloc.h"
#include "core/topic.h"

#define S(x) x, sizeof(x) - 1

static void names_are_checked(void) {
  CHECK(myc__topic_check(S("swaps.raw"), 0) == NULL);
  CHECK(myc__topic_check(S("$dead"), 0) == NULL);
  CHECK(myc__topic_check(S("a-b_c:d/e.F9"), 0) == NULL);
  CHECK_STR(myc__topic_check(S(""), 0), "empty name");
  CHECK_STR(myc__topic_check(S("a..b"), 0), "empty segment");
  CHECK_STR(myc__topic_check(S(".a"), 0), "empty segment");
  CHECK_STR(myc__topic_check(S("a."), 0), "empty segment");
  CHECK(myc__topic_check(S("a b"), 0) != NULL);
  CHECK(myc__topic_check(S("a$b"), 0) != NULL);
  CHECK_STR(myc__topic_check(S("a.*"), 0), "'*' is only valid in subscriptions");
  CHECK(myc__topic_check(S("a.*"), 1) == NULL);
  CHECK(myc__topic_check(S("*"), 1) == NULL);
  CHECK(myc__topic_check(S("a*"), 1) != NULL);
  CHECK(myc__topic_check(S("a.*.b"), 1) != NULL);
  CHECK(myc__topic_check(S(".*"), 1) != NULL);
  {
    char big[300];
    memset(big, 'x', sizeof big);
    CHECK(myc__topic_check(big, 255, 0) == NULL);
    CHECK_STR(myc__topic_check(big, 256, 0), "longer than 255 bytes");
  }
}

static void patterns_match(void) {
  CHECK(myc__topic_match(S("a.b"), S("a.b")));
  CHECK(!myc__topic_match(S("a.b"), S("a.bc")));
  CHECK(myc__topic_match(S("a.*"), S("a.b")));
  CHECK(myc__topic_match(S("a.*"), S("a.b.c")));
  CHECK(!myc__topic_match(S("a.*"), S("a")));
  CHECK(!myc__topic_match(S("a.*"), S("ab.c")));
  CHECK(myc__topic_match(S("*"), S("anything.at.all")));
  CHECK(!myc__topic_match(S("*"), S("$dead")));
  CHECK(myc__topic_match(S("$dead"), S("$dead")));
}

static myc__alloc alloc = {myc__default_alloc, NULL};
#define SVC(n) ((struct myc_service *)(uintptr_t)(n))

static void subscriber_lists_follow_subscriptions(void) {
  myc__topics t;
  int64_t a, ab, c;
  myc__sublist *l;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  a = myc__topics_resolve(&t, S("a"));
  ab = myc__topics_resolve(&t, S("a.b"));
  CHECK(a >= 1 && ab >= 1 && a != ab);
  CHECK_EQ(myc__topics_resolve(&t, S("a.b")), ab);
  CHECK_EQ(myc__topics_resolve(&t, S("bad topic")), MYC_ETOPIC);
  CHECK_EQ(myc__topics_subscribe(&t, SVC(1), S("a.*")), 0);
  CHECK_EQ(myc__topics_subscribe(&t, SVC(2), S("a.b")), 0);
  CHECK_EQ(myc__topics_subscribe(&t, SVC(1), S("a.b")), 0); /* both: once */
  CHECK_EQ(myc__topics_subscribe(&t, SVC(1), S("a.b")), 0); /* twice: no-op */
  CHECK_EQ(myc__topics_subscribe(&t, SVC(3), S("bad..p")), MYC_ETOPIC);
  l = myc__topic_subs(myc__topics_get(&t, (uint32_t)ab));
  CHECK_EQ(l->live, 2);
  CHECK(myc__sublist_at(l, 0) == SVC(1) && myc__sublist_at(l, 1) == SVC(2));
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, (uint32_t)a))->live, 0);
  /* a topic created later sees the pattern subscription */
  c = myc__topics_resolve(&t, S("a.c.d"));
  l = myc__topic_subs(myc__topics_get(&t, (uint32_t)c));
  CHECK_EQ(l->live, 1);
  CHECK(myc__sublist_at(l, 0) == SVC(1));
  CHECK_EQ(myc__topics_unsubscribe(&t, SVC(1), S("a.*")), 0);
  l = myc__topic_subs(myc__topics_get(&t, (uint32_t)c));
  CHECK_EQ(l->live, 0);
  l = myc__topic_subs(myc__topics_get(&t, (uint32_t)ab));
  CHECK_EQ(l->live, 2); /* SVC(1) still has the exact subscription */
  CHECK_EQ(myc__topics_unsubscribe_all(&t, SVC(1)), 0);
  l = myc__topic_subs(myc__topics_get(&t, (uint32_t)ab));
  CHECK_EQ(l->live, 1);
  CHECK(myc__topics_get(&t, 0) == NULL);
  CHECK(myc__topics_get(&t, 999) == NULL);
  myc__topics_destroy(&t);
}

static void many_topics_grow_the_table(void) {
  myc__topics t;
  char name[32];
  int i;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  CHECK_EQ(myc__topics_subscribe(&t, SVC(7), S("t.*")), 0);
  for (i = 0; i < 5000; i++) {
    int n = snprintf(name, sizeof name, "t.%d", i);
    CHECK_EQ(myc__topics_resolve(&t, name, (size_t)n), i + 1);
  }
  for (i = 0; i < 5000; i += 777) {
    int n = snprintf(name, sizeof name, "t.%d", i);
    CHECK_EQ(myc__topics_resolve(&t, name, (size_t)n), i + 1);
    CHECK_EQ(myc__topic_subs(myc__topics_get(&t, (uint32_t)i + 1))->live, 1);
  }
  myc__topics_destroy(&t);
}

/* A creator with a quota gets MYC_ELIMIT for a new topic past it; the
 * topics that exist still resolve, and other creators still create. */
static void a_quota_bounds_one_creator(void) {
  myc__topics t;
  _Atomic uint32_t mine = 0, other = 0;
  char name[32];
  int i;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  for (i = 0; i < 3; i++) {
    int n = snprintf(name, sizeof name, "loop.%d", i);
    CHECK(myc__topics_resolve_quota(&t, name, (size_t)n, &mine, 3) > 0);
  }
  CHECK_EQ(atomic_load(&mine), 3);
  CHECK_EQ(myc__topics_resolve_quota(&t, S("loop.3"), &mine, 3), MYC_ELIMIT);
  CHECK_EQ(myc__topics_resolve_quota(&t, S("loop.4"), &mine, 3), MYC_ELIMIT);
  /* an invalid name is still that, not a limit */
  CHECK_EQ(myc__topics_resolve_quota(&t, S("a..b"), &mine, 3), MYC_ETOPIC);
  /* existing topics, its own or others', do not count */
  CHECK(myc__topics_resolve_quota(&t, S("loop.1"), &mine, 3) > 0);
  CHECK(myc__topics_resolve(&t, S("host.made")) > 0);
  CHECK(myc__topics_resolve_quota(&t, S("host.made"), &mine, 3) > 0);
  CHECK_EQ(atomic_load(&mine), 3);
  /* nobody else is refused */
  CHECK(myc__topics_resolve_quota(&t, S("loop.3"), &other, 3) > 0);
  CHECK(myc__topics_resolve(&t, S("loop.5")) > 0);
  CHECK_EQ(atomic_load(&other), 1);
  CHECK(!myc__topics_full(&t));
  myc__topics_destroy(&t);
}

/* Every allocation failure leaves the table as it was and leaks nothing. */
static void allocation_failures_change_nothing(void) {
  long n;
  for (n = 1;; n++) {
    failing_alloc fa = {n, 0, 0};
    myc__alloc a = {failing_alloc_fn, &fa};
    myc__topics t;
    int rc;
    if (myc__topics_init(&t, &a) != 0) {
      CHECK_EQ(fa.live, 0);
      continue;
    }
    rc = (int)myc__topics_resolve(&t, S("x.y"));
    if (rc > 0)
      rc = myc__topics_subscribe(&t, SVC(1), S("x.*"));
    if (rc == 0)
      rc = (int)myc__topics_resolve(&t, S("x.z"));
    if (rc > 0) {
      CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 2))->live, 1);
      myc__topics_destroy(&t);
      CHECK_EQ(fa.live, 0);
      break;
    }
    CHECK(rc == MYC_ENOMEM);
    if (fa.count >= 3) /* subscription state must be unchanged on failure */
      CHECK(myc__topics_get(&t, 1) == NULL ||
            myc__topic_subs(myc__topics_get(&t, 1))->live <= 1);
    myc__topics_destroy(&t);
    CHECK_EQ(fa.live, 0);
  }
}

/* The per-service counts follow subscribing, a repeated subscription,
 * unsubscribing and unsubscribe_all, over enough services to rebuild
 * their table several times; a repeated subscription stays one. */
static void subscription_counts_follow_the_subscriptions(void) {
  myc__topics t;
  uintptr_t i;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  CHECK(myc__topics_resolve(&t, S("a.b")) > 0);
  for (i = 1; i <= 400; i++) {
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("a.b")), 0);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("a.*")), 0);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("a.b")), 0); /* again */
  }
  CHECK_EQ(t.nsubs, 800);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(7)), 2);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(401)), 0);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->live, 400);
  CHECK_EQ(myc__topics_unsubscribe(&t, SVC(7), S("a.b")), 0);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(7)), 1);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->live, 400); /* a.* */
  CHECK_EQ(myc__topics_subscribe(&t, SVC(7), S("a.b")), 0);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(7)), 2);
  for (i = 1; i <= 400; i += 2)
    CHECK_EQ(myc__topics_unsubscribe_all(&t, SVC(i)), 0);
  CHECK_EQ(t.nsubs, 400);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(1)), 0);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(2)), 2);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->live, 200);
  CHECK_EQ(myc__topics_unsubscribe_all(&t, SVC(99999)), 0); /* none */
  myc__topics_destroy(&t);
}

/* Subscription changes scale with what they change, counted in entries
 * read, copied or moved (t.work), not timed: N services subscribing to
 * one existing topic append to its list (copies only when it doubles),
 * each also to a topic of its own (looked up, not every topic read), and
 * leaving their own topics does not read the others' subscriptions.  A
 * rebuild of the list per subscription, a scan of every subscription per
 * change or a move of the table per removal is O(N^2) and fails this. */
static void changes_scale_linearly(void) {
  enum { N = 20000 };
  myc__topics t;
  myc__sublist *l;
  char name[32];
  uintptr_t i;
  uint64_t w;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  CHECK(myc__topics_resolve(&t, S("tick")) > 0);
  for (i = 1; i <= N; i++) {
    int n = snprintf(name, sizeof name, "own.%u", (unsigned)i);
    CHECK(myc__topics_resolve(&t, name, (size_t)n) > 0);
  }
  t.work = 0;
  for (i = 1; i <= N; i++) {
    int n = snprintf(name, sizeof name, "own.%u", (unsigned)i);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("tick")), 0);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), name, (size_t)n), 0);
  }
  w = t.work;
  CHECK(w <= 8 * (uint64_t)N);
  l = myc__topic_subs(myc__topics_get(&t, 1));
  CHECK_EQ(l->live, N);
  CHECK(myc__sublist_at(l, 0) == SVC(1) &&
        myc__sublist_at(l, N - 1) == SVC(N)); /* in order */
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 2 + 77))->live, 1);
  /* Leaving their own topics, every other service. */
  t.work = 0;
  for (i = 1; i <= N; i += 2) {
    int n = snprintf(name, sizeof name, "own.%u", (unsigned)i);
    CHECK_EQ(myc__topics_unsubscribe(&t, SVC(i), name, (size_t)n), 0);
  }
  CHECK(t.work <= 8 * (uint64_t)N);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 2))->live, 0);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 3))->live, 1);
  CHECK_EQ(t.nsubs, N + N / 2);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(1)), 1);
  CHECK_EQ(myc__topics_count_locked(&t, SVC(2)), 2);
  myc__topics_destroy(&t);
}

/* Holes left by removals are closed with each service's indexes moved:
 * its subscriptions are still found, copied and removed. */
static void removals_compact_the_table(void) {
  myc__topics t;
  myc__subscription got[4];
  uintptr_t i;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  CHECK(myc__topics_resolve(&t, S("a.b")) > 0);
  for (i = 1; i <= 300; i++) {
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("a.b")), 0);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("a.*")), 0);
  }
  for (i = 1; i <= 290; i++)
    CHECK_EQ(myc__topics_unsubscribe_all(&t, SVC(i)), 0);
  CHECK(t.endsubs < 600); /* compacted */
  CHECK_EQ(t.nsubs, 20);
  CHECK_EQ(myc__topics_copy_locked(&t, SVC(295), got, 4), 2);
  CHECK_STR(got[0].pattern, "a.b");
  CHECK_STR(got[1].pattern, "a.*");
  CHECK_EQ(myc__topics_unsubscribe(&t, SVC(295), S("a.b")), 0);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->live, 10); /* a.* */
  CHECK_EQ(myc__topics_unsubscribe(&t, SVC(295), S("a.*")), 0);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->live, 9);
  CHECK_EQ(myc__topics_copy_locked(&t, SVC(295), got, 4), 0);
  CHECK_EQ(myc__topics_copy_locked(&t, SVC(300), got, 4), 2);
  myc__topics_destroy(&t);
}

/* A topic made beside N subscriptions reads only those of the patterns
 * that can match it, and N services leaving a topic of N, one by one,
 * change it in place: both counted in entries read, copied or moved
 * (t.work).  Reading every subscription per new topic, or copying the
 * list per removal, is O(N^2) (about 2 * 10^8 here) and fails this. */
static void removals_and_new_topics_scale_linearly(void) {
  enum { N = 20000 };
  myc__topics t;
  myc__sublist *l;
  char name[32];
  uintptr_t i;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  CHECK(myc__topics_resolve(&t, S("tick")) == 1);
  for (i = 1; i <= N; i++) {
    int n = snprintf(name, sizeof name, "own.%u", (unsigned)i);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("tick")), 0);
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), name, (size_t)n), 0);
  }
  CHECK_EQ(myc__topics_subscribe(&t, SVC(N + 1), S("own.*")), 0);
  t.work = 0;
  for (i = 1; i <= N; i++) {
    int n = snprintf(name, sizeof name, "own.%u", (unsigned)i);
    CHECK(myc__topics_resolve(&t, name, (size_t)n) == (int64_t)i + 1);
  }
  CHECK(t.work <= 8 * (uint64_t)N);
  l = myc__topic_subs(myc__topics_get(&t, 2 + 76));
  CHECK_EQ(l->live, 2); /* own.77: its own, then the pattern's */
  CHECK(myc__sublist_at(l, 0) == SVC(77) &&
        myc__sublist_at(l, 1) == SVC(N + 1));
  t.work = 0;
  for (i = 1; i <= N; i++)
    CHECK_EQ(myc__topics_unsubscribe(&t, SVC(i), S("tick")), 0);
  CHECK(t.work <= 16 * (uint64_t)N);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->live, 0);
  CHECK_EQ(myc__topic_subs(myc__topics_get(&t, 1))->n, 0);
  myc__topics_destroy(&t);
}

/* Holes in a subscriber list: readers skip them, the order of the others
 * stays, and a rejoining service goes to the end. */
static void leaving_leaves_holes_in_order(void) {
  myc__topics t;
  myc__sublist *l;
  uintptr_t i;
  uint32_t k, n;
  CHECK_EQ(myc__topics_init(&t, &alloc), 0);
  CHECK(myc__topics_resolve(&t, S("a")) == 1);
  for (i = 1; i <= 10; i++)
    CHECK_EQ(myc__topics_subscribe(&t, SVC(i), S("a")), 0);
  for (i = 2; i <= 10; i += 4)
    CHECK_EQ(myc__topics_unsubscribe(&t, SVC(i), S("a")), 0);
  CHECK_EQ(myc__topics_subscribe(&t, SVC(2), S("a")), 0);
  l = myc__topic_subs(myc__topics_get(&t, 1));
  CHECK_EQ(l->live, 8);
  {
    static const uintptr_t want[] = {1, 3, 4, 5, 7, 8, 9, 2};
    n = atomic_load(&l->n);
    for (i = 0, k = 0; k < n; k++)
      if (myc__sublist_at(l, k) != NULL) {
        CHECK(i < 8 && myc__sublist_at(l, k) == SVC(want[i]));
        i++;
      }
    CHECK_EQ(i, 8);
  }
  myc__topics_destroy(&t);
}

int main(void) {
  static const test_case cases[] = {
      {"names_are_checked", names_are_checked},
      {"patterns_match", patterns_match},
      {"subscriber_lists_follow_subscriptions",
       subscriber_lists_follow_subscriptions},
      {"many_topics_grow_the_table", many_topics_grow_the_table},
      {"a_quota_bounds_one_creator", a_quota_bounds_one_creator},
      {"allocation_failures_change_nothing", allocation_failures_change_nothing},
      {"changes_scale_linearly", changes_scale_linearly},
      {"removals_compact_the_table", removals_compact_the_table},
      {"removals_and_new_topics_scale_linearly",
       removals_and_new_topics_scale_linearly},
      {"leaving_leaves_holes_in_order", leaving_leaves_holes_in_order},
      {"subscription_counts_follow_the_subscriptions",
       subscription_counts_follow_the_subscriptions},
      {NULL, NULL}};
  return run_tests(cases);
}
