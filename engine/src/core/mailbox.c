/* mailbox.c -- bounded per-service queue (see mailbox.h). */
#include "core/mailbox.h"

#include <string.h>

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
  mb->slots = myc__malloc(a, size * sizeof *mb->slots);
  if (mb->slots == NULL)
    return MYC_ENOMEM;
  mb->mask = size - 1;
  mb->head = 0;
  atomic_init(&mb->len, 0);
  atomic_init(&mb->inflight, 0);
  atomic_init(&mb->incoming, 0);
  mb->capacity = cfg->capacity;
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
  mb->slots = NULL;
}

/* The slow path of myc__mailbox_push: the mailbox is full. */
int myc__mailbox_push_full(myc__mailbox *mb, myc_buf *b, myc_buf **evicted) {
  uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);

  *evicted = NULL;
  /* Refuse rather than grow: an unbounded mailbox hides a slow consumer
   * until the whole engine runs out of memory.  With nothing queued (the
   * whole capacity is the batch in flight) there is no oldest message to
   * give up, so the new one goes. */
  if (mb->policy != MYC_POLICY_DROP_OLDEST || len == 0) {
    myc__mailbox_count(mb, mb->policy == MYC_POLICY_REJECT ? MYC_DROP_REJECTED
                                                           : MYC_DROP_NEWEST,
                       b->topic_id, 1);
    return MYC_EFULL;
  }
  *evicted = mb->slots[mb->head];
  mb->head = (mb->head + 1) & mb->mask;
  myc__mailbox_count(mb, MYC_DROP_OLDEST, (*evicted)->topic_id, 1);
  mb->slots[(mb->head + len - 1) & mb->mask] = b;
  return 0;
}

uint32_t myc__mailbox_pop(myc__mailbox *mb, myc_buf **out, uint32_t max) {
  uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);
  uint32_t n = len < max ? len : max, i;
  for (i = 0; i < n; i++)
    out[i] = mb->slots[(mb->head + i) & mb->mask];
  mb->head = (mb->head + n) & mb->mask;
  atomic_store_explicit(&mb->len, len - n, memory_order_relaxed);
  atomic_store_explicit(
      &mb->inflight,
      atomic_load_explicit(&mb->inflight, memory_order_relaxed) + n,
      memory_order_relaxed);
  return n;
}
