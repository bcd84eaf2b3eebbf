/* ws_recv_test.c -- the WebSocket receiving half (net/ws_recv.c) fed
 * server frames directly: whole messages referenced in place, frames
 * split at every byte boundary across reads, fragments with control
 * frames between them, UTF-8 checked across reads, sizes refused before
 * anything is allocated, every protocol failure with its close code, and
 * out-of-memory at every allocation; base/utf8.c against a reference
 * decoder over every sequence of up to three bytes. */
#include "test.h"

#include "base/utf8.h"
#include "net/ws_recv.h"

#include <stdint.h>

/* ---- UTF-8 --------------------------------------------------------------- */

/* Reference: decodes one character at a time with the code point's
 * arithmetic.  1 for a whole valid text, 0 otherwise (incomplete too). */
static int ref_utf8(const uint8_t *p, size_t n) {
  size_t i = 0, k, need;
  uint32_t cp, min;
  while (i < n) {
    uint8_t b = p[i++];
    if (b < 0x80)
      continue;
    if ((b & 0xe0) == 0xc0)
      need = 1, cp = b & 0x1f, min = 0x80;
    else if ((b & 0xf0) == 0xe0)
      need = 2, cp = b & 0x0f, min = 0x800;
    else if ((b & 0xf8) == 0xf0)
      need = 3, cp = b & 0x07, min = 0x10000;
    else
      return 0;
    for (k = 0; k < need; k++) {
      if (i >= n || (p[i] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (p[i++] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
  }
  return 1;
}

static int fast_utf8(const uint8_t *p, size_t n) {
  return myc__utf8_check(MYC_UTF8_START, p, p + n) == MYC_UTF8_START;
}

static void utf8_matches_reference_on_every_short_sequence(void) {
  uint8_t s[4];
  uint32_t a, b, c;
  for (a = 0; a < 256; a++) {
    s[0] = (uint8_t)a;
    CHECK_EQ(fast_utf8(s, 1), ref_utf8(s, 1));
    for (b = 0; b < 256; b++) {
      s[1] = (uint8_t)b;
      CHECK_EQ(fast_utf8(s, 2), ref_utf8(s, 2));
      if (a < 0xe0 || a > 0xf4)
        continue; /* other leads are decided by two bytes */
      for (c = 0; c < 256; c++) {
        s[2] = (uint8_t)c;
        CHECK_EQ(fast_utf8(s, 3), ref_utf8(s, 3));
        s[3] = 0x80; /* a four-byte form, where the lead takes it */
        CHECK_EQ(fast_utf8(s, 4), ref_utf8(s, 4));
      }
    }
  }
}

/* Runs of ASCII are skipped in 32- and 8-byte blocks: a bad or non-ASCII
 * byte at any place of a block, and any alignment of the text, must be
 * seen. */
static void utf8_finds_a_bad_byte_anywhere_in_ascii_runs(void) {
  uint8_t buf[112], *text;
  size_t n = 100, i, cut, at;
  for (at = 0; at < 8; at++) {
    text = buf + at;
    for (i = 0; i < n; i++) {
      memset(text, 'a', n);
      text[i] = 0xff;
      CHECK(!fast_utf8(text, n));
      text[i] = 0xc3; /* "é" needs a second byte */
      CHECK(!fast_utf8(text, i + 1));
      if (i + 1 < n) {
        text[i + 1] = 0xa9;
        CHECK(fast_utf8(text, n));
        /* Split anywhere, the state carries the character across. */
        for (cut = 0; cut <= n; cut++) {
          uint32_t st = myc__utf8_check(MYC_UTF8_START, text, text + cut);
          CHECK(myc__utf8_check(st, text + cut, text + n) == MYC_UTF8_START);
        }
      }
    }
  }
  CHECK(myc__utf8_check(MYC_UTF8_BAD, buf, buf) == MYC_UTF8_BAD);
}

/* ---- a receiver and what it reports -------------------------------------- */

typedef struct {
  myc__ws_recv r;
  failing_alloc fa;
  myc__alloc alloc;
  char log[200000]; /* events, one after the other */
  size_t len;
  int batches;
  int in_place; /* messages whose bytes pointed into the read */
  const char *read;
  size_t read_len;
} rx;

static void logf_(rx *x, const char *fmt, const char *p, size_t n) {
  int k = snprintf(x->log + x->len, sizeof x->log - x->len, fmt, (int)n);
  x->len += (size_t)k;
  if (n > 0 && x->len + n < sizeof x->log) {
    memcpy(x->log + x->len, p, n);
    x->len += n;
  }
  x->log[x->len++] = '|';
  x->log[x->len] = '\0';
}

static void take_batch(rx *x) {
  myc_ws_batch b;
  uint32_t i;
  if (x->r.n == 0)
    return;
  myc__ws_recv_batch(&x->r, &b);
  x->batches++;
  for (i = 0; i < b.count; i++) {
    const myc_ws_part *m = &b.parts[i];
    logf_(x, m->binary ? "B%d:" : "T%d:", m->p, m->len);
    x->in_place += (uintptr_t)m->p >= (uintptr_t)x->read &&
                   (uintptr_t)(m->p + m->len) <=
                       (uintptr_t)(x->read + x->read_len);
  }
  myc__ws_recv_clear(&x->r);
}

/* The log keeps the wire's order whatever the reads: messages received
 * before a control frame are logged before it. */
static int on_ping(void *ud, const char *p, size_t n) {
  take_batch(ud);
  logf_(ud, "ping%d:", p, n);
  return 0;
}

static int on_pong(void *ud, const char *p, size_t n) {
  take_batch(ud);
  logf_(ud, "pong%d:", p, n);
  return 0;
}

static int on_close(void *ud, int code, const char *reason, size_t n) {
  char head[32];
  take_batch(ud);
  snprintf(head, sizeof head, "close%d/%%d:", code);
  logf_(ud, head, reason, n);
  return 0;
}

static const myc__ws_recv_cbs cbs = {on_ping, on_pong, on_close};

static void rx_init(rx *x, uint64_t max_message) {
  memset(x, 0, sizeof *x);
  x->alloc.fn = failing_alloc_fn;
  x->alloc.ud = &x->fa;
  x->fa.fail_at = -1;
  myc__ws_recv_init(&x->r, &x->alloc, &cbs, x);
  myc__ws_recv_reset(&x->r, max_message);
}

/* Feeds one read, as ws.c does: parse, then deliver the batch before the
 * read's buffer goes.  Logs a failure as "fail<code>". */
static int rx_feed(rx *x, const void *p, size_t n) {
  char *copy = malloc(n ? n : 1); /* a fresh buffer: ASan sees misuse */
  int rc;
  memcpy(copy, p, n);
  x->read = copy;
  x->read_len = n;
  rc = myc__ws_recv_feed(&x->r, copy, n);
  take_batch(x);
  if (rc != 0) {
    char what[32];
    snprintf(what, sizeof what, "fail%d", rc);
    logf_(x, what, "", 0);
  }
  free(copy);
  x->read = NULL;
  return rc;
}

static void rx_free(rx *x) {
  myc__ws_recv_free(&x->r);
}

/* Appends a server frame (never masked) to 'out'; returns its size. */
static size_t frame(uint8_t *out, int fin, int op, const void *p, size_t n) {
  size_t h = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
  if (n < 126) {
    out[1] = (uint8_t)n;
  } else if (n < 65536) {
    out[1] = 126;
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    h = 4;
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    h = 10;
  }
  if (n > 0)
    memcpy(out + h, p, n);
  return h + n;
}

/* ---- messages ------------------------------------------------------------ */

static void many_small_frames_in_one_read_are_one_batch_in_place(void) {
  static uint8_t wire[20000];
  static char want[40000];
  size_t n = 0, w = 0;
  char m[16];
  int i;
  static rx x;
  rx_init(&x, 1 << 20);
  for (i = 1; i <= 1000; i++) {
    int len = snprintf(m, sizeof m, "m%d", i);
    n += frame(wire + n, 1, i % 7 == 0 ? 2 : 1, m, (size_t)len);
    w += (size_t)snprintf(want + w, sizeof want - w, "%c%d:%s|",
                          i % 7 == 0 ? 'B' : 'T', len, m);
  }
  CHECK_EQ(rx_feed(&x, wire, n), 0);
  CHECK_STR(x.log, want);
  CHECK_EQ(x.batches, 1);
  CHECK_EQ(x.in_place, 1000); /* no message was copied */
  CHECK_EQ(x.r.cap, 0);       /* nor any byte buffer allocated */
  rx_free(&x);
  CHECK_EQ(x.fa.live, 0);
}

/* A stream using every framing case: lengths in 7, 16 and 64 bits, a
 * message in fragments with a ping and a pong between them, an empty
 * binary message, UTF-8 characters, and the close. */
static size_t mixed_stream(uint8_t *w, size_t big) {
  static char text[70000];
  size_t n = 0;
  memset(text, 'x', sizeof text);
  memcpy(text, "\xe2\x82\xac", 3); /* starts with "€" */
  n += frame(w + n, 1, 1, "hello", 5);
  n += frame(w + n, 1, 1, text, 300);
  n += frame(w + n, 0, 1, "fr\xc3", 3); /* "é" split across fragments */
  n += frame(w + n, 1, 9, "p1", 2);
  n += frame(w + n, 0, 0, "\xa9-", 2);
  n += frame(w + n, 1, 10, "pong!", 5);
  n += frame(w + n, 1, 0, "end", 3);
  n += frame(w + n, 1, 2, "", 0);
  if (big)
    n += frame(w + n, 1, 2, text, big);
  n += frame(w + n, 1, 8, "\x03\xe8" "bye", 5);
  n += frame(w + n, 1, 1, "after the close", 15); /* ignored */
  return n;
}

static void frames_split_at_every_byte_boundary(void) {
  static uint8_t wire[1000];
  static char whole[200000];
  static rx x;
  size_t n = mixed_stream(wire, 0), cut;
  rx_init(&x, 1 << 20);
  CHECK_EQ(rx_feed(&x, wire, n), 0);
  CHECK(x.r.closed);
  memcpy(whole, x.log, x.len + 1);
  CHECK(strstr(whole, "T5:hello|T300:\xe2\x82\xac") == whole);
  CHECK(strstr(whole, "|ping2:p1|pong5:pong!|T8:fr\xc3\xa9-end|B0:|"
                      "close1000/3:bye|") != NULL);
  CHECK(strstr(whole, "after") == NULL);
  rx_free(&x);
  for (cut = 0; cut <= n; cut++) {
    rx_init(&x, 1 << 20);
    CHECK_EQ(rx_feed(&x, wire, cut), 0);
    CHECK_EQ(rx_feed(&x, wire + cut, n - cut), 0);
    CHECK_STR(x.log, whole);
    rx_free(&x);
    CHECK_EQ(x.fa.live, 0);
  }
  /* Every byte its own read. */
  rx_init(&x, 1 << 20);
  for (cut = 0; cut < n; cut++)
    CHECK_EQ(rx_feed(&x, wire + cut, 1), 0);
  CHECK_STR(x.log, whole);
  CHECK_EQ(x.in_place, 1); /* only the empty message fits a 1-byte read */
  rx_free(&x);
}

static void a_64_bit_length_frame_byte_by_byte(void) {
  static uint8_t wire[80000];
  static char whole[200000];
  static rx x;
  size_t n = mixed_stream(wire, 66000), cut;
  rx_init(&x, 1 << 20);
  CHECK_EQ(rx_feed(&x, wire, n), 0);
  memcpy(whole, x.log, x.len + 1);
  CHECK(strstr(whole, "|B66000:\xe2\x82\xacxxx") != NULL);
  rx_free(&x);
  rx_init(&x, 1 << 20);
  for (cut = 0; cut < n; cut++)
    CHECK_EQ(rx_feed(&x, wire + cut, 1), 0);
  CHECK_STR(x.log, whole);
  rx_free(&x);
  CHECK_EQ(x.fa.live, 0);
}

static void fragments_with_control_frames_between_keep_the_order(void) {
  static uint8_t wire[1000];
  static rx x;
  size_t n = 0;
  n += frame(wire + n, 1, 1, "a", 1);
  n += frame(wire + n, 0, 2, "b1", 2);
  n += frame(wire + n, 1, 9, "x", 1);
  n += frame(wire + n, 0, 0, "b2", 2);
  n += frame(wire + n, 1, 10, "y", 1);
  n += frame(wire + n, 1, 9, "", 0);
  n += frame(wire + n, 1, 0, "b3", 2);
  n += frame(wire + n, 1, 1, "c", 1);
  rx_init(&x, 100);
  CHECK_EQ(rx_feed(&x, wire, n), 0);
  CHECK_STR(x.log, "T1:a|ping1:x|pong1:y|ping0:|B6:b1b2b3|T1:c|");
  rx_free(&x);
}

/* ---- failures ------------------------------------------------------------ */

/* Feeds 'wire' as one read and expects failure 'code' after 'log'. */
static int fails(const uint8_t *wire, size_t n, int code, const char *log) {
  static rx x;
  int ok;
  rx_init(&x, 1000);
  ok = rx_feed(&x, wire, n) == code && strcmp(x.log, log) == 0 &&
       rx_feed(&x, "\x81\x01z", 3) == 0 && strcmp(x.log, log) == 0;
  if (!ok)
    fprintf(stderr, "  expected %d after '%s', got log '%s'\n", code, log,
            x.log);
  rx_free(&x);
  return ok && x.fa.live == 0;
}

static void text_that_is_not_utf8_split_across_reads(void) {
  static uint8_t wire[100];
  static rx x;
  size_t n = frame(wire, 1, 1, "ab\xe2\x82(cd", 7);
  rx_init(&x, 1000);
  CHECK_EQ(rx_feed(&x, wire, 5), 0); /* header and "ab\xe2" */
  CHECK_EQ(rx_feed(&x, wire + 5, n - 5), 1007);
  CHECK_STR(x.log, "fail1007|");
  rx_free(&x);
  /* Bad in a later fragment, in a later read. */
  n = frame(wire, 0, 1, "ok\xe2", 3);
  rx_init(&x, 1000);
  CHECK_EQ(rx_feed(&x, wire, n), 0);
  CHECK_EQ(rx_feed(&x, "\x80\x01(", 3), 1007);
  rx_free(&x);
  /* A message that ends inside a character. */
  n = frame(wire, 1, 1, "ok\xe2\x82", 4);
  CHECK(fails(wire, n, 1007, "fail1007|"));
  n = frame(wire, 0, 1, "ok\xe2", 3);
  n += frame(wire + n, 1, 0, "", 0);
  CHECK(fails(wire, n, 1007, "fail1007|"));
  /* Whole in the read (in place), and binary is not checked. */
  n = frame(wire, 1, 1, "\xc0\x80", 2);
  CHECK(fails(wire, n, 1007, "fail1007|"));
  n = frame(wire, 1, 2, "\xc0\x80", 2);
  n += frame(wire + n, 1, 1, "\xed\xa0\x80", 3); /* a surrogate */
  CHECK(fails(wire, n, 1007, "B2:\xc0\x80|fail1007|"));
}

static void oversize_frames_are_refused_before_allocating(void) {
  static uint8_t wire[3000], big[2000];
  static rx x;
  size_t n;
  /* max_message is 1000 in fails(): 1001 bytes announced, none sent. */
  n = frame(wire, 1, 2, big, 1001);
  rx_init(&x, 1000);
  CHECK_EQ(rx_feed(&x, wire, 4), 1009);
  CHECK_EQ(x.fa.count, 0); /* not one allocation */
  rx_free(&x);
  CHECK(fails(wire, n, 1009, "fail1009|"));
  rx_init(&x, 1000); /* exactly max_message is fine */
  CHECK_EQ(rx_feed(&x, wire, frame(wire, 1, 2, big, 1000)), 0);
  CHECK(strncmp(x.log, "B1000:", 6) == 0);
  rx_free(&x);
  /* The sum of the fragments counts. */
  n = frame(wire, 0, 1, big, 600);
  n += frame(wire + n, 1, 0, big, 401);
  CHECK(fails(wire, n, 1009, "fail1009|"));
  /* 2^62 bytes announced: refused as too large, not as malformed. */
  memcpy(wire, "\x82\x7f\x40\0\0\0\0\0\0\0xx", 12);
  CHECK(fails(wire, 12, 1009, "fail1009|"));
  /* A large announcement is only paid for as its bytes arrive. */
  rx_init(&x, 64u << 20);
  n = frame(wire, 1, 2, big, 1000);
  memcpy(wire, "\x82\x7f\0\0\0\0\x03\0\0\0", 10); /* 48 MiB */
  CHECK_EQ(rx_feed(&x, wire, n), 0);
  CHECK(x.r.cap <= 16384);
  rx_free(&x);
}

static void protocol_violations_close_with_their_code(void) {
  uint8_t w[300];
  size_t n;
  CHECK(fails((const uint8_t *)"\xc1\x02hi", 4, 1002, "fail1002|")); /* RSV1 */
  CHECK(fails((const uint8_t *)"\x83\x02hi", 4, 1002, "fail1002|")); /* op 3 */
  CHECK(fails((const uint8_t *)"\x8b\x00", 2, 1002, "fail1002|"));   /* op B */
  CHECK(fails((const uint8_t *)"\x81\x82\1\2\3\4hi", 8, 1002,
              "fail1002|"));                                         /* mask */
  /* A continuation with no message to continue. */
  CHECK(fails((const uint8_t *)"\x80\x02hi", 4, 1002, "fail1002|"));
  CHECK(fails((const uint8_t *)"\x01\x01" "a\x81\x01" "b", 6, 1002,
              "fail1002|")); /* a new message inside a fragmented one */
  /* Messages before the faulty frame are delivered. */
  CHECK(fails((const uint8_t *)"\x81\x01" "a\xc1\x00", 5, 1002,
              "T1:a|fail1002|"));
  /* Headers that cannot be trusted get no code. */
  memset(w, 0, sizeof w);
  memcpy(w, "\x89\x7e\x00\xc8", 4); /* a 200-byte ping */
  CHECK(fails(w, 204, MYC_WS_MALFORMED, "fail1005|"));
  CHECK(fails((const uint8_t *)"\x09\x00", 2, MYC_WS_MALFORMED,
              "fail1005|")); /* a fragmented ping */
  CHECK(fails((const uint8_t *)"\x81\x7e\x00\x05hello", 9, MYC_WS_MALFORMED,
              "fail1005|")); /* 16-bit length for 5 bytes */
  CHECK(fails((const uint8_t *)"\x82\x7f\0\0\0\0\0\0\0\x05hello", 15,
              MYC_WS_MALFORMED, "fail1005|"));
  CHECK(fails((const uint8_t *)"\x82\x7f\x80\0\0\0\0\0\0\0", 10,
              MYC_WS_MALFORMED, "fail1005|")); /* the top bit set */
  /* Close frames: half a code, a code no one may send, a bad reason. */
  CHECK(fails((const uint8_t *)"\x88\x01\x03", 3, 1002, "fail1002|"));
  CHECK(fails((const uint8_t *)"\x88\x02\x03\xed", 4, 1002, "fail1002|"));
  CHECK(fails((const uint8_t *)"\x88\x04\x03\xe8\xc3\x28", 6, 1007,
              "fail1007|"));
  /* Known bad before the frame is whole: a reason that cannot be UTF-8,
   * a control frame announcing an extended length. */
  CHECK(fails((const uint8_t *)"\x88\x10\x03\xe8\xff", 5, 1007, "fail1007|"));
  CHECK(fails((const uint8_t *)"\x89\x7f", 2, MYC_WS_MALFORMED, "fail1005|"));
  n = frame(w, 1, 8, "", 0);
  CHECK(fails(w, n, 0, "close1005/0:|"));
  CHECK(fails((const uint8_t *)"\x88\x02\x0f\xa0", 4, 0, "close4000/0:|"));
}

/* Every allocation made while assembling fails in turn: the receiver
 * reports MYC_ENOMEM and leaks nothing. */
static void out_of_memory_at_every_allocation(void) {
  static uint8_t wire[80000];
  static rx x;
  size_t n = mixed_stream(wire, 66000);
  long at;
  int rc;
  for (at = 1;; at++) {
    size_t cut;
    rx_init(&x, 1 << 20);
    x.fa.fail_at = at;
    rc = 0;
    for (cut = 0; cut < n && rc == 0; cut += 1000)
      rc = rx_feed(&x, wire + cut, n - cut < 1000 ? n - cut : 1000);
    rx_free(&x);
    CHECK_EQ(x.fa.live, 0);
    if (rc == 0)
      break;
    CHECK_EQ(rc, MYC_ENOMEM);
  }
  CHECK(at > 3);
}

int main(void) {
  static const test_case cases[] = {
      {"utf8 matches a reference on every short sequence",
       utf8_matches_reference_on_every_short_sequence},
      {"utf8 finds a bad byte anywhere in ASCII runs",
       utf8_finds_a_bad_byte_anywhere_in_ascii_runs},
      {"many small frames in one read: one batch, in order, in place",
       many_small_frames_in_one_read_are_one_batch_in_place},
      {"frames split at every byte boundary across reads",
       frames_split_at_every_byte_boundary},
      {"a 64-bit length frame fed byte by byte",
       a_64_bit_length_frame_byte_by_byte},
      {"fragments with pings and pongs between them keep the order",
       fragments_with_control_frames_between_keep_the_order},
      {"text that is not UTF-8, split across reads: 1007",
       text_that_is_not_utf8_split_across_reads},
      {"oversize frames refused before allocating: 1009",
       oversize_frames_are_refused_before_allocating},
      {"protocol violations close with their code",
       protocol_violations_close_with_their_code},
      {"out of memory at every allocation", out_of_memory_at_every_allocation},
      {NULL, NULL}};
  return run_tests(cases);
}
