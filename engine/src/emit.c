/* emit.c -- framing and delivery (see emit.h). */
#include "emit.h"

#include <string.h>

myc_buf *myc__frame_new(myc_engine *e, myc__pool *pool, const myc__topic *t,
                        const char *source, size_t source_len, int kind,
                        uint16_t type, const void *data, size_t len) {
  myc_buf *b;
  if (len > UINT32_MAX - 2 * 4096)
    return NULL;
  b = myc__buf_alloc(pool, &e->alloc, myc__frame_len(len, t->len, source_len));
  if (b == NULL)
    return NULL;
  memset(&b->hdr, 0, sizeof b->hdr);
  b->hdr.payload_len = (uint32_t)len;
  if (len > 0)
    memcpy(myc__buf_payload(b), data, len);
  myc__frame_finish(b, t, source, source_len, kind, type);
  return b;
}

void myc__frame_finish(myc_buf *b, const myc__topic *t, const char *source,
                       size_t source_len, int kind, uint16_t type) {
  size_t len = b->hdr.payload_len;
  uint8_t *pad = myc__buf_payload(b) + len;
  char *p;
  b->topic_id = t->id;
  b->hdr.frame_len = (uint32_t)myc__frame_len(len, t->len, source_len);
  b->hdr.type = type;
  b->hdr.kind = (uint8_t)kind;
  b->hdr.topic_len = t->len;
  b->hdr.source_len = (uint8_t)source_len;
  b->hdr.version = MYC_FRAME_VERSION;
  /* Zero the padding so frames on the wire never leak old bytes. */
  memset(pad, 0, myc__frame_topic_offset(len) - sizeof(myc_frame) - len);
  p = myc__buf_topic(b);
  memcpy(p, t->name, t->len);
  memcpy(p + t->len, source, source_len);
}

static int push_local(myc__worker *w, myc_service *s, myc_buf *b) {
  myc_buf *evicted;
  int rc = myc__mailbox_push(&s->mb, b, &evicted);
  if (evicted != NULL)
    myc__buf_release(&w->pool, &w->eng->alloc, evicted);
  if (rc == 0 && !s->queued)
    myc__worker_schedule(s->worker, s);
  return rc;
}

int myc__deliver(myc_engine *e, myc__worker *from, myc_buf *b) {
  myc__sublist *subs = myc__topic_subs(myc__topics_get(&e->topics, b->topic_id));
  myc__pool *pool = from ? &from->pool : NULL;
  uint32_t i, n = subs->n, accepted = 0;
  int remote = 0;

  if (n == 0) {
    atomic_fetch_add_explicit(&e->no_subscriber, 1, memory_order_relaxed);
    myc__buf_release(pool, &e->alloc, b);
    return 0;
  }
  if (!e->manual)
    for (i = 0; i < n; i++)
      remote |= subs->svc[i]->worker != from;
  /* Both must be settled before the first subscriber can see 'b'. */
  b->shared = (uint8_t)remote;
  atomic_store_explicit(&b->refs, n, memory_order_relaxed);
  for (i = 0; i < n; i++) {
    myc_service *s = subs->svc[i];
    int rc = e->manual || s->worker == from
                 ? push_local(s->worker, s, b)
                 : myc__worker_handoff(s->worker, s, b);
    if (rc == 0)
      accepted++;
    else
      myc__buf_release(pool, &e->alloc, b);
  }
  return accepted > 0 ? 0 : MYC_EFULL;
}

/* Child span of whatever 's' is doing: the message being handled, or the
 * current activation (init, timer, stop). */
static void set_trace(myc_service *s, myc_buf *b) {
  myc__worker *w = s->worker;
  uint64_t span = myc__rng_id(&w->rng);
  if (s->view.cursor >= 0) {
    const myc_frame *parent = &s->view.batch[s->view.cursor]->hdr;
    memcpy(b->hdr.trace_id, parent->trace_id, 16);
    memcpy(b->hdr.parent_id, parent->span_id, 8);
  } else {
    memcpy(b->hdr.trace_id, s->act_trace, 16);
    memcpy(b->hdr.parent_id, s->act_span, 8);
  }
  memcpy(b->hdr.span_id, &span, 8);
}

int myc__emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
              const void *data, size_t len) {
  myc_engine *e = s->eng;
  myc__worker *w = s->worker;
  myc__topic *t = myc__topics_get(&e->topics, topic_id);
  myc_buf *b;

  if (t == NULL)
    return MYC_EINVAL;
  s->seq++;
  myc__counter_add(&s->n_out, 1);
  if (myc__topic_subs(t)->n == 0) {
    atomic_fetch_add_explicit(&e->no_subscriber, 1, memory_order_relaxed);
    return 0;
  }
  b = myc__frame_new(e, &w->pool, t, s->name, s->name_len, kind, type, data,
                     len);
  if (b == NULL)
    return len > UINT32_MAX / 2 ? MYC_ETOOBIG : MYC_ENOMEM;
  set_trace(s, b);
  b->hdr.seq = s->seq;
  b->hdr.ts_ns = (uint64_t)w->now;
  return myc__deliver(e, w, b);
}

/* Room kept for the topic of a buffer from myc__emit_buf_new(), beyond
 * what its size class leaves over.  Sizing for the longest topic would
 * put a 96-byte message in a 1 KiB class and quadruple the memory a
 * stream of them cycles through; a longer topic costs one copy. */
#define TOPIC_RESERVE 64

myc_buf *myc__emit_buf_new(myc_service *s, size_t size) {
  myc_buf *b;
  if (size > UINT32_MAX - 2 * 4096)
    return NULL;
  b = myc__buf_alloc(&s->worker->pool, &s->eng->alloc,
                     myc__frame_len(size, TOPIC_RESERVE, s->name_len));
  if (b == NULL)
    return NULL;
  memset(&b->hdr, 0, sizeof b->hdr + size);
  b->hdr.payload_len = (uint32_t)size;
  return b;
}

/* 'b' moved to a buffer with room for 'frame_len' bytes, or NULL (then
 * 'b' is released). */
static myc_buf *regrow(myc__worker *w, myc_buf *b, size_t frame_len) {
  myc_buf *nb = myc__buf_alloc(&w->pool, &w->eng->alloc, frame_len);
  if (nb != NULL)
    memcpy(&nb->hdr, &b->hdr, sizeof b->hdr + b->hdr.payload_len);
  myc__buf_release(&w->pool, &w->eng->alloc, b);
  return nb;
}

int myc__emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                  uint16_t type) {
  myc_engine *e = s->eng;
  myc__worker *w = s->worker;
  myc__topic *t = myc__topics_get(&e->topics, topic_id);

  if (t == NULL) {
    myc__buf_release(&w->pool, &e->alloc, b);
    return MYC_EINVAL;
  }
  s->seq++;
  myc__counter_add(&s->n_out, 1);
  if (myc__topic_subs(t)->n == 0) {
    atomic_fetch_add_explicit(&e->no_subscriber, 1, memory_order_relaxed);
    myc__buf_release(&w->pool, &e->alloc, b);
    return 0;
  }
  if (myc__frame_len(b->hdr.payload_len, t->len, s->name_len) > b->cap &&
      (b = regrow(w, b, myc__frame_len(b->hdr.payload_len, t->len,
                                       s->name_len))) == NULL)
    return MYC_ENOMEM;
  myc__frame_finish(b, t, s->name, s->name_len, kind, type);
  set_trace(s, b);
  b->hdr.seq = s->seq;
  b->hdr.ts_ns = (uint64_t)w->now;
  return myc__deliver(e, w, b);
}
