/* span.h -- the span of each handled message, for a tracer the layers
 * above register (observe/trace.c): which messages are sampled (decided
 * from the trace id alone, so every process keeps the same traces), when
 * each handler started and ended, and the record handed to the tracer.
 * With no tracer the dispatch path pays one branch per batch.
 */
#ifndef MYC_SPAN_H
#define MYC_SPAN_H

#include "runtime/service.h"

#define MYC_SPAN_NAME 96  /* topic and service names kept per span */
#define MYC_SPAN_ERROR 128 /* error text kept per span */

/* One handled message, as the tracer receives it.  Times are the engine
 * clock (ns since the Unix epoch). */
typedef struct {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_id[8]; /* zeros: a root */
  int64_t start_ns, end_ns;
  int64_t wait_ns; /* from the emit to the handler's start (0 if unknown) */
  uint32_t worker;
  uint8_t remote;  /* came in over a link */
  uint8_t failed;  /* the handler raised (or its instance was ended) */
  uint8_t topic_len, service_len, source_len;
  char topic[MYC_SPAN_NAME];
  char service[MYC_SPAN_NAME];
  char source[MYC_SPAN_NAME]; /* the service that emitted the message */
  char error[MYC_SPAN_ERROR]; /* NUL-terminated; "" unless failed */
} myc__span;

/* What the engine hands spans to (myc_engine.tracer; NULL: tracing off). */
typedef struct myc__tracer {
  /* A trace is sampled when the last 7 bytes of its id, read as a
   * big-endian number, are below this (2^56: every trace, 0: none). */
  uint64_t sample_below;
  /* The next free span of worker 'worker''s queue, to fill in place, or
   * NULL when the queue is full (the span is dropped and counted); then
   * 'commit' hands it over.  Worker thread 'worker'; neither blocks. */
  myc__span *(*slot)(void *ud, uint32_t worker);
  void (*commit)(void *ud, uint32_t worker);
  void *ud;
} myc__tracer;

/* Nonzero when the trace of 'trace_id' is sampled by 'tr'. */
static inline int myc__span_sampled(const myc__tracer *tr,
                                    const uint8_t trace_id[16]) {
  uint64_t r = 0;
  int i;
  for (i = 9; i < 16; i++)
    r = (r << 8) | trace_id[i];
  return r < tr->sample_below;
}

/* Before a batch [first, n) of 's' runs: nonzero when one of its
 * messages is sampled, and then the view's marks are ready for the
 * handlers' end times (view.marks[i], engine clock) and the batch's start
 * is noted.  Worker thread. */
int myc__span_batch_begin(myc_service *s, uint32_t first, uint32_t n);

/* After a traced batch: records the spans of the sampled messages from
 * 'first' to 'last' inclusive; when 'error' is not NULL, message 'last'
 * failed with it (its end is now).  Clears the marks.  Worker thread. */
void myc__span_batch_end(myc_service *s, uint32_t first, uint32_t last,
                         const char *error);

/* Records the span of an activation outside a handler that started at
 * 'start' ('what': "init", "timer", ...; 'error': NULL unless it raised):
 * the root of the trace its messages start.  Worker thread. */
void myc__span_activation(myc_service *s, const char *what, int64_t start,
                          const char *error);

/* Frees what tracing kept for 's'. */
void myc__span_free(myc_service *s);

#endif
