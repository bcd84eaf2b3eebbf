/* test.h -- the C tests' harness: CHECK macros and a {name, fn} case table
 * run by main().  A failed CHECK reports file:line and fails the case. */
#ifndef MYC_TEST_H
#define MYC_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      test_failed = 1;                                                         \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                         \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_) {                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",        \
              __FILE__, __LINE__, #a, #b, a_, b_);                             \
      test_failed = 1;                                                         \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define CHECK_STR(a, b)                                                        \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n",    \
              __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",                  \
              b_ ? b_ : "(null)");                                             \
      test_failed = 1;                                                         \
      return;                                                                  \
    }                                                                          \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} test_case;

static inline int run_tests(const test_case *cases) {
  int failures = 0;
  /* TEST_ONLY=name runs that case alone (to debug or profile it). */
  const char *only = getenv("TEST_ONLY");
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (; cases->name != NULL; cases++) {
    if (only != NULL && strcmp(only, cases->name) != 0)
      continue;
    test_failed = 0;
    cases->fn();
    printf("%s %s\n", test_failed ? "FAIL" : "ok  ", cases->name);
    failures += test_failed;
  }
  return failures ? 1 : 0;
}

/* Removes the test's scratch directory 'dir' and all in it: 0, or 1
 * (after saying so) when it could not. */
static inline int remove_tmpdir(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) == 0)
    return 0;
  fprintf(stderr, "cannot remove %s\n", dir);
  return 1;
}

/* An allocator that fails the Nth allocation (counting from 1) and keeps a
 * balance of live bytes, for failure-injection loops. */
typedef struct {
  long fail_at;
  long count;
  long long live;
} failing_alloc;

static inline void *failing_alloc_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  failing_alloc *fa = ud;
  void *p;
  if (nsize == 0) {
    if (ptr != NULL)
      fa->live -= (long long)osize;
    free(ptr);
    return NULL;
  }
  if (++fa->count == fa->fail_at)
    return NULL;
  p = realloc(ptr, nsize);
  if (p != NULL)
    fa->live += (long long)nsize - (ptr ? (long long)osize : 0);
  return p;
}

#endif
