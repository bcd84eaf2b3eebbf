/* ws.c -- fuzzes what a WebSocket server sends a client: the reply to the
 * upgrade (net/http_msg.c, then myc__ws_check_reply of ws_handshake.c
 * against a fixed key), then frames, read by wslay configured as net/ws.c
 * configures it (client context, max_message).  The first input byte
 * picks whether the frames come after a head or alone, so that frame
 * mutations need not keep a valid accept value.  ws.c's own callbacks are
 * static; their part (copying a message out, the close reason) is the
 * on_msg below, checked against the same bounds. */
#include "net/ws_handshake.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define KEY "dGhlIHNhbXBsZSBub25jZQ==" /* RFC 6455's example key */
#define MAX_MESSAGE 65536

typedef struct {
  const uint8_t *in;
  size_t len;
} feed;

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *ud) {
  feed *f = ud;
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
  char reason[124];
  size_t n;
  (void)ctx, (void)ud;
  if ((m->opcode == WSLAY_TEXT_FRAME || m->opcode == WSLAY_BINARY_FRAME) &&
      m->msg_length > MAX_MESSAGE)
    abort(); /* max_message is what bounds a service's memory */
  if (m->opcode == WSLAY_CONNECTION_CLOSE) {
    n = m->msg_length > 2 ? m->msg_length - 2 : 0;
    if (n >= sizeof reason)
      n = sizeof reason - 1;
    memcpy(reason, m->msg_length > 2 ? (const char *)m->msg + 2 : "", n);
    reason[n] = '\0';
  } else if (m->msg_length > 0) {
    volatile uint8_t last = m->msg[m->msg_length - 1]; /* readable */
    (void)last;
  }
}

static const struct wslay_event_callbacks cbs = {
    on_recv, on_send, on_mask, NULL, NULL, NULL, on_msg};

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wslay_event_context_ptr ctx;
  feed f;
  long used = 0;
  int round;
  if (size < 1)
    return 0;
  f.in = data + 1;
  f.len = size - 1;
  if (data[0] & 1) {
    used = upgrade(f.in, f.len);
    if (used < 0)
      return 0;
    f.in += used;
    f.len -= (size_t)used;
  }
  if (wslay_event_context_client_init(&ctx, &cbs, &f) != 0)
    return 0;
  wslay_event_config_set_max_recv_msg_length(ctx, MAX_MESSAGE);
  /* As ws.c: read what came, answer (pongs, close), until it stops. */
  for (round = 0; round < 4 && f.len > 0; round++) {
    if (wslay_event_recv(ctx) != 0 || !wslay_event_get_read_enabled(ctx))
      break;
    (void)wslay_event_send(ctx);
  }
  wslay_event_context_free(ctx);
  return 0;
}
