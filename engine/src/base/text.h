/* text.h -- a growing text buffer for the Prometheus text exposition,
 * with the format's escapes, its HELP/TYPE lines and one printer for a
 * table of counter families (observe/, link/ and nats/ all write their
 * /metrics part with it).  Running out of memory is sticky: later
 * appends do nothing and 'oom' says so.
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

/* The text in an allocation of exactly '*len' + 1 bytes (NUL-terminated)
 * for the caller to free with myc__free(a, p, *len + 1), or NULL when out
 * of memory; the buffer is freed either way. */
char *myc__text_take(myc__text *t, size_t *len);

/* Appends formatted text. */
void myc__text_printf(myc__text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends 'n' bytes of 's' as a label value: backslash, double quote and
 * newline escaped. */
void myc__text_label(myc__text *t, const char *s, size_t n);

/* Appends 's' as HELP text: backslash and newline escaped. */
void myc__text_help(myc__text *t, const char *s);

/* Appends the "# HELP" and "# TYPE" lines of family 'name'. */
void myc__text_family(myc__text *t, const char *name, const char *type,
                      const char *help);

/* An entry of a table of counter families: a sample whose value is the
 * uint64_t at offset 'off' of a record of stats. */
typedef struct {
  const char *name, *type, *help; /* name NULL: the family above again */
  const char *label;              /* a label pair (key="value"), or NULL */
  size_t off;
} myc__text_counter;

/* Appends the families of the 'nf' entries of 'f' (the first one named):
 * at each named entry its HELP and TYPE lines, then at every entry one
 * sample per record of the 'n' at 'recs' ('size' bytes apart): the
 * family's name, in braces what 'labels' writes for the record (NULL:
 * nothing) and the entry's label, comma separated (no braces when there
 * is neither 'labels' nor a label), and the value.  With no record the families still have
 * their HELP and TYPE. */
void myc__text_counters(myc__text *t, const myc__text_counter *f, size_t nf,
                        const void *recs, size_t size, size_t n,
                        void (*labels)(myc__text *t, const void *rec));

#endif
