/* wire.c -- fuzzes the link frame codec (link/wire.c): the TLV scanner
 * over a stream of frames, and each frame's decoder, with the invariants
 * the link relies on when they accept something. */
#include "link/wire.h"
#include "mycelium.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_msg(const myc__wire_tlv *t) {
  myc__wire_msg m;
  const char *why = NULL;
  if (myc__wire_msg_decode(t->body, t->len, &m, &why) != 0) {
    if (why == NULL || why[0] == '\0')
      abort();
    return;
  }
  /* Everything it points at lies inside the frame. */
  if (m.payload + m.payload_len > t->body + t->len ||
      (const uint8_t *)m.topic < t->body ||
      (const uint8_t *)m.source + m.source_len != t->body + t->len ||
      m.topic_len == 0 || m.source_len == 0 || m.topic[0] == '$')
    abort();
}

static void check_hello(const myc__wire_tlv *t) {
  myc__wire_hello h;
  const char *why = NULL;
  uint8_t out[MYC_WIRE_TLV + 64 * 1024 + 512];
  size_t n;
  if (myc__wire_hello_decode(t->body, t->len, &h, &why) != 0) {
    if (why == NULL || why[0] == '\0')
      abort();
    return;
  }
  /* What was accepted encodes back to the same bytes. */
  n = myc__wire_hello_encode(&h, out, sizeof out);
  if (n != MYC_WIRE_TLV + t->len ||
      memcmp(out + MYC_WIRE_TLV, t->body, t->len) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A copy of exactly 'size' bytes: ASan sees any read past the end. */
  uint8_t *p = malloc(size ? size : 1);
  size_t off = 0;
  if (p == NULL)
    return 0;
  memcpy(p, data, size);
  for (;;) {
    myc__wire_tlv t;
    int64_t n = myc__wire_next(p + off, size - off, 1 << 20, &t);
    if (n <= 0)
      break;
    if (t.type == MYC_WIRE_MSG)
      check_msg(&t);
    else if (t.type == MYC_WIRE_HELLO)
      check_hello(&t);
    else if (t.type == MYC_WIRE_SUB || t.type == MYC_WIRE_UNSUB) {
      const char *why = NULL;
      if (myc__wire_pattern_check(t.body, t.len, &why) != 0 && why == NULL)
        abort();
    }
    off += (size_t)n;
  }
  free(p);
  return 0;
}
