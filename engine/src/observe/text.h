/* text.h -- a growing text buffer for the metrics exposition, with the
 * escapes of the Prometheus text format.  Running out of memory is
 * sticky: later appends do nothing and 'oom' says so.
 */
#ifndef MYC_TEXT_H
#define MYC_TEXT_H

#include "base/alloc.h"

#include <stddef.h>

typedef struct {
  const myc__alloc *a;
  char *p;
  size_t len, cap;
  int oom;
} myc__text;

void myc__text_init(myc__text *t, const myc__alloc *a);
void myc__text_free(myc__text *t);

/* Appends formatted text. */
void myc__text_printf(myc__text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends 'n' bytes of 's' as a label value: backslash, double quote and
 * newline escaped. */
void myc__text_label(myc__text *t, const char *s, size_t n);

/* Appends 's' as HELP text: backslash and newline escaped. */
void myc__text_help(myc__text *t, const char *s);

#endif
