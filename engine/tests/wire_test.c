/* wire_test.c -- the link frame codec (link/wire.c): TLV framing, v2
 * messages written in place in engine buffers, the handshake, and the
 * byte-by-byte examples of docs/WIRE.md. */
#include "test.h"

#include "base/alloc.h"
#include "core/topic.h"
#include "link/wire.h"
#include "runtime/emit.h"
#include "mycelium.h"

#include <stdlib.h>

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (*hex != '\0' && n < cap) {
    unsigned v;
    if (*hex == ' ' || *hex == '\n') {
      hex++;
      continue;
    }
    if (sscanf(hex, "%2x", &v) != 1)
      abort();
    out[n++] = (uint8_t)v;
    hex += 2;
  }
  return n;
}

/* docs/WIRE.md, "v1 frame": a Rust Mycelium message of type 42. */
static const char *V1_EXAMPLE = "2a00 04000000 01020304";

static void tlv_needs_the_whole_frame_and_refuses_oversize_early(void) {
  uint8_t f[16];
  myc__wire_tlv t;
  size_t n = unhex(V1_EXAMPLE, f, sizeof f);
  size_t i;
  CHECK_EQ(n, 10);
  for (i = 0; i < n; i++)
    CHECK_EQ(myc__wire_next(f, i, 1024, &t), 0);
  CHECK_EQ(myc__wire_next(f, n, 1024, &t), 10);
  CHECK_EQ(t.type, 42);
  CHECK_EQ(t.len, 4);
  CHECK(t.body == f + 6 && t.body[3] == 4);
  /* The limit is applied from the header alone: 4 bytes > 3. */
  CHECK_EQ(myc__wire_next(f, 6, 3, &t), MYC_ELIMIT);
  /* 0xFFFFFFFF announced: refused at once, nothing to wait for. */
  {
    const uint8_t huge[6] = {1, 0, 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK_EQ(myc__wire_next(huge, 6, MYC_WIRE_MAX_FRAME_DEFAULT, &t),
             MYC_ELIMIT);
  }
}

/* A message as the engine frames it: topic "swaps.v2", source "pub",
 * payload "hi", with a fixed trace context. */
static myc_buf *example_buf(myc__topics *topics, const myc__alloc *a) {
  int64_t id = myc__topics_resolve(topics, "swaps.v2", 8);
  myc_buf *b = myc__frame_new(a, NULL, myc__topics_get(topics, (uint32_t)id),
                              "pub", 3, MYC_KIND_RAW, 0, "hi", 2);
  int i;
  for (i = 0; i < 16; i++)
    b->hdr.trace_id[i] = (uint8_t)(0x10 + i);
  for (i = 0; i < 8; i++) {
    b->hdr.span_id[i] = (uint8_t)(0xA0 + i);
    b->hdr.parent_id[i] = (uint8_t)(0xB0 + i);
  }
  b->hdr.seq = 7;
  b->hdr.ts_ns = 0x0102030405060708ull;
  return b;
}

/* docs/WIRE.md, "v2 message": the frame example_buf() writes. */
static const char *V2_EXAMPLE =
    "02ff 53000000"                                     /* TLV: MSG, 83 */
    "53000000 0000 01 00"                               /* frame_len type kind flags */
    "101112131415161718191a1b1c1d1e1f"                  /* trace_id */
    "a0a1a2a3a4a5a6a7"                                  /* span_id */
    "b0b1b2b3b4b5b6b7"                                  /* parent_id */
    "0700000000000000"                                  /* seq */
    "0807060504030201"                                  /* ts_ns */
    "02000000 0800 03 02"                               /* payload_len topic_len source_len version */
    "6869000000000000"                                  /* "hi", padded to 8 */
    "73776170732e7632 707562";                          /* "swaps.v2" "pub" */

static void v2_message_is_the_buffer_behind_six_bytes(void) {
  myc__alloc a = {myc__default_alloc, NULL};
  myc__topics topics;
  myc__wire_tlv t;
  myc__wire_msg m;
  const char *why = NULL;
  uint8_t want[256];
  size_t n;
  const uint8_t *frame;
  myc_buf *b;
  CHECK_EQ(myc__topics_init(&topics, &a), 0);
  b = example_buf(&topics, &a);
  CHECK(b != NULL);
  frame = myc__wire_msg_prefix(b);
  n = unhex(V2_EXAMPLE, want, sizeof want);
  CHECK_EQ(n, MYC_WIRE_TLV + b->hdr.frame_len);
  CHECK(memcmp(frame, want, n) == 0);
  /* The decoder reads the documented bytes back. */
  CHECK_EQ(myc__wire_next(want, n, 1024, &t), (int64_t)n);
  CHECK_EQ(t.type, MYC_WIRE_MSG);
  CHECK_EQ(myc__wire_msg_decode(t.body, t.len, &m, &why), 0);
  CHECK_EQ(m.kind, MYC_KIND_RAW);
  CHECK_EQ(m.payload_len, 2);
  CHECK(memcmp(m.payload, "hi", 2) == 0);
  CHECK_EQ(m.topic_len, 8);
  CHECK(memcmp(m.topic, "swaps.v2", 8) == 0);
  CHECK_EQ(m.source_len, 3);
  CHECK(memcmp(m.source, "pub", 3) == 0);
  CHECK_EQ(m.trace_id[15], 0x1f);
  CHECK_EQ(m.span_id[0], 0xa0);
  CHECK_EQ(m.parent_id[7], 0xb7);
  CHECK_EQ(m.seq, 7);
  CHECK(m.ts_ns == 0x0102030405060708ull);
  myc__buf_free(NULL, &a, b);
  myc__topics_destroy(&topics);
}

/* Decodes 'f' (a MSG body of 'len' bytes) and returns the reason. */
static const char *refusal(uint8_t *f, uint32_t len) {
  myc__wire_msg m;
  const char *why = NULL;
  return myc__wire_msg_decode(f, len, &m, &why) == MYC_EINVAL ? why : "ok";
}

static void v2_message_corruptions_are_named(void) {
  uint8_t good[256], f[256];
  uint32_t len = (uint32_t)unhex(V2_EXAMPLE, good, sizeof good) - 6, i;
  uint8_t *body = good + 6;
  CHECK_STR(refusal(body, len), "ok");
  for (i = 0; i < len; i++) /* every truncation is refused */
    CHECK(strcmp(refusal(body, i), "ok") != 0);
  memcpy(f, body, len);
  f[63] = 1;
  CHECK_STR(refusal(f, len), "message header version is not 2");
  memcpy(f, body, len);
  f[0] = 0x51;
  CHECK_STR(refusal(f, len), "message frame_len differs from the TLV length");
  memcpy(f, body, len);
  f[6] = 4;
  CHECK_STR(refusal(f, len), "message kind is not 1, 2 or 3");
  memcpy(f, body, len);
  f[56] = 0xff;
  CHECK_STR(refusal(f, len), "message payload_len runs past the frame");
  memcpy(f, body, len);
  f[60] = 7; /* topic_len one short: the source no longer ends the frame */
  CHECK_STR(refusal(f, len), "message lengths do not add up to frame_len");
  memcpy(f, body, len);
  f[72] = '$';
  CHECK_STR(refusal(f, len), "message topic is an engine topic ('$...')");
  memcpy(f, body, len);
  f[77] = '*';
  CHECK_STR(refusal(f, len), "message topic is not a valid topic name");
  {
    /* A topic is skipped only when it is the one named as checked. */
    myc__wire_msg m;
    const char *why = NULL;
    CHECK_EQ(myc__wire_msg_decode_known(f, len, &m, &why, "swaps.v2", 8),
             MYC_EINVAL);
    CHECK_STR(why, "message topic is not a valid topic name");
    CHECK_EQ(myc__wire_msg_decode_known(body, len, &m, &why, "swaps.v2", 8),
             0);
    CHECK_EQ(m.topic_known, 1); /* the caller need not compare it again */
    CHECK_EQ(myc__wire_msg_decode_known(body, len, &m, &why, "swaps.v", 7), 0);
    CHECK_EQ(m.topic_known, 0);
    CHECK_EQ(myc__wire_msg_decode(body, len, &m, &why), 0);
    CHECK_EQ(m.topic_known, 0);
  }
  memcpy(f, body, len);
  f[81] = ' ';
  CHECK_STR(refusal(f, len),
            "message source has a character outside letters, digits and _ - . :");
}

/* docs/WIRE.md, "requests and replies": the example message as a
 * request (correlation id 9, 100 ms left), and its reply. */
static const char *REQ_EXAMPLE =
    "02ff 68000000"                    /* TLV: MSG, 104 */
    "68000000 0000 01 02"              /* flags: request */
    "101112131415161718191a1b1c1d1e1f" /* trace_id */
    "a0a1a2a3a4a5a6a7"                 /* span_id */
    "b0b1b2b3b4b5b6b7"                 /* parent_id */
    "0700000000000000"                 /* seq */
    "0807060504030201"                 /* ts_ns */
    "02000000 0800 03 02"
    "6869000000000000"                 /* "hi" */
    "73776170732e7632 707562"          /* "swaps.v2" "pub" */
    "0000000000"                       /* zeros up to 88 */
    "0900000000000000"                 /* corr 9 */
    "00e1f50500000000";                /* budget_ns 100 000 000 */

static const char *REPLY_EXAMPLE =
    "02ff 60000000"                    /* TLV: MSG, 96 */
    "60000000 0000 01 04"              /* flags: reply */
    "101112131415161718191a1b1c1d1e1f" /* the request's trace */
    "c0c1c2c3c4c5c6c7"                 /* the reply's span */
    "a0a1a2a3a4a5a6a7"                 /* parent: the request's span */
    "0100000000000000"                 /* seq */
    "0807060504030201"                 /* ts_ns */
    "02000000 0300 03 02"
    "6f6b000000000000"                 /* "ok" */
    "707562 737276"                    /* to "pub", from "srv" */
    "0000"                             /* zeros up to 80 */
    "0900000000000000"                 /* corr 9 */
    "0000000000000000";                /* budget_ns 0 */

static void set_trace_example(myc_buf *b, uint8_t span, uint8_t parent) {
  int i;
  for (i = 0; i < 16; i++)
    b->hdr.trace_id[i] = (uint8_t)(0x10 + i);
  for (i = 0; i < 8; i++) {
    b->hdr.span_id[i] = (uint8_t)(span + i);
    b->hdr.parent_id[i] = (uint8_t)(parent + i);
  }
  b->hdr.ts_ns = 0x0102030405060708ull;
}

static void requests_and_replies_match_the_examples(void) {
  myc__alloc a = {myc__default_alloc, NULL};
  uint8_t want[256];
  myc__wire_tlv t;
  myc__wire_msg m;
  const char *why = NULL;
  size_t n;
  myc_buf *b = myc__frame_new_req(&a, 1, "swaps.v2", 8, "pub", 3,
                                  MYC_KIND_RAW, 0, "hi", 2, MYC_FRAME_REQUEST,
                                  9, 100000000, 0);
  CHECK(b != NULL);
  set_trace_example(b, 0xA0, 0xB0);
  b->hdr.seq = 7;
  n = unhex(REQ_EXAMPLE, want, sizeof want);
  CHECK_EQ(n, MYC_WIRE_TLV + b->hdr.frame_len);
  CHECK(memcmp(myc__wire_msg_prefix(b), want, n) == 0);
  myc__buf_free(NULL, &a, b);
  CHECK_EQ(myc__wire_next(want, n, 1024, &t), (int64_t)n);
  CHECK_EQ(myc__wire_msg_decode(t.body, t.len, &m, &why), 0);
  CHECK_EQ(m.req_flags, MYC_FRAME_REQUEST);
  CHECK_EQ(m.corr, 9);
  CHECK_EQ(m.budget_ns, 100000000);
  CHECK(m.topic_len == 8 && m.source_len == 3 && m.payload_len == 2);

  b = myc__frame_new_req(&a, 0, "pub", 3, "srv", 3, MYC_KIND_RAW, 0, "ok", 2,
                         MYC_FRAME_REPLY, 9, 0, 0);
  CHECK(b != NULL);
  set_trace_example(b, 0xC0, 0xA0);
  b->hdr.seq = 1;
  n = unhex(REPLY_EXAMPLE, want, sizeof want);
  CHECK_EQ(n, MYC_WIRE_TLV + b->hdr.frame_len);
  CHECK(memcmp(myc__wire_msg_prefix(b), want, n) == 0);
  myc__buf_free(NULL, &a, b);
  CHECK_EQ(myc__wire_next(want, n, 1024, &t), (int64_t)n);
  CHECK_EQ(myc__wire_msg_decode(t.body, t.len, &m, &why), 0);
  CHECK_EQ(m.req_flags, MYC_FRAME_REPLY);
  CHECK_EQ(m.corr, 9);
  CHECK(memcmp(m.topic, "pub", 3) == 0);
}

static void request_corruptions_are_named(void) {
  uint8_t req[256], rep[256], f[256];
  uint32_t rlen = (uint32_t)unhex(REQ_EXAMPLE, req, sizeof req) - 6;
  uint32_t plen = (uint32_t)unhex(REPLY_EXAMPLE, rep, sizeof rep) - 6, i;
  uint8_t *body = req + 6, *rbody = rep + 6;
  CHECK_STR(refusal(body, rlen), "ok");
  CHECK_STR(refusal(rbody, plen), "ok");
  for (i = 0; i < rlen; i++)
    CHECK(strcmp(refusal(body, i), "ok") != 0);
  memcpy(f, body, rlen);
  f[83] = 1;
  CHECK_STR(refusal(f, rlen),
            "message padding before the request extension is not zeros");
  memcpy(f, body, rlen);
  f[7] = MYC_FRAME_REQUEST | MYC_FRAME_REPLY;
  CHECK_STR(refusal(f, rlen), "message flags mix request and reply");
  memcpy(f, body, rlen);
  f[7] = MYC_FRAME_REQUEST | MYC_FRAME_FAILED;
  CHECK_STR(refusal(f, rlen), "message flags mix request and reply");
  /* A request flag on a frame without the extension (an older sender
   * would never set it): the lengths do not add up. */
  {
    uint8_t plain[256];
    uint32_t len = (uint32_t)unhex(V2_EXAMPLE, plain, sizeof plain) - 6;
    plain[6 + 7] = MYC_FRAME_REQUEST;
    CHECK_STR(refusal(plain + 6, len),
              "message lengths do not add up to frame_len");
    /* Unknown flags stay ignored, as before. */
    plain[6 + 7] = 0x40;
    CHECK_STR(refusal(plain + 6, len), "ok");
  }
  memcpy(f, rbody, plen);
  f[72] = '*';
  CHECK_STR(refusal(f, plen), "reply addressed to a name with a character "
                              "outside letters, digits and _ - . :");
  /* A reply may be addressed to a name no topic could have. */
  memcpy(f, rbody, plen);
  f[72] = ':';
  CHECK_STR(refusal(f, plen), "ok");
}

/* docs/WIRE.md, "handshake": node "a", v1..v2, schema 7 version 3
 * (min 2), one type (tag 5, digest 00 01 .. 1f). */
static const char *HELLO_EXAMPLE =
    "01ff 36000000"
    "4d59434c 01 02 0000 01 61"
    "07000000 0300 0200 0100"
    "0500 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void hello_round_trips_and_matches_the_example(void) {
  uint8_t types[MYC_WIRE_TYPE_ENTRY], out[128], want[128];
  myc__wire_hello h, d;
  myc__wire_tlv t;
  const char *why = NULL;
  size_t n, i;
  memset(&h, 0, sizeof h);
  h.vmin = 1;
  h.vmax = 2;
  strcpy(h.node, "a");
  h.schema_id = 7;
  h.schema_version = 3;
  h.min_compatible = 2;
  h.ntypes = 1;
  types[0] = 5;
  types[1] = 0;
  for (i = 0; i < 32; i++)
    types[2 + i] = (uint8_t)i;
  h.types = types;
  n = myc__wire_hello_encode(&h, out, sizeof out);
  CHECK_EQ(n, unhex(HELLO_EXAMPLE, want, sizeof want));
  CHECK(memcmp(out, want, n) == 0);
  CHECK_EQ(myc__wire_hello_encode(&h, out, n - 1), 0);
  CHECK_EQ(myc__wire_next(want, n, 1024, &t), (int64_t)n);
  CHECK_EQ(t.type, MYC_WIRE_HELLO);
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len, &d, &why), 0);
  CHECK_STR(d.node, "a");
  CHECK_EQ(d.vmin, 1);
  CHECK_EQ(d.vmax, 2);
  CHECK_EQ(d.schema_id, 7);
  CHECK_EQ(d.schema_version, 3);
  CHECK_EQ(d.min_compatible, 2);
  CHECK_EQ(d.ntypes, 1);
  CHECK_EQ(myc__wire_hello_tag(&d, 0), 5);
  CHECK_EQ(myc__wire_hello_digest(&d, 0)[31], 31);
  for (i = 0; i < t.len; i++)
    CHECK_EQ(myc__wire_hello_decode(t.body, (uint32_t)i, &d, &why),
             MYC_EINVAL);
  want[6] = 'X';
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len, &d, &why), MYC_EINVAL);
  CHECK_STR(why, "handshake magic is not \"MYCL\"");
  want[6] = 'M';
  want[10] = 3; /* vmin 3 > vmax 2 */
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len, &d, &why), MYC_EINVAL);
  CHECK_STR(why, "handshake version range is empty");
  want[10] = 1;
  want[15] = ' ';
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len, &d, &why), MYC_EINVAL);
  want[15] = 'a';
  want[24] = 2; /* claims two types, holds one */
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len, &d, &why), MYC_EINVAL);
  CHECK_STR(why, "handshake length differs from its type count and flags");
}

/* docs/WIRE.md, "Pre-shared key": node a's HELLO with the flag and its
 * nonce 20..3f, and the proof a dialling side with key
 * "0123456789abcdef" sends to a listener whose nonce is 00..1f. */
static const char *PSK_HELLO_EXAMPLE =
    "01ff 34000000\n"
    "4d59434c 01 02 0100 01 61\n"
    "00000000 0000 0000 0000\n"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
static const char *PSK_AUTH_EXAMPLE =
    "06ff 20000000\n"
    "b3dce51cdcb26946014cb9a768b61a386b31387a25daba9df9d1cedc7ab9f791";

static void psk_hello_and_proof_match_the_example(void) {
  uint8_t bytes[256], out[256], v[32], pn[32], proof[32];
  const uint8_t *key = (const uint8_t *)"0123456789abcdef";
  size_t n = unhex(PSK_HELLO_EXAMPLE, bytes, sizeof bytes), i;
  myc__wire_hello h, me;
  myc__wire_tlv t;
  const char *why = NULL;
  char reason[256];
  CHECK(myc__wire_next(bytes, n, 1 << 20, &t) == (int64_t)n);
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len, &h, &why), 0);
  CHECK_EQ(h.flags, MYC_WIRE_HELLO_PSK);
  for (i = 0; i < 32; i++) {
    v[i] = (uint8_t)i;
    pn[i] = (uint8_t)(32 + i);
  }
  CHECK(memcmp(h.nonce, pn, 32) == 0);
  CHECK_EQ(myc__wire_hello_encode(&h, out, sizeof out), n);
  CHECK(memcmp(out, bytes, n) == 0);
  /* Without its nonce the length no longer adds up. */
  CHECK_EQ(myc__wire_hello_decode(t.body, t.len - 32, &h, &why), MYC_EINVAL);
  n = unhex(PSK_AUTH_EXAMPLE, bytes, sizeof bytes);
  CHECK(myc__wire_next(bytes, n, 1 << 20, &t) == (int64_t)n);
  CHECK_EQ(t.type, MYC_WIRE_AUTH);
  myc__wire_psk_proof(key, 16, 1, v, pn, proof);
  CHECK_EQ(myc__wire_auth_check(t.body, t.len, proof, &why), 0);
  /* The role is in the proof: the same nonces from the other side (a
   * reflected proof) do not pass, nor does another key. */
  myc__wire_psk_proof(key, 16, 0, v, pn, proof);
  CHECK_EQ(myc__wire_auth_check(t.body, t.len, proof, &why), MYC_EINVAL);
  myc__wire_psk_proof((const uint8_t *)"0123456789abcdeX", 16, 1, v, pn, proof);
  CHECK_EQ(myc__wire_auth_check(t.body, t.len, proof, &why), MYC_EINVAL);
  CHECK(strstr(why, "does not match") != NULL);
  CHECK_EQ(myc__wire_auth_check(t.body, 31, proof, &why), MYC_EINVAL);
  /* A key required on one side only is refused, naming the key. */
  memset(&me, 0, sizeof me);
  me.vmin = 1, me.vmax = 2;
  strcpy(me.node, "b");
  CHECK_EQ(myc__wire_hello_check(&me, &h, 1, NULL, NULL, reason,
                                 sizeof reason), 2);
  CHECK_EQ(myc__wire_hello_check(&me, &h, 0, NULL, NULL, reason,
                                 sizeof reason), 0);
  CHECK(strstr(reason, "a requires a pre-shared key") != NULL);
  h.flags = 0;
  CHECK_EQ(myc__wire_hello_check(&me, &h, 1, NULL, NULL, reason,
                                 sizeof reason), 0);
  CHECK(strstr(reason, "link.psk_file") != NULL);
}

static void versions_agree_on_the_highest_common(void) {
  myc__wire_hello a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.vmin = 1, a.vmax = 2, b.vmin = 1, b.vmax = 1;
  CHECK_EQ(myc__wire_agree(&a, &b), 1);
  b.vmax = 2;
  CHECK_EQ(myc__wire_agree(&a, &b), 2);
  a.vmin = a.vmax = 2, b.vmin = b.vmax = 1;
  CHECK_EQ(myc__wire_agree(&a, &b), 0);
}

static void patterns_are_checked(void) {
  const char *why = NULL;
  CHECK_EQ(myc__wire_pattern_check((const uint8_t *)"swaps.*", 7, &why), 0);
  CHECK_EQ(myc__wire_pattern_check((const uint8_t *)"*", 1, &why), 0);
  CHECK_EQ(myc__wire_pattern_check((const uint8_t *)"", 0, &why), MYC_EINVAL);
  CHECK_EQ(myc__wire_pattern_check((const uint8_t *)"$dead", 5, &why),
           MYC_EINVAL);
  CHECK_EQ(myc__wire_pattern_check((const uint8_t *)"a.*.b", 5, &why),
           MYC_EINVAL);
  CHECK_STR(why, "subscription pattern is not a valid pattern");
}

int main(void) {
  static const test_case cases[] = {
      {"tlv_needs_the_whole_frame_and_refuses_oversize_early",
       tlv_needs_the_whole_frame_and_refuses_oversize_early},
      {"v2_message_is_the_buffer_behind_six_bytes",
       v2_message_is_the_buffer_behind_six_bytes},
      {"v2_message_corruptions_are_named", v2_message_corruptions_are_named},
      {"requests_and_replies_match_the_examples",
       requests_and_replies_match_the_examples},
      {"request_corruptions_are_named", request_corruptions_are_named},
      {"hello_round_trips_and_matches_the_example",
       hello_round_trips_and_matches_the_example},
      {"versions_agree_on_the_highest_common",
       versions_agree_on_the_highest_common},
      {"patterns_are_checked", patterns_are_checked},
      {"psk_hello_and_proof_match_the_example",
       psk_hello_and_proof_match_the_example},
      {NULL, NULL}};
  return run_tests(cases);
}
