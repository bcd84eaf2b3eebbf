/* text.c -- the growing text buffer of the exposition (text.h). */
#include "base/text.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void myc__text_init(myc__text *t, const myc__alloc *a) {
  memset(t, 0, sizeof *t);
  t->a = a;
}

void myc__text_free(myc__text *t) {
  myc__free(t->a, t->p, t->cap);
  t->p = NULL;
  t->len = t->cap = 0;
}

char *myc__text_take(myc__text *t, size_t *len) {
  char *exact = NULL;
  if (!t->oom && t->p != NULL) {
    exact = myc__malloc(t->a, t->len + 1);
    if (exact != NULL) {
      memcpy(exact, t->p, t->len + 1);
      *len = t->len;
    }
  }
  myc__text_free(t);
  return exact;
}

/* Makes room for 'n' more bytes and a NUL.  Returns 0 or -1 (oom). */
static int reserve(myc__text *t, size_t n) {
  size_t cap = t->cap ? t->cap : 4096;
  char *p;
  if (t->oom)
    return -1;
  if (t->len + n + 1 <= t->cap)
    return 0;
  while (cap < t->len + n + 1)
    cap *= 2;
  p = myc__realloc(t->a, t->p, t->cap, cap);
  if (p == NULL) {
    t->oom = 1;
    return -1;
  }
  t->p = p;
  t->cap = cap;
  return 0;
}

void myc__text_printf(myc__text *t, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || reserve(t, (size_t)n) != 0)
    return;
  va_start(ap, fmt);
  vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  t->len += (size_t)n;
}

static void escaped(myc__text *t, const char *s, size_t n, int quote) {
  size_t i;
  if (reserve(t, 2 * n) != 0)
    return;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\' || (quote && c == '"')) {
      t->p[t->len++] = '\\';
      t->p[t->len++] = c;
    } else if (c == '\n') {
      t->p[t->len++] = '\\';
      t->p[t->len++] = 'n';
    } else {
      t->p[t->len++] = c;
    }
  }
  t->p[t->len] = '\0';
}

void myc__text_label(myc__text *t, const char *s, size_t n) {
  escaped(t, s, n, 1);
}

void myc__text_help(myc__text *t, const char *s) {
  escaped(t, s, strlen(s), 0);
}

void myc__text_family(myc__text *t, const char *name, const char *type,
                      const char *help) {
  myc__text_printf(t, "# HELP %s ", name);
  myc__text_help(t, help);
  myc__text_printf(t, "\n# TYPE %s %s\n", name, type);
}

void myc__text_counters(myc__text *t, const myc__text_counter *f, size_t nf,
                        const void *recs, size_t size, size_t n,
                        void (*labels)(myc__text *t, const void *rec)) {
  const char *name = NULL;
  size_t i, r;
  for (i = 0; i < nf; i++) {
    const myc__text_counter *c = &f[i];
    if (c->name != NULL) {
      name = c->name;
      myc__text_family(t, name, c->type, c->help);
    }
    for (r = 0; r < n; r++) {
      const char *rec = (const char *)recs + r * size;
      uint64_t v;
      memcpy(&v, rec + c->off, sizeof v);
      myc__text_printf(t, "%s", name);
      if (labels != NULL || c->label != NULL) {
        myc__text_printf(t, "{");
        if (labels != NULL)
          labels(t, rec);
        if (c->label != NULL)
          myc__text_printf(t, "%s%s", labels != NULL ? "," : "", c->label);
        myc__text_printf(t, "}");
      }
      myc__text_printf(t, " %" PRIu64 "\n", v);
    }
  }
}
