/* buf.h -- reference-counted message buffers and their per-worker pools.
 *
 * A buffer holds one frame laid out exactly as a transport writes it:
 * [wire prefix][64-byte header][payload][pad to 8][topic][source], so a
 * socket write sends it without copying.  The payload sits at a fixed
 * offset, so a typed message can be written in place before its topic is
 * known (ctx:new, then emit).  The fields before the prefix are
 * engine-private.  Reference counts are plain while a buffer stays on its
 * worker and atomic once it is marked shared (handed to another thread).
 * lua/mycelium/cdefs.lua mirrors these structs: keep them in sync (the
 * ABI check in service.c compares the sizes at load).
 */
#ifndef MYC_BUF_H
#define MYC_BUF_H

#include "base/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define MYC_FRAME_VERSION 2
#define MYC_TOPIC_MAX 255
#define MYC_SOURCE_MAX 255
/* A frame's payload never exceeds this: its lengths are 32-bit. */
#define MYC_PAYLOAD_MAX (UINT32_MAX - 2 * 4096)

/* The frame header: little-endian on the wire (the engine only runs on
 * little-endian hosts, checked at build time). */
typedef struct myc_frame {
  uint32_t frame_len;   /* header + topic + source + pad + payload */
  uint16_t type;        /* contract tag for MYC_KIND_TYPED, else 0 */
  uint8_t kind;         /* myc_kind */
  uint8_t flags;
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_id[8]; /* span of the message being handled, or zeros */
  uint64_t seq;         /* per-source emit counter, from 1 */
  uint64_t ts_ns;       /* engine clock at emit */
  uint32_t payload_len;
  uint16_t topic_len;
  uint8_t source_len;
  uint8_t version;      /* MYC_FRAME_VERSION */
} myc_frame;

typedef struct myc_buf myc_buf;
struct myc_buf {
  myc_buf *next;         /* free list link; owned by whoever holds it */
  _Atomic uint32_t refs;
  uint32_t cap;          /* bytes from 'hdr' to the end of the block */
  uint32_t topic_id;     /* engine-local id of the topic: set through
                          * myc__buf_set_topic */
  uint8_t size_class;    /* pool class, or MYC_BUF_UNPOOLED */
  uint8_t shared;        /* refs are atomic from now on */
  uint8_t origin;        /* index of the worker whose pool it came from */
  uint8_t wire_prefix[9]; /* room for a transport's framing in place */
  myc_frame hdr;
  /* topic, source, padding and payload follow */
};

/* hdr.flags: the message came in over a link (links do not relay it). */
#define MYC_FRAME_REMOTE 0x01
/* A request (ctx:request), a reply to one, and a reply saying the request
 * failed (its responder crashed on it).  A frame with REQUEST or REPLY
 * ends with a myc_frame_req extension: after the source, zeros up to a
 * multiple of 8, then the 16 bytes below, all counted in frame_len. */
#define MYC_FRAME_REQUEST 0x02
#define MYC_FRAME_REPLY 0x04
#define MYC_FRAME_FAILED 0x08
#define MYC_FRAME_REQ_MASK (MYC_FRAME_REQUEST | MYC_FRAME_REPLY)
/* Never on the wire (a transport sets them on what it delivers): a
 * request that came over NATS, whose reply subject follows the frame
 * NUL-terminated (not counted in frame_len); a reply saying that nobody
 * subscribes the request's subject in the NATS cluster. */
#define MYC_FRAME_NATS 0x10
#define MYC_FRAME_NO_RESPONDER 0x20

typedef struct {
  uint64_t corr;      /* the requester's correlation id */
  uint64_t budget_ns; /* request: deadline - ts_ns; reply: 0 */
} myc_frame_req;

#define MYC_BUF_UNPOOLED 0xFF
#define MYC_BUF_CLASSES 7
#define MYC_BUF_NO_ORIGIN 0xFF /* allocated outside any worker pool */

/* Offset of the topic from the start of the header. */
static inline size_t myc__frame_topic_offset(size_t payload_len) {
  return sizeof(myc_frame) + ((payload_len + 7) & ~(size_t)7);
}

/* Whole frame length for a payload, topic and source. */
static inline size_t myc__frame_len(size_t payload_len, size_t topic_len,
                                    size_t source_len) {
  return myc__frame_topic_offset(payload_len) + topic_len + source_len;
}

/* Sets the topic of 'b'.  Atomic because another thread may read it at
 * any time: status and stats name the topic a running handler handles,
 * reading it from a buffer that can be recycled meanwhile and checking
 * afterwards that it was not (activation.c).  Relaxed: a plain store on
 * the machines we run on. */
static inline void myc__buf_set_topic(myc_buf *b, uint32_t id) {
  __atomic_store_n(&b->topic_id, id, __ATOMIC_RELAXED);
}

/* Whole frame length with a request extension. */
static inline size_t myc__frame_req_len(size_t payload_len, size_t topic_len,
                                        size_t source_len) {
  return ((myc__frame_len(payload_len, topic_len, source_len) + 7) &
          ~(size_t)7) +
         sizeof(myc_frame_req);
}

/* The request extension of 'b' (hdr.flags has REQUEST or REPLY). */
static inline myc_frame_req *myc__buf_req(myc_buf *b) {
  return (myc_frame_req *)((char *)&b->hdr + b->hdr.frame_len -
                           sizeof(myc_frame_req));
}

static inline uint8_t *myc__buf_payload(myc_buf *b) {
  return (uint8_t *)(&b->hdr + 1);
}
static inline char *myc__buf_topic(myc_buf *b) {
  return (char *)&b->hdr + myc__frame_topic_offset(b->hdr.payload_len);
}
static inline char *myc__buf_source(myc_buf *b) {
  return myc__buf_topic(b) + b->hdr.topic_len;
}

typedef struct {
  myc_buf *head, *tail;
  uint32_t n;
} myc__chain;

/* Appends 'b' to the chain (kept in order, handed back whole later). */
static inline void myc__chain_push(myc__chain *c, myc_buf *b) {
  b->next = NULL;
  if (c->tail != NULL)
    c->tail->next = b;
  else
    c->head = b;
  c->tail = b;
  c->n++;
}

/* A worker's pool.  Small buffers go back to the pool they came from:
 * another worker releasing one chains it for its origin and hands the
 * chain over in one atomic push ('inbound'), which the origin takes in one
 * exchange when its free list runs dry.  Without this a pipeline across
 * workers would malloc on one side and free on the other. */
typedef struct {
  myc_buf *free[MYC_BUF_CLASSES];
  uint32_t nfree[MYC_BUF_CLASSES];
  uint32_t max_free; /* per class; beyond this buffers go back to the hook */
  const myc__alloc *alloc;
  uint8_t owner;     /* worker index, or MYC_BUF_NO_ORIGIN */
  _Atomic(myc_buf *) inbound; /* a stack of chains (buf.c) */
  myc__chain *returns; /* per origin worker */
  uint32_t nreturns;
  uint32_t pending_returns;
  uint64_t allocated, recycled;
} myc__pool;

/* Sets up a pool owned by worker 'owner' among 'nworkers' (or
 * MYC_BUF_NO_ORIGIN and 0).  Returns 0 or MYC_ENOMEM. */
int myc__pool_init(myc__pool *p, const myc__alloc *a, uint32_t max_free,
                   uint8_t owner, uint32_t nworkers);

/* Takes the buffers other workers handed back.  Returns the first one (to
 * use at once, one reference) or NULL when there were none. */
myc_buf *myc__pool_reclaim(myc__pool *p);

/* Hands chain 'c' to pool 'origin' (any thread).  'c' is emptied. */
void myc__pool_give_chain(myc__pool *origin, myc__chain *c);

/* Returns every cached buffer to the allocator.  Buffers still referenced
 * elsewhere are not affected. */
void myc__pool_destroy(myc__pool *p);

/* Returns a buffer with room for a frame of 'frame_len' bytes and one
 * reference, or NULL when memory runs out.  'p' may be NULL (a thread with
 * no pool): the buffer then comes straight from 'a'. */
myc_buf *myc__buf_alloc(myc__pool *p, const myc__alloc *a, size_t frame_len);

/* Frees 'b' into 'p' (or to the allocator when 'p' is NULL or full). */
void myc__buf_free(myc__pool *p, const myc__alloc *a, myc_buf *b);

/* The first size class, which most messages fit. */
#define MYC_BUF_SMALL 256

/* Hot-path allocation: a recycled buffer of the first class for a frame
 * of 'frame_len' bytes, or NULL (then use myc__buf_alloc). */
static inline myc_buf *myc__buf_take(myc__pool *p, size_t frame_len) {
  myc_buf *b = p->free[0];
  if (offsetof(myc_buf, hdr) + frame_len > MYC_BUF_SMALL)
    return NULL;
  if (b == NULL) {
    if (atomic_load_explicit(&p->inbound, memory_order_relaxed) == NULL)
      return NULL;
    b = myc__pool_reclaim(p);
  } else {
    p->free[0] = b->next;
    p->nfree[0]--;
  }
  /* The next buffer is likely cold (released on another core). */
  if (p->free[0] != NULL)
    __builtin_prefetch(p->free[0], 1);
  if (b != NULL) {
    atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
    b->shared = 0;
  }
  return b;
}

/* Hot-path free: a small buffer from another worker goes on the chain for
 * its origin; one of ours goes back on the free list when it has room. */
static inline __attribute__((always_inline)) void
myc__buf_give(myc__pool *p, const myc__alloc *a,
                                 myc_buf *b) {
  if (b->size_class == 0 && p != NULL) {
    if (b->origin != p->owner && b->origin < p->nreturns) {
      myc__chain_push(&p->returns[b->origin], b);
      p->pending_returns++;
      return;
    }
    if (p->nfree[0] < p->max_free) {
      b->origin = p->owner;
      b->next = p->free[0];
      p->free[0] = b;
      p->nfree[0]++;
      return;
    }
  }
  myc__buf_free(p, a, b);
}

static inline void myc__buf_ref(myc_buf *b, uint32_t n) {
  if (b->shared)
    atomic_fetch_add_explicit(&b->refs, n, memory_order_relaxed);
  else
    atomic_store_explicit(
        &b->refs, atomic_load_explicit(&b->refs, memory_order_relaxed) + n,
        memory_order_relaxed);
}

/* Drops one reference; the last one returns the buffer to 'p'.  A count of
 * one means nobody else can see the buffer, so no atomic write is needed
 * then even for a shared buffer; the acquire load (a plain load on x86)
 * orders our reuse after the other holders' last reads. */
static inline __attribute__((always_inline)) void
myc__buf_release(myc__pool *p, const myc__alloc *a,
                                    myc_buf *b) {
  uint32_t r = atomic_load_explicit(&b->refs, memory_order_acquire);
  if (r != 1) {
    if (!b->shared) {
      atomic_store_explicit(&b->refs, r - 1, memory_order_relaxed);
      return;
    }
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
      return;
  }
  myc__buf_give(p, a, b);
}

#endif
