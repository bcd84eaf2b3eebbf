/* ws.c -- fuzzes what a WebSocket server sends a client: the reply to the
 * upgrade (net/http_msg.c, then myc__ws_check_reply of ws_handshake.c
 * against a fixed key), then frames, read by net/ws_recv.c in reads cut
 * where the input says, and compared with wslay's buffered receive on the
 * same bytes: the same messages, control frames and close, and the same
 * failure code.  The first input byte picks whether the frames come after
 * a head or alone (so that frame mutations need not keep a valid accept
 * value) and how the reads are cut.  Each read is a fresh allocation
 * freed after its batch, so ASan sees a message that outlives its read.
 *
 * Known differences, allowed here: a close frame with a 1-byte payload is
 * a protocol error for ws_recv (RFC 6455 5.5.1), "no code" for wslay; and
 * ws_recv checks a header as soon as its length is known, where wslay
 * waits for the mask key and a first payload byte (checked by giving
 * wslay five zero bytes more). */
#include "net/ws_handshake.h"
#include "net/ws_recv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ==" /* RFC 6455's example key */
#define MAX_MESSAGE 65536
/* wslay checks a close reason's UTF-8 per 4 KiB chunk of its input
 * buffer and misses a character cut there: stay below one chunk. */
#define MAX_FRAMES 4000

typedef struct {
  char *p;
  size_t len, cap;
} text;

static void add(text *t, const char *head, const void *p, size_t n) {
  size_t h = strlen(head);
  if (t->len + h + n + 1 > t->cap) {
    t->cap = (t->len + h + n + 1) * 2;
    t->p = realloc(t->p, t->cap);
    if (t->p == NULL)
      abort();
  }
  memcpy(t->p + t->len, head, h);
  if (n > 0)
    memcpy(t->p + t->len + h, p, n);
  t->len += h + n;
  t->p[t->len++] = '|';
}

static void add_num(text *t, const char *what, long v, const void *p,
                    size_t n) {
  char head[48];
  snprintf(head, sizeof head, "%s%ld:", what, v);
  add(t, head, p, n);
}

/* ---- the reference: wslay's buffered receive ----------------------------- */

typedef struct {
  const uint8_t *in;
  size_t len;
  text log;
  int odd_close; /* a 1-byte close payload came */
} ref;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *ud) {
  ref *f = ud;
  (void)flags;
  if (f->len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > f->len)
    len = f->len;
  memcpy(buf, f->in, len);
  f->in += len;
  f->len -= len;
  return (ssize_t)len;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *p,
                       size_t len, int flags, void *ud) {
  (void)ctx, (void)p, (void)flags, (void)ud;
  return (ssize_t)len;
}

static int on_mask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                   void *ud) {
  (void)ctx, (void)ud;
  memset(buf, 0x5a, len);
  return 0;
}

static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *m, void *ud) {
  ref *f = ud;
  (void)ctx;
  if (f->odd_close)
    return;
  switch (m->opcode) {
  case WSLAY_TEXT_FRAME:
  case WSLAY_BINARY_FRAME:
    add_num(&f->log, m->opcode == WSLAY_TEXT_FRAME ? "T" : "B",
            (long)m->msg_length, m->msg, m->msg_length);
    break;
  case WSLAY_PING:
  case WSLAY_PONG:
    add(&f->log, m->opcode == WSLAY_PING ? "ping:" : "pong:", m->msg,
        m->msg_length);
    break;
  case WSLAY_CONNECTION_CLOSE:
    if (m->msg_length == 1) {
      f->odd_close = 1;
      add_num(&f->log, "fail", 1002, NULL, 0);
      break;
    }
    add_num(&f->log, "close", m->status_code ? m->status_code : 1005,
            m->msg_length > 2 ? m->msg + 2 : NULL,
            m->msg_length > 2 ? m->msg_length - 2 : 0);
    break;
  default:
    break;
  }
}

static const struct wslay_event_callbacks cbs = {
    on_recv, on_send, on_mask, NULL, NULL, NULL, on_msg};

static void run_wslay(ref *f, const uint8_t *p, size_t n) {
  wslay_event_context_ptr ctx;
  memset(f, 0, sizeof *f);
  f->in = p;
  f->len = n;
  if (wslay_event_context_client_init(&ctx, &cbs, f) != 0)
    abort();
  wslay_event_config_set_max_recv_msg_length(ctx, MAX_MESSAGE);
  (void)wslay_event_recv(ctx);
  (void)wslay_event_send(ctx); /* sets the code of its close frame */
  if (!f->odd_close && !wslay_event_get_read_enabled(ctx) &&
      !wslay_event_get_close_received(ctx))
    add_num(&f->log, "fail", wslay_event_get_status_code_sent(ctx), NULL, 0);
  wslay_event_context_free(ctx);
}

/* ---- ws_recv, in reads --------------------------------------------------- */

typedef struct {
  myc__ws_recv r;
  text log;
  const char *read;
  size_t read_len;
} ours;

static void take_batch(ours *o) {
  myc_ws_batch b;
  uint32_t i;
  if (o->r.n == 0)
    return;
  myc__ws_recv_batch(&o->r, &b);
  for (i = 0; i < b.count; i++) {
    const myc_ws_part *m = &b.parts[i];
    if (m->len > MAX_MESSAGE)
      abort(); /* max_message is what bounds a service's memory */
    add_num(&o->log, m->binary ? "B" : "T", (long)m->len, m->p, m->len);
  }
  myc__ws_recv_clear(&o->r);
}

static int on_ping(void *ud, const char *p, size_t n) {
  take_batch(ud);
  add(&((ours *)ud)->log, "ping:", p, n);
  return 0;
}

static int on_pong(void *ud, const char *p, size_t n) {
  take_batch(ud);
  add(&((ours *)ud)->log, "pong:", p, n);
  return 0;
}

static int on_close(void *ud, int code, const char *reason, size_t n) {
  take_batch(ud);
  add_num(&((ours *)ud)->log, "close", code, reason, n);
  return 0;
}

static const myc__ws_recv_cbs rx_cbs = {on_ping, on_pong, on_close};

static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static void run_ours(text *log, const uint8_t *p, size_t n, unsigned cut) {
  static const myc__alloc a = {fuzz_alloc, NULL};
  ours o;
  size_t off = 0, len;
  uint32_t seed = cut * 2654435761u + 1;
  int rc = 0;
  memset(&o, 0, sizeof o);
  myc__ws_recv_init(&o.r, &a, &rx_cbs, &o);
  myc__ws_recv_reset(&o.r, MAX_MESSAGE);
  while (off < n && rc == 0) {
    /* cut 0: one read; else reads of 1 to 2^(cut % 8) bytes. */
    seed = seed * 1103515245u + 12345u;
    len = cut == 0 ? n - off : 1 + (seed >> 8) % (1u << (cut % 8));
    if (len > n - off)
      len = n - off;
    char *copy = malloc(len);
    memcpy(copy, p + off, len);
    rc = myc__ws_recv_feed(&o.r, copy, len);
    take_batch(&o);
    free(copy);
    off += len;
  }
  if (rc < 0)
    abort(); /* no allocation fails here */
  if (rc > 0)
    add_num(&o.log, "fail", rc, NULL, 0);
  myc__ws_recv_free(&o.r);
  *log = o.log;
}

/* ---- the upgrade --------------------------------------------------------- */

static int on_head_done(http_parser *p) {
  myc__http_msg_of(p)->complete = 1;
  return 2;
}

/* The upgrade reply: returns the bytes it used, or -1 if refused. */
static long upgrade(const uint8_t *p, size_t n) {
  static myc__http_msg m;
  http_parser_settings s;
  char err[300];
  size_t used;
  myc__http_msg_init(&m, HTTP_RESPONSE, NULL);
  myc__http_msg_settings(&s);
  s.on_headers_complete = on_head_done;
  used = http_parser_execute(&m.parser, &s, (const char *)p, n);
  if (!m.complete)
    return -1;
  if (myc__ws_check_reply(&m, KEY, NULL, err, sizeof err) != 0) {
    if (err[0] == '\0')
      abort(); /* refused without a reason */
    return -1;
  }
  return (long)used;
}

static int same(const text *a, const text *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *in;
  size_t len;
  long used = 0;
  ref f;
  text mine;
  if (size < 1)
    return 0;
  in = data + 1;
  len = size - 1;
  if (data[0] & 1) {
    used = upgrade(in, len);
    if (used < 0)
      return 0;
    in += used;
    len -= (size_t)used;
  }
  if (len > MAX_FRAMES)
    return 0;
  run_wslay(&f, in, len);
  run_ours(&mine, in, len, data[0] >> 1);
  if (!same(&mine, &f.log)) {
    /* Ours may have failed on a header wslay has not checked yet: it
     * wants the mask key and a first payload byte first. */
    uint8_t *more = calloc(len + 5, 1);
    memcpy(more, in, len);
    free(f.log.p);
    run_wslay(&f, more, len + 5);
    free(more);
    if (!same(&mine, &f.log) || mine.len < 10 ||
        memcmp(mine.p + mine.len - 10, "fail", 4) != 0) {
      fprintf(stderr, "ws_recv: %.*s\nwslay:   %.*s\n", (int)mine.len, mine.p,
              (int)f.log.len, f.log.p);
      abort();
    }
  }
  free(f.log.p);
  free(mine.p);
  return 0;
}
