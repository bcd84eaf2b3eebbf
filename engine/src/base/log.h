/* log.h -- the engine's log sink: one line per record, JSON or text, with
 * node, service and trace context.  Lines go to a host callback or to
 * stderr, one write per line so that lines from different threads never
 * interleave. */
#ifndef MYC_LOG_H
#define MYC_LOG_H

#include "base/alloc.h"

#include <stdint.h>
#include <uv.h>

typedef struct {
  const myc__alloc *alloc;
  myc_log_fn fn;
  void *ud;
  int level;
  int format;
  const char *node;
} myc__log;

int myc__log_init(myc__log *l, const myc__alloc *a, const myc_engine_config *c,
                  const char *node);
void myc__log_destroy(myc__log *l);

/* Writes one record.  'trace'/'span' may be NULL.  'extra' is a fragment
 * already in the log's format (JSON members without braces, or text
 * key=value pairs), or NULL. */
void myc__log_write(myc__log *l, int level, int64_t ts_ns,
                    const char *service, size_t service_len,
                    const uint8_t *trace, const uint8_t *span,
                    const char *msg, size_t msg_len, const char *extra,
                    size_t extra_len);

/* Lowercase hex of 'n' bytes into 'dst' (2n chars, no NUL). */
void myc__hex(char *dst, const uint8_t *src, size_t n);

/* 'n' bytes of 's' as a text log line writes them (control characters as
 * \n, \r, \t or \xHH) into 'dst', NUL-terminated, cut with "..." to fit
 * 'cap' bytes: for quoting untrusted names in messages.  Cannot fail. */
void myc__log_quote(char *dst, size_t cap, const char *s, size_t n);

/* Like myc__log_write, with 'n' extra fields given as key/value strings,
 * formatted for the log's format. */
void myc__log_write_kv(myc__log *l, int level, int64_t ts_ns,
                       const char *service, size_t service_len,
                       const uint8_t *trace, const uint8_t *span,
                       const char *msg, int n, const char *const *keys,
                       const char *const *vals);
#endif
