/* handshake.c -- fuzzes the link handshake as a listener meets it
 * (link/wire.c): the peer's HELLO decoded and judged against ours
 * (versions, schemas, per-type digests, the pre-shared key flag), then,
 * when a key is required, its AUTH proof.  The first input byte picks our
 * side: bit 0 a key required, bit 1 contracts, bit 2 wire v1 only; the
 * rest is what the peer sends. */
#include "link/wire.h"
#include "mycelium.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t KEY[] = "0123456789abcdef-fuzz-key";

static const char *name(void *ud, uint16_t tag) {
  (void)ud;
  return tag == 5 ? "Swap" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  myc__wire_hello me, peer;
  uint8_t types[2 * MYC_WIRE_TYPE_ENTRY], out[MYC_WIRE_TLV + 200000];
  uint8_t *p;
  const char *why = NULL;
  char reason[512];
  myc__wire_tlv t;
  int64_t k;
  int psk, v;
  size_t off;
  if (size < 1)
    return 0;
  psk = data[0] & 1;
  memset(&me, 0, sizeof me);
  strcpy(me.node, "me");
  me.vmin = 1;
  me.vmax = data[0] & 4 ? 1 : 2;
  if (data[0] & 2) {
    uint32_t i;
    for (i = 0; i < sizeof types; i++)
      types[i] = (uint8_t)i;
    types[0] = 5;
    types[1] = 0;
    types[MYC_WIRE_TYPE_ENTRY] = 6;
    types[MYC_WIRE_TYPE_ENTRY + 1] = 0;
    me.schema_id = 7;
    me.schema_version = 3;
    me.min_compatible = 2;
    me.ntypes = 2;
    me.types = types;
  }
  if (psk) {
    me.flags = MYC_WIRE_HELLO_PSK;
    memset(me.nonce, 0xA5, MYC_WIRE_NONCE);
  }
  /* A copy of exactly the peer's bytes: ASan sees any read past them. */
  p = malloc(size);
  if (p == NULL)
    return 0;
  memcpy(p, data + 1, size - 1);
  off = 0;
  k = myc__wire_next(p, size - 1, 1 << 20, &t);
  if (k <= 0 || t.type != MYC_WIRE_HELLO)
    goto done;
  off = (size_t)k;
  if (myc__wire_hello_decode(t.body, t.len, &peer, &why) != 0) {
    if (why == NULL || why[0] == '\0')
      abort();
    goto done;
  }
  /* Accepted: it encodes back to the same bytes. */
  if (myc__wire_hello_encode(&peer, out, sizeof out) != MYC_WIRE_TLV + t.len ||
      memcmp(out + MYC_WIRE_TLV, t.body, t.len) != 0)
    abort();
  reason[0] = '\0';
  v = myc__wire_hello_check(&me, &peer, psk, name, NULL, reason,
                            sizeof reason);
  if (v == 0) {
    if (reason[0] == '\0')
      abort();
    goto done;
  }
  /* A version both speak, and a key offered exactly when required. */
  if (v < me.vmin || v > me.vmax || v < peer.vmin || v > peer.vmax ||
      !psk != !(peer.flags & MYC_WIRE_HELLO_PSK))
    abort();
  if (psk) {
    uint8_t want[MYC_WIRE_PROOF], again[MYC_WIRE_PROOF];
    k = myc__wire_next(p + off, size - 1 - off, 1 << 20, &t);
    if (k <= 0 || t.type != MYC_WIRE_AUTH)
      goto done;
    myc__wire_psk_proof(KEY, sizeof KEY - 1, 0, me.nonce, peer.nonce, want);
    myc__wire_psk_proof(KEY, sizeof KEY - 1, 0, me.nonce, peer.nonce, again);
    if (memcmp(want, again, sizeof want) != 0)
      abort();
    why = NULL;
    if (myc__wire_auth_check(t.body, t.len, want, &why) == 0) {
      if (t.len != MYC_WIRE_PROOF || memcmp(t.body, want, t.len) != 0)
        abort();
    } else if (why == NULL || why[0] == '\0') {
      abort();
    }
  }
done:
  free(p);
  return 0;
}
