/* timer.c -- timer heap (see timer.h). */
#include "core/timer.h"

#include <string.h>

static int before(const myc__timer *a, const myc__timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void swap(myc__timer *a, myc__timer *b) {
  myc__timer tmp = *a;
  *a = *b;
  *b = tmp;
}

static void sift_up(myc__timer *h, uint32_t i) {
  while (i > 0 && before(&h[i], &h[(i - 1) / 2])) {
    swap(&h[i], &h[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
}

static void sift_down(myc__timer *h, uint32_t n, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && before(&h[l], &h[m]))
      m = l;
    if (r < n && before(&h[r], &h[m]))
      m = r;
    if (m == i)
      return;
    swap(&h[i], &h[m]);
    i = m;
  }
}

void myc__timers_init(myc__timers *t, const myc__alloc *a) {
  memset(t, 0, sizeof *t);
  t->alloc = a;
}

void myc__timers_destroy(myc__timers *t) {
  myc__free(t->alloc, t->heap, t->cap * sizeof *t->heap);
  t->heap = NULL;
  t->n = t->cap = 0;
}

int myc__timers_add(myc__timers *t, int64_t deadline, int64_t interval,
                    myc__timer_fn fn, void *arg, uint64_t id) {
  myc__timer *tm;
  if (t->n == t->cap) {
    uint32_t cap = t->cap ? 2 * t->cap : 16;
    myc__timer *h = myc__realloc(t->alloc, t->heap, t->cap * sizeof *h,
                                 cap * sizeof *h);
    if (h == NULL)
      return MYC_ENOMEM;
    t->heap = h;
    t->cap = cap;
  }
  tm = &t->heap[t->n];
  tm->deadline = deadline;
  tm->seq = t->seq++;
  tm->interval = interval;
  tm->fn = fn;
  tm->arg = arg;
  tm->id = id;
  sift_up(t->heap, t->n++);
  return 0;
}

int64_t myc__timers_next(const myc__timers *t) {
  return t->n ? t->heap[0].deadline : INT64_MAX;
}

int myc__timers_pop_due(myc__timers *t, int64_t now, myc__timer *out) {
  if (t->n == 0 || t->heap[0].deadline > now)
    return 0;
  *out = t->heap[0];
  t->heap[0] = t->heap[--t->n];
  sift_down(t->heap, t->n, 0);
  return 1;
}

void myc__timers_forget(myc__timers *t, myc__timer_fn fn, const void *arg,
                        uint64_t lo, uint64_t hi) {
  uint32_t i, n = 0;
  for (i = 0; i < t->n; i++) {
    const myc__timer *x = &t->heap[i];
    if (x->fn != fn || x->arg != arg || x->id < lo || x->id >= hi)
      t->heap[n++] = *x;
  }
  if (n == t->n)
    return;
  t->n = n;
  for (i = n / 2; i-- > 0;)
    sift_down(t->heap, n, i);
}
