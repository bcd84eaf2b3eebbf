/* status.c -- the NATS link in `mycelium status` (text and --json) and in
 * /metrics. */
#include "nats/transport.h"

#include "base/text.h"

#include <inttypes.h>
#include <stddef.h>
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

#define OFF(f) offsetof(myc__nats_stats, f)

static const myc__text_counter families[] = {
    {"mycelium_nats_msgs_total", "counter",
     "Messages over the NATS connection, by direction.", "direction=\"in\"",
     OFF(msgs_in)},
    {NULL, NULL, NULL, "direction=\"out\"", OFF(msgs_out)},
    {"mycelium_nats_bytes_total", "counter",
     "Bytes of the messages over the NATS connection (their frames), by "
     "direction.",
     "direction=\"in\"", OFF(bytes_in)},
    {NULL, NULL, NULL, "direction=\"out\"", OFF(bytes_out)},
    {"mycelium_nats_msgs_direct_total", "counter",
     "Of the messages out, those the worker of _nats published itself (the "
     "rest the NATS thread did).",
     NULL, OFF(msgs_direct)},
    {"mycelium_nats_writes_direct_total", "counter",
     "Socket writes the worker of _nats made itself.", NULL,
     OFF(writes_direct)},
    {"mycelium_nats_dropped_total", "counter",
     "Messages not sent (queue_full, disconnect, shutdown) or not delivered "
     "(pending_limit, lost, schema_mismatch, unknown_type, duplicate).",
     "reason=\"queue_full\"", OFF(dropped_queue_full)},
    {NULL, NULL, NULL, "reason=\"disconnect\"", OFF(dropped_disconnect)},
    {NULL, NULL, NULL, "reason=\"shutdown\"", OFF(dropped_shutdown)},
    {NULL, NULL, NULL, "reason=\"pending_limit\"", OFF(dropped_pending_limit)},
    {NULL, NULL, NULL, "reason=\"lost\"", OFF(dropped_lost)},
    {NULL, NULL, NULL, "reason=\"schema_mismatch\"", OFF(dropped_schema)},
    {NULL, NULL, NULL, "reason=\"unknown_type\"", OFF(dropped_unknown_type)},
    {NULL, NULL, NULL, "reason=\"duplicate\"", OFF(dropped_duplicate)},
    {"mycelium_nats_frame_errors_total", "counter",
     "Received messages that were no frame for their subject.", NULL,
     OFF(frame_errors)},
    {"mycelium_nats_slow_consumer_total", "counter",
     "Times a subscription went over nats.pending_msgs or "
     "nats.pending_bytes.",
     NULL, OFF(slow_consumer)},
    {"mycelium_nats_reconnects_total", "counter", "Times libnats reconnected.",
     NULL, OFF(reconnects)},
    {"mycelium_nats_no_responders_total", "counter",
     "Requests NATS answered with no responders.", NULL, OFF(no_responders)},
    {"mycelium_nats_queue_msgs", "gauge",
     "Messages waiting in the queue to the NATS thread.", NULL, OFF(queued)},
    {"mycelium_nats_queue_bytes", "gauge",
     "Bytes waiting in the queue to the NATS thread.", NULL, OFF(queued_bytes)},
};

char *myc__nats_metrics(void *nats, size_t *len) {
  myc__nats *N = nats;
  myc__nats_stats s;
  myc__text o;
  myc__nats_stats_get(N, &s);
  myc__text_init(&o, myc__nats_alloc(N));
  myc__text_counters(&o, families, sizeof families / sizeof *families, &s,
                     sizeof s, 1, NULL);
  /* Not a uint64_t of the stats: added as they are. */
  myc__text_family(&o, "mycelium_nats_subjects", "gauge",
                   "NATS subscriptions held.");
  myc__text_printf(&o, "mycelium_nats_subjects %u\n", s.subjects);
  myc__text_family(&o, "mycelium_nats_up", "gauge",
                   "1 while the NATS connection is up.");
  myc__text_printf(&o, "mycelium_nats_up %d\n", strcmp(s.state, "up") == 0);
  return myc__text_take(&o, len);
}
