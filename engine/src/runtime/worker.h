/* worker.h -- a worker: one thread running one libuv loop, the tasks
 * placed on it, their ready list and timers, a buffer pool, and an inbox
 * through which other threads hand it messages and jobs.
 *
 * A task is what a service is to its worker: a mailbox and a place on
 * the ready list.  The worker knows nothing else of it and runs it
 * through its ops, as libuv runs a handle's callbacks; timers fire their
 * own callbacks.  Nothing here calls up into services or the engine.
 */
#ifndef MYC_WORKER_H
#define MYC_WORKER_H

#include "base/check.h"
#include "base/clock.h"
#include "base/rng.h"
#include "core/buf.h"
#include "core/grace.h"
#include "core/hist.h"
#include "core/mailbox.h"
#include "core/timer.h"
#include "runtime/inbox.h"

#include <stdatomic.h>
#include <uv.h>

typedef struct myc__task myc__task;
typedef struct myc__worker myc__worker;

typedef struct {
  /* One turn: handles what was queued when it began, at most 'batches'
   * batches (a task that messages itself cannot monopolise the worker).
   * Returns the messages handled.  Worker thread. */
  uint32_t (*run)(myc__task *t, uint32_t batches);
  /* Nonzero when messages wait and the task can take them now. */
  int (*pending)(const myc__task *t);
  /* The engine stops: the task's last call (its module's stop).  Worker
   * thread. */
  void (*stop)(myc__task *t);
} myc__task_ops;

struct myc__task {
  myc__mailbox mb;
  myc__worker *worker;
  const myc__task_ops *ops;
  myc__task *ready_next;
  myc__task *next; /* the worker's tasks, in the order they were placed */
  myc__task *prev; /* so that a task leaves in O(1) (services come and go) */
  int queued;      /* on the ready list */
};

/* What the workers of one engine share. */
typedef struct {
  const myc__alloc *alloc;
  myc__clock *clock;
  int manual; /* no threads: the host turns the loops (mycelium.testing) */
  myc__worker *workers;
  uint32_t nworkers;     /* initialised so far */
  uint32_t nworkers_max; /* configured */
  _Atomic uint64_t delivered; /* messages handled, all tasks */
  /* Threads without a worker that read subscriber lists (host threads,
   * the links' and NATS threads) do it in read sections of 'hosts': a
   * task is freed only after a grace period of it (and a job on every
   * worker).  myc__deliver/myc__admit from NULL and the host stage enter
   * them on their own. */
  myc__grace hosts;
  /* The pool of one thread beside the workers (the links' reading
   * thread), origin index nworkers_max: small buffers it allocated go
   * back to it as workers hand back each other's.  NULL: none.  Set
   * before the workers start. */
  myc__pool *aux_pool;
} myc__sched;

/* Staged messages count in their target's 'incoming' (what producers'
 * pressure sees) in runs of up to MYC_STAGE_RUN, not one atomic each: a
 * run is what a stage holds for one task and has not counted yet. */
typedef struct {
  myc__task *task; /* NULL, or a task whose run may be empty */
  uint32_t n;
  uint64_t bytes;
} myc__stage_run;

/* Runs a stage keeps open at once: a fan-out to several services of one
 * worker interleaves their messages, and one open run would count every
 * message on its own. */
#define MYC_STAGE_OPEN 4

/* Messages a worker has emitted for another worker's tasks, held until
 * the end of the current turn and then handed over in one go. */
typedef struct {
  myc__handoff *items;
  uint32_t n, cap;
  myc__stage_run runs[MYC_STAGE_OPEN];
  uint32_t hot;   /* the run staged to last: the inline path's */
  uint32_t evict; /* the open run to count next when all are taken */
  int hurried;    /* handed over early in this turn (myc__worker_hurry) */
} myc__stage;

/* The index of the open run of 'st' for 't', or MYC_STAGE_OPEN. */
static inline uint32_t myc__stage_run_index(const myc__stage *st,
                                            const myc__task *t) {
  uint32_t k;
  for (k = 0; k < MYC_STAGE_OPEN && st->runs[k].task != t; k++)
    ;
  return k;
}

/* The open run of 'st' for 't', or NULL. */
static inline myc__stage_run *myc__stage_run_of(myc__stage *st,
                                                const myc__task *t) {
  uint32_t k = myc__stage_run_index(st, t);
  return k < MYC_STAGE_OPEN ? &st->runs[k] : NULL;
}

#define MYC_STAGE_RUN 256
/* A run's bytes are counted before they reach this, so that a run of
 * large messages is seen by the transit bound before it passes it. */
#define MYC_STAGE_RUN_BYTES (1u << 20)

enum { MYC_PHASE_RUN, MYC_PHASE_DRAIN, MYC_PHASE_STOP };

struct myc__worker {
  myc__sched *sched;
  uint32_t index;
  uv_loop_t loop;
  uv_thread_t thread;
  int started;
  _Atomic int finished; /* its thread left the loop: joining won't wait */
  myc__owner owner; /* the thread that may run it now (check.h) */
  /* Woken through an eventfd of its own, not a uv_async_t: libuv's
   * async callback waits (spinning, then sched_yield) until the sender
   * has returned from its write(), so every hand-over cost the receiver
   * the rest of the sender's system call, or its time slice when the two
   * threads shared a CPU. */
  uv_poll_t wake;
  int wake_fd;
  uv_idle_t idle;
  uv_timer_t timer;
  int64_t timer_armed; /* deadline the uv timer is set for, or INT64_MAX */

  myc__pool pool;
  myc__rng rng;
  myc__stage *stage; /* one per worker, indexed by the target's index */
  uint32_t staged;   /* items in all stages */
  int hurried;       /* some stage's 'hurried' is set */
  int64_t now;       /* engine clock, refreshed per batch */

  myc__task *tasks, *tasks_tail;
  myc__task *ready_head, *ready_tail;
  myc__timers timers;
  myc__inbox inbox;

  _Atomic int phase;

  /* Work a transport put off to the end of the turn (myc__worker_after):
   * the links' writes of what emits queued for their peers.  Run by the
   * next myc__worker_flush, once however many emits asked. */
  void (*after)(void *ud);
  void *after_ud;
  int after_due;

#if MYC_METRICS
  /* For other threads (observe/): when the current round of callbacks
   * began (monotonic ns; 0 while the loop waits for I/O), how long rounds
   * took, and how many messages each dispatch took.  Written by the
   * worker only. */
  _Atomic int64_t round_start;
  myc__hist rounds;
  myc__hist batches;
#endif
};

int myc__worker_init(myc__worker *w, myc__sched *sched, uint32_t index);
void myc__worker_destroy(myc__worker *w);

/* Places 't' (its mailbox ready, not yet placed, its ready-list fields
 * zeroed or set by myc__worker_schedule) on 'w'; stop() reaches it in
 * placement order.  Thread owning 'w'. */
void myc__worker_place(myc__worker *w, myc__task *t, const myc__task_ops *ops);

/* Removes 't' from the worker's tasks and ready list (a task never
 * placed is left alone).  Thread owning 'w'. */
void myc__worker_unplace(myc__worker *w, myc__task *t);

/* Releases what other threads handed over but the worker never took,
 * counting it as dropped at shutdown, and cancels the jobs.  Thread
 * owning 'w' (the workers are stopped). */
void myc__worker_discard_inbox(myc__worker *w);

/* Threaded engines: starts the thread.  Returns 0 or a libuv error. */
int myc__worker_start(myc__worker *w);
/* Joins the thread; the caller owns the worker afterwards. */
void myc__worker_join(myc__worker *w);

/* Nonzero when the worker had nothing to do and nothing was handed to
 * it since.  Any thread. */
static inline int myc__worker_idle(myc__worker *w) {
  return atomic_load_explicit(&w->inbox.idle, memory_order_acquire);
}

/* Wakes the worker so it looks at its inbox and phase.  Any thread. */
void myc__worker_wake(myc__worker *w);

/* Sets the phase of every worker of 'sched' and wakes them.  Any thread. */
void myc__workers_set_phase(myc__sched *sched, int phase);

/* Puts 't' on its worker's ready list if it is not there.  Worker
 * thread. */
void myc__worker_schedule(myc__worker *w, myc__task *t);

/* Queues 'b' (carrying a reference for it) for task 't' of worker 'w'
 * from another thread.  Returns 0 (the inbox owns the reference) or
 * MYC_ENOMEM (the caller keeps it). */
int myc__worker_handoff(myc__worker *w, myc__task *t, myc_buf *b);

/* Runs 'j' on the worker's thread between two batches (the control
 * channel).  Any thread; cannot fail.  A worker that stops first cancels
 * it (j->fn(j, 0)). */
void myc__worker_post(myc__worker *w, myc__job *j);

/* Holds 'b' (carrying a reference for it) for task 't' of another worker
 * until myc__worker_flush().  Worker thread of 'w'.  Returns 0,
 * MYC_EFULL when two mailboxes' worth are already in transit to 't'
 * (counted as a drop), or MYC_ENOMEM; on error the caller keeps the
 * reference.  myc__worker_stage is the inline fast path of
 * myc__worker_stage_any, which takes every case. */
int myc__worker_stage_any(myc__worker *w, myc__task *t, myc_buf *b);

/* As myc__worker_stage, 'st' being the stage of 'w' for the worker of
 * 't' (w->stage + its index), which a caller may have kept. */
static inline __attribute__((always_inline)) int
myc__worker_stage_at(myc__worker *w, myc__stage *st, myc__task *t,
                     myc_buf *b) {
  uint32_t k = st->hot, len = b->hdr.payload_len;
  myc__stage_run *r;
  MYC_ASSERT_OWNER(&w->owner);
  /* A fan-out to several tasks of one worker alternates between their
   * open runs: looking the others up here keeps it on this path, where
   * the call below cost about a hundred instructions per message. */
  if (st->runs[k].task != t &&
      (k = myc__stage_run_index(st, t)) == MYC_STAGE_OPEN)
    return myc__worker_stage_any(w, t, b);
  r = &st->runs[k];
  /* The common case, inline: one more message of an open run for 't',
   * with room left in the stage's vector and in the run, and within the
   * transit bounds (myc__worker_stage_any says the rest). */
  if (r->n + 1 < MYC_STAGE_RUN && st->n < st->cap &&
      r->bytes + len <= MYC_STAGE_RUN_BYTES &&
      myc__mailbox_transit_ok(
          &t->mb, len,
          atomic_load_explicit(&t->mb.incoming, memory_order_relaxed) +
              r->n)) {
    myc__handoff *h = &st->items[st->n++];
    h->task = t;
    h->buf = b;
    h->len = len;
    r->n++;
    r->bytes += len;
    st->hot = k;
    w->staged++;
    return 0;
  }
  return myc__worker_stage_any(w, t, b);
}

static inline __attribute__((always_inline)) int
myc__worker_stage(myc__worker *w, myc__task *t, myc_buf *b) {
  return myc__worker_stage_at(w, &w->stage[t->worker->index], t, b);
}

/* Hands everything staged by 'w' to the target workers' inboxes: one
 * lock and at most one wake-up per target, and runs the work put off
 * with myc__worker_after.  Worker thread of 'w'. */
void myc__worker_flush(myc__worker *w);

/* Hands what 'w' staged for each sleeping worker (its inbox idle) over
 * now rather than at the end of the turn, and has that worker run the
 * tasks it receives in its wake-up: for a request or a reply, which
 * somebody waits for.  Everything staged for that worker goes, in order,
 * so that nothing sent before overtakes it; a worker that is busy takes
 * it at the end of the turn as usual.  At most one early hand-over per
 * target per turn of 'w': a turn sending many requests would otherwise
 * wake the target for each one it finished before the next, one
 * system call and one batch of one per request.  Worker thread of
 * 'w'. */
void myc__worker_hurry(myc__worker *w);

/* Asks for w->after to run at the next myc__worker_flush: after the
 * task's turn, the timer or the job that is running, or at the latest
 * in the loop's next idle callback.  Worker thread of 'w'. */
void myc__worker_after(myc__worker *w);

/* What a thread without a worker (the links') holds for workers' tasks
 * until myc__host_flush(): handed over with one lock and at most one
 * wake-up per target worker, not one per message. */
typedef struct {
  myc__sched *sched;
  myc__stage *stage; /* one per worker, indexed by the target's index */
  uint32_t nstage;
  uint32_t staged;
  /* The read section (sched->hosts) held from the first delivery until
   * the flush: the stage keeps task pointers.  -1: none. */
  int section;
} myc__host_stage;

/* Returns 0 or MYC_ENOMEM.  Once the workers are made. */
int myc__host_stage_init(myc__host_stage *h, myc__sched *sched);
/* Frees 'h' (flushed or not: what it holds is released, counted as a
 * shutdown drop). */
void myc__host_stage_free(myc__host_stage *h);

/* Holds 'b' (carrying a reference for it) for task 't' until
 * myc__host_flush(), checked against the mailbox's transit bounds in
 * bytes as myc__worker_handoff() does.  Returns 0, MYC_EFULL/MYC_ETOOBIG
 * (counted as a drop) or MYC_ENOMEM; on error the caller keeps the
 * reference.  The owning thread. */
int myc__host_stage_put(myc__host_stage *h, myc__task *t, myc_buf *b);

/* Begins the read section of 'h' (sched->hosts) if it holds none: what
 * the caller reads of subscriber lists from now until myc__host_flush()
 * stays valid.  The owning thread. */
void myc__host_enter(myc__host_stage *h);

/* Hands everything held to the target workers' inboxes, and ends the
 * read section. */
void myc__host_flush(myc__host_stage *h);

/* Moves the inbox into the mailboxes, then runs the jobs.  Worker
 * thread. */
void myc__worker_drain_inbox(myc__worker *w);

/* Runs turns of ready tasks until none is ready or 'budget' turns ran
 * (0: no limit).  Returns the messages handled.  Worker thread. */
uint64_t myc__worker_run_ready(myc__worker *w, uint32_t budget);

/* Adds a timer firing fn(arg, id) at 'deadline' (engine ns), again every
 * 'interval' ns while fn returns nonzero (0: once), and rearms the loop's
 * timer if it is now the earliest.  Worker thread.  Returns 0 or
 * MYC_ENOMEM. */
int myc__worker_add_timer(myc__worker *w, myc__timer_fn fn, void *arg,
                          int64_t deadline, int64_t interval, uint64_t id);

/* Fires every timer due at 'now'.  Returns how many fired.  Worker
 * thread. */
uint32_t myc__worker_fire_timers(myc__worker *w, int64_t now);

/* Refreshes the cached clock.  Worker thread. */
static inline void myc__worker_tick(myc__worker *w) {
  w->now = myc__clock_now(w->sched->clock);
}

#endif
