/* utf8.h -- UTF-8 validation in pieces: a text may arrive split anywhere
 * (across frames, across socket reads), so the validator carries a small
 * state from one piece to the next.  Well-formed means RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF.
 */
#ifndef MYC_UTF8_H
#define MYC_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The state at the start of a text, and after a whole character. */
#define MYC_UTF8_START 0u
/* Not UTF-8, whatever follows. */
#define MYC_UTF8_BAD 0xffffffffu

/* Continues validation from state 'st' over [p, end).  Returns the new
 * state: MYC_UTF8_START when the bytes so far end on a whole character,
 * MYC_UTF8_BAD once they cannot be UTF-8, else the state inside a
 * character.  ASCII runs are checked 8 bytes at a time. */
uint32_t myc__utf8_check(uint32_t st, const uint8_t *p, const uint8_t *end);

#endif
