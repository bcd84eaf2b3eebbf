/* status.c -- the links in `mycelium status` (text and --json) and in
 * /metrics. */
#include "link/link.h"

#include "base/text.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A JSON string of 's' (URLs may hold any byte of a path). */
static void put_json(myc__text *o, const char *s) {
  myc__text_printf(o, "\"");
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      myc__text_printf(o, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      myc__text_printf(o, "\\u%04x", c);
    else
      myc__text_printf(o, "%c", c);
  }
  myc__text_printf(o, "\"");
}

#define ROW "%-16s %-8s %-10s %2s %12s %12s %14s %14s %9s %5s %9s %6s\n"

char *myc__links_status(void *links, int json, size_t *len) {
  myc__links *L = links;
  myc__link_stats st[64];
  uint32_t n = myc__links_stats(L, st, 64), i;
  myc__text o;
  myc__text_init(&o, myc__links_alloc(L));
  if (n > 64)
    n = 64;
  if (json)
    myc__text_printf(&o, ",\"links\":[");
  else
    myc__text_printf(&o, "\n" ROW, "LINK", "DIR", "STATE", "V", "FRAMES IN", "FRAMES OUT",
        "BYTES IN", "BYTES OUT", "QUEUED", "FILL", "DROPPED", "ERRORS");
  for (i = 0; i < n; i++) {
    myc__link_stats *s = &st[i];
    uint64_t dropped = s->dropped_queue_full + s->dropped_disconnect +
                       s->dropped_shutdown + s->dropped_v1_untyped;
    if (json) {
      myc__text_printf(&o, "%s{\"peer\":", i ? "," : "");
      put_json(&o, s->peer);
      myc__text_printf(&o, ",\"url\":");
      put_json(&o, s->url);
      myc__text_printf(&o,
          ",\"dir\":\"%s\",\"state\":\"%s\",\"wire\":%d,\"patterns\":%u,"
          "\"frames_in\":%llu,\"frames_out\":%llu,\"frames_direct\":%llu,"
          "\"bytes_in\":%llu,"
          "\"bytes_out\":%llu,\"queued\":%llu,\"queued_bytes\":%llu,"
          "\"pressure\":%.3f,"
          "\"dropped\":{\"queue_full\":%llu,\"disconnect\":%llu,"
          "\"shutdown\":%llu,\"v1_untyped\":%llu},\"unknown_types\":%llu,"
          "\"frame_errors\":%llu,\"reconnects\":%llu,\"paused\":%s,"
          "\"pauses\":%llu,\"paused_ms\":%llu,"
          "\"held_dropped\":{\"disconnect\":%llu,\"shutdown\":%llu}}",
          s->dir, s->state, s->version, s->patterns,
          (unsigned long long)s->frames_in, (unsigned long long)s->frames_out,
          (unsigned long long)s->frames_direct,
          (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
          (unsigned long long)s->queued, (unsigned long long)s->queued_bytes,
          s->pressure, (unsigned long long)s->dropped_queue_full,
          (unsigned long long)s->dropped_disconnect,
          (unsigned long long)s->dropped_shutdown,
          (unsigned long long)s->dropped_v1_untyped,
          (unsigned long long)s->unknown_types,
          (unsigned long long)s->frame_errors,
          (unsigned long long)s->reconnects, s->paused ? "true" : "false",
          (unsigned long long)s->pauses, (unsigned long long)s->paused_ms,
          (unsigned long long)s->dropped_held_disconnect,
          (unsigned long long)s->dropped_held_shutdown);
    } else {
      char v[8], c[6][24], fill[16];
      snprintf(v, sizeof v, "%d", s->version);
      snprintf(c[0], sizeof c[0], "%llu", (unsigned long long)s->frames_in);
      snprintf(c[1], sizeof c[1], "%llu", (unsigned long long)s->frames_out);
      snprintf(c[2], sizeof c[2], "%llu", (unsigned long long)s->bytes_in);
      snprintf(c[3], sizeof c[3], "%llu", (unsigned long long)s->bytes_out);
      snprintf(c[4], sizeof c[4], "%llu", (unsigned long long)s->queued);
      snprintf(c[5], sizeof c[5], "%llu", (unsigned long long)dropped);
      snprintf(fill, sizeof fill, "%.2f", s->pressure);
      /* An up link whose reading waits for a full mailbox. */
      myc__text_printf(&o, ROW, s->peer, s->dir,
          s->paused && strcmp(s->state, "up") == 0 ? "up,paused" : s->state,
          v, c[0], c[1], c[2], c[3],
          c[4], fill, c[5], "");
      myc__text_printf(&o, "  %-14s %s; dropped: queue full %llu, disconnect %llu, "
              "shutdown %llu, v1 untyped %llu; unknown types %llu, frame "
              "errors %llu, reconnects %llu\n",
          "", s->url, (unsigned long long)s->dropped_queue_full,
          (unsigned long long)s->dropped_disconnect,
          (unsigned long long)s->dropped_shutdown,
          (unsigned long long)s->dropped_v1_untyped,
          (unsigned long long)s->unknown_types,
          (unsigned long long)s->frame_errors,
          (unsigned long long)s->reconnects);
      if (s->pauses > 0)
        myc__text_printf(&o, "  %-14s paused for full mailboxes %llu times, "
            "%llu ms in all%s; held and dropped: disconnect %llu, shutdown "
            "%llu\n",
            "", (unsigned long long)s->pauses,
            (unsigned long long)s->paused_ms, s->paused ? " (paused now)" : "",
            (unsigned long long)s->dropped_held_disconnect,
            (unsigned long long)s->dropped_held_shutdown);
    }
  }
  if (json)
    myc__text_printf(&o, "]");
  return myc__text_take(&o, len);
}

/* A link's labels: its peer and direction. */
static void link_labels(myc__text *t, const void *rec) {
  const myc__link_stats *st = rec;
  myc__text_printf(t, "link=\"");
  myc__text_label(t, st->peer, strlen(st->peer));
  myc__text_printf(t, "\",dir=\"%s\"", st->dir);
}

#define OFF(f) offsetof(myc__link_stats, f)

static const myc__text_counter families[] = {
    {"mycelium_link_frames_total", "counter",
     "Frames over a link, by direction.", "direction=\"in\"",
     OFF(frames_in)},
    {NULL, NULL, NULL, "direction=\"out\"", OFF(frames_out)},
    {"mycelium_link_frames_direct_total", "counter",
     "Of the frames out, those the emitting side's worker wrote itself "
     "(plain v2 links; the rest the link thread wrote).", NULL,
     OFF(frames_direct)},
    {"mycelium_link_bytes_total", "counter",
     "Bytes over a link (frames and their framing), by direction.",
     "direction=\"in\"", OFF(bytes_in)},
    {NULL, NULL, NULL, "direction=\"out\"", OFF(bytes_out)},
    {"mycelium_link_dropped_total", "counter",
     "Messages a link did not send: queue_full, disconnect, shutdown, "
     "v1_untyped (a v1 peer cannot take it).",
     "reason=\"queue_full\"", OFF(dropped_queue_full)},
    {NULL, NULL, NULL, "reason=\"disconnect\"", OFF(dropped_disconnect)},
    {NULL, NULL, NULL, "reason=\"shutdown\"", OFF(dropped_shutdown)},
    {NULL, NULL, NULL, "reason=\"v1_untyped\"", OFF(dropped_v1_untyped)},
    {"mycelium_link_reconnects_total", "counter",
     "Times a link was dialled again after it went down.", NULL,
     OFF(reconnects)},
    {"mycelium_link_frame_errors_total", "counter",
     "Bad frames a peer sent (the link was closed).", NULL,
     OFF(frame_errors)},
    {"mycelium_link_unknown_types_total", "counter",
     "Typed frames of a type this engine's contracts do not have.", NULL,
     OFF(unknown_types)},
    {"mycelium_link_pauses_total", "counter",
     "Times a link stopped reading because a message it read waited for a "
     "full mailbox of policy reject.", NULL, OFF(pauses)},
    {"mycelium_link_held_dropped_total", "counter",
     "Messages read and waiting for a full mailbox, dropped when the peer "
     "hung up or the engine stopped.",
     "reason=\"disconnect\"", OFF(dropped_held_disconnect)},
    {NULL, NULL, NULL, "reason=\"shutdown\"", OFF(dropped_held_shutdown)},
    {"mycelium_link_queue_frames", "gauge",
     "Frames waiting to be written to a peer.", NULL, OFF(queued)},
    {"mycelium_link_queue_bytes", "gauge",
     "Bytes waiting to be written to a peer.", NULL, OFF(queued_bytes)},
};

char *myc__links_metrics(void *links, size_t *len) {
  myc__links *L = links;
  myc__link_stats st[64];
  uint32_t n = myc__links_stats(L, st, 64), i;
  myc__text o;
  myc__text_init(&o, myc__links_alloc(L));
  if (n > 64)
    n = 64;
  myc__text_printf(&o, "%s", ""); /* an empty exposition is still a string */
  myc__text_counters(&o, families, sizeof families / sizeof *families, st,
                     sizeof *st, n, link_labels);
  /* Not a uint64_t of the stats: a gauge of its state. */
  myc__text_family(&o, "mycelium_link_up", "gauge",
                   "1 while a link is up (handshake done).");
  for (i = 0; i < n; i++) {
    myc__text_printf(&o, "mycelium_link_up{");
    link_labels(&o, &st[i]);
    myc__text_printf(&o, "} %d\n", strcmp(st[i].state, "up") == 0);
  }
  return myc__text_take(&o, len);
}
