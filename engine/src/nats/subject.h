/* subject.h -- topics and subscription patterns as NATS subjects
 * (docs/NATS.md, Subjects).  A topic "swaps.v2" is "<prefix>.swaps.v2"; a
 * pattern "swaps.*" (every topic under swaps., at any depth) is
 * "<prefix>.swaps.>", and "*" is "<prefix>.>".  Topic names use letters,
 * digits and _ - : / only, so they are valid subject tokens as they are.
 * An empty prefix maps a topic to itself. */
#ifndef MYC_NATS_SUBJECT_H
#define MYC_NATS_SUBJECT_H

#include <stddef.h>

#define MYC_NATS_PREFIX_MAX 128
#define MYC_NATS_SUBJECT_MAX (MYC_NATS_PREFIX_MAX + 1 + 255 + 1)

/* Checks a subject prefix: empty, or tokens of letters, digits and
 * _ - : / separated by dots.  Returns NULL or what is wrong. */
const char *myc__nats_prefix_check(const char *prefix);

/* Writes the subject of topic or pattern 'name' ('len' bytes) into 'out'
 * ('cap' bytes, NUL-terminated).  Returns its length, or -1 when it does
 * not fit. */
int myc__nats_subject(const char *prefix, const char *name, size_t len,
                      int pattern, char *out, size_t cap);

/* The topic a subject names under 'prefix': sets '*topic' and '*len' and
 * returns 0, or returns -1 when the subject is not under the prefix. */
int myc__nats_topic_of(const char *prefix, const char *subject, size_t slen,
                       const char **topic, size_t *len);

#endif
