/* utf8.c -- UTF-8 validation in pieces (see utf8.h).
 *
 * A state inside a character packs the continuation bytes still needed
 * and the range the next one must fall in: the ranges are what rule out
 * overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF
 * (F4), as in RFC 3629's table.
 */
#include "base/utf8.h"

#include <string.h>

#define STATE(need, lo, hi)                                                    \
  ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)
#define NEED(st) ((st) & 0xffu)
#define LO(st) (((st) >> 8) & 0xffu)
#define HI(st) (((st) >> 16) & 0xffu)

#define HIGH 0x8080808080808080ull

/* The high bits of the 32 bytes at 'p', OR-ed into one word. */
static uint64_t ascii4(const uint8_t *p) {
  uint64_t w[4];
  memcpy(w, p, sizeof w);
  return w[0] | w[1] | w[2] | w[3];
}

/* The state after lead byte 'b' (not ASCII). */
static uint32_t lead(uint8_t b) {
  if (b < 0xc2)
    return MYC_UTF8_BAD; /* a continuation byte, or overlong C0/C1 */
  if (b < 0xe0)
    return STATE(1, 0x80, 0xbf);
  if (b < 0xf0)
    return STATE(2, b == 0xe0 ? 0xa0 : 0x80, b == 0xed ? 0x9f : 0xbf);
  if (b < 0xf5)
    return STATE(3, b == 0xf0 ? 0x90 : 0x80, b == 0xf4 ? 0x8f : 0xbf);
  return MYC_UTF8_BAD;
}

uint32_t myc__utf8_check(uint32_t st, const uint8_t *p, const uint8_t *end) {
  uint64_t w;
  uint8_t b;
  if (st == MYC_UTF8_BAD)
    return st;
  while (p < end) {
    if (st == MYC_UTF8_START) {
      /* JSON and most text is ASCII: skip it 32 bytes at a time (one
       * test for four words: a WebSocket text frame of a node's log is
       * ~800 bytes, checked once per message), then a word at a time. */
      while (end - p >= 32 && !(ascii4(p) & HIGH))
        p += 32;
      while (end - p >= 8) {
        memcpy(&w, p, 8);
        if (w & HIGH)
          break;
        p += 8;
      }
      while (p < end && *p < 0x80)
        p++;
      if (p == end)
        break;
      if ((st = lead(*p++)) == MYC_UTF8_BAD)
        return st;
      continue;
    }
    b = *p++;
    if (b < LO(st) || b > HI(st))
      return MYC_UTF8_BAD;
    st = NEED(st) == 1 ? MYC_UTF8_START : STATE(NEED(st) - 1, 0x80, 0xbf);
  }
  return st;
}
