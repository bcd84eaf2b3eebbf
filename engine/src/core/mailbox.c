/* mailbox.c -- bounded per-service queue (see mailbox.h). */
#include "core/mailbox.h"

#include <string.h>

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static uint32_t pow2_at_least(uint32_t n) {
  uint32_t p = 1;
  while (p < n)
    p <<= 1;
  return p;
}

int myc__mailbox_init(myc__mailbox *mb, const myc__alloc *a,
                      const myc_mailbox_config *cfg) {
  uint32_t size;
  int i;
  if (cfg->capacity == 0 || cfg->capacity > (1u << 30) ||
      !(cfg->threshold > 0 && cfg->threshold <= 1) ||
      cfg->policy < MYC_POLICY_DROP_OLDEST || cfg->policy > MYC_POLICY_REJECT)
    return MYC_EINVAL;
  size = pow2_at_least(cfg->capacity);
  if (size > MYC_MAILBOX_RING_MIN)
    size = MYC_MAILBOX_RING_MIN;
  /* Cut so that twice it (the bound in transit) cannot overflow. */
  mb->max_bytes = min_u64(cfg->max_bytes ? cfg->max_bytes
                                         : MYC_MAILBOX_MAX_BYTES,
                          1ull << 62);
  mb->max_message = (uint32_t)min_u64(
      min_u64(cfg->max_message_bytes ? cfg->max_message_bytes
                                     : MYC_MAILBOX_MAX_MESSAGE,
              mb->max_bytes),
      MYC_PAYLOAD_MAX);
  mb->slots = myc__malloc(a, size * sizeof *mb->slots);
  mb->lens = myc__malloc(a, size * sizeof *mb->lens);
  if (mb->slots == NULL || mb->lens == NULL) {
    myc__free(a, mb->slots, size * sizeof *mb->slots);
    myc__free(a, mb->lens, size * sizeof *mb->lens);
    return MYC_ENOMEM;
  }
  mb->mask = size - 1;
  mb->head = 0;
  atomic_init(&mb->len, 0);
  atomic_init(&mb->inflight, 0);
  atomic_init(&mb->incoming, 0);
  atomic_init(&mb->bytes, 0);
  atomic_init(&mb->inflight_bytes, 0);
  atomic_init(&mb->incoming_bytes, 0);
  mb->capacity = cfg->capacity;
  mb->room = size < cfg->capacity ? size : cfg->capacity;
  mb->transit_max = 2 * cfg->capacity;
  mb->transit_max_bytes = 2 * mb->max_bytes;
  mb->transit_max_message = mb->max_message;
  mb->threshold = (uint32_t)(cfg->threshold * cfg->capacity);
  mb->policy = cfg->policy;
  for (i = 0; i < MYC_DROP_REASONS; i++)
    atomic_init(&mb->dropped[i], 0);
  memset(mb->by_topic, 0, sizeof mb->by_topic);
  memset(&mb->other_topics, 0, sizeof mb->other_topics);
  atomic_init(&mb->other_topics.topic_id, MYC_DROP_OTHER_TOPIC);
  return 0;
}

static myc__drop_slot *drop_slot(myc__mailbox *mb, uint32_t topic_id) {
  uint32_t i, k;
  for (k = 0; k < MYC_DROP_TOPICS; k++) {
    myc__drop_slot *d = &mb->by_topic[(topic_id + k) % MYC_DROP_TOPICS];
    uint32_t id = atomic_load_explicit(&d->topic_id, memory_order_acquire);
    if (id == topic_id)
      return d;
    if (id == 0) {
      uint32_t expected = 0;
      for (i = 0; i < MYC_DROP_REASONS; i++)
        atomic_store_explicit(&d->n[i], 0, memory_order_relaxed);
      if (atomic_compare_exchange_strong(&d->topic_id, &expected, topic_id) ||
          expected == topic_id)
        return d;
    }
  }
  return &mb->other_topics;
}

void myc__mailbox_count(myc__mailbox *mb, int reason, uint32_t topic_id,
                        uint64_t n) {
  atomic_fetch_add_explicit(&mb->dropped[reason], n, memory_order_relaxed);
  atomic_fetch_add_explicit(&drop_slot(mb, topic_id)->n[reason], n,
                            memory_order_relaxed);
}

void myc__mailbox_destroy(myc__mailbox *mb, const myc__alloc *a) {
  myc__free(a, mb->slots, (mb->mask + 1) * sizeof *mb->slots);
  myc__free(a, mb->lens, (mb->mask + 1) * sizeof *mb->lens);
  mb->slots = NULL;
  mb->lens = NULL;
}

static uint64_t load64(const _Atomic uint64_t *v) {
  return atomic_load_explicit(v, memory_order_relaxed);
}

static uint32_t load32(const _Atomic uint32_t *v) {
  return atomic_load_explicit(v, memory_order_relaxed);
}

/* Whether a message of 'len' bytes fits once 'evict' queued messages of
 * 'evict_bytes' bytes are gone. */
static int fits(const myc__mailbox *mb, size_t len, uint32_t evict,
                uint64_t evict_bytes) {
  return load32(&mb->len) - evict + load32(&mb->inflight) < mb->capacity &&
         load64(&mb->bytes) - evict_bytes + len <= mb->max_bytes;
}

int myc__mailbox_refusal(const myc__mailbox *mb, size_t len) {
  if (len > mb->max_message)
    return MYC_DROP_TOO_LARGE;
  if (fits(mb, len, 0, 0))
    return -1;
  /* Refuse rather than grow: an unbounded mailbox hides a slow consumer
   * until the whole engine runs out of memory.  drop_oldest makes room
   * unless even an empty queue would not do: the batch being handled
   * cannot be given up, so the new message goes. */
  if (mb->policy == MYC_POLICY_DROP_OLDEST &&
      fits(mb, len, load32(&mb->len),
           load64(&mb->bytes) - load64(&mb->inflight_bytes)))
    return -1;
  return mb->policy == MYC_POLICY_REJECT ? MYC_DROP_REJECTED : MYC_DROP_NEWEST;
}

int myc__mailbox_transit_refusal(const myc__mailbox *mb, size_t len,
                                 uint32_t in_transit, int count) {
  if (len > mb->transit_max_message)
    return MYC_DROP_TOO_LARGE;
  /* (For drop_oldest this drops the newest: exact eviction would need the
   * messages in transit, which belong to no one yet.) */
  if ((count && in_transit >= mb->transit_max) ||
      load64(&mb->incoming_bytes) + len > mb->transit_max_bytes)
    return mb->policy == MYC_POLICY_REJECT ? MYC_DROP_REJECTED
                                           : MYC_DROP_NEWEST;
  return -1;
}

/* Doubles the ring, its queued messages moved to its start.  Returns 0
 * or MYC_ENOMEM (the ring unchanged). */
static int grow(myc__mailbox *mb, const myc__alloc *a) {
  uint32_t size = mb->mask + 1, n = load32(&mb->len), i;
  myc_buf **slots = myc__malloc(a, 2 * size * sizeof *slots);
  uint32_t *lens = myc__malloc(a, 2 * size * sizeof *lens);
  if (slots == NULL || lens == NULL) {
    myc__free(a, slots, 2 * size * sizeof *slots);
    myc__free(a, lens, 2 * size * sizeof *lens);
    return MYC_ENOMEM;
  }
  for (i = 0; i < n; i++) {
    slots[i] = mb->slots[(mb->head + i) & mb->mask];
    lens[i] = mb->lens[(mb->head + i) & mb->mask];
  }
  myc__free(a, mb->slots, size * sizeof *slots);
  myc__free(a, mb->lens, size * sizeof *lens);
  mb->slots = slots;
  mb->lens = lens;
  mb->head = 0;
  mb->mask = 2 * size - 1;
  mb->room = 2 * size < mb->capacity ? 2 * size : mb->capacity;
  return 0;
}

/* The slow path of myc__mailbox_push: 'b' does not fit as things are. */
int myc__mailbox_push_full(myc__mailbox *mb, myc_buf *b, uint32_t need,
                           myc__pool *pool, const myc__alloc *a) {
  uint32_t len, at;
  uint64_t bytes;
  int why = myc__mailbox_refusal(mb, need);

  if (why >= 0) {
    myc__mailbox_count(mb, why, b->topic_id, 1);
    return why == MYC_DROP_TOO_LARGE ? MYC_ETOOBIG : MYC_EFULL;
  }
  len = load32(&mb->len);
  bytes = load64(&mb->bytes);
  /* drop_oldest: refusal() made sure that evicting is enough. */
  while (!fits(mb, need, 0, 0)) {
    myc_buf *old = mb->slots[mb->head];
    bytes -= mb->lens[mb->head];
    mb->head = (mb->head + 1) & mb->mask;
    len--;
    atomic_store_explicit(&mb->len, len, memory_order_relaxed);
    atomic_store_explicit(&mb->bytes, bytes, memory_order_relaxed);
    myc__mailbox_count(mb, MYC_DROP_OLDEST, old->topic_id, 1);
    myc__buf_release(pool, a, old);
  }
  /* Fits the capacity, so a ring of pow2(capacity) slots would hold it.
   * Grown once queued and in-flight messages fill it, not only the
   * queued ones: else every push would take this path while a batch is
   * out. */
  if (len + load32(&mb->inflight) > mb->mask && mb->room < mb->capacity &&
      grow(mb, a) != 0 && len > mb->mask) {
    myc__mailbox_count(mb, MYC_DROP_NEWEST, b->topic_id, 1);
    return MYC_EFULL;
  }
  at = (mb->head + len) & mb->mask;
  mb->slots[at] = b;
  mb->lens[at] = need;
  atomic_store_explicit(&mb->len, len + 1, memory_order_relaxed);
  atomic_store_explicit(&mb->bytes, bytes + need, memory_order_relaxed);
  return 0;
}

uint32_t myc__mailbox_pop(myc__mailbox *mb, myc_buf **out, uint32_t max) {
  uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);
  uint32_t n = len < max ? len : max, i;
  uint64_t bytes = 0;
  /* Stored atomically: 'out' is a service's batch, which another thread
   * reads while it runs (what a stuck handler is handling, for status and
   * stats).  Relaxed: a plain store on the machines we run on. */
  for (i = 0; i < n; i++) {
    __atomic_store_n(&out[i], mb->slots[(mb->head + i) & mb->mask],
                     __ATOMIC_RELAXED);
    bytes += mb->lens[(mb->head + i) & mb->mask];
  }
  mb->head = (mb->head + n) & mb->mask;
  /* In flight before they leave 'len': a reader on another thread that
   * sees them gone from 'len' sees them in 'inflight' (links gauge the
   * room of a mailbox so, and must never see less than is there). */
  atomic_store_explicit(
      &mb->inflight,
      atomic_load_explicit(&mb->inflight, memory_order_relaxed) + n,
      memory_order_relaxed);
  atomic_store_explicit(&mb->len, len - n, memory_order_release);
  atomic_store_explicit(&mb->inflight_bytes,
                        load64(&mb->inflight_bytes) + bytes,
                        memory_order_relaxed);
  return n;
}
