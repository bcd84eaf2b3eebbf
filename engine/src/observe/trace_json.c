/* trace_json.c -- spans as an export request body: Zipkin v2 JSON (the
 * zipkin2 model: an array of spans with microsecond times) or OTLP/HTTP
 * JSON (ExportTraceServiceRequest: lowerCamelCase field names, ids in
 * hex, nanosecond times as decimal strings, enums as integers).
 *
 * A message delivered to several services is one span id for all of its
 * handlings, so the exported id of a handling is the message's span id
 * mixed with its service's name (span_key), and its parent the parent id
 * mixed with the emitting service's name: the handling that emitted it,
 * in this process or another, as every process mixes alike.
 */
#include "observe/trace.h"

#include "base/log.h"

#include <inttypes.h>
#include <string.h>

#define OTLP_KIND_CONSUMER 5
#define OTLP_STATUS_ERROR 2

static void json_str(myc__text *t, const char *s, size_t n) {
  size_t i;
  myc__text_printf(t, "\"");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      myc__text_printf(t, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      myc__text_printf(t, "\\u%04x", c);
    else
      myc__text_printf(t, "%c", c);
  }
  myc__text_printf(t, "\"");
}

static int is_zero(const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

static void hex_field(myc__text *t, const char *name, const uint8_t *p,
                      size_t n) {
  char hex[33];
  myc__hex(hex, p, n);
  myc__text_printf(t, "\"%s\":\"%.*s\"", name, (int)(2 * n), hex);
}

/* FNV-1a of a service name: what an id is mixed with. */
static uint64_t name_hash(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  size_t i;
  for (i = 0; i < n; i++)
    h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
  return h;
}

/* 'id' mixed with the name: zeros (no parent) stay zeros. */
static void span_key(uint8_t out[8], const uint8_t id[8], const char *name,
                     size_t n) {
  uint64_t h = name_hash(name, n);
  int i;
  if (is_zero(id, 8)) {
    memset(out, 0, 8);
    return;
  }
  for (i = 0; i < 8; i++)
    out[i] = id[i] ^ (uint8_t)(h >> (56 - 8 * i));
  if (is_zero(out, 8)) /* no valid span id is all zeros */
    out[7] = 1;
}

static void ids(myc__text *t, const myc__span *s, const char *span_name,
                const char *parent_name) {
  uint8_t id[8], parent[8];
  span_key(id, s->span_id, s->service, s->service_len);
  span_key(parent, s->parent_id, s->source, s->source_len);
  hex_field(t, "traceId", s->trace_id, 16);
  myc__text_printf(t, ",");
  hex_field(t, span_name, id, 8);
  if (!is_zero(parent, 8)) {
    myc__text_printf(t, ",");
    hex_field(t, parent_name, parent, 8);
  }
}

static void zipkin_span(myc__text *t, const char *node, const myc__span *s) {
  int64_t us = s->start_ns / 1000, dur = (s->end_ns - s->start_ns) / 1000;
  char raw[17];
  myc__text_printf(t, "{");
  ids(t, s, "id", "parentId");
  myc__text_printf(t, ",\"kind\":\"CONSUMER\",\"name\":");
  json_str(t, s->topic, s->topic_len);
  /* Zipkin drops a duration of 0: a handler shorter than 1 us is 1. */
  myc__text_printf(t, ",\"timestamp\":%" PRId64 ",\"duration\":%" PRId64
                   ",\"localEndpoint\":{\"serviceName\":", us,
                   dur > 0 ? dur : 1);
  json_str(t, s->service, s->service_len);
  myc__text_printf(t, "},\"tags\":{\"mycelium.node\":");
  json_str(t, node, strlen(node));
  myc__text_printf(t, ",\"mycelium.topic\":");
  json_str(t, s->topic, s->topic_len);
  myc__text_printf(t, ",\"mycelium.source\":");
  json_str(t, s->source, s->source_len);
  myc__hex(raw, s->span_id, 8);
  myc__text_printf(t, ",\"mycelium.span_id\":\"%.16s\"", raw);
  myc__text_printf(t, ",\"mycelium.worker\":\"%" PRIu32 "\""
                   ",\"mycelium.queue_wait_us\":\"%" PRId64 "\""
                   ",\"mycelium.handler_us\":\"%" PRId64 "\"",
                   s->worker, s->wait_ns / 1000, dur);
  if (s->remote)
    myc__text_printf(t, ",\"mycelium.remote\":\"true\"");
  if (s->failed) {
    myc__text_printf(t, ",\"error\":");
    json_str(t, s->error[0] ? s->error : "error",
             s->error[0] ? strlen(s->error) : 5);
  }
  myc__text_printf(t, "}}");
}

static void zipkin(myc__text *t, const char *node, const myc__span *sp,
                   uint32_t n) {
  uint32_t i;
  myc__text_printf(t, "[");
  for (i = 0; i < n; i++) {
    if (i)
      myc__text_printf(t, ",");
    zipkin_span(t, node, &sp[i]);
  }
  myc__text_printf(t, "]");
}

static void attr_str(myc__text *t, const char *key, const char *v, size_t n) {
  myc__text_printf(t, "{\"key\":\"%s\",\"value\":{\"stringValue\":", key);
  json_str(t, v, n);
  myc__text_printf(t, "}}");
}

static void attr_int(myc__text *t, const char *key, int64_t v) {
  /* OTLP JSON writes 64-bit integers as strings. */
  myc__text_printf(t, "{\"key\":\"%s\",\"value\":{\"intValue\":\"%" PRId64
                   "\"}}", key, v);
}

static void otlp_span(myc__text *t, const myc__span *s) {
  char raw[17];
  myc__text_printf(t, "{");
  ids(t, s, "spanId", "parentSpanId");
  myc__text_printf(t, ",\"name\":");
  json_str(t, s->topic, s->topic_len);
  myc__text_printf(t, ",\"kind\":%d,\"startTimeUnixNano\":\"%" PRId64
                   "\",\"endTimeUnixNano\":\"%" PRId64 "\",\"attributes\":[",
                   OTLP_KIND_CONSUMER, s->start_ns, s->end_ns);
  attr_str(t, "messaging.destination.name", s->topic, s->topic_len);
  myc__text_printf(t, ",");
  attr_str(t, "mycelium.source", s->source, s->source_len);
  myc__text_printf(t, ",");
  myc__hex(raw, s->span_id, 8);
  attr_str(t, "mycelium.span_id", raw, 16);
  myc__text_printf(t, ",");
  attr_int(t, "mycelium.worker", s->worker);
  myc__text_printf(t, ",");
  attr_int(t, "mycelium.queue_wait_ns", s->wait_ns);
  myc__text_printf(t, ",");
  attr_int(t, "mycelium.handler_ns", s->end_ns - s->start_ns);
  if (s->remote) {
    myc__text_printf(t, ",{\"key\":\"mycelium.remote\",\"value\":"
                     "{\"boolValue\":true}}");
  }
  myc__text_printf(t, "]");
  if (s->failed) {
    myc__text_printf(t, ",\"status\":{\"code\":%d,\"message\":",
                     OTLP_STATUS_ERROR);
    json_str(t, s->error, strlen(s->error));
    myc__text_printf(t, "}");
  }
  myc__text_printf(t, "}");
}

static int same_service(const myc__span *a, const myc__span *b) {
  return a->service_len == b->service_len &&
         memcmp(a->service, b->service, a->service_len) == 0;
}

/* One resourceSpans per service (service.name is a resource attribute),
 * in the order services first appear in the batch. */
static void otlp(myc__text *t, const char *node, const myc__span *sp,
                 uint32_t n) {
  uint32_t i, j, k, first = 1;
  myc__text_printf(t, "{\"resourceSpans\":[");
  for (i = 0; i < n; i++) {
    for (j = 0; j < i && !same_service(&sp[j], &sp[i]); j++)
      ;
    if (j < i) /* that service's resource is written already */
      continue;
    myc__text_printf(t, "%s{\"resource\":{\"attributes\":[", first ? "" : ",");
    first = 0;
    attr_str(t, "service.name", sp[i].service, sp[i].service_len);
    myc__text_printf(t, ",");
    attr_str(t, "service.instance.id", node, strlen(node));
    myc__text_printf(t, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"mycelium\""
                     ",\"version\":\"%s\"},\"spans\":[", MYC_VERSION);
    for (k = i; k < n; k++)
      if (same_service(&sp[k], &sp[i])) {
        if (k != i)
          myc__text_printf(t, ",");
        otlp_span(t, &sp[k]);
      }
    myc__text_printf(t, "]}]}");
  }
  myc__text_printf(t, "]}");
}

void myc__trace_encode(myc__trace_format fmt, const char *node,
                       const myc__span *sp, uint32_t n, myc__text *t) {
  if (fmt == MYC_TRACE_ZIPKIN)
    zipkin(t, node, sp, n);
  else
    otlp(t, node, sp, n);
}
