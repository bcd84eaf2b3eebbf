/* lua_api.c -- FFI entry points of the Lua host runtime (see lua_api.h). */
#include "ffi/lua_api.h"

#include "runtime/emit.h"
#include "runtime/engine.h"

#include <string.h>

int myc_svc_emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
                 const void *data, size_t len) {
  return myc__emit(s, topic_id, kind, type, data, len);
}

myc_buf *myc_svc_buf_new(myc_service *s, size_t size) {
  return myc__emit_buf_new(s, size);
}

int myc_svc_emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                     uint16_t type) {
  return myc__emit_buf(s, topic_id, b, kind, type);
}

int64_t myc_svc_topic(myc_service *s, const char *name, size_t len) {
  return myc__topics_resolve(&s->eng->topics, name, len);
}

const char *myc_svc_topic_name(myc_service *s, uint32_t id) {
  myc__topic *t = myc__topics_get(&s->eng->topics, id);
  return t ? t->name : NULL;
}

const char *myc_topic_check(const char *name, size_t len, int pattern) {
  return myc__topic_check(name, len, pattern);
}

int myc_svc_subscribe(myc_service *s, const char *pattern, size_t len) {
  return myc__topics_subscribe(&s->eng->topics, s, pattern, len);
}

int myc_svc_unsubscribe(myc_service *s, const char *pattern, size_t len) {
  return myc__topics_unsubscribe(&s->eng->topics, s, pattern, len);
}

int64_t myc_svc_timer(myc_service *s, double delay_ms, double repeat_ms) {
  myc__worker *w = s->worker;
  int64_t now = myc__clock_now(&s->eng->clock);
  uint64_t id = ++s->next_timer_id;
  int rc;
  if (!(delay_ms >= 0) || !(repeat_ms >= 0))
    return MYC_EINVAL;
  rc = myc__worker_add_timer(w, s, now + (int64_t)(delay_ms * 1e6),
                             (int64_t)(repeat_ms * 1e6), id);
  return rc < 0 ? rc : (int64_t)id;
}

double myc_svc_now(myc_service *s) {
  return (double)myc__clock_now(&s->eng->clock) / 1e9;
}

void myc_svc_shutdown(myc_service *s, int code) {
  myc_engine_stop(s->eng, code);
}

/* Messages waiting for this service: queued, plus the rest of the batch
 * after the one being handled.  (The mailbox's own count keeps the whole
 * batch until it is released, which is what bounds memory.) */
uint32_t myc_svc_queue_depth(myc_service *s) {
  uint32_t done = s->view.cursor >= 0 ? (uint32_t)s->view.cursor + 1
                                      : s->batch_pos;
  return atomic_load_explicit(&s->mb.len, memory_order_relaxed) +
         (s->view.batch_n - done);
}

uint32_t myc_svc_queue_capacity(myc_service *s) { return s->mb.capacity; }

int myc_svc_over_threshold(myc_service *s) {
  return myc_svc_queue_depth(s) > s->mb.threshold;
}

/* Highest fill ratio among the subscribers of 'topic_id' (0 without
 * subscribers), so a source can pause before anyone has to drop. */
double myc_svc_pressure(myc_service *s, uint32_t topic_id) {
  myc__topic *t = myc__topics_get(&s->eng->topics, topic_id);
  myc__sublist *l;
  double worst = 0;
  uint32_t i;
  if (t == NULL)
    return 0;
  l = myc__topic_subs(t);
  for (i = 0; i < l->n; i++) {
    double p = myc__mailbox_pressure(&l->svc[i]->mb);
    if (p > worst)
      worst = p;
  }
  return worst;
}

int myc_svc_stats(myc_service *s, const char *name, size_t len,
                  myc_service_stats *out) {
  myc_service *t = myc__engine_find(s->eng, name, len);
  if (t == NULL)
    return MYC_ENOENT;
  return myc_engine_service_stats(s->eng, t->index, out);
}

int myc_svc_log_level(myc_service *s) { return s->eng->log.level; }
int myc_svc_log_format(myc_service *s) { return s->eng->log.format; }
const char *myc_svc_node(myc_service *s) { return s->eng->node; }

void myc_svc_trace(myc_service *s, uint8_t *out24) {
  if (s->view.cursor >= 0) {
    const myc_frame *f = &s->view.batch[s->view.cursor]->hdr;
    memcpy(out24, f->trace_id, 16);
    memcpy(out24 + 16, f->span_id, 8);
  } else {
    memcpy(out24, s->act_trace, 16);
    memcpy(out24 + 16, s->act_span, 8);
  }
}

void myc_svc_log(myc_service *s, int level, const char *msg, size_t len,
                 const char *extra, size_t extra_len) {
  uint8_t tr[24];
  myc_svc_trace(s, tr);
  myc__log_write(&s->eng->log, level, myc__clock_now(&s->eng->clock), s->name,
                 s->name_len, tr, tr + 16, msg, len, extra, extra_len);
}

void myc_svc_buf_ref(myc_buf *b) { myc__buf_ref(b, 1); }

void myc_svc_buf_release(myc_service *s, myc_buf *b) {
  myc__buf_release(&s->worker->pool, &s->eng->alloc, b);
}

void myc_svc_exit(myc_service *s, int how) { s->exit_req = how; }

void myc_svc_unhandled(myc_service *s) { myc__service_unhandled(s); }

void myc_hex(char *dst, const uint8_t *src, size_t n) { myc__hex(dst, src, n); }

uint32_t myc_abi_stats(void) { return (uint32_t)sizeof(myc_service_stats); }

void myc_abi(uint32_t *out3) {
  out3[0] = (uint32_t)sizeof(myc_buf);
  out3[1] = (uint32_t)offsetof(myc_buf, hdr);
  out3[2] = (uint32_t)sizeof(myc_svc_view);
}

/* ---- testing support ---- */

void myc_test_capture_logs(myc_engine *e) { e->log.capture = 1; }

int64_t myc_test_next_log(myc_engine *e, char *dst, size_t cap) {
  myc__log_line *l;
  size_t n;
  uv_mutex_lock(&e->log.lock);
  l = e->log.head;
  if (l != NULL) {
    e->log.head = l->next;
    if (e->log.head == NULL)
      e->log.tail = NULL;
  }
  uv_mutex_unlock(&e->log.lock);
  if (l == NULL)
    return -1;
  n = l->len < cap ? l->len : cap - 1;
  memcpy(dst, l->text, n);
  dst[n] = '\0';
  n = l->len;
  myc__free(&e->alloc, l, sizeof *l + l->len + 1);
  return (int64_t)n;
}

struct myc_collector {
  myc_engine *eng;
  myc_buf **items;
  uint32_t n, cap;
};

static void collect(void *ud, const myc_message *m) {
  myc_collector *c = ud;
  myc_buf *b = (myc_buf *)((const char *)m->data - sizeof(myc_frame) -
                           offsetof(myc_buf, hdr));
  if (c->n == c->cap) {
    uint32_t cap = c->cap ? 2 * c->cap : 64;
    myc_buf **p = myc__realloc(&c->eng->alloc, c->items, c->cap * sizeof *p,
                               cap * sizeof *p);
    if (p == NULL)
      return;
    c->items = p;
    c->cap = cap;
  }
  myc__buf_ref(b, 1);
  c->items[c->n++] = b;
}

int myc_test_collector(myc_engine *e, const char *name, const char *pattern,
                       myc_collector **out) {
  myc_collector *c = myc__calloc(&e->alloc, sizeof *c);
  int rc;
  if (c == NULL)
    return MYC_ENOMEM;
  c->eng = e;
  rc = myc__engine_add_collector(e, c);
  if (rc == 0) {
    rc = myc_engine_add_c_service(e, name, pattern, collect, c, -1);
    if (rc != 0)
      e->ncollectors--;
  }
  if (rc != 0) {
    myc__free(&e->alloc, c, sizeof *c);
    return rc;
  }
  *out = c;
  return 0;
}

uint32_t myc_test_collected(myc_collector *c, myc_buf **out, uint32_t max) {
  uint32_t n = c->n < max ? c->n : max;
  memcpy(out, c->items, n * sizeof *out);
  memmove(c->items, c->items + n, (c->n - n) * sizeof *out);
  c->n -= n;
  return n;
}

void myc_test_buf_release(myc_engine *e, myc_buf *b) {
  myc__buf_release(NULL, &e->alloc, b);
}

void myc__collector_free(myc_collector *c) {
  uint32_t i;
  for (i = 0; i < c->n; i++)
    myc__buf_release(NULL, &c->eng->alloc, c->items[i]);
  myc__free(&c->eng->alloc, c->items, c->cap * sizeof *c->items);
  myc__free(&c->eng->alloc, c, sizeof *c);
}

myc_service *myc_test_service(myc_engine *e, const char *name) {
  return myc__engine_find(e, name, strlen(name));
}

int myc_test_fault(myc_engine *e, const char *name, uint32_t n) {
  myc_service *s = myc__engine_find(e, name, strlen(name));
  if (s == NULL || s->cb != NULL)
    return MYC_ENOENT;
  atomic_fetch_add(&s->faults, n);
  return 0;
}
