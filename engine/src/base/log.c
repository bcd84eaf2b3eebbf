/* log.c -- log record formatting and sinks (see log.h).  A record is
 * formatted into one buffer and handed over whole (to the host's callback
 * or to the log thread's buffer), so lines from different workers never
 * interleave. */
#include "base/log.h"
#include "base/clock.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The bytes waiting for stderr: a circular buffer filled by the threads
 * that log (under 'lock', a copy) and emptied by the log thread, which
 * writes without the lock.  Appending under one lock keeps each thread's
 * order. */
struct myc__log_ring {
  uv_mutex_t lock;
  uv_cond_t wake;
  uv_thread_t thread;
  char *buf;
  size_t cap, head, len;
  uint64_t pending; /* dropped since the last "dropped" line */
  int sleeping, stop;
  int64_t deadline; /* monotonic; with 'stop' */
  int pollable;     /* a pipe, socket or terminal: may block */
  myc__log *log;
};

static const char *level_name[] = {"debug", "info", "warn", "error"};
static const char *level_upper[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

/* Writes 'n' bytes to stderr; returns how many were taken, 0 when it
 * would block past the shutdown deadline (or stderr is gone).  A pipe is
 * written after poll() says it has room, at most PIPE_BUF bytes at a
 * time, so that a reader that stalls holds this thread in poll(), where
 * the shutdown deadline is seen, never in write(). */
static size_t ring_out(myc__log_ring *r, const char *p, size_t n) {
  ssize_t w;
  for (;;) {
    if (r->pollable) {
      struct pollfd pf = {STDERR_FILENO, POLLOUT, 0};
      int rc = poll(&pf, 1, 50);
      if (rc == 0 || (rc < 0 && errno == EINTR)) {
        int past;
        uv_mutex_lock(&r->lock);
        past = r->stop && myc__mono_ns() > r->deadline;
        uv_mutex_unlock(&r->lock);
        if (past)
          return 0;
        continue;
      }
      if (rc < 0 || (pf.revents & (POLLERR | POLLNVAL)))
        return 0;
      if (n > PIPE_BUF)
        n = PIPE_BUF;
    }
    w = write(STDERR_FILENO, p, n);
    if (w > 0)
      return (size_t)w;
    if (w < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    return 0;
  }
}

static int ring_out_all(myc__log_ring *r, const char *p, size_t n) {
  while (n > 0) {
    size_t w = ring_out(r, p, n);
    if (w == 0)
      return -1;
    p += w;
    n -= w;
  }
  return 0;
}

static void ring_main(void *arg) {
  myc__log_ring *r = arg;
  int gone = 0; /* stderr failed or shutdown timed out: discard */
  uv_mutex_lock(&r->lock);
  for (;;) {
    size_t n;
    uint64_t lost;
    if (r->len == 0 && r->pending == 0) {
      myc__log *l = r->log;
      if (r->stop)
        break;
      if (atomic_load_explicit(&l->nheld, memory_order_relaxed) > 0 &&
          l->clock != NULL) {
        /* A service went quiet while over its rate: its summary line
         * comes once it has a token again, checked every so often. */
        uv_mutex_unlock(&r->lock);
        myc__log_flush_held(l, myc__clock_now(l->clock), 0);
        uv_mutex_lock(&r->lock);
        if (r->len > 0 || r->stop)
          continue;
        if (atomic_load_explicit(&l->nheld, memory_order_relaxed) > 0) {
          r->sleeping = 1;
          uv_cond_timedwait(&r->wake, &r->lock, MYC_LOG_HELD_POLL_NS);
          r->sleeping = 0;
          continue;
        }
      }
      r->sleeping = 1;
      uv_cond_wait(&r->wake, &r->lock);
      r->sleeping = 0;
      continue;
    }
    if (r->len == 0) {
      /* Everything before the losses is out: say so now, once. */
      char line[128];
      int k;
      lost = r->pending;
      r->pending = 0;
      uv_mutex_unlock(&r->lock);
      k = snprintf(line, sizeof line,
                   "%" PRIu64 " log records dropped (log output not keeping "
                   "up)\n",
                   lost);
      if (!gone && ring_out_all(r, line, (size_t)k) != 0)
        gone = 1;
      uv_mutex_lock(&r->lock);
      continue;
    }
    n = r->cap - r->head < r->len ? r->cap - r->head : r->len;
    uv_mutex_unlock(&r->lock);
    if (!gone) {
      n = ring_out(r, r->buf + r->head, n);
      if (n == 0)
        gone = 1;
    }
    uv_mutex_lock(&r->lock);
    if (gone) {
      /* Past the deadline, or stderr is gone: what is left is lost. */
      uint64_t lines = 0;
      size_t k;
      for (k = 0; k < r->len; k++)
        lines += r->buf[(r->head + k) % r->cap] == '\n';
      atomic_fetch_add(&r->log->dropped, lines);
      r->head = r->len = 0;
      r->pending = 0;
      if (r->stop)
        break;
      continue;
    }
    r->head = (r->head + n) % r->cap;
    r->len -= n;
  }
  uv_mutex_unlock(&r->lock);
}

static int ring_start(myc__log *l) {
  myc__log_ring *r = myc__calloc(l->alloc, sizeof *r);
  struct stat st;
  if (r == NULL)
    return -1;
  r->cap = MYC_LOG_BUFFER;
  r->buf = myc__malloc(l->alloc, r->cap);
  r->log = l;
  r->pollable = fstat(STDERR_FILENO, &st) != 0 || !S_ISREG(st.st_mode);
  if (r->buf == NULL || uv_mutex_init(&r->lock) != 0) {
    myc__free(l->alloc, r->buf, r->buf ? r->cap : 0);
    myc__free(l->alloc, r, sizeof *r);
    return -1;
  }
  uv_cond_init(&r->wake);
  if (uv_thread_create(&r->thread, ring_main, r) != 0) {
    uv_cond_destroy(&r->wake);
    uv_mutex_destroy(&r->lock);
    myc__free(l->alloc, r->buf, r->cap);
    myc__free(l->alloc, r, sizeof *r);
    return -1;
  }
  l->ring = r;
  return 0;
}

/* Copies one line into the buffer, or counts it dropped when it does not
 * fit: never waits for the log thread. */
static void ring_put(myc__log_ring *r, const char *p, size_t n) {
  size_t tail, first;
  uv_mutex_lock(&r->lock);
  if (r->cap - r->len < n) {
    r->pending++;
    uv_mutex_unlock(&r->lock);
    atomic_fetch_add_explicit(&r->log->dropped, 1, memory_order_relaxed);
    return;
  }
  tail = (r->head + r->len) % r->cap;
  first = r->cap - tail < n ? r->cap - tail : n;
  memcpy(r->buf + tail, p, first);
  memcpy(r->buf, p + first, n - first);
  r->len += n;
  if (r->sleeping)
    uv_cond_signal(&r->wake);
  uv_mutex_unlock(&r->lock);
}

int myc__log_init(myc__log *l, const myc__alloc *a, const myc_engine_config *c,
                  const char *node, const myc__clock *clock) {
  memset(l, 0, sizeof *l);
  l->alloc = a;
  l->clock = clock; /* before the log thread starts, which reads it */
  l->fn = c->log_fn;
  l->ud = c->log_ud;
  l->level = c->log_level;
  l->format = c->log_format;
  l->node = node;
  l->rate = c->log_rate != 0 ? c->log_rate : MYC_DEFAULT_LOG_RATE;
  l->burst = c->log_burst != 0 ? c->log_burst : MYC_DEFAULT_LOG_BURST;
  if (uv_mutex_init(&l->held_lock) != 0) {
    l->alloc = NULL; /* nothing for myc__log_destroy */
    return -1;
  }
  /* A manual engine runs no threads of its own: it writes in place. */
  if (l->fn == NULL && !c->manual && ring_start(l) != 0) {
    uv_mutex_destroy(&l->held_lock);
    return -1;
  }
  return 0;
}

void myc__log_destroy(myc__log *l) {
  myc__log_ring *r = l->ring;
  if (r != NULL) {
    uv_mutex_lock(&r->lock);
    r->stop = 1;
    r->deadline = myc__mono_ns() + (int64_t)MYC_LOG_FLUSH_MS * 1000000;
    uv_cond_signal(&r->wake);
    uv_mutex_unlock(&r->lock);
    uv_thread_join(&r->thread);
    uv_cond_destroy(&r->wake);
    uv_mutex_destroy(&r->lock);
    myc__free(l->alloc, r->buf, r->cap);
    myc__free(l->alloc, r, sizeof *r);
    l->ring = NULL;
  }
  if (l->alloc != NULL)
    uv_mutex_destroy(&l->held_lock);
  l->alloc = NULL;
}

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
  } else if (l->ring != NULL) {
    ring_put(l->ring, line, len + 1);
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

/* The bucket's rate and burst: its own, else the log's. */
static double rate_of(const myc__log *l, const myc__log_bucket *b) {
  return b->rate != 0 ? b->rate : l->rate;
}

static double burst_of(const myc__log *l, const myc__log_bucket *b) {
  return b->burst != 0 ? b->burst : l->burst;
}

/* The line that says how many records 'b' suppressed. */
static void summary(myc__log *l, const myc__log_bucket *b, uint64_t held,
                    int64_t now_ns, const char *service, size_t service_len) {
  char line[200];
  snprintf(line, sizeof line,
           "%" PRIu64 " log records of this service suppressed (over its "
           "log rate of %g records/s, burst %g)",
           held, rate_of(l, b), burst_of(l, b));
  myc__log_write(l, MYC_LOG_WARN, now_ns, service, service_len, NULL, NULL,
                 line, strlen(line), NULL, 0);
}

/* Puts 'b' on the list of buckets holding records: its summary is due
 * when a token has come back. */
static void hold(myc__log *l, myc__log_bucket *b, int64_t now_ns,
                 double rate) {
  uv_mutex_lock(&l->held_lock);
  if (!b->listed) {
    b->listed = 1;
    b->due_ns = now_ns + (int64_t)((1 - b->tokens) / rate * 1e9) + 1;
    b->next_held = l->held_list;
    l->held_list = b;
    atomic_fetch_add_explicit(&l->nheld, 1, memory_order_relaxed);
  }
  uv_mutex_unlock(&l->held_lock);
  /* The log thread sleeps without a timeout while nothing is held. */
  if (l->ring != NULL) {
    uv_mutex_lock(&l->ring->lock);
    if (l->ring->sleeping)
      uv_cond_signal(&l->ring->wake);
    uv_mutex_unlock(&l->ring->lock);
  }
}

int myc__log_admit(myc__log *l, myc__log_bucket *b, int level, int64_t now_ns,
                   const char *service, size_t service_len) {
  double rate = rate_of(l, b), burst = burst_of(l, b);
  uint64_t held;
  if (level < l->level)
    return 0;
  if (rate <= 0)
    return 1;
  if (b->last_ns == 0) {
    b->tokens = burst;
  } else if (now_ns > b->last_ns) {
    b->tokens += (double)(now_ns - b->last_ns) * 1e-9 * rate;
    if (b->tokens > burst)
      b->tokens = burst;
  }
  if (now_ns > b->last_ns || b->last_ns == 0)
    b->last_ns = now_ns;
  if (b->tokens < 1) {
    if (atomic_fetch_add_explicit(&b->held, 1, memory_order_relaxed) == 0)
      hold(l, b, now_ns, rate);
    atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->suppressed, 1, memory_order_relaxed);
    return 0;
  }
  b->tokens -= 1;
  /* Taken with an exchange: myc__log_flush_held may sum them up at the
   * same time, and each record is counted in one line only. */
  if (atomic_load_explicit(&b->held, memory_order_relaxed) > 0 &&
      (held = atomic_exchange_explicit(&b->held, 0, memory_order_relaxed)) > 0)
    summary(l, b, held, now_ns, service, service_len);
  return 1;
}

void myc__log_flush_held(myc__log *l, int64_t now_ns, int all) {
  myc__log_bucket **at;
  if (atomic_load_explicit(&l->nheld, memory_order_relaxed) == 0)
    return;
  uv_mutex_lock(&l->held_lock);
  at = &l->held_list;
  while (*at != NULL) {
    myc__log_bucket *b = *at;
    uint64_t held;
    if (!all && b->due_ns > now_ns) {
      at = &b->next_held;
      continue;
    }
    *at = b->next_held;
    b->listed = 0;
    atomic_fetch_sub_explicit(&l->nheld, 1, memory_order_relaxed);
    /* Written under the lock: myc__log_bucket_done waits for it, so the
     * service's name is still there. */
    if ((held = atomic_exchange_explicit(&b->held, 0, memory_order_relaxed)) >
        0)
      summary(l, b, held, now_ns, b->service, b->service_len);
  }
  uv_mutex_unlock(&l->held_lock);
}

void myc__log_bucket_done(myc__log *l, myc__log_bucket *b, int64_t now_ns) {
  myc__log_bucket **at;
  uint64_t held;
  uv_mutex_lock(&l->held_lock);
  for (at = &l->held_list; *at != NULL; at = &(*at)->next_held)
    if (*at == b) {
      *at = b->next_held;
      b->listed = 0;
      atomic_fetch_sub_explicit(&l->nheld, 1, memory_order_relaxed);
      break;
    }
  if ((held = atomic_exchange_explicit(&b->held, 0, memory_order_relaxed)) > 0)
    summary(l, b, held, now_ns, b->service, b->service_len);
  uv_mutex_unlock(&l->held_lock);
}
