/* status.c -- the NATS link in `mycelium status` (text and --json). */
#include "nats/transport.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* A JSON string of 's' (a URL may hold any byte). */
static size_t json_str(char *out, size_t cap, const char *s) {
  size_t n = 0;
#define PUT(c)            \
  do {                    \
    if (n + 1 < cap)      \
      out[n] = (char)(c); \
    n++;                  \
  } while (0)
  PUT('"');
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      PUT('\\');
      PUT(c);
    } else if (c < 0x20 || c >= 0x7f) {
      PUT('?');
    } else {
      PUT(c);
    }
  }
  PUT('"');
  if (cap > 0)
    out[n < cap ? n : cap - 1] = '\0';
#undef PUT
  return n;
}

char *myc__nats_status(void *nats, int json, size_t *len) {
  myc__nats *N = nats;
  myc__nats_stats s;
  char url[600], buf[2048], *out;
  uint64_t dropped;
  int n;
  myc__nats_stats_get(N, &s);
  dropped = s.dropped_queue_full + s.dropped_disconnect + s.dropped_shutdown +
            s.dropped_pending_limit + s.dropped_lost + s.dropped_schema +
            s.dropped_unknown_type + s.dropped_duplicate;
  if (json) {
    json_str(url, sizeof url, s.url);
    n = snprintf(
        buf, sizeof buf,
        ",\"nats\":{\"url\":%s,\"state\":\"%s\",\"subjects\":%u,"
        "\"msgs_out\":%" PRIu64 ",\"bytes_out\":%" PRIu64
        ",\"msgs_in\":%" PRIu64 ",\"bytes_in\":%" PRIu64
        ",\"queued\":%" PRIu64 ",\"queued_bytes\":%" PRIu64
        ",\"dropped\":{\"queue_full\":%" PRIu64 ",\"disconnect\":%" PRIu64
        ",\"shutdown\":%" PRIu64 ",\"pending_limit\":%" PRIu64
        ",\"lost\":%" PRIu64 ",\"schema_mismatch\":%" PRIu64
        ",\"unknown_type\":%" PRIu64 ",\"duplicate\":%" PRIu64
        "},\"frame_errors\":%" PRIu64 ",\"slow_consumer\":%" PRIu64
        ",\"reconnects\":%" PRIu64 ",\"no_responders\":%" PRIu64
        ",\"msgs_direct\":%" PRIu64 ",\"writes_direct\":%" PRIu64 "}",
        url, s.state, s.subjects, s.msgs_out, s.bytes_out, s.msgs_in,
        s.bytes_in, s.queued, s.queued_bytes, s.dropped_queue_full,
        s.dropped_disconnect, s.dropped_shutdown, s.dropped_pending_limit,
        s.dropped_lost, s.dropped_schema, s.dropped_unknown_type,
        s.dropped_duplicate, s.frame_errors, s.slow_consumer, s.reconnects,
        s.no_responders, s.msgs_direct, s.writes_direct);
  } else {
    n = snprintf(
        buf, sizeof buf,
        "\n%-16s %-12s %8s %12s %12s %14s %14s %9s %9s %6s\n"
        "%-16s %-12s %8u %12" PRIu64 " %12" PRIu64 " %14" PRIu64
        " %14" PRIu64 " %9" PRIu64 " %9" PRIu64 " %6" PRIu64 "\n"
        "  %s  dropped: queue_full %" PRIu64 ", disconnect %" PRIu64
        ", shutdown %" PRIu64 ", pending_limit %" PRIu64 ", lost %" PRIu64
        ", schema_mismatch %" PRIu64 ", unknown_type %" PRIu64
        ", duplicate %" PRIu64 "; slow_consumer %" PRIu64
        ", reconnects %" PRIu64 ", no_responders %" PRIu64 "\n",
        "NATS", "STATE", "SUBJECTS", "MSGS IN", "MSGS OUT", "BYTES IN",
        "BYTES OUT", "QUEUED", "DROPPED", "ERRORS", "nats", s.state,
        s.subjects, s.msgs_in, s.msgs_out, s.bytes_in, s.bytes_out, s.queued,
        dropped, s.frame_errors, s.url, s.dropped_queue_full,
        s.dropped_disconnect, s.dropped_shutdown, s.dropped_pending_limit,
        s.dropped_lost, s.dropped_schema, s.dropped_unknown_type,
        s.dropped_duplicate, s.slow_consumer, s.reconnects, s.no_responders);
  }
  if (n < 0)
    return NULL;
  if ((size_t)n >= sizeof buf)
    n = (int)sizeof buf - 1;
  out = myc__malloc(myc__nats_alloc(N), (size_t)n + 1);
  if (out == NULL)
    return NULL;
  memcpy(out, buf, (size_t)n + 1);
  *len = (size_t)n;
  return out;
}

/* One sample of the Prometheus exposition: 'name' with its HELP and TYPE
 * when 'help' is given (the family's first sample), the label pair
 * 'label' (or NULL) and 'v'.  Appends to 'buf' at '*n'. */
static void sample(char *buf, size_t cap, size_t *n, const char *name,
                   const char *type, const char *help, const char *label,
                   uint64_t v) {
  int k;
  if (*n >= cap)
    return;
  if (help != NULL) {
    k = snprintf(buf + *n, cap - *n, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                 name, type);
    *n += k > 0 ? (size_t)k : 0;
    if (*n >= cap)
      return;
  }
  k = snprintf(buf + *n, cap - *n, "%s%s%s%s %" PRIu64 "\n", name,
               label ? "{" : "", label ? label : "", label ? "}" : "", v);
  *n += k > 0 ? (size_t)k : 0;
}

char *myc__nats_metrics(void *nats, size_t *len) {
  myc__nats *N = nats;
  myc__nats_stats s;
  char buf[6144], *out;
  size_t n = 0;
  static const char *const C = "counter", *const G = "gauge";
  myc__nats_stats_get(N, &s);
  sample(buf, sizeof buf, &n, "mycelium_nats_msgs_total", C,
         "Messages over the NATS connection, by direction.", "direction=\"in\"",
         s.msgs_in);
  sample(buf, sizeof buf, &n, "mycelium_nats_msgs_total", C, NULL,
         "direction=\"out\"", s.msgs_out);
  sample(buf, sizeof buf, &n, "mycelium_nats_bytes_total", C,
         "Bytes of the messages over the NATS connection (their frames), by "
         "direction.",
         "direction=\"in\"", s.bytes_in);
  sample(buf, sizeof buf, &n, "mycelium_nats_bytes_total", C, NULL,
         "direction=\"out\"", s.bytes_out);
  sample(buf, sizeof buf, &n, "mycelium_nats_msgs_direct_total", C,
         "Of the messages out, those the worker of _nats published itself "
         "(the rest the NATS thread did).",
         NULL, s.msgs_direct);
  sample(buf, sizeof buf, &n, "mycelium_nats_writes_direct_total", C,
         "Socket writes the worker of _nats made itself.", NULL,
         s.writes_direct);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C,
         "Messages not sent (queue_full, disconnect, shutdown) or not "
         "delivered (pending_limit, lost, schema_mismatch, unknown_type, "
         "duplicate).",
         "reason=\"queue_full\"", s.dropped_queue_full);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"disconnect\"", s.dropped_disconnect);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"shutdown\"", s.dropped_shutdown);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"pending_limit\"", s.dropped_pending_limit);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"lost\"", s.dropped_lost);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"schema_mismatch\"", s.dropped_schema);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"unknown_type\"", s.dropped_unknown_type);
  sample(buf, sizeof buf, &n, "mycelium_nats_dropped_total", C, NULL,
         "reason=\"duplicate\"", s.dropped_duplicate);
  sample(buf, sizeof buf, &n, "mycelium_nats_frame_errors_total", C,
         "Received messages that were no frame for their subject.", NULL,
         s.frame_errors);
  sample(buf, sizeof buf, &n, "mycelium_nats_slow_consumer_total", C,
         "Times a subscription went over nats.pending_msgs or "
         "nats.pending_bytes.",
         NULL, s.slow_consumer);
  sample(buf, sizeof buf, &n, "mycelium_nats_reconnects_total", C,
         "Times libnats reconnected.", NULL, s.reconnects);
  sample(buf, sizeof buf, &n, "mycelium_nats_no_responders_total", C,
         "Requests NATS answered with no responders.", NULL, s.no_responders);
  sample(buf, sizeof buf, &n, "mycelium_nats_queue_msgs", G,
         "Messages waiting in the queue to the NATS thread.", NULL, s.queued);
  sample(buf, sizeof buf, &n, "mycelium_nats_queue_bytes", G,
         "Bytes waiting in the queue to the NATS thread.", NULL,
         s.queued_bytes);
  sample(buf, sizeof buf, &n, "mycelium_nats_subjects", G,
         "NATS subscriptions held.", NULL, s.subjects);
  sample(buf, sizeof buf, &n, "mycelium_nats_up", G,
         "1 while the NATS connection is up.", NULL,
         strcmp(s.state, "up") == 0);
  if (n >= sizeof buf)
    return NULL; /* cannot happen: the families fit */
  out = myc__malloc(myc__nats_alloc(N), n + 1);
  if (out == NULL)
    return NULL;
  memcpy(out, buf, n + 1);
  *len = n;
  return out;
}
