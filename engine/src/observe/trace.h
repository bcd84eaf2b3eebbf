/* trace.h -- span export: the tracer the runtime hands each sampled
 * handled message to (runtime/span.h), a bounded queue per worker that
 * never blocks one (a full queue drops the span and counts it), and the
 * exporter thread that drains the queues and posts batches to a Zipkin or
 * OTLP/HTTP collector, retrying with backoff while it is down.
 */
#ifndef MYC_TRACE_H
#define MYC_TRACE_H

#include "base/text.h"
#include "runtime/engine.h"
#include "runtime/span.h"

typedef enum { MYC_TRACE_ZIPKIN, MYC_TRACE_OTLP } myc__trace_format;

typedef struct myc__trace myc__trace;

/* Attaches span export to 'e' (e->tracer) with the tracing settings of
 * 'cfg' (nothing when cfg->trace_export is NULL, or for a manual engine,
 * which runs no threads).  Returns 0, MYC_EINVAL for an unknown export
 * format, an endpoint that is no http://host:port/path or a sample
 * outside [0, 1], or MYC_ENOMEM; on error 'e' is unchanged. */
int myc__trace_attach(myc_engine *e, const myc_engine_config *cfg);

/* Appends the tracing families of the exposition (nothing when tracing
 * is off).  Any thread. */
void myc__trace_metrics(myc_engine *e, myc__text *t);

/* Nonzero when 'url' is an endpoint the exporter can post to:
 * http://host[:port][/path], host a name or a numeric address. */
int myc__trace_endpoint_ok(const char *url);

/* Encodes spans 'sp[0..n)' of node 'node' as the body of one export
 * request of 'fmt' (Zipkin v2 JSON: an array of spans; OTLP/HTTP JSON: an
 * ExportTraceServiceRequest, one resource per service). */
void myc__trace_encode(myc__trace_format fmt, const char *node,
                       const myc__span *sp, uint32_t n, myc__text *t);

/* Sends one request ('method' with 'body' of 'len' bytes and
 * 'content_type', or without a body when 'body' is NULL) to 'url' (http
 * only), waiting at most 'timeout_ms' for each step.  Returns the HTTP
 * status, or a negative errno code (the reason in 'err') when no answer
 * came.  The answer's body is appended to 'resp' unless it is NULL. */
int myc__http_call(const char *method, const char *url,
                      const char *content_type, const char *body, size_t len,
                      int timeout_ms, myc__text *resp, char *err,
                      size_t errlen);

#endif
