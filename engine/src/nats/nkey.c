/* nkey.c -- a user NKey's public key from its seed file (see nkey.h).
 * The encoding (github.com/nats-io/nkeys): base32 without padding of the
 * prefix bytes, the 32 key bytes and a CRC-16/XMODEM of both, little
 * endian.  A seed's two prefix bytes hold 'S' (18 << 3) and the key's
 * type, here a user ('U', 20 << 3); a public key's one byte is the type. */
#include "nats/nkey.h"

#include "base/file.h"

#include <openssl/evp.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PREFIX_SEED (18u << 3)
#define PREFIX_USER (20u << 3)
#define SEED_CHARS 58 /* base32 of 2 + 32 + 2 bytes */

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16(const uint8_t *p, size_t n) {
  uint16_t crc = 0;
  size_t i;
  int b;
  for (i = 0; i < n; i++) {
    crc ^= (uint16_t)(p[i] << 8);
    for (b = 0; b < 8; b++)
      crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
  }
  return crc;
}

/* Decodes 'n' base32 characters into 'out'; returns the bytes written,
 * or -1 on a character outside the alphabet. */
static int b32_decode(const char *s, size_t n, uint8_t *out) {
  uint32_t acc = 0;
  int bits = 0, len = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    const char *c = memchr(B32, s[i], 32);
    if (c == NULL || s[i] == '\0')
      return -1;
    acc = acc << 5 | (uint32_t)(c - B32);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[len++] = (uint8_t)(acc >> bits);
    }
  }
  return len;
}

static void b32_encode(const uint8_t *p, size_t n, char *out) {
  uint32_t acc = 0;
  int bits = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    acc = acc << 8 | p[i];
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      *out++ = B32[(acc >> bits) & 31];
    }
  }
  if (bits > 0)
    *out++ = B32[(acc << (5 - bits)) & 31];
  *out = '\0';
}

/* The first "SU..." word of 'text': the seed's characters, or NULL. */
static const char *find_seed(const char *text, size_t len) {
  size_t i;
  for (i = 0; i + SEED_CHARS <= len; i++)
    if (text[i] == 'S' && text[i + 1] == 'U' &&
        (i == 0 || strchr(" \t\r\n\"'", text[i - 1]) != NULL) &&
        (i + SEED_CHARS == len ||
         strchr(" \t\r\n\"'", text[i + SEED_CHARS]) != NULL))
      return text + i;
  return NULL;
}

int myc__nats_nkey_public(const myc__alloc *a, const char *path,
                          char pub[MYC_NATS_NKEY_PUB], char *err,
                          size_t errlen) {
  char *text = NULL, why[512];
  size_t len = 0, publen = 32;
  const char *s;
  uint8_t raw[40], key[35];
  uint16_t crc;
  EVP_PKEY *pk;
  int n, rc = MYC_EINVAL;
  if (myc__read_file(a, path, &text, &len, why, sizeof why) != 0) {
    snprintf(err, errlen, "nats.nkey: %s", why);
    return MYC_EINVAL;
  }
  s = find_seed(text, len);
  n = s != NULL ? b32_decode(s, SEED_CHARS, raw) : -1;
  crc = n == 36 ? crc16(raw, 34) : 0;
  if (n != 36 || (raw[34] | raw[35] << 8) != crc ||
      (raw[0] & 0xf8) != PREFIX_SEED ||
      (((raw[0] & 7) << 5) | (raw[1] >> 3)) != PREFIX_USER) {
    snprintf(err, errlen,
             "nats.nkey: %s holds no user NKey seed (a word of %d "
             "characters starting \"SU\", as `nk -gen user` writes it)",
             path, SEED_CHARS);
    goto out;
  }
  pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw + 2, 32);
  key[0] = PREFIX_USER;
  if (pk == NULL || EVP_PKEY_get_raw_public_key(pk, key + 1, &publen) != 1 ||
      publen != 32) {
    snprintf(err, errlen,
             "nats.nkey: %s: OpenSSL cannot derive the "
             "Ed25519 public key of the seed",
             path);
  } else {
    crc = crc16(key, 33);
    key[33] = (uint8_t)crc;
    key[34] = (uint8_t)(crc >> 8);
    b32_encode(key, 35, pub);
    rc = 0;
  }
  EVP_PKEY_free(pk);
out:
  memset(raw, 0, sizeof raw);
  memset(text, 0, len);
  myc__free(a, text, len + 1);
  return rc;
}
