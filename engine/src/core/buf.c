/* buf.c -- buffer pool: size classes with bounded free lists, one pool per
 * worker so allocation and release never take a lock.  A buffer may be
 * freed into any pool of the same class size (buffers migrate with the
 * messages), which keeps cross-worker traffic free of return queues. */
#include "core/buf.h"

#include <assert.h>

_Static_assert(sizeof(myc_frame) == 64, "frame header is 64 bytes");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "frames are little-endian in memory and on the wire");

/* 2048: a 1 KiB payload with its header and topic (about 1.1 KiB) fits,
 * where the next class up would give it 4 KiB, four pages touched for
 * every four messages where two do. */
static const uint32_t class_size[MYC_BUF_CLASSES] = {
    256, 1024, 2048, 4096, 16384, 65536, 262144};

static int class_for(size_t total) {
  int c;
  for (c = 0; c < MYC_BUF_CLASSES; c++)
    if (total <= class_size[c])
      return c;
  return -1;
}

int myc__pool_init(myc__pool *p, const myc__alloc *a, uint32_t max_free,
                   uint8_t owner, uint32_t nworkers) {
  memset(p, 0, sizeof *p);
  p->alloc = a;
  p->max_free = max_free;
  p->owner = owner;
  atomic_init(&p->inbound, NULL);
  if (nworkers > 0) {
    p->returns = myc__calloc(a, nworkers * sizeof *p->returns);
    if (p->returns == NULL)
      return MYC_ENOMEM;
    p->nreturns = nworkers;
  }
  return 0;
}

static void free_list(myc__pool *p, myc_buf *b) {
  while (b != NULL) {
    myc_buf *next = b->next;
    myc__free(p->alloc, b, class_size[0]);
    b = next;
  }
}

/* What a chain handed back says about itself, written in its first
 * buffer's header (dead while the buffer is free): 'inbound' is a stack
 * of chains, so taking it costs one read per chain, not one per buffer.
 * Walking the buffers to count them would read, one after the other,
 * lines the releasing core has just written: a cache miss each. */
typedef struct {
  myc_buf *next_chain;
  myc_buf *tail;
  uint32_t n;
} chain_note;

_Static_assert(sizeof(chain_note) <= sizeof(myc_frame),
               "a chain's note fits its first header");

static chain_note *note_of(myc_buf *b) { return (chain_note *)&b->hdr; }

/* Takes every chain handed back, joined in one list; its length in
 * '*n'. */
static myc_buf *take_inbound(myc__pool *p, uint32_t *n) {
  myc_buf *c = atomic_exchange_explicit(&p->inbound, NULL,
                                        memory_order_acquire);
  myc_buf *head = NULL;
  *n = 0;
  while (c != NULL) {
    chain_note *k = note_of(c);
    myc_buf *next = k->next_chain;
    k->tail->next = head;
    head = c;
    *n += k->n;
    c = next;
  }
  return head;
}

myc_buf *myc__pool_reclaim(myc__pool *p) {
  uint32_t n;
  myc_buf *b = take_inbound(p, &n);
  if (b == NULL)
    return NULL;
  p->free[0] = b->next;
  p->nfree[0] += n - 1;
  p->recycled++;
  return b;
}

void myc__pool_give_chain(myc__pool *origin, myc__chain *c) {
  chain_note *k;
  myc_buf *head;
  if (c->head == NULL)
    return;
  k = note_of(c->head);
  k->tail = c->tail;
  k->n = c->n;
  head = atomic_load_explicit(&origin->inbound, memory_order_relaxed);
  do
    k->next_chain = head;
  while (!atomic_compare_exchange_weak_explicit(
      &origin->inbound, &head, c->head, memory_order_release,
      memory_order_relaxed));
  c->head = c->tail = NULL;
  c->n = 0;
}

void myc__pool_destroy(myc__pool *p) {
  uint32_t w, n;
  int c;
  free_list(p, take_inbound(p, &n));
  for (w = 0; w < p->nreturns; w++)
    free_list(p, p->returns[w].head);
  myc__free(p->alloc, p->returns, p->nreturns * sizeof *p->returns);
  p->returns = NULL;
  p->nreturns = 0;
  for (c = 0; c < MYC_BUF_CLASSES; c++) {
    while (p->free[c] != NULL) {
      myc_buf *b = p->free[c];
      p->free[c] = b->next;
      myc__free(p->alloc, b, class_size[c]);
    }
    p->nfree[c] = 0;
  }
}

myc_buf *myc__buf_alloc(myc__pool *p, const myc__alloc *a, size_t frame_len) {
  size_t total = offsetof(myc_buf, hdr) + frame_len;
  int c = class_for(total);
  myc_buf *b;

  if (c >= 0 && p != NULL && p->free[c] != NULL) {
    b = p->free[c];
    p->free[c] = b->next;
    p->nfree[c]--;
    p->recycled++;
  } else {
    size_t size = c >= 0 ? class_size[c] : total;
    if (frame_len > UINT32_MAX - offsetof(myc_buf, hdr))
      return NULL;
    b = myc__malloc(a, size);
    if (b == NULL)
      return NULL;
    if (p != NULL)
      p->allocated++;
  }
  b->next = NULL;
  atomic_init(&b->refs, 1);
  b->origin = p != NULL ? p->owner : MYC_BUF_NO_ORIGIN;
  b->size_class = c >= 0 ? (uint8_t)c : MYC_BUF_UNPOOLED;
  b->cap = (uint32_t)((c >= 0 ? class_size[c] : total) - offsetof(myc_buf, hdr));
  b->shared = 0;
  myc__buf_set_topic(b, 0);
  return b;
}

void myc__buf_free(myc__pool *p, const myc__alloc *a, myc_buf *b) {
  int c = b->size_class;
  if (c == MYC_BUF_UNPOOLED) {
    myc__free(a, b, offsetof(myc_buf, hdr) + b->cap);
    return;
  }
  if (p == NULL || p->nfree[c] >= p->max_free) {
    myc__free(a, b, class_size[c]);
    return;
  }
  b->next = p->free[c];
  p->free[c] = b;
  p->nfree[c]++;
}
