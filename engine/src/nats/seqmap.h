/* seqmap.h -- a string-keyed table of sequence numbers: per topic, the
 * next number a publisher stamps; per (publisher, subject), the last one
 * a receiver saw, to tell a gap (messages lost on the way) or a repeat.
 * One thread owns a table. */
#ifndef MYC_NATS_SEQMAP_H
#define MYC_NATS_SEQMAP_H

#include "base/alloc.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *key;
  uint64_t seq;
} myc__seq_slot;

typedef struct {
  const myc__alloc *a;
  myc__seq_slot *slots;
  uint32_t n, cap; /* cap: a power of two */
  uint32_t max;    /* entries kept at most; then new keys are not tracked */
} myc__seqmap;

void myc__seqmap_init(myc__seqmap *m, const myc__alloc *a, uint32_t max);
void myc__seqmap_free(myc__seqmap *m);

/* The value of 'key' ('len' bytes), added as 0 when absent.  NULL when the
 * table is full or out of memory (the key is then not tracked). */
uint64_t *myc__seqmap_at(myc__seqmap *m, const char *key, size_t len);

#endif
