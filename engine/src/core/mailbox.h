/* mailbox.h -- bounded inbound queue of one service.
 *
 * Only the service's worker pushes and pops (other workers hand messages
 * over through the worker inbox), so nothing here takes a lock; the
 * counters are atomics only so that status readers on other threads see
 * whole values.  Depth counts queued messages plus the batch being
 * handled, and never exceeds the capacity.
 */
#ifndef MYC_MAILBOX_H
#define MYC_MAILBOX_H

#include "core/buf.h"

#include <stdatomic.h>

enum { MYC_DROP_OLDEST, MYC_DROP_NEWEST, MYC_DROP_REJECTED, MYC_DROP_SHUTDOWN,
       MYC_DROP_REASONS };

/* Losses per topic: a small open-addressing table keyed by topic id,
 * insert-only so readers on other threads can walk it.  Topics beyond its
 * size are counted under MYC_DROP_OTHER_TOPIC. */
#define MYC_DROP_TOPICS 64
#define MYC_DROP_OTHER_TOPIC UINT32_MAX

typedef struct {
  _Atomic uint32_t topic_id; /* 0: free */
  _Atomic uint64_t n[MYC_DROP_REASONS];
} myc__drop_slot;

typedef struct {
  myc_buf **slots;
  uint32_t mask;
  uint32_t head;
  _Atomic uint32_t len;      /* queued in 'slots' */
  _Atomic uint32_t inflight; /* popped, not yet released */
  _Atomic uint32_t incoming; /* handed over by other workers, not queued yet */
  uint32_t capacity;
  uint32_t threshold;        /* depth above which backpressure is on */
  int policy;                /* myc_policy */
  _Atomic uint64_t dropped[MYC_DROP_REASONS];
  myc__drop_slot by_topic[MYC_DROP_TOPICS];
  myc__drop_slot other_topics;
} myc__mailbox;

/* Allocates the ring.  Returns 0, MYC_EINVAL (capacity 0 or threshold out
 * of (0, 1]) or MYC_ENOMEM. */
int myc__mailbox_init(myc__mailbox *mb, const myc__alloc *a,
                      const myc_mailbox_config *cfg);

/* Frees the ring.  The mailbox must be empty (see myc__mailbox_pop). */
void myc__mailbox_destroy(myc__mailbox *mb, const myc__alloc *a);

static inline uint32_t myc__mailbox_depth(const myc__mailbox *mb) {
  return atomic_load_explicit(&mb->len, memory_order_relaxed) +
         atomic_load_explicit(&mb->inflight, memory_order_relaxed);
}

/* Fill ratio as producers see it: also counts what other workers handed
 * over but the owner has not queued yet. */
static inline double myc__mailbox_pressure(const myc__mailbox *mb) {
  return (double)(myc__mailbox_depth(mb) +
                  atomic_load_explicit(&mb->incoming, memory_order_relaxed)) /
         mb->capacity;
}

/* Appends 'b', which must carry a reference for the mailbox.
 *
 * Returns 0 when queued; the mailbox then owns that reference.  When the
 * mailbox is full: drop_oldest evicts the oldest queued message, returns it
 * in '*evicted' (the caller releases it) and queues 'b'; drop_newest and
 * reject return MYC_EFULL and 'b' still belongs to the caller.  Every loss
 * is counted by reason. */
int myc__mailbox_push_full(myc__mailbox *mb, myc_buf *b, myc_buf **evicted);

static inline int myc__mailbox_push(myc__mailbox *mb, myc_buf *b,
                                    myc_buf **evicted) {
  uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);
  if (len + atomic_load_explicit(&mb->inflight, memory_order_relaxed) >=
      mb->capacity)
    return myc__mailbox_push_full(mb, b, evicted);
  *evicted = NULL;
  mb->slots[(mb->head + len) & mb->mask] = b;
  atomic_store_explicit(&mb->len, len + 1, memory_order_relaxed);
  return 0;
}

/* Moves up to 'max' messages into 'out' in arrival order and counts them as
 * in flight until myc__mailbox_done().  Returns how many were moved. */
uint32_t myc__mailbox_pop(myc__mailbox *mb, myc_buf **out, uint32_t max);

/* Marks 'n' in-flight messages as handled. */
static inline void myc__mailbox_done(myc__mailbox *mb, uint32_t n) {
  atomic_store_explicit(
      &mb->inflight,
      atomic_load_explicit(&mb->inflight, memory_order_relaxed) - n,
      memory_order_relaxed);
}

/* Counts 'n' messages of topic 'topic_id' lost for 'reason'.  Any
 * thread. */
void myc__mailbox_count(myc__mailbox *mb, int reason, uint32_t topic_id,
                        uint64_t n);

#endif
