/* nkey.h -- a NATS user NKey from its seed (docs/NATS.md, nats.nkey).
 * A server that lists a user by public key ("UA...") sends a nonce that
 * the client signs with the key's seed ("SU..."); libnats signs from the
 * seed file, but must be told the public key, which is derived here from
 * the same file: the seed decoded (base32, CRC-16), its Ed25519 public
 * key encoded as NATS does. */
#ifndef MYC_NATS_NKEY_H
#define MYC_NATS_NKEY_H

#include "base/alloc.h"

#include <stddef.h>

/* A user public key: 56 characters and a NUL. */
#define MYC_NATS_NKEY_PUB 57

/* Reads the user seed in the file 'path' (the first word starting "SU",
 * as `nk -gen user` writes it, alone or in a .creds file) and writes its
 * public key to 'pub'.  Returns 0, or MYC_EINVAL with what is wrong,
 * naming the file, in 'err'. */
int myc__nats_nkey_public(const myc__alloc *a, const char *path,
                          char pub[MYC_NATS_NKEY_PUB], char *err,
                          size_t errlen);

#endif
