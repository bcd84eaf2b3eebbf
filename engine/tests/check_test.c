/* check_test.c -- thread ownership, and that a debug build's assertion
 * stops a call made from the wrong thread. */
#include "test.h"

#include "base/check.h"

#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

static myc__owner owner;
static int held_elsewhere = -1;

static void look(void *arg) {
  (void)arg;
  held_elsewhere = myc__owner_held(&owner);
}

static void ownership_follows_the_taking_thread(void) {
  uv_thread_t t;
  myc__owner_take(&owner);
  CHECK(myc__owner_held(&owner));
  CHECK_EQ(uv_thread_create(&t, look, NULL), 0);
  uv_thread_join(&t);
  CHECK_EQ(held_elsewhere, 0);
}

static void take_elsewhere(void *arg) {
  (void)arg;
  myc__owner_take(&owner);
}

#ifdef MYC_DEBUG
/* In a child: the assertion must abort it with a message. */
static void assert_from(void *arg) {
  (void)arg;
  MYC_ASSERT_OWNER(&owner);
}
#endif

static void a_wrong_thread_trips_the_debug_assertion(void) {
  uv_thread_t t;
  CHECK_EQ(uv_thread_create(&t, take_elsewhere, NULL), 0);
  uv_thread_join(&t);
  CHECK(!myc__owner_held(&owner));
#ifdef MYC_DEBUG
  {
    int status;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      assert_from(NULL);
      _exit(0); /* the assertion did not fire */
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  }
#else
  MYC_ASSERT_OWNER(&owner); /* compiled out of a release build */
#endif
}

int main(void) {
  static const test_case cases[] = {
      {"ownership_follows_the_taking_thread",
       ownership_follows_the_taking_thread},
      {"a_wrong_thread_trips_the_debug_assertion",
       a_wrong_thread_trips_the_debug_assertion},
      {NULL, NULL}};
  return run_tests(cases);
}
