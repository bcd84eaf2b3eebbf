/* timer.h -- a worker's timers: a binary min-heap on (deadline, arrival),
 * so timers due at the same instant fire in the order they were set.
 * Each timer names the callback that fires it and its argument, so the
 * heap needs to know nothing of what it times. */
#ifndef MYC_TIMER_H
#define MYC_TIMER_H

#include "base/alloc.h"

#include <stdint.h>

/* Fires timer 'id' of 'arg'.  Returns nonzero when a repeating timer is
 * still wanted. */
typedef int (*myc__timer_fn)(void *arg, uint64_t id);

typedef struct {
  int64_t deadline; /* engine clock, ns */
  uint64_t seq;
  int64_t interval; /* ns; 0 for a one-shot timer */
  myc__timer_fn fn;
  void *arg;
  uint64_t id; /* the owner's id for it */
} myc__timer;

typedef struct {
  myc__timer *heap;
  uint32_t n, cap;
  uint64_t seq;
  const myc__alloc *alloc;
} myc__timers;

void myc__timers_init(myc__timers *t, const myc__alloc *a);
void myc__timers_destroy(myc__timers *t);

/* Adds a timer.  Returns 0 or MYC_ENOMEM (nothing added). */
int myc__timers_add(myc__timers *t, int64_t deadline, int64_t interval,
                    myc__timer_fn fn, void *arg, uint64_t id);

/* Earliest deadline, or INT64_MAX when there is no timer. */
int64_t myc__timers_next(const myc__timers *t);

/* Removes the earliest timer if it is due at 'now' and copies it to 'out'.
 * Returns 1 if one was removed, else 0. */
int myc__timers_pop_due(myc__timers *t, int64_t now, myc__timer *out);

/* Drops the timers of ('fn', 'arg') whose id is in [lo, hi): those of an
 * ended instance, or what a failed init set. */
void myc__timers_forget(myc__timers *t, myc__timer_fn fn, const void *arg,
                        uint64_t lo, uint64_t hi);

#endif
