/* wire.c -- the link frame codec (see wire.h and docs/WIRE.md). */
#include "link/wire.h"

#include "core/topic.h"
#include "mycelium.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The v2 message frame is the buffer itself from its 6 wire bytes on. */
_Static_assert(offsetof(myc_buf, hdr) ==
                   offsetof(myc_buf, wire_prefix) + sizeof(((myc_buf *)0)->wire_prefix),
               "the wire prefix must sit right before the header");
_Static_assert(sizeof(myc_frame) == 64, "the frame header is 64 bytes");

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) {
  return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

int64_t myc__wire_next(const uint8_t *p, size_t n, uint32_t max_frame,
                       myc__wire_tlv *out) {
  uint32_t len;
  if (n < MYC_WIRE_TLV)
    return 0;
  len = rd32(p + 2);
  if (len > max_frame)
    return MYC_ELIMIT;
  if (n - MYC_WIRE_TLV < len)
    return 0;
  out->type = rd16(p);
  out->len = len;
  out->body = p + MYC_WIRE_TLV;
  return (int64_t)MYC_WIRE_TLV + len;
}

/* Header field offsets (myc_frame, little-endian). */
enum {
  H_FRAME_LEN = 0, H_TYPE = 4, H_KIND = 6, H_FLAGS = 7, H_TRACE = 8,
  H_SPAN = 24, H_PARENT = 32, H_SEQ = 40, H_TS = 48, H_PAYLOAD_LEN = 56,
  H_TOPIC_LEN = 60, H_SOURCE_LEN = 62, H_VERSION = 63
};
_Static_assert(offsetof(myc_frame, trace_id) == H_TRACE, "layout");
_Static_assert(offsetof(myc_frame, seq) == H_SEQ, "layout");
_Static_assert(offsetof(myc_frame, payload_len) == H_PAYLOAD_LEN, "layout");
_Static_assert(offsetof(myc_frame, version) == H_VERSION, "layout");

/* Node and service names: what myc__service_name_check allows. */
static int name_char_ok(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
         c == ':';
}

static int bad(const char **why, const char *text) {
  *why = text;
  return MYC_EINVAL;
}

/* The request extension of a frame whose 'flags' ask for one: checks
 * the flags and the zero padding, reads the fields.  Returns 0 or
 * MYC_EINVAL. */
static int req_decode(const uint8_t *body, uint32_t len, size_t tail_end,
                      uint8_t flags, myc__wire_msg *m, const char **why) {
  size_t i, ext = len - sizeof(myc_frame_req);
  if ((flags & MYC_FRAME_REQ_MASK) == MYC_FRAME_REQ_MASK ||
      (flags & MYC_FRAME_FAILED && !(flags & MYC_FRAME_REPLY)))
    return bad(why, "message flags mix request and reply");
  for (i = tail_end; i < ext; i++)
    if (body[i] != 0)
      return bad(why, "message padding before the request extension is "
                      "not zeros");
  m->req_flags = flags & (MYC_FRAME_REQ_MASK | MYC_FRAME_FAILED);
  m->corr = rd64(body + ext);
  m->budget_ns = rd64(body + ext + 8);
  return 0;
}

int myc__wire_msg_decode(const uint8_t *body, uint32_t len, myc__wire_msg *m,
                         const char **why) {
  return myc__wire_msg_decode_known(body, len, m, why, NULL, 0);
}

int myc__wire_msg_decode_known(const uint8_t *body, uint32_t len,
                               myc__wire_msg *m, const char **why,
                               const char *known, size_t known_len) {
  uint32_t payload_len;
  size_t off, want;
  uint32_t i;
  uint8_t flags;
  if (len < sizeof(myc_frame))
    return bad(why, "message shorter than its 64-byte header");
  if (body[H_VERSION] != MYC_FRAME_VERSION)
    return bad(why, "message header version is not 2");
  if (rd32(body + H_FRAME_LEN) != len)
    return bad(why, "message frame_len differs from the TLV length");
  m->kind = body[H_KIND];
  flags = body[H_FLAGS];
  if (m->kind < MYC_KIND_RAW || m->kind > MYC_KIND_TYPED)
    return bad(why, "message kind is not 1, 2 or 3");
  payload_len = rd32(body + H_PAYLOAD_LEN);
  m->topic_len = rd16(body + H_TOPIC_LEN);
  m->source_len = body[H_SOURCE_LEN];
  if (payload_len > len - sizeof(myc_frame))
    return bad(why, "message payload_len runs past the frame");
  off = myc__frame_topic_offset(payload_len);
  want = flags & MYC_FRAME_REQ_MASK
             ? myc__frame_req_len(payload_len, m->topic_len, m->source_len)
             : myc__frame_len(payload_len, m->topic_len, m->source_len);
  if (off > len || want != len)
    return bad(why, "message lengths do not add up to frame_len");
  if (m->topic_len == 0 || m->topic_len > MYC_TOPIC_MAX)
    return bad(why, "message topic is empty or longer than 255 bytes");
  if (m->source_len == 0)
    return bad(why, "message source is empty");
  m->hdr = (const myc_frame *)body;
  m->frame_len = len;
  m->type = rd16(body + H_TYPE);
  m->payload = body + sizeof(myc_frame);
  m->payload_len = payload_len;
  m->topic = (const char *)body + off;
  m->source = m->topic + m->topic_len;
  m->req_flags = 0;
  m->corr = m->budget_ns = 0;
  m->topic_known = 0;
  if (flags & MYC_FRAME_REQ_MASK &&
      req_decode(body, len, off + m->topic_len + m->source_len, flags, m,
                 why) != 0)
    return MYC_EINVAL;
  if (m->req_flags & MYC_FRAME_REPLY) {
    for (i = 0; i < m->topic_len; i++)
      if (!name_char_ok((uint8_t)m->topic[i]))
        return bad(why, "reply addressed to a name with a character outside "
                        "letters, digits and _ - . :");
  } else if (m->topic[0] == '$') {
    return bad(why, "message topic is an engine topic ('$...')");
  } else if (known != NULL && m->topic_len == known_len &&
             memcmp(m->topic, known, known_len) == 0) {
    m->topic_known = 1;
  } else if (myc__topic_check(m->topic, m->topic_len, 0) != NULL) {
    return bad(why, "message topic is not a valid topic name");
  }
  for (i = 0; i < m->source_len; i++)
    if (!name_char_ok((uint8_t)m->source[i]))
      return bad(why, "message source has a character outside letters, "
                      "digits and _ - . :");
  memcpy(m->trace_id, body + H_TRACE, 16);
  memcpy(m->span_id, body + H_SPAN, 8);
  memcpy(m->parent_id, body + H_PARENT, 8);
  m->seq = rd64(body + H_SEQ);
  m->ts_ns = rd64(body + H_TS);
  return 0;
}

/* HELLO body: magic[4] vmin u8 vmax u8 flags u16 node_len u8 node
 * schema_id u32 schema_version u16 min_compatible u16 ntypes u16
 * ntypes * (tag u16, digest[32]), then nonce[32] with the PSK flag. */
#define HELLO_FIXED (4 + 1 + 1 + 2 + 1 + 4 + 2 + 2 + 2)

static size_t nonce_size(uint16_t flags) {
  return flags & MYC_WIRE_HELLO_PSK ? MYC_WIRE_NONCE : 0;
}

size_t myc__wire_hello_size(const myc__wire_hello *h) {
  return HELLO_FIXED + strlen(h->node) +
         (size_t)h->ntypes * MYC_WIRE_TYPE_ENTRY + nonce_size(h->flags);
}

size_t myc__wire_hello_encode(const myc__wire_hello *h, uint8_t *out,
                              size_t cap) {
  size_t node_len = strlen(h->node), body = myc__wire_hello_size(h);
  uint8_t *p = out + MYC_WIRE_TLV;
  if (node_len == 0 || node_len > MYC_WIRE_NODE_MAX || h->vmin == 0 ||
      h->vmin > h->vmax || h->ntypes > MYC_WIRE_MAX_TYPES ||
      cap < MYC_WIRE_TLV + body)
    return 0;
  myc__wire_put_tlv(out, MYC_WIRE_HELLO, (uint32_t)body);
  memcpy(p, MYC_WIRE_MAGIC, 4);
  p[4] = h->vmin;
  p[5] = h->vmax;
  p[6] = (uint8_t)h->flags;
  p[7] = (uint8_t)(h->flags >> 8);
  p[8] = (uint8_t)node_len;
  memcpy(p + 9, h->node, node_len);
  p += 9 + node_len;
  p[0] = (uint8_t)h->schema_id;
  p[1] = (uint8_t)(h->schema_id >> 8);
  p[2] = (uint8_t)(h->schema_id >> 16);
  p[3] = (uint8_t)(h->schema_id >> 24);
  p[4] = (uint8_t)h->schema_version;
  p[5] = (uint8_t)(h->schema_version >> 8);
  p[6] = (uint8_t)h->min_compatible;
  p[7] = (uint8_t)(h->min_compatible >> 8);
  p[8] = (uint8_t)h->ntypes;
  p[9] = (uint8_t)(h->ntypes >> 8);
  if (h->ntypes > 0)
    memcpy(p + 10, h->types, (size_t)h->ntypes * MYC_WIRE_TYPE_ENTRY);
  if (h->flags & MYC_WIRE_HELLO_PSK)
    memcpy(p + 10 + (size_t)h->ntypes * MYC_WIRE_TYPE_ENTRY, h->nonce,
           MYC_WIRE_NONCE);
  return MYC_WIRE_TLV + body;
}

int myc__wire_hello_decode(const uint8_t *body, uint32_t len,
                           myc__wire_hello *h, const char **why) {
  uint32_t node_len, i;
  const uint8_t *p;
  if (len < HELLO_FIXED)
    return bad(why, "handshake shorter than its fixed fields");
  if (memcmp(body, MYC_WIRE_MAGIC, 4) != 0)
    return bad(why, "handshake magic is not \"MYCL\"");
  h->vmin = body[4];
  h->vmax = body[5];
  if (h->vmin == 0 || h->vmin > h->vmax)
    return bad(why, "handshake version range is empty");
  h->flags = rd16(body + 6);
  node_len = body[8];
  if (node_len == 0 || len < HELLO_FIXED + node_len)
    return bad(why, "handshake node name is empty or truncated");
  for (i = 0; i < node_len; i++)
    if (!name_char_ok(body[9 + i]))
      return bad(why, "handshake node name has a character outside "
                      "letters, digits and _ - . :");
  memcpy(h->node, body + 9, node_len);
  h->node[node_len] = '\0';
  p = body + 9 + node_len;
  h->schema_id = rd32(p);
  h->schema_version = rd16(p + 4);
  h->min_compatible = rd16(p + 6);
  h->ntypes = rd16(p + 8);
  if (h->ntypes > MYC_WIRE_MAX_TYPES)
    return bad(why, "handshake lists more than 4096 types");
  if ((size_t)len != HELLO_FIXED + node_len +
                         (size_t)h->ntypes * MYC_WIRE_TYPE_ENTRY +
                         nonce_size(h->flags))
    return bad(why, "handshake length differs from its type count and "
                    "flags");
  h->types = p + 10;
  if (h->flags & MYC_WIRE_HELLO_PSK)
    memcpy(h->nonce, h->types + (size_t)h->ntypes * MYC_WIRE_TYPE_ENTRY,
           MYC_WIRE_NONCE);
  else
    memset(h->nonce, 0, MYC_WIRE_NONCE);
  return 0;
}

int myc__wire_agree(const myc__wire_hello *a, const myc__wire_hello *b) {
  int hi = a->vmax < b->vmax ? a->vmax : b->vmax;
  int lo = a->vmin > b->vmin ? a->vmin : b->vmin;
  return hi >= lo ? hi : 0;
}

int myc__wire_hello_check(const myc__wire_hello *me,
                          const myc__wire_hello *peer, int psk,
                          myc__wire_type_name name, void *ud, char *why,
                          size_t cap) {
  int v = myc__wire_agree(me, peer);
  uint16_t i, j;
  if (v == 0) {
    snprintf(why, cap, "no common wire version: %u..%u here, %u..%u at %s",
             me->vmin, me->vmax, peer->vmin, peer->vmax, peer->node);
    return 0;
  }
  if (psk && !(peer->flags & MYC_WIRE_HELLO_PSK)) {
    snprintf(why, cap, "this link requires a pre-shared key "
             "(link.psk_file) and %s offers none", peer->node);
    return 0;
  }
  if (!psk && (peer->flags & MYC_WIRE_HELLO_PSK)) {
    snprintf(why, cap, "%s requires a pre-shared key: set link.psk_file "
             "here to a file with the same key", peer->node);
    return 0;
  }
  if (me->schema_id != 0 && peer->schema_id != 0) {
    if (me->schema_id != peer->schema_id) {
      snprintf(why, cap, "incompatible contracts: schema id %u here, %u at "
               "%s", me->schema_id, peer->schema_id, peer->node);
      return 0;
    }
    if (peer->schema_version < me->min_compatible ||
        me->schema_version < peer->min_compatible) {
      snprintf(why, cap, "incompatible contracts: schema version %u "
               "(compatible from %u) here, %u (from %u) at %s",
               me->schema_version, me->min_compatible, peer->schema_version,
               peer->min_compatible, peer->node);
      return 0;
    }
  }
  for (i = 0; i < me->ntypes; i++)
    for (j = 0; j < peer->ntypes; j++)
      if (myc__wire_hello_tag(me, i) == myc__wire_hello_tag(peer, j) &&
          memcmp(myc__wire_hello_digest(me, i),
                 myc__wire_hello_digest(peer, j), MYC_WIRE_DIGEST) != 0) {
        static const char hexd[] = "0123456789abcdef";
        char a[17], b[17];
        const char *type = name ? name(ud, myc__wire_hello_tag(me, i)) : NULL;
        int k;
        for (k = 0; k < 8; k++) {
          a[2 * k] = hexd[myc__wire_hello_digest(me, i)[k] >> 4];
          a[2 * k + 1] = hexd[myc__wire_hello_digest(me, i)[k] & 15];
          b[2 * k] = hexd[myc__wire_hello_digest(peer, j)[k] >> 4];
          b[2 * k + 1] = hexd[myc__wire_hello_digest(peer, j)[k] & 15];
        }
        a[16] = b[16] = '\0';
        snprintf(why, cap, "incompatible contracts: type %s (tag %u) "
                 "differs: digest %s... here, %s... at %s",
                 type ? type : "?", myc__wire_hello_tag(me, i), a, b,
                 peer->node);
        return 0;
      }
  return v;
}

void myc__wire_psk_proof(const uint8_t *key, size_t key_len, int dialled,
                         const uint8_t *verifier_nonce,
                         const uint8_t *prover_nonce,
                         uint8_t out[MYC_WIRE_PROOF]) {
  uint8_t msg[8 + 1 + 2 * MYC_WIRE_NONCE];
  unsigned int n = MYC_WIRE_PROOF;
  memcpy(msg, "MYCL-PSK", 8);
  msg[8] = dialled ? 'c' : 'a';
  memcpy(msg + 9, verifier_nonce, MYC_WIRE_NONCE);
  memcpy(msg + 9 + MYC_WIRE_NONCE, prover_nonce, MYC_WIRE_NONCE);
  if (HMAC(EVP_sha256(), key, (int)key_len, msg, sizeof msg, out, &n) ==
      NULL)
    memset(out, 0, MYC_WIRE_PROOF); /* never matches a real proof */
}

int myc__wire_auth_check(const uint8_t *body, uint32_t len,
                         const uint8_t expected[MYC_WIRE_PROOF],
                         const char **why) {
  if (len != MYC_WIRE_PROOF)
    return bad(why, "pre-shared key proof is not 32 bytes");
  if (CRYPTO_memcmp(body, expected, MYC_WIRE_PROOF) != 0)
    return bad(why, "pre-shared key proof does not match: the peer's "
                    "link.psk_file holds another key");
  return 0;
}

int myc__wire_pattern_check(const uint8_t *body, uint32_t len,
                            const char **why) {
  if (len == 0 || len > MYC_TOPIC_MAX)
    return bad(why, "subscription pattern is empty or longer than 255 bytes");
  if (body[0] == '$')
    return bad(why, "subscription pattern names an engine topic ('$...')");
  if (myc__topic_check((const char *)body, len, 1) != NULL)
    return bad(why, "subscription pattern is not a valid pattern");
  return 0;
}
