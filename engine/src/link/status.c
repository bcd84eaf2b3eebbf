/* status.c -- the links in `mycelium status` (text and --json). */
#include "link/link.h"

#include <stdarg.h>
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
          "\"frames_in\":%llu,\"frames_out\":%llu,\"bytes_in\":%llu,"
          "\"bytes_out\":%llu,\"queued\":%llu,\"queued_bytes\":%llu,"
          "\"pressure\":%.3f,"
          "\"dropped\":{\"queue_full\":%llu,\"disconnect\":%llu,"
          "\"shutdown\":%llu,\"v1_untyped\":%llu},\"unknown_types\":%llu,"
          "\"frame_errors\":%llu,\"reconnects\":%llu}",
          s->dir, s->state, s->version, s->patterns,
          (unsigned long long)s->frames_in, (unsigned long long)s->frames_out,
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
