/* wire.h -- the frames engines exchange over a link (docs/WIRE.md).
 *
 * Every frame is a TLV: [type u16 LE][len u32 LE][len bytes].  Types
 * below 0xFF00 are v1 messages (the type is a contract tag, the bytes its
 * struct), as the Rust Mycelium sends them.  Types 0xFF00 and above are
 * v2 control and message frames; a v2 message's bytes are the engine's
 * in-memory frame from its header on (core/buf.h), so a buffer goes to
 * the socket as it is, behind the 6 bytes written in its wire prefix.
 *
 * Nothing here allocates or keeps state: the decoders read a byte range
 * and either describe it or say why it is not a frame.  A length is
 * refused against the limit from the 6 header bytes alone, before anyone
 * buffers what it announces.
 */
#ifndef MYC_WIRE_H
#define MYC_WIRE_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

#define MYC_WIRE_TLV 6
#define MYC_WIRE_MAX_FRAME_DEFAULT (16u << 20) /* the Rust Mycelium's */
#define MYC_WIRE_V1_MAX_TYPE 0xFEFF

enum {
  MYC_WIRE_HELLO = 0xFF01, /* handshake, both sides, first frame */
  MYC_WIRE_MSG = 0xFF02,   /* a v2 message (header, payload, topic, source) */
  MYC_WIRE_SUB = 0xFF03,   /* the sender's services subscribed a pattern */
  MYC_WIRE_UNSUB = 0xFF04, /* ... and no longer do */
  MYC_WIRE_CLOSE = 0xFF05, /* why the sender closes the link (text) */
  MYC_WIRE_AUTH = 0xFF06   /* proof of the pre-shared key (after HELLO) */
};

#define MYC_WIRE_MAGIC "MYCL"
#define MYC_WIRE_VERSION_MIN 1
#define MYC_WIRE_VERSION_MAX 2
#define MYC_WIRE_DIGEST 32 /* SHA-256, raw */
#define MYC_WIRE_CLOSE_MAX 1024

/* One TLV found in a byte range. */
typedef struct {
  uint16_t type;
  uint32_t len;
  const uint8_t *body;
} myc__wire_tlv;

/* Looks for a whole frame at 'p' ('n' bytes).  Returns its size (header
 * included) with '*out' set, 0 when more bytes are needed, or MYC_ELIMIT
 * when the header announces more than 'max_frame' bytes (known from the
 * first 6 bytes). */
int64_t myc__wire_next(const uint8_t *p, size_t n, uint32_t max_frame,
                       myc__wire_tlv *out);

/* Writes a TLV header for 'type' and 'len' at 'out' (6 bytes). */
static inline void myc__wire_put_tlv(uint8_t *out, uint16_t type,
                                     uint32_t len) {
  out[0] = (uint8_t)type;
  out[1] = (uint8_t)(type >> 8);
  out[2] = (uint8_t)len;
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)(len >> 16);
  out[5] = (uint8_t)(len >> 24);
}

/* A v2 message, checked: every pointer lies inside the frame. */
typedef struct {
  const myc_frame *hdr; /* may be unaligned: read fields with memcpy */
  uint32_t frame_len;   /* bytes from 'hdr' on: the whole frame */
  int kind;
  uint16_t type;
  const uint8_t *payload;
  uint32_t payload_len;
  const char *topic;
  uint16_t topic_len;
  const char *source;
  uint8_t source_len;
  uint8_t trace_id[16], span_id[8], parent_id[8];
  uint64_t seq, ts_ns;
  /* MYC_FRAME_REQUEST, or MYC_FRAME_REPLY with MYC_FRAME_FAILED or not,
   * or 0; with either, the extension's fields.  A reply's 'topic' is the
   * name of the service that asked (a reply is addressed, not
   * published). */
  uint8_t req_flags;
  uint64_t corr, budget_ns;
  /* The topic is the 'known' one given to myc__wire_msg_decode_known
   * (compared there, so the caller need not compare it again). */
  uint8_t topic_known;
} myc__wire_msg;

/* HELLO flags: the sender reads and answers requests (MSG frames with
 * the request extension); only such a peer is sent them. */
#define MYC_WIRE_HELLO_REQUESTS 0x0002

/* Checks the body of a MYC_WIRE_MSG frame.  Returns 0 with '*m' set, or
 * MYC_EINVAL with '*why' naming what is wrong. */
int myc__wire_msg_decode(const uint8_t *body, uint32_t len, myc__wire_msg *m,
                         const char **why);

/* The same, but a topic equal to 'known' (a name checked before, or
 * NULL) is not checked again (m->topic_known says so): a stream mostly
 * repeats its topic. */
int myc__wire_msg_decode_known(const uint8_t *body, uint32_t len,
                               myc__wire_msg *m, const char **why,
                               const char *known, size_t known_len);

/* Writes, in the wire prefix of 'b', the TLV header that makes the bytes
 * from b->wire_prefix + 3 a MYC_WIRE_MSG frame.  Returns where the frame
 * starts; its length is MYC_WIRE_TLV + b->hdr.frame_len. */
static inline const uint8_t *myc__wire_msg_prefix(myc_buf *b) {
  uint8_t *p = b->wire_prefix + sizeof b->wire_prefix - MYC_WIRE_TLV;
  myc__wire_put_tlv(p, MYC_WIRE_MSG, b->hdr.frame_len);
  return p;
}

#define MYC_WIRE_MAX_TYPES 4096
#define MYC_WIRE_NODE_MAX 255
/* HELLO flags: the sender proves a pre-shared key; a nonce ends the
 * HELLO and an AUTH frame follows it. */
#define MYC_WIRE_HELLO_PSK 0x0001
#define MYC_WIRE_NONCE 32
#define MYC_WIRE_PROOF 32 /* HMAC-SHA256 */

/* The handshake.  'types' points into the decoded frame (or the caller's
 * array for encoding): ntypes entries of [tag u16 LE][digest 32 bytes]. */
typedef struct {
  uint8_t vmin, vmax;
  uint16_t flags;
  char node[MYC_WIRE_NODE_MAX + 1];
  uint32_t schema_id; /* 0: no contracts */
  uint16_t schema_version, min_compatible;
  uint16_t ntypes;
  const uint8_t *types;
  uint8_t nonce[MYC_WIRE_NONCE]; /* with MYC_WIRE_HELLO_PSK */
} myc__wire_hello;

#define MYC_WIRE_TYPE_ENTRY (2 + MYC_WIRE_DIGEST)

/* Bytes the HELLO body of 'h' takes. */
size_t myc__wire_hello_size(const myc__wire_hello *h);

/* Writes the HELLO frame (TLV header included) for 'h' into 'out'.
 * Returns its size, or 0 when 'cap' is too small or 'h' is invalid. */
size_t myc__wire_hello_encode(const myc__wire_hello *h, uint8_t *out,
                              size_t cap);

/* Decodes a HELLO body.  Returns 0, or MYC_EINVAL with '*why'. */
int myc__wire_hello_decode(const uint8_t *body, uint32_t len,
                           myc__wire_hello *h, const char **why);

/* The version both sides speak: the highest in both ranges, or 0. */
int myc__wire_agree(const myc__wire_hello *a, const myc__wire_hello *b);

/* Entry 'i' of h->types. */
static inline uint16_t myc__wire_hello_tag(const myc__wire_hello *h,
                                           uint16_t i) {
  const uint8_t *e = h->types + (size_t)i * MYC_WIRE_TYPE_ENTRY;
  return (uint16_t)(e[0] | e[1] << 8);
}
static inline const uint8_t *myc__wire_hello_digest(const myc__wire_hello *h,
                                                    uint16_t i) {
  return h->types + (size_t)i * MYC_WIRE_TYPE_ENTRY + 2;
}

/* Names the contract type 'tag' for messages (NULL: unknown). */
typedef const char *(*myc__wire_type_name)(void *ud, uint16_t tag);

/* Decides on the peer's HELLO 'peer' against ours 'me' ('psk': whether
 * this link requires a pre-shared key).  Returns the wire version the
 * link speaks, or 0 with why it is refused in 'why' (versions that do
 * not meet, other schemas, a type both list with other digests, a key
 * one side requires and the other lacks). */
int myc__wire_hello_check(const myc__wire_hello *me,
                          const myc__wire_hello *peer, int psk,
                          myc__wire_type_name name, void *ud, char *why,
                          size_t cap);

/* The AUTH body a side sends to prove it holds 'key': HMAC-SHA256 over
 * "MYCL-PSK", its role ('c' it dialled, 'a' it accepted), the nonce of
 * the side that checks, then its own (docs/WIRE.md). */
void myc__wire_psk_proof(const uint8_t *key, size_t key_len, int dialled,
                         const uint8_t *verifier_nonce,
                         const uint8_t *prover_nonce,
                         uint8_t out[MYC_WIRE_PROOF]);

/* Checks an AUTH body against the proof expected.  Returns 0, or
 * MYC_EINVAL with '*why'.  Constant time in the proof's bytes. */
int myc__wire_auth_check(const uint8_t *body, uint32_t len,
                         const uint8_t expected[MYC_WIRE_PROOF],
                         const char **why);

/* Checks the body of a SUB or UNSUB frame (a subscription pattern).
 * Returns 0 or MYC_EINVAL with '*why'. */
int myc__wire_pattern_check(const uint8_t *body, uint32_t len,
                            const char **why);

#endif
