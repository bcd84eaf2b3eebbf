/* mailbox.h -- bounded inbound queue of one service.
 *
 * Only the service's worker pushes and pops (other workers hand messages
 * over through the worker inbox), so nothing here takes a lock; the
 * counters are atomics only so that status readers on other threads see
 * whole values.  Two bounds, both counting the batch being handled: depth
 * (queued messages) never exceeds the capacity, and the payload bytes
 * never exceed max_bytes; no message over max_message is taken.
 */
#ifndef MYC_MAILBOX_H
#define MYC_MAILBOX_H

#include "core/buf.h"

#include <stdatomic.h>

enum { MYC_DROP_OLDEST, MYC_DROP_NEWEST, MYC_DROP_REJECTED, MYC_DROP_SHUTDOWN,
       MYC_DROP_TOO_LARGE, MYC_DROP_REASONS };

/* Defaults of the byte bounds (a myc_mailbox_config field of 0): large
 * enough that no workload of counted messages meets them first, small
 * enough that one flood of huge messages cannot take the machine. */
#define MYC_MAILBOX_MAX_BYTES (1ull << 30)
#define MYC_MAILBOX_MAX_MESSAGE (1ull << 26)
/* Losses per topic: a small open-addressing table keyed by topic id,
 * insert-only so readers on other threads can walk it.  Topics beyond its
 * size are counted under MYC_DROP_OTHER_TOPIC. */
#define MYC_DROP_TOPICS 64
#define MYC_DROP_OTHER_TOPIC UINT32_MAX
/* Slots of a new ring: it doubles when full, up to the capacity, so that
 * a quiet service does not hold the ring of a busy one (the default
 * capacity's ring is 768 KiB). */
#define MYC_MAILBOX_RING_MIN 16u

typedef struct {
  _Atomic uint32_t topic_id; /* 0: free */
  _Atomic uint64_t n[MYC_DROP_REASONS];
} myc__drop_slot;

typedef struct {
  /* The owner's, written at every push and pop.  The ring ('mask' + 1
   * slots) holds the queued messages only; it grows on a push once the
   * queued and in-flight messages fill it, up to pow2(capacity). */
  myc_buf **slots;
  /* The payload length of each slot's message: the owner never reads a
   * buffer to account for it (one from another core would be a cache
   * miss on the hot path). */
  uint32_t *lens;
  uint32_t mask;
  uint32_t head;
  _Atomic uint32_t len;      /* queued in 'slots' */
  _Atomic uint32_t inflight; /* popped, not yet released */
  _Atomic uint64_t bytes;    /* payload bytes queued or in flight */
  _Atomic uint64_t inflight_bytes;
  uint64_t max_bytes;
  uint32_t capacity;
  /* min(capacity, ring slots): the push fast path's one bound on the
   * count, so that the ring costs it nothing. */
  uint32_t room;
  uint32_t max_message;      /* largest payload taken, <= max_bytes */
  /* Apart, so that no cache line holds both what the owner writes at
   * every message and what senders on other threads do. */
  char apart[64];
  /* The senders': what is on its way, and the bounds they check it
   * against (copies of the owner's). */
  _Atomic uint32_t incoming; /* handed over, not queued yet */
  uint32_t transit_max;      /* 2 * capacity */
  _Atomic uint64_t incoming_bytes; /* payload bytes of 'incoming' */
  uint64_t transit_max_bytes;      /* 2 * max_bytes */
  uint32_t transit_max_message;    /* max_message */
  uint32_t threshold;        /* depth above which backpressure is on */
  int policy;                /* myc_policy */
  _Atomic uint64_t dropped[MYC_DROP_REASONS];
  myc__drop_slot by_topic[MYC_DROP_TOPICS];
  myc__drop_slot other_topics;
} myc__mailbox;

/* Allocates the first ring.  Returns 0, MYC_EINVAL (capacity 0 or threshold out
 * of (0, 1]) or MYC_ENOMEM.  A byte bound of 0 is its default;
 * max_message is cut to max_bytes (a larger message could never fit). */
int myc__mailbox_init(myc__mailbox *mb, const myc__alloc *a,
                      const myc_mailbox_config *cfg);

/* Frees the ring.  The mailbox must be empty (see myc__mailbox_pop). */
void myc__mailbox_destroy(myc__mailbox *mb, const myc__alloc *a);

static inline uint32_t myc__mailbox_depth(const myc__mailbox *mb) {
  return atomic_load_explicit(&mb->len, memory_order_relaxed) +
         atomic_load_explicit(&mb->inflight, memory_order_relaxed);
}

/* What the mailbox holds and what is on its way to it (handed over by
 * other workers, not queued yet), in messages and payload bytes.  Any
 * thread; read in the order that never sees less than is there:
 * 'incoming' first (a worker uncounts it after queueing what arrived,
 * runtime/worker.c), then 'len' before 'inflight' (a batch taken adds to
 * 'inflight' before it leaves 'len', myc__mailbox_pop). */
static inline void myc__mailbox_held(const myc__mailbox *mb, uint32_t *n,
                                     uint64_t *bytes) {
  uint64_t b = atomic_load_explicit(&mb->incoming_bytes, memory_order_acquire);
  uint32_t k = atomic_load_explicit(&mb->incoming, memory_order_acquire);
  k += atomic_load_explicit(&mb->len, memory_order_acquire);
  k += atomic_load_explicit(&mb->inflight, memory_order_relaxed);
  *n = k;
  *bytes = b + atomic_load_explicit(&mb->bytes, memory_order_relaxed);
}

/* Fill ratio as producers see it, 0..1, of messages or of bytes,
 * whichever is higher: what is queued plus what other workers handed over
 * but the owner has not queued yet, against the mailbox's bounds.  1 when
 * that would fill the mailbox: transit may hold up to two mailboxes'
 * worth more, which would only be dropped on arrival. */
static inline double myc__mailbox_pressure(const myc__mailbox *mb) {
  uint32_t k;
  uint64_t bytes;
  double n, b, p;
  myc__mailbox_held(mb, &k, &bytes);
  n = (double)k / mb->capacity;
  b = (double)bytes / (double)mb->max_bytes;
  p = n > b ? n : b;
  return p < 1 ? p : 1;
}

/* Whether the mailbox would take a message of 'len' payload bytes now:
 * -1 when it would (drop_oldest evicting what it must), else the reason it
 * would be lost (MYC_DROP_TOO_LARGE, MYC_DROP_NEWEST, MYC_DROP_REJECTED).
 * Owner thread for an exact answer; another thread gets an estimate. */
int myc__mailbox_refusal(const myc__mailbox *mb, size_t len);

/* Whether a sender on another thread may hand over a message of 'len'
 * payload bytes: -1, or the reason it is lost (the slow path of
 * myc__mailbox_transit_ok).  Messages in transit are
 * bounded to two mailboxes' worth of bytes, and with 'count' also of
 * messages ('in_transit' of them, the sender's own staged ones
 * included).  Any thread. */
int myc__mailbox_transit_refusal(const myc__mailbox *mb, size_t len,
                                 uint32_t in_transit, int count);

/* The common case of myc__mailbox_transit_refusal(), inline for the
 * senders' hot path: nonzero when the message may go. */
static inline int myc__mailbox_transit_ok(const myc__mailbox *mb, size_t len,
                                          uint32_t in_transit) {
  return in_transit < mb->transit_max && len <= mb->transit_max_message &&
         atomic_load_explicit(&mb->incoming_bytes, memory_order_relaxed) +
                 len <=
             mb->transit_max_bytes;
}

/* Appends 'b', of 'len' payload bytes (its hdr.payload_len), which must
 * carry a reference for the mailbox.
 *
 * Returns 0 when queued; the mailbox then owns that reference.  When 'b'
 * does not fit: drop_oldest evicts the oldest queued messages until it
 * does (releasing them into 'pool', which may be NULL) and queues 'b';
 * otherwise, and for a message over max_message, it returns MYC_EFULL or
 * MYC_ETOOBIG and 'b' still belongs to the caller.  A ring that cannot
 * grow (out of memory) refuses as a full mailbox would.  Every loss is
 * counted by reason.  Owner thread. */
int myc__mailbox_push_full(myc__mailbox *mb, myc_buf *b, uint32_t need,
                           myc__pool *pool, const myc__alloc *a);

static inline int myc__mailbox_push(myc__mailbox *mb, myc_buf *b,
                                    uint32_t need, myc__pool *pool,
                                    const myc__alloc *a) {
  uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);
  uint64_t bytes = atomic_load_explicit(&mb->bytes, memory_order_relaxed) + need;
  uint32_t at;
  if (len + atomic_load_explicit(&mb->inflight, memory_order_relaxed) >=
          mb->room ||
      bytes > mb->max_bytes || need > mb->max_message)
    return myc__mailbox_push_full(mb, b, need, pool, a);
  at = (mb->head + len) & mb->mask;
  mb->slots[at] = b;
  mb->lens[at] = need;
  atomic_store_explicit(&mb->len, len + 1, memory_order_relaxed);
  atomic_store_explicit(&mb->bytes, bytes, memory_order_relaxed);
  return 0;
}

/* Queuing several messages in one go (the owner taking a run of
 * hand-overs for one service): when myc__mailbox_fits_n() says that 'k'
 * more messages of 'bytes' payload bytes in all, none longer than
 * 'longest', fit as they are (what k myc__mailbox_push calls would take
 * without their slow path), myc__mailbox_put() the j-th of them at
 * myc__mailbox_tail() + j, then myc__mailbox_commit() them.  The
 * messages carry a reference each, which the mailbox then owns.  Owner
 * thread. */
static inline int myc__mailbox_fits_n(const myc__mailbox *mb, uint32_t k,
                                      uint64_t bytes, uint32_t longest) {
  return atomic_load_explicit(&mb->len, memory_order_relaxed) +
                 atomic_load_explicit(&mb->inflight, memory_order_relaxed) +
                 k <=
             mb->room &&
         atomic_load_explicit(&mb->bytes, memory_order_relaxed) + bytes <=
             mb->max_bytes &&
         longest <= mb->max_message;
}

static inline uint32_t myc__mailbox_tail(const myc__mailbox *mb) {
  return mb->head + atomic_load_explicit(&mb->len, memory_order_relaxed);
}

static inline void myc__mailbox_put(myc__mailbox *mb, uint32_t at,
                                    myc_buf *b, uint32_t len) {
  mb->slots[at & mb->mask] = b;
  mb->lens[at & mb->mask] = len;
}

static inline void myc__mailbox_commit(myc__mailbox *mb, uint32_t k,
                                       uint64_t bytes) {
  atomic_store_explicit(
      &mb->len, atomic_load_explicit(&mb->len, memory_order_relaxed) + k,
      memory_order_relaxed);
  atomic_store_explicit(
      &mb->bytes, atomic_load_explicit(&mb->bytes, memory_order_relaxed) + bytes,
      memory_order_relaxed);
}

/* The 'i'th queued message (i < len), left in place.  Owner only. */
static inline myc_buf *myc__mailbox_peek(const myc__mailbox *mb, uint32_t i) {
  return mb->slots[(mb->head + i) & mb->mask];
}

/* Moves up to 'max' messages into 'out' in arrival order and counts them as
 * in flight until myc__mailbox_done().  Returns how many were moved. */
uint32_t myc__mailbox_pop(myc__mailbox *mb, myc_buf **out, uint32_t max);

/* Marks 'n' in-flight messages, of 'bytes' payload bytes in all, as
 * handled. */
static inline void myc__mailbox_done(myc__mailbox *mb, uint32_t n,
                                     uint64_t bytes) {
  atomic_store_explicit(
      &mb->inflight,
      atomic_load_explicit(&mb->inflight, memory_order_relaxed) - n,
      memory_order_relaxed);
  atomic_store_explicit(
      &mb->bytes, atomic_load_explicit(&mb->bytes, memory_order_relaxed) - bytes,
      memory_order_relaxed);
  atomic_store_explicit(
      &mb->inflight_bytes,
      atomic_load_explicit(&mb->inflight_bytes, memory_order_relaxed) - bytes,
      memory_order_relaxed);
}

/* Counts 'n' messages of topic 'topic_id' lost for 'reason'.  Any
 * thread. */
void myc__mailbox_count(myc__mailbox *mb, int reason, uint32_t topic_id,
                        uint64_t n);

#endif
