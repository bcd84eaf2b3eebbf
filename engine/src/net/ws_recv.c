/* ws_recv.c -- a WebSocket client's receiving half (see ws_recv.h).
 *
 * The parser walks the read in place.  A frame is read in two phases:
 * its header (gathered in 'hdr' only when a read ends inside it) and its
 * payload; a payload that is a whole message inside the read becomes a
 * part pointing at it, anything else is copied to 'bytes' as it comes.
 * Memory grows with the bytes that arrived, never with the length a
 * header announces.
 */
#include "net/ws_recv.h"

#include "base/utf8.h"
#include "mycelium.h"

#include <string.h>

/* A batch buffer holding more than this once read gives its memory back:
 * one huge message must not pin its size for the connection's life. */
#define BATCH_KEEP (1u << 20)

enum {
  OP_CONT = 0,
  OP_TEXT = 1,
  OP_BINARY = 2,
  OP_CLOSE = 8,
  OP_PING = 9,
  OP_PONG = 10
};

void myc__ws_recv_init(myc__ws_recv *r, const myc__alloc *a,
                       const myc__ws_recv_cbs *cb, void *ud) {
  memset(r, 0, sizeof *r);
  r->alloc = a;
  r->cb = cb;
  r->ud = ud;
}

void myc__ws_recv_reset(myc__ws_recv *r, uint64_t max_message) {
  r->max_message = max_message;
  r->closed = r->done = 0;
  r->hdr_len = 0;
  r->in_payload = 0;
  r->msg_op = 0;
  r->msg_len = 0;
  r->len = 0;
  r->n = r->assembled = 0;
}

void myc__ws_recv_free(myc__ws_recv *r) {
  myc__free(r->alloc, r->bytes, r->cap);
  myc__free(r->alloc, r->parts, r->pcap * sizeof *r->parts);
  r->bytes = NULL;
  r->parts = NULL;
  r->cap = r->pcap = 0;
}

/* ---- the batch ----------------------------------------------------------- */

static int add_part(myc__ws_recv *r, const uint8_t *p, size_t n, int binary) {
  myc_ws_part *q;
  if (r->n == r->pcap && myc__grow(r->alloc, (void **)&r->parts, &r->pcap,
                                   sizeof *r->parts, r->n + 1, 64) != 0)
    return MYC_ENOMEM;
  q = &r->parts[r->n++];
  q->p = (const char *)p;
  q->len = n;
  q->binary = binary;
  r->assembled += p == NULL;
  return 0;
}

static int append(myc__ws_recv *r, const uint8_t *p, size_t n) {
  size_t cap;
  char *q;
  if (r->cap - r->len < n) {
    cap = r->cap ? r->cap : 16384;
    while (cap - r->len < n)
      cap *= 2;
    if ((q = myc__realloc(r->alloc, r->bytes, r->cap, cap)) == NULL)
      return MYC_ENOMEM;
    r->bytes = q;
    r->cap = cap;
  }
  memcpy(r->bytes + r->len, p, n);
  r->len += n;
  return 0;
}

void myc__ws_recv_batch(myc__ws_recv *r, myc_ws_batch *b) {
  size_t off = 0;
  uint32_t i;
  /* Assembled messages get their addresses now that 'bytes' stays put. */
  for (i = 0; r->assembled > 0 && i < r->n; i++) {
    if (r->parts[i].p != NULL)
      continue;
    r->parts[i].p = r->bytes != NULL ? r->bytes + off : "";
    off += r->parts[i].len;
    r->assembled--;
  }
  b->count = r->n;
  b->parts = r->parts;
}

void myc__ws_recv_clear(myc__ws_recv *r) {
  /* A message in progress is always assembled, at the end of 'bytes'. */
  size_t keep = r->msg_op != 0 ? (size_t)r->msg_len : 0;
  r->n = r->assembled = 0;
  if (keep > 0 && r->len > keep)
    memmove(r->bytes, r->bytes + r->len - keep, keep);
  r->len = keep;
  if (keep == 0 && r->cap > BATCH_KEEP) {
    myc__free(r->alloc, r->bytes, r->cap);
    r->bytes = NULL;
    r->cap = 0;
  }
}

/* ---- frames -------------------------------------------------------------- */

/* Bytes of a header, from its first two.  A mask key is not counted (a
 * masked frame fails as soon as its length is known), nor the extended
 * length of a control frame (it cannot have one). */
static size_t header_size(const uint8_t *h) {
  uint8_t len = h[1] & 0x7f;
  if (len < 126 || (h[0] & 0x08))
    return 2;
  return len == 126 ? 4 : 10;
}

/* The next header: in place when the read holds all of it, else gathered
 * in 'hdr' across reads.  NULL while incomplete (then *sp == end). */
static const uint8_t *header(myc__ws_recv *r, const uint8_t **sp,
                             const uint8_t *end) {
  const uint8_t *s = *sp;
  size_t need, take;
  if (r->hdr_len == 0 && end - s >= 2 &&
      (size_t)(end - s) >= (need = header_size(s))) {
    *sp = s + need;
    return s;
  }
  need = r->hdr_len < 2 ? 2 : header_size(r->hdr);
  for (;;) {
    take = need - r->hdr_len;
    if (take > (size_t)(end - s))
      take = (size_t)(end - s);
    if (take > 0)
      memcpy(r->hdr + r->hdr_len, s, take);
    r->hdr_len += (uint8_t)take;
    s += take;
    if (r->hdr_len < need) {
      *sp = s;
      return NULL;
    }
    if (need != 2 || header_size(r->hdr) == 2)
      break;
    need = header_size(r->hdr);
  }
  *sp = s;
  r->hdr_len = 0;
  return r->hdr;
}

static int valid_close_code(int c) {
  return (c >= 1000 && c <= 1011 && c != 1004 && c != 1005 && c != 1006) ||
         (c >= 3000 && c <= 4999);
}

/* Checks a frame's header against what may come from a server now, and
 * starts reading its payload.  Returns 0 or the failure. */
static int start_frame(myc__ws_recv *r, const uint8_t *h) {
  int fin = h[0] >> 7, rsv = (h[0] >> 4) & 7, op = h[0] & 15;
  uint64_t len = h[1] & 0x7f;
  /* Length checks first: a header we cannot trust gets no close code. */
  if (op >= OP_CLOSE && (len > 125 || !fin))
    return MYC_WS_MALFORMED;
  if (len == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    if (len < 126)
      return MYC_WS_MALFORMED;
  } else if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; i++)
      len = len << 8 | h[i];
    if (len < 65536 || len >> 63)
      return MYC_WS_MALFORMED;
  }
  /* No extension is negotiated, and a server never masks. */
  if (rsv != 0 || (h[1] & 0x80))
    return 1002;
  switch (op) {
  case OP_CONT:
    if (r->msg_op == 0)
      return 1002; /* no message to continue */
    break;
  case OP_TEXT:
  case OP_BINARY:
    if (r->msg_op != 0)
      return 1002; /* the previous message is not finished */
    r->msg_op = op;
    r->msg_len = 0;
    r->utf8 = MYC_UTF8_START;
    break;
  case OP_CLOSE:
  case OP_PING:
  case OP_PONG:
    r->ctl_len = 0;
    break;
  default:
    return 1002;
  }
  /* Before anything is allocated for it. */
  if (op < OP_CLOSE && len > r->max_message - r->msg_len)
    return 1009;
  r->opcode = (uint8_t)op;
  r->fin = (uint8_t)fin;
  r->left = len;
  r->in_payload = 1;
  return 0;
}

/* A data frame's payload, or what the read holds of it. */
static int data_payload(myc__ws_recv *r, const uint8_t **sp,
                        const uint8_t *end) {
  const uint8_t *s = *sp;
  size_t take = (size_t)(end - s);
  if (take > r->left)
    take = (size_t)r->left;
  if (r->msg_op == OP_TEXT &&
      (r->utf8 = myc__utf8_check(r->utf8, s, s + take)) == MYC_UTF8_BAD)
    return 1007;
  if (take > 0 && append(r, s, take) != 0)
    return MYC_ENOMEM;
  *sp = s + take;
  r->msg_len += take;
  if ((r->left -= take) > 0)
    return 0;
  r->in_payload = 0;
  if (!r->fin)
    return 0;
  if (r->msg_op == OP_TEXT && r->utf8 != MYC_UTF8_START)
    return 1007; /* ends inside a character */
  if (add_part(r, NULL, (size_t)r->msg_len, r->msg_op == OP_BINARY) != 0)
    return MYC_ENOMEM;
  r->msg_op = 0;
  r->msg_len = 0;
  return 0;
}

static int close_frame(myc__ws_recv *r) {
  const uint8_t *c = (const uint8_t *)r->ctl;
  int code = 1005;
  if (r->ctl_len == 1)
    return 1002; /* half a code */
  if (r->ctl_len >= 2) {
    if (myc__utf8_check(MYC_UTF8_START, c + 2, c + r->ctl_len) !=
        MYC_UTF8_START)
      return 1007;
    code = c[0] << 8 | c[1];
    if (!valid_close_code(code))
      return 1002;
  }
  r->closed = r->done = 1;
  return r->cb->on_close(r->ud, code, r->ctl_len > 2 ? r->ctl + 2 : "",
                         r->ctl_len > 2 ? r->ctl_len - 2 : 0);
}

/* A control frame's payload, or what the read holds of it; the frame is
 * handled once complete. */
static int control_payload(myc__ws_recv *r, const uint8_t **sp,
                           const uint8_t *end) {
  size_t take = (size_t)(end - *sp);
  if (take > r->left)
    take = (size_t)r->left;
  memcpy(r->ctl + r->ctl_len, *sp, take);
  r->ctl_len += take;
  *sp += take;
  /* A close reason that cannot be UTF-8 fails as soon as it is seen, as
   * text does. */
  if (r->opcode == OP_CLOSE && r->ctl_len > 2 &&
      myc__utf8_check(MYC_UTF8_START, (const uint8_t *)r->ctl + 2,
                      (const uint8_t *)r->ctl + r->ctl_len) == MYC_UTF8_BAD)
    return 1007;
  if ((r->left -= take) > 0)
    return 0;
  r->in_payload = 0;
  if (r->opcode == OP_PING)
    return r->cb->on_ping(r->ud, r->ctl, r->ctl_len);
  if (r->opcode == OP_PONG)
    return r->cb->on_pong(r->ud, r->ctl, r->ctl_len);
  return close_frame(r);
}

static int fail(myc__ws_recv *r, int rc) {
  r->done = 1;
  return rc;
}

int myc__ws_recv_feed(myc__ws_recv *r, const char *p, size_t n) {
  const uint8_t *s = (const uint8_t *)p, *end = s + n, *h;
  size_t len;
  int rc;
  while (!r->done) {
    if (!r->in_payload) {
      if ((h = header(r, &s, end)) == NULL)
        return 0;
      if ((rc = start_frame(r, h)) != 0)
        return fail(r, rc);
      /* The common case: a whole message in this read, referenced where
       * it lies. */
      len = (size_t)r->left;
      if ((r->opcode == OP_TEXT || r->opcode == OP_BINARY) && r->fin &&
          r->left <= (uint64_t)(end - s)) {
        if (r->opcode == OP_TEXT &&
            myc__utf8_check(MYC_UTF8_START, s, s + len) != MYC_UTF8_START)
          return fail(r, 1007);
        if (add_part(r, s, len, r->opcode == OP_BINARY) != 0)
          return fail(r, MYC_ENOMEM);
        s += len;
        r->in_payload = 0;
        r->msg_op = 0;
        continue;
      }
    }
    rc = r->opcode >= OP_CLOSE ? control_payload(r, &s, end)
                               : data_payload(r, &s, end);
    if (rc != 0)
      return fail(r, rc);
    if (r->in_payload)
      return 0; /* the frame goes on in the next read */
  }
  return 0;
}
