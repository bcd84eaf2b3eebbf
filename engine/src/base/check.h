/* check.h -- assertions, including which thread is running (as SQLite
 * asserts sqlite3_mutex_held() and LuaJIT lj_assertX): active in debug
 * builds (MYC_DEBUG, which the sanitizer test builds define), compiled
 * out otherwise, so they cost nothing on the hot path of a release build.
 *
 * A "worker thread only" contract comment is backed by
 * MYC_ASSERT_OWNER(&w->owner): the thread that owns a worker is its own
 * thread while it runs, and the thread driving the engine before the
 * workers start, after they are joined, and for a manual engine.
 */
#ifndef MYC_CHECK_H
#define MYC_CHECK_H

#include <stdatomic.h>
#include <stdint.h>

/* Which thread owns something: a token unique to each live thread. */
typedef struct {
  _Atomic uintptr_t token;
} myc__owner;

/* The calling thread's token (the address of a thread-local). */
uintptr_t myc__thread_token(void);

/* The calling thread owns 'o' from now on. */
static inline void myc__owner_take(myc__owner *o) {
  atomic_store_explicit(&o->token, myc__thread_token(), memory_order_relaxed);
}

/* Nonzero when the calling thread owns 'o'. */
static inline int myc__owner_held(const myc__owner *o) {
  return atomic_load_explicit(&o->token, memory_order_relaxed) ==
         myc__thread_token();
}

/* Reports a failed assertion and aborts. */
_Noreturn void myc__assert_fail(const char *what, const char *file, int line);

#ifdef MYC_DEBUG
#define MYC_ASSERT(c)                                                          \
  ((c) ? (void)0 : myc__assert_fail(#c, __FILE__, __LINE__))
#else
#define MYC_ASSERT(c) ((void)0)
#endif

#define MYC_ASSERT_OWNER(o) MYC_ASSERT(myc__owner_held(o))

#endif
