/* testing.c -- what mycelium.testing needs of C beyond the public API
 * (see ffi.h): captured log lines, collector services, buffers handed to
 * the test, injected faults.  Nothing in the runtime knows of tests: the
 * capture is an ordinary log sink, a collector an ordinary C service
 * freed with the engine through its cleanup hook.
 */
#include "ffi/ffi.h"

#include "runtime/engine.h"

#include <string.h>

/* ---- captured log lines ------------------------------------------------ */

typedef struct line {
  struct line *next;
  size_t len;
  char text[];
} line;

struct myc_ffi_logs {
  myc__alloc alloc;
  uv_mutex_t lock;
  line *head, *tail;
};

myc_ffi_logs *myc_ffi_test_logs_new(myc_alloc_fn alloc, void *ud) {
  myc__alloc a = {alloc ? alloc : myc__default_alloc, ud};
  myc_ffi_logs *l = myc__calloc(&a, sizeof *l);
  if (l == NULL)
    return NULL;
  l->alloc = a;
  if (uv_mutex_init(&l->lock) != 0) {
    myc__free(&a, l, sizeof *l);
    return NULL;
  }
  return l;
}

void myc_ffi_test_logs_free(myc_ffi_logs *l) {
  myc__alloc a;
  if (l == NULL)
    return;
  a = l->alloc;
  while (l->head != NULL) {
    line *n = l->head->next;
    myc__free(&a, l->head, sizeof *l->head + l->head->len + 1);
    l->head = n;
  }
  uv_mutex_destroy(&l->lock);
  myc__free(&a, l, sizeof *l);
}

void myc_ffi_test_log_sink(void *ud, int level, const char *text, size_t len) {
  myc_ffi_logs *l = ud;
  line *rec = myc__malloc(&l->alloc, sizeof *rec + len + 1);
  (void)level;
  if (rec == NULL)
    return; /* a test sees the line missing, not a crash */
  rec->next = NULL;
  rec->len = len;
  memcpy(rec->text, text, len);
  rec->text[len] = '\0';
  uv_mutex_lock(&l->lock);
  if (l->tail != NULL)
    l->tail->next = rec;
  else
    l->head = rec;
  l->tail = rec;
  uv_mutex_unlock(&l->lock);
}

int64_t myc_ffi_test_logs_next(myc_ffi_logs *l, char *dst, size_t cap) {
  line *rec;
  size_t n;
  uv_mutex_lock(&l->lock);
  rec = l->head;
  if (rec != NULL) {
    l->head = rec->next;
    if (l->head == NULL)
      l->tail = NULL;
  }
  uv_mutex_unlock(&l->lock);
  if (rec == NULL)
    return -1;
  n = rec->len < cap ? rec->len : cap - 1;
  memcpy(dst, rec->text, n);
  dst[n] = '\0';
  n = rec->len;
  myc__free(&l->alloc, rec, sizeof *rec + rec->len + 1);
  return (int64_t)n;
}

/* ---- collectors ---------------------------------------------------------- */

struct myc_ffi_collector {
  myc_engine *eng;
  myc_buf **items;
  uint32_t n, cap;
};

/* The buffer holding a message's payload. */
static myc_buf *buf_of(const myc_message *m) {
  return (myc_buf *)((const char *)m->data - sizeof(myc_frame) -
                     offsetof(myc_buf, hdr));
}

static void collect(void *ud, const myc_message *m) {
  myc_ffi_collector *c = ud;
  myc_buf *b = buf_of(m);
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

static void collector_free(void *ud) {
  myc_ffi_collector *c = ud;
  uint32_t i;
  for (i = 0; i < c->n; i++)
    myc__buf_release(NULL, &c->eng->alloc, c->items[i]);
  myc__free(&c->eng->alloc, c->items, c->cap * sizeof *c->items);
  myc__free(&c->eng->alloc, c, sizeof *c);
}

int myc_ffi_test_collector(myc_engine *e, const char *name,
                           const char *pattern, myc_ffi_collector **out) {
  myc_ffi_collector *c = myc__calloc(&e->alloc, sizeof *c);
  int rc;
  if (c == NULL)
    return MYC_ENOMEM;
  c->eng = e;
  /* Freed after the services, so no message reaches a freed collector;
   * one whose service could not be added is freed then too. */
  if (myc__engine_on_free(e, collector_free, c) != 0) {
    myc__free(&e->alloc, c, sizeof *c);
    return MYC_ENOMEM;
  }
  rc = myc_engine_add_c_service(e, name, pattern, collect, c, -1);
  if (rc != 0)
    return rc;
  *out = c;
  return 0;
}

uint32_t myc_ffi_test_collected(myc_ffi_collector *c, myc_buf **out,
                                uint32_t max) {
  uint32_t n = c->n < max ? c->n : max;
  memcpy(out, c->items, n * sizeof *out);
  memmove(c->items, c->items + n, (c->n - n) * sizeof *out);
  c->n -= n;
  return n;
}

void myc_ffi_test_buf_release(myc_engine *e, myc_buf *b) {
  myc__buf_release(NULL, &e->alloc, b);
}

/* ---- faults -------------------------------------------------------------- */

int myc_ffi_test_fault(myc_engine *e, const char *name, uint32_t n) {
  myc_service *s = myc__engine_find(e, name, strlen(name));
  if (s == NULL || s->cb != NULL)
    return MYC_ENOENT;
  s->view.faults += n;
  return 0;
}
