/* status.c -- the links in `mycelium status` (text and --json) and in
 * /metrics. */
#include "link/link.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const myc__alloc *a;
  char *p;
  size_t len, cap;
  int failed;
} out;

static void put(out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
  va_list ap;
  int n;
  for (;;) {
    size_t room = o->cap - o->len;
    va_start(ap, fmt);
    n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? room : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      o->failed = 1;
      return;
    }
    if (o->p != NULL && (size_t)n < room) {
      o->len += (size_t)n;
      return;
    }
    {
      size_t ncap = o->cap ? o->cap * 2 : 1024;
      char *np;
      while (ncap < o->len + (size_t)n + 1)
        ncap *= 2;
      np = myc__realloc(o->a, o->p, o->cap, ncap);
      if (np == NULL) {
        o->failed = 1;
        return;
      }
      o->p = np;
      o->cap = ncap;
    }
  }
}

/* A JSON string of 's' (URLs may hold any byte of a path). */
static void put_json(out *o, const char *s) {
  put(o, "\"");
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      put(o, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      put(o, "\\u%04x", c);
    else
      put(o, "%c", c);
  }
  put(o, "\"");
}

#define ROW "%-16s %-8s %-10s %2s %12s %12s %14s %14s %9s %5s %9s %6s\n"

char *myc__links_status(void *links, int json, size_t *len) {
  myc__links *L = links;
  myc__link_stats st[64];
  uint32_t n = myc__links_stats(L, st, 64), i;
  out o;
  memset(&o, 0, sizeof o);
  o.a = myc__links_alloc(L);
  if (n > 64)
    n = 64;
  if (json)
    put(&o, ",\"links\":[");
  else
    put(&o, "\n" ROW, "LINK", "DIR", "STATE", "V", "FRAMES IN", "FRAMES OUT",
        "BYTES IN", "BYTES OUT", "QUEUED", "FILL", "DROPPED", "ERRORS");
  for (i = 0; i < n; i++) {
    myc__link_stats *s = &st[i];
    uint64_t dropped = s->dropped_queue_full + s->dropped_disconnect +
                       s->dropped_shutdown + s->dropped_v1_untyped;
    if (json) {
      put(&o, "%s{\"peer\":", i ? "," : "");
      put_json(&o, s->peer);
      put(&o, ",\"url\":");
      put_json(&o, s->url);
      put(&o,
          ",\"dir\":\"%s\",\"state\":\"%s\",\"wire\":%d,\"patterns\":%u,"
          "\"frames_in\":%llu,\"frames_out\":%llu,\"frames_direct\":%llu,"
          "\"bytes_in\":%llu,"
          "\"bytes_out\":%llu,\"queued\":%llu,\"queued_bytes\":%llu,"
          "\"pressure\":%.3f,"
          "\"dropped\":{\"queue_full\":%llu,\"disconnect\":%llu,"
          "\"shutdown\":%llu,\"v1_untyped\":%llu},\"unknown_types\":%llu,"
          "\"frame_errors\":%llu,\"reconnects\":%llu}",
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
          (unsigned long long)s->reconnects);
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
      put(&o, ROW, s->peer, s->dir, s->state, v, c[0], c[1], c[2], c[3], c[4],
          fill, c[5], "");
      put(&o, "  %-14s %s; dropped: queue full %llu, disconnect %llu, "
              "shutdown %llu, v1 untyped %llu; unknown types %llu, frame "
              "errors %llu, reconnects %llu\n",
          "", s->url, (unsigned long long)s->dropped_queue_full,
          (unsigned long long)s->dropped_disconnect,
          (unsigned long long)s->dropped_shutdown,
          (unsigned long long)s->dropped_v1_untyped,
          (unsigned long long)s->unknown_types,
          (unsigned long long)s->frame_errors,
          (unsigned long long)s->reconnects);
    }
  }
  if (json)
    put(&o, "]");
  if (o.failed) {
    myc__free(o.a, o.p, o.cap);
    return NULL;
  }
  /* The caller frees len + 1 bytes: give it exactly that. */
  {
    char *exact = myc__malloc(o.a, o.len + 1);
    if (exact != NULL)
      memcpy(exact, o.p, o.len + 1);
    myc__free(o.a, o.p, o.cap);
    *len = o.len;
    return exact;
  }
}

/* A label value: backslash, double quote and newline escaped. */
static void put_label(out *o, const char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\\' || *s == '"')
      put(o, "\\%c", *s);
    else if (*s == '\n')
      put(o, "\\n");
    else
      put(o, "%c", *s);
  }
}

typedef struct {
  const char *name, *type, *help, *extra; /* extra: a label and value */
  size_t off;                             /* of a uint64_t in the stats */
} link_family;

#define OFF(f) offsetof(myc__link_stats, f)

static const link_family families[] = {
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
    {"mycelium_link_queue_frames", "gauge",
     "Frames waiting to be written to a peer.", NULL, OFF(queued)},
    {"mycelium_link_queue_bytes", "gauge",
     "Bytes waiting to be written to a peer.", NULL, OFF(queued_bytes)},
};

char *myc__links_metrics(void *links, size_t *len) {
  myc__links *L = links;
  myc__link_stats st[64];
  uint32_t n = myc__links_stats(L, st, 64), i;
  size_t f;
  out o;
  memset(&o, 0, sizeof o);
  o.a = myc__links_alloc(L);
  if (n > 64)
    n = 64;
  put(&o, "%s", ""); /* an empty exposition is still a string */
  for (f = 0; f < sizeof families / sizeof *families; f++) {
    const link_family *fam = &families[f];
    const char *name = fam->name;
    size_t k = f;
    while (name == NULL) /* a further sample of the family above */
      name = families[--k].name;
    if (fam->name != NULL)
      put(&o, "# HELP %s %s\n# TYPE %s %s\n", name, fam->help, name,
          fam->type);
    for (i = 0; i < n; i++) {
      uint64_t v;
      memcpy(&v, (const char *)&st[i] + fam->off, sizeof v);
      put(&o, "%s{link=\"", name);
      put_label(&o, st[i].peer);
      put(&o, "\",dir=\"%s\"%s%s} %llu\n", st[i].dir, fam->extra ? "," : "",
          fam->extra ? fam->extra : "", (unsigned long long)v);
    }
  }
  put(&o, "# HELP mycelium_link_up 1 while a link is up (handshake done).\n"
          "# TYPE mycelium_link_up gauge\n");
  for (i = 0; i < n; i++) {
    put(&o, "mycelium_link_up{link=\"");
    put_label(&o, st[i].peer);
    put(&o, "\",dir=\"%s\"} %d\n", st[i].dir,
        strcmp(st[i].state, "up") == 0);
  }
  if (o.failed) {
    myc__free(o.a, o.p, o.cap);
    return NULL;
  }
  {
    char *exact = myc__malloc(o.a, o.len + 1);
    if (exact != NULL)
      memcpy(exact, o.p, o.len + 1);
    myc__free(o.a, o.p, o.cap);
    *len = o.len;
    return exact;
  }
}
