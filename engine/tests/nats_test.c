/* nats_test.c -- the pure parts of the NATS transport: topics and
 * patterns as subjects (docs/NATS.md, Subjects), prefixes, and the
 * sequence table that tells gaps and repeats. */
#include "test.h"

#ifdef MYC_WITH_NATS

#include "base/alloc.h"
#include "nats/seqmap.h"
#include "nats/subject.h"

#include <stdio.h>
#include <string.h>

static const char *subj(const char *prefix, const char *name, int pattern) {
  static char out[MYC_NATS_SUBJECT_MAX];
  int n = myc__nats_subject(prefix, name, strlen(name), pattern, out,
                            sizeof out);
  return n < 0 ? "(too long)" : out;
}

static void topics_and_patterns_map_to_subjects(void) {
  CHECK_STR(subj("mycelium", "swaps.v2", 0), "mycelium.swaps.v2");
  CHECK_STR(subj("mycelium", "swaps.*", 1), "mycelium.swaps.>");
  CHECK_STR(subj("mycelium", "a.b.*", 1), "mycelium.a.b.>");
  CHECK_STR(subj("mycelium", "*", 1), "mycelium.>");
  CHECK_STR(subj("prod.eu", "swaps.v2", 0), "prod.eu.swaps.v2");
  /* no prefix: the topic itself */
  CHECK_STR(subj("", "swaps.v2", 0), "swaps.v2");
  CHECK_STR(subj("", "swaps.*", 1), "swaps.>");
  CHECK_STR(subj("", "*", 1), ">");
  /* a topic is never read as a pattern */
  CHECK_STR(subj("p", "x", 0), "p.x");
}

static void subjects_that_do_not_fit_are_refused(void) {
  char out[8];
  CHECK_EQ(myc__nats_subject("mycelium", "swaps.v2", 8, 0, out, sizeof out),
           -1);
  CHECK_EQ(myc__nats_subject("p", "abcde", 5, 0, out, sizeof out), 7);
  CHECK_STR(out, "p.abcde");
}

static void subjects_map_back_to_topics(void) {
  const char *t;
  size_t n;
  CHECK_EQ(myc__nats_topic_of("mycelium", "mycelium.swaps.v2", 17, &t, &n), 0);
  CHECK_EQ(n, 8);
  CHECK(memcmp(t, "swaps.v2", 8) == 0);
  CHECK_EQ(myc__nats_topic_of("mycelium", "other.swaps.v2", 14, &t, &n), -1);
  CHECK_EQ(myc__nats_topic_of("mycelium", "myceliumx.a", 11, &t, &n), -1);
  CHECK_EQ(myc__nats_topic_of("mycelium", "mycelium.", 9, &t, &n), -1);
  CHECK_EQ(myc__nats_topic_of("", "a.b", 3, &t, &n), 0);
  CHECK_EQ(n, 3);
}

static void prefixes_are_checked(void) {
  CHECK(myc__nats_prefix_check("") == NULL);
  CHECK(myc__nats_prefix_check("mycelium") == NULL);
  CHECK(myc__nats_prefix_check("prod.eu-1") == NULL);
  CHECK(myc__nats_prefix_check("a..b") != NULL);
  CHECK(myc__nats_prefix_check(".a") != NULL);
  CHECK(myc__nats_prefix_check("a.") != NULL);
  CHECK(myc__nats_prefix_check("a.*") != NULL);
  CHECK(myc__nats_prefix_check("a.>") != NULL);
  CHECK(myc__nats_prefix_check("a b") != NULL);
}

static void sequence_table_keeps_one_number_per_key(void) {
  static const myc__alloc a = {myc__default_alloc, NULL};
  myc__seqmap m;
  char key[32];
  uint64_t *v;
  int i;
  myc__seqmap_init(&m, &a, 1000);
  v = myc__seqmap_at(&m, "abc/x", 5);
  CHECK(v != NULL);
  CHECK_EQ(*v, 0);
  *v = 41;
  /* a key is its bytes, not a prefix of a longer one */
  CHECK_EQ(*myc__seqmap_at(&m, "abc/x", 5), 41);
  CHECK_EQ(*myc__seqmap_at(&m, "abc/xy", 6), 0);
  CHECK_EQ(*myc__seqmap_at(&m, "abc/xy", 5), 41);
  /* growth keeps every value */
  for (i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "k%d", i);
    *myc__seqmap_at(&m, key, strlen(key)) = (uint64_t)i * 3;
  }
  for (i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "k%d", i);
    CHECK_EQ(*myc__seqmap_at(&m, key, strlen(key)), (uint64_t)i * 3);
  }
  CHECK_EQ(*myc__seqmap_at(&m, "abc/x", 5), 41);
  /* full: a new key is not tracked, old ones still are */
  for (i = 500; i < 998; i++) {
    snprintf(key, sizeof key, "k%d", i);
    CHECK(myc__seqmap_at(&m, key, strlen(key)) != NULL);
  }
  CHECK(myc__seqmap_at(&m, "new", 3) == NULL);
  CHECK(myc__seqmap_at(&m, "k7", 2) != NULL);
  myc__seqmap_free(&m);
}

int main(void) {
  static const test_case cases[] = {
      {"topics_and_patterns_map_to_subjects",
       topics_and_patterns_map_to_subjects},
      {"subjects_that_do_not_fit_are_refused",
       subjects_that_do_not_fit_are_refused},
      {"subjects_map_back_to_topics", subjects_map_back_to_topics},
      {"prefixes_are_checked", prefixes_are_checked},
      {"sequence_table_keeps_one_number_per_key",
       sequence_table_keeps_one_number_per_key},
      {NULL, NULL}};
  return run_tests(cases);
}

#else

#include <stdio.h>

int main(void) {
  puts("nats_test: built without NATS (MYC_WITH_NATS off): nothing to test");
  return 0;
}

#endif
