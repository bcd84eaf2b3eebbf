/* worker.h -- a worker: one thread running one libuv loop, the services
 * placed on it, their ready list and timers, a buffer pool, and an inbox
 * through which other threads hand it messages.
 */
#ifndef MYC_WORKER_H
#define MYC_WORKER_H

#include "core/buf.h"
#include "base/rng.h"
#include "runtime/service.h"
#include "core/timer.h"

#include <stdatomic.h>
#include <uv.h>

typedef struct {
  myc_service *svc;
  myc_buf *buf;
} myc__handoff;

/* Messages a worker has emitted for another worker's services, held until
 * the end of the current turn and then handed over in one go. */
typedef struct {
  myc__handoff *items;
  uint32_t n, cap;
  /* Staged messages count in the target's 'incoming' (what producers'
   * pressure sees) in runs of up to MYC_STAGE_RUN, not one atomic each. */
  myc_service *run_svc;
  uint32_t run;
} myc__stage;

#define MYC_STAGE_RUN 256

enum { MYC_PHASE_RUN, MYC_PHASE_DRAIN, MYC_PHASE_STOP };

typedef struct myc__worker {
  myc_engine *eng;
  uint32_t index;
  uv_loop_t loop;
  uv_thread_t thread;
  int started;
  uv_async_t wake;
  uv_idle_t idle;
  uv_timer_t timer;
  int64_t timer_armed; /* deadline the uv timer is set for, or INT64_MAX */

  myc__pool pool;
  myc__rng rng;
  myc__stage *stage; /* one per worker, indexed by the target's index */
  uint32_t staged;   /* items in all stages */
  int64_t now; /* engine clock, refreshed per batch */

  myc_service *ready_head, *ready_tail;
  myc__timers timers;

  uv_mutex_t inbox_lock;
  myc__handoff *inbox, *inbox_spare;
  uint32_t inbox_n, inbox_cap, spare_cap;
  int inbox_signalled;
  /* Mirrors inbox_n != 0 for the owner to peek at without the lock. */
  _Atomic int inbox_nonempty;

  _Atomic int phase;
  _Atomic int idle_flag; /* nothing ready, nothing in the inbox */
} myc__worker;

int myc__worker_init(myc__worker *w, myc_engine *e, uint32_t index);
void myc__worker_destroy(myc__worker *w);

/* Releases what other threads handed over but the worker never took,
 * counting it as dropped at shutdown.  Workers must be stopped. */
void myc__worker_discard_inbox(myc__worker *w);

/* Threaded engines: starts the thread.  Returns 0 or a libuv error. */
int myc__worker_start(myc__worker *w);
void myc__worker_join(myc__worker *w);

/* Wakes the worker so it looks at its inbox and phase.  Any thread. */
void myc__worker_wake(myc__worker *w);

/* Puts 's' on its worker's ready list if it is not there.  Worker thread. */
void myc__worker_schedule(myc__worker *w, myc_service *s);

/* Queues 'b' (carrying a reference for it) for service 's' of worker 'w'
 * from another thread.  Returns 0 (the inbox owns the reference) or
 * MYC_ENOMEM (the caller keeps it).  A NULL 'b' is a marker: the worker
 * runs the service's supervisor commands (supervisor.h) when it takes it. */
int myc__worker_handoff(myc__worker *w, myc_service *s, myc_buf *b);

/* Holds 'b' (carrying a reference for it) for service 's' of another
 * worker until myc__worker_flush().  Worker thread of 'w'.  Returns 0,
 * MYC_EFULL when two mailboxes' worth are already in transit to 's'
 * (counted as a drop), or MYC_ENOMEM; on error the caller keeps the
 * reference. */
int myc__worker_stage(myc__worker *w, myc_service *s, myc_buf *b);

/* Hands everything staged by 'w' to the target workers' inboxes: one
 * lock and at most one wake-up per target.  Worker thread of 'w'. */
void myc__worker_flush(myc__worker *w);

/* Moves the inbox into the mailboxes.  Worker thread. */
void myc__worker_drain_inbox(myc__worker *w);

/* Dispatches batches of ready services until none is ready or 'budget'
 * batches ran.  Returns the messages handled.  Worker thread. */
uint64_t myc__worker_run_ready(myc__worker *w, uint32_t budget);

/* Adds a timer and rearms the loop's timer if it is now the earliest. */
int myc__worker_add_timer(myc__worker *w, myc_service *s, int64_t deadline,
                          int64_t interval, uint64_t id);

/* Fires every timer due at 'now'.  Returns how many fired. */
uint32_t myc__worker_fire_timers(myc__worker *w, int64_t now);

/* Refreshes the cached clock. */
void myc__worker_tick(myc__worker *w);

#endif
