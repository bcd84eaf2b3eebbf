/* log.c -- log record formatting and sinks (see log.h).  A record is
 * formatted into one buffer and written with one call, so lines from
 * different workers never interleave. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *level_name[] = {"debug", "info", "warn", "error"};
static const char *level_upper[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

int myc__log_init(myc__log *l, const myc__alloc *a, const myc_engine_config *c,
                  const char *node) {
  memset(l, 0, sizeof *l);
  l->alloc = a;
  l->fn = c->log_fn;
  l->ud = c->log_ud;
  l->level = c->log_level;
  l->format = c->log_format;
  l->node = node;
  return 0;
}

void myc__log_destroy(myc__log *l) { l->alloc = NULL; }

void myc__hex(char *dst, const uint8_t *src, size_t n) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    dst[2 * i] = digits[src[i] >> 4];
    dst[2 * i + 1] = digits[src[i] & 15];
  }
}

typedef struct {
  char *p;
  size_t len, cap;
  char small[1024];
  const myc__alloc *alloc;
} outbuf;

static int out_reserve(outbuf *o, size_t n) {
  char *p;
  size_t cap;
  if (o->len + n <= o->cap)
    return 0;
  cap = 2 * (o->len + n);
  p = myc__malloc(o->alloc, cap);
  if (p == NULL)
    return -1;
  memcpy(p, o->p, o->len);
  if (o->p != o->small)
    myc__free(o->alloc, o->p, o->cap);
  o->p = p;
  o->cap = cap;
  return 0;
}

static void out_put(outbuf *o, const char *s, size_t n) {
  if (out_reserve(o, n) == 0) {
    memcpy(o->p + o->len, s, n);
    o->len += n;
  }
}

static void out_str(outbuf *o, const char *s) { out_put(o, s, strlen(s)); }

/* Appends 's' as a JSON string body (no quotes). */
static void out_json(outbuf *o, const char *s, size_t n) {
  size_t i;
  char esc[8];
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      out_put(o, esc, 2);
    } else if (c == '\n') {
      out_put(o, "\\n", 2);
    } else if (c == '\t') {
      out_put(o, "\\t", 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      out_put(o, esc, 6);
    } else {
      out_put(o, (const char *)&s[i], 1);
    }
  }
}

/* The escape of byte 'c' in a text line into 'esc' (at most 4 bytes), and
 * its length; 0 when 'c' is written as it is.  Control characters are
 * escaped: a newline would start a forged record, a NUL cuts the line
 * for many readers. */
static size_t text_escape(unsigned char c, char *esc) {
  if (c >= 0x20 && c != 0x7f)
    return 0;
  esc[0] = '\\';
  if (c == '\n' || c == '\r' || c == '\t') {
    esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    return 2;
  }
  esc[1] = 'x';
  myc__hex(esc + 2, &c, 1);
  return 4;
}

/* Appends 's' for a text line, control characters escaped. */
static void out_text(outbuf *o, const char *s, size_t n) {
  size_t i, run = 0, k;
  char esc[4];
  for (i = 0; i < n; i++) {
    if ((k = text_escape((unsigned char)s[i], esc)) == 0)
      continue;
    out_put(o, s + run, i - run);
    out_put(o, esc, k);
    run = i + 1;
  }
  out_put(o, s + run, n - run);
}

void myc__log_quote(char *dst, size_t cap, const char *s, size_t n) {
  size_t i, used = 0, k, total = 0;
  char esc[4];
  if (cap < 4) {
    if (cap > 0)
      dst[0] = '\0';
    return;
  }
  for (i = 0; i < n; i++) {
    k = text_escape((unsigned char)s[i], esc);
    total += k ? k : 1;
  }
  for (i = 0; i < n; i++) {
    k = text_escape((unsigned char)s[i], esc);
    if (k == 0) {
      esc[0] = s[i];
      k = 1;
    }
    /* Cut: keep room for "..." and the NUL. */
    if (total >= cap && used + k + 3 >= cap) {
      memcpy(dst + used, "...", 3);
      used += 3;
      break;
    }
    memcpy(dst + used, esc, k);
    used += k;
  }
  dst[used] = '\0';
}

static void out_time(outbuf *o, int64_t ts_ns) {
  char tmp[64];
  struct tm tm;
  time_t secs = (time_t)(ts_ns / 1000000000);
  gmtime_r(&secs, &tm);
  strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
  out_str(o, tmp);
  snprintf(tmp, sizeof tmp, ".%06ldZ", (long)(ts_ns % 1000000000 / 1000));
  out_str(o, tmp);
}

static void format_json(outbuf *o, const myc__log *l, int level, int64_t ts,
                        const char *svc, size_t svc_len, const char *trace,
                        const char *span, const char *msg, size_t msg_len,
                        const char *extra, size_t extra_len) {
  out_str(o, "{\"ts\":\"");
  out_time(o, ts);
  out_str(o, "\",\"level\":\"");
  out_str(o, level_name[level]);
  out_str(o, "\",\"node\":\"");
  out_json(o, l->node, strlen(l->node));
  out_str(o, "\"");
  if (svc != NULL) {
    out_str(o, ",\"service\":\"");
    out_json(o, svc, svc_len);
    out_str(o, "\"");
  }
  out_str(o, ",\"msg\":\"");
  out_json(o, msg, msg_len);
  out_str(o, "\"");
  if (trace != NULL) {
    out_str(o, ",\"trace_id\":\"");
    out_put(o, trace, 32);
    out_str(o, "\",\"span_id\":\"");
    out_put(o, span, 16);
    out_str(o, "\"");
  }
  if (extra_len > 0) {
    out_str(o, ",");
    out_put(o, extra, extra_len);
  }
  out_str(o, "}");
}

static void format_text(outbuf *o, int level, int64_t ts, const char *svc,
                        size_t svc_len, const char *trace, const char *span,
                        const char *msg, size_t msg_len, const char *extra,
                        size_t extra_len) {
  out_time(o, ts);
  out_str(o, " ");
  out_str(o, level_upper[level]);
  out_str(o, " ");
  if (svc != NULL) {
    out_str(o, "[");
    out_text(o, svc, svc_len);
    out_str(o, "] ");
  }
  out_text(o, msg, msg_len);
  if (extra_len > 0) {
    out_str(o, " ");
    out_text(o, extra, extra_len);
  }
  if (trace != NULL) {
    out_str(o, " trace_id=");
    out_put(o, trace, 32);
    out_str(o, " span_id=");
    out_put(o, span, 16);
  }
}

static void emit_line(myc__log *l, int level, const char *line, size_t len) {
  if (l->fn != NULL) {
    l->fn(l->ud, level, line, len);
  } else {
    /* One write per line keeps concurrent lines whole. */
    ssize_t rc = write(STDERR_FILENO, line, len + 1);
    (void)rc;
  }
}

void myc__log_write(myc__log *l, int level, int64_t ts_ns,
                    const char *service, size_t service_len,
                    const uint8_t *trace, const uint8_t *span,
                    const char *msg, size_t msg_len, const char *extra,
                    size_t extra_len) {
  outbuf o;
  char th[32], sh[16];

  if (level < l->level || level < 0 || level > MYC_LOG_ERROR)
    return;
  o.p = o.small;
  o.len = 0;
  o.cap = sizeof o.small;
  o.alloc = l->alloc;
  if (trace != NULL) {
    myc__hex(th, trace, 16);
    myc__hex(sh, span, 8);
  }
  if (l->format == MYC_LOG_JSON)
    format_json(&o, l, level, ts_ns, service, service_len,
                trace ? th : NULL, sh, msg, msg_len, extra, extra_len);
  else
    format_text(&o, level, ts_ns, service, service_len, trace ? th : NULL, sh,
                msg, msg_len, extra, extra_len);
  out_put(&o, "\n", 1);
  emit_line(l, level, o.p, o.len - 1);
  if (o.p != o.small)
    myc__free(l->alloc, o.p, o.cap);
}

void myc__log_write_kv(myc__log *l, int level, int64_t ts_ns,
                       const char *service, size_t service_len,
                       const uint8_t *trace, const uint8_t *span,
                       const char *msg, int n, const char *const *keys,
                       const char *const *vals) {
  outbuf o;
  int i;
  if (level < l->level)
    return;
  o.p = o.small;
  o.len = 0;
  o.cap = sizeof o.small;
  o.alloc = l->alloc;
  for (i = 0; i < n; i++) {
    if (i > 0)
      out_str(&o, l->format == MYC_LOG_JSON ? "," : " ");
    if (l->format == MYC_LOG_JSON) {
      out_str(&o, "\"");
      out_json(&o, keys[i], strlen(keys[i]));
      out_str(&o, "\":\"");
      out_json(&o, vals[i], strlen(vals[i]));
      out_str(&o, "\"");
    } else {
      out_str(&o, keys[i]);
      out_str(&o, "=");
      out_str(&o, vals[i]);
    }
  }
  myc__log_write(l, level, ts_ns, service, service_len, trace, span, msg,
                 strlen(msg), o.p, o.len);
  if (o.p != o.small)
    myc__free(l->alloc, o.p, o.cap);
}
