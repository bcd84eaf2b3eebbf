/* log.h -- the engine's log sink: one line per record, JSON or text, with
 * node, service and trace context.  Lines go to a host callback (called on
 * the thread that logs) or to stderr.  Stderr is written by a log thread
 * of its own from a bounded buffer: a stderr nobody reads (a full pipe)
 * must not stop the workers, so when the buffer is full records are
 * dropped and counted rather than waited for.  A service's records also
 * pass a token bucket (myc__log_admit) so that one service cannot flood
 * the output. */
#ifndef MYC_LOG_H
#define MYC_LOG_H

#include "base/alloc.h"
#include "base/clock.h"

#include <stdint.h>
#include <uv.h>

typedef struct myc__log_ring myc__log_ring;
typedef struct myc__log_bucket myc__log_bucket;

typedef struct {
  const myc__alloc *alloc;
  myc_log_fn fn;
  void *ud;
  int level;
  int format;
  const char *node;
  myc__log_ring *ring;         /* NULL: written on the logging thread */
  double rate, burst;          /* a service's token bucket; rate <= 0: none */
  _Atomic uint64_t dropped;    /* records the full buffer refused */
  _Atomic uint64_t suppressed; /* records over a service's rate */
  /* Buckets holding suppressed records nobody has summed up yet, so that
   * a service that goes quiet while over its rate still gets its summary
   * line (myc__log_flush_held); under 'held_lock'. */
  const myc__clock *clock; /* the services' clock; NULL: no timed flush */
  uv_mutex_t held_lock;
  myc__log_bucket *held_list;
  _Atomic uint32_t nheld; /* buckets on the list */
} myc__log;

/* A service's token bucket: used by the one thread that runs the
 * service at a time, but for 'held', the list links and 'total', which
 * myc__log_flush_held also reads. */
struct myc__log_bucket {
  double rate, burst; /* 0: the log's; a negative rate: no limit */
  double tokens;
  int64_t last_ns; /* 0: full, not yet used */
  _Atomic uint64_t held; /* suppressed since the last summary line */
  _Atomic uint64_t total;
  /* Whose records (for the summary line), set before the first use. */
  const char *service;
  size_t service_len;
  /* On myc__log.held_list (under its lock): when it has a token again. */
  myc__log_bucket *next_held;
  int64_t due_ns;
  int listed;
};

/* How long shutdown waits for buffered lines to reach a stderr that does
 * not take them. */
#define MYC_LOG_FLUSH_MS 2000
/* The largest log rate and burst a service may set (records/s). */
#define MYC_MAX_LOG_RATE 1e9
/* How often the log thread looks for a quiet service's summary line due
 * (myc__log_flush_held) while one holds suppressed records. */
#define MYC_LOG_HELD_POLL_NS 100000000ull
/* Bytes of lines the log thread holds at most. */
#define MYC_LOG_BUFFER (1u << 20)

/* 'clock': the one the services' records are stamped with, for the log
 * thread to tell when a held summary line is due (NULL: only at a
 * record let through or myc__log_bucket_done). */
int myc__log_init(myc__log *l, const myc__alloc *a, const myc_engine_config *c,
                  const char *node, const myc__clock *clock);
void myc__log_destroy(myc__log *l);

/* Writes one record.  'trace'/'span' may be NULL.  'extra' is a fragment
 * already in the log's format (JSON members without braces, or text
 * key=value pairs), or NULL. */
void myc__log_write(myc__log *l, int level, int64_t ts_ns,
                    const char *service, size_t service_len,
                    const uint8_t *trace, const uint8_t *span,
                    const char *msg, size_t msg_len, const char *extra,
                    size_t extra_len);

/* Whether a service's record of 'level' at 'now_ns' is to be written:
 * 0 when below the log level, or when over the service's rate (counted).
 * The first record let through after some were suppressed is preceded
 * by a summary line naming how many; if none comes, the line is written
 * by myc__log_flush_held once the bucket has a token again, or by
 * myc__log_bucket_done. */
int myc__log_admit(myc__log *l, myc__log_bucket *b, int level, int64_t now_ns,
                   const char *service, size_t service_len);

/* Writes the summary line of every bucket holding suppressed records
 * that has a token again at 'now_ns' (all of them with 'all').  The log
 * thread calls it; so does a manual engine's turn, and the engine before
 * it stops.  Any thread. */
void myc__log_flush_held(myc__log *l, int64_t now_ns, int all);

/* A bucket's service ends: its summary line if it holds suppressed
 * records, and the log forgets it.  Any thread. */
void myc__log_bucket_done(myc__log *l, myc__log_bucket *b, int64_t now_ns);

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
