/* contract.c -- contract sets: lifecycle, lookups, the schema digest and
 * the runtime check of filled payloads.
 *
 * A set is built once by the loader and never changes afterwards; all of
 * its memory is one arena, so freeing it cannot leak and partial failures
 * need no unwinding.
 */
#include "contract/contract.h"

#include "base/alloc.h"

#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "payloads are little-endian structs read in place: little-endian only"
#endif

struct myc__chunk {
  myc__chunk *next;
  size_t size, used;
  _Alignas(8) unsigned char data[];
};

#define CHUNK_MIN 4096u

/* ===================================================================== */
/* Allocation                                                             */
/* ===================================================================== */

/* The one place that calls the hook, so moving to the engine's allocator
 * wrappers is one edit. */
static void *raw_alloc(myc_alloc_fn fn, void *ud, void *p, size_t o,
                       size_t n) {
  return fn(ud, p, o, n);
}

void *myc__contract_alloc(myc_contract_set *cs, size_t n) {
  myc__chunk *c = cs->chunks;
  size_t want = (n + 7u) & ~(size_t)7u;
  void *p;

  if (c == NULL || c->size - c->used < want) {
    size_t size = want > CHUNK_MIN ? want : CHUNK_MIN;
    c = raw_alloc(cs->alloc, cs->ud, NULL, 0, sizeof(*c) + size);
    if (c == NULL)
      return NULL;
    c->size = size;
    c->used = 0;
    c->next = cs->chunks;
    cs->chunks = c;
  }
  p = c->data + c->used;
  c->used += want;
  memset(p, 0, want);
  return p;
}

char *myc__contract_strndup(myc_contract_set *cs, const char *s, size_t n) {
  char *d = myc__contract_alloc(cs, n + 1);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

static char *vformat(myc_contract_set *cs, const char *fmt, va_list ap) {
  va_list aq;
  char *s;
  int n;

  va_copy(aq, ap);
  n = vsnprintf(NULL, 0, fmt, aq);
  va_end(aq);
  if (n < 0)
    n = 0;
  s = myc__contract_alloc(cs, (size_t)n + 1);
  if (s != NULL)
    vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

static char *format(myc_contract_set *cs, const char *fmt, ...) {
  va_list ap;
  char *s;

  va_start(ap, fmt);
  s = vformat(cs, fmt, ap);
  va_end(ap);
  return s;
}

/* ===================================================================== */
/* Diagnostics                                                            */
/* ===================================================================== */

static int diag_reserve(myc_contract_set *cs) {
  myc__diag *d;
  size_t cap;

  if (cs->ndiags < cs->diag_cap)
    return 0;
  /* The old array stays in the arena; diagnostics are few. */
  cap = cs->diag_cap ? cs->diag_cap * 2 : 8;
  d = myc__contract_alloc(cs, cap * sizeof(*d));
  if (d == NULL)
    return MYC_ENOMEM;
  if (cs->ndiags)
    memcpy(d, cs->diags, cs->ndiags * sizeof(*d));
  cs->diags = d;
  cs->diag_cap = cap;
  return 0;
}

int myc__contract_diag(myc_contract_set *cs, const char *kind, int line,
                       const char *where, const char *fmt, ...) {
  char loc[32] = "";
  va_list ap;
  char *what;
  char *text;

  if (diag_reserve(cs) != 0)
    return MYC_ENOMEM;
  va_start(ap, fmt);
  what = vformat(cs, fmt, ap);
  va_end(ap);
  if (line > 0)
    snprintf(loc, sizeof(loc), ":%d", line);
  text = what == NULL ? NULL
         : where != NULL
             ? format(cs, "%s%s: %s: %s", cs->file, loc, where, what)
             : format(cs, "%s%s: %s", cs->file, loc, what);
  if (text == NULL)
    return MYC_ENOMEM;
  cs->diags[cs->ndiags].line = line;
  cs->diags[cs->ndiags].kind = kind;
  cs->diags[cs->ndiags].text = text;
  cs->ndiags++;
  return 0;
}

/* ===================================================================== */
/* 256-bit integers for bounds                                            */
/* ===================================================================== */

/* w = w * mul + add; returns the carry out of bit 255. */
static unsigned big_muladd(uint8_t w[32], unsigned mul, unsigned add) {
  unsigned carry = add;
  for (int i = 0; i < 32; i++) {
    unsigned v = w[i] * mul + carry;
    w[i] = (uint8_t)v;
    carry = v >> 8;
  }
  return carry;
}

/* w = w / div; returns the remainder. */
static unsigned big_divmod(uint8_t w[32], unsigned div) {
  unsigned rem = 0;
  for (int i = 31; i >= 0; i--) {
    unsigned cur = (rem << 8) | w[i];
    w[i] = (uint8_t)(cur / div);
    rem = cur % div;
  }
  return rem;
}

static int big_is_zero(const uint8_t w[32]) {
  for (int i = 0; i < 32; i++)
    if (w[i])
      return 0;
  return 1;
}

static void big_negate(uint8_t w[32]) {
  unsigned carry = 1;
  for (int i = 0; i < 32; i++) {
    unsigned v = (uint8_t)~w[i] + carry;
    w[i] = (uint8_t)v;
    carry = v >> 8;
  }
}

/* The little-endian u64 at 'p' (one load where the host is little-endian). */
static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* Eight bytes at a time: every typed emit compares each bounded integer
 * field with its min and max, and a byte loop over the 32 bytes of a
 * small field's zero padding was most of myc_contract_validate. */
static int big_cmp(const uint8_t a[32], const uint8_t b[32]) {
  for (int i = 24; i >= 0; i -= 8) {
    uint64_t x = le64(a + i), y = le64(b + i);
    if (x != y)
      return x < y ? -1 : 1;
  }
  return 0;
}

/* 1 when magnitude 'w' is below 2^bits, 2 when it equals 2^bits, else 0. */
static int big_fits(const uint8_t w[32], unsigned bits) {
  uint8_t lim[32] = {0};
  int c;

  if (bits >= 256)
    return 1;
  lim[bits / 8] = (uint8_t)(1u << (bits % 8));
  c = big_cmp(w, lim);
  return c < 0 ? 1 : c == 0 ? 2 : 0;
}

/* Parses an optionally signed decimal or 0x-hex integer into a magnitude.
 * Returns 0, or -1 if 'text' is not one or overflows 256 bits. */
static int big_parse(const char *text, int *neg, uint8_t w[32]) {
  const char *p = text;
  unsigned base = 10;

  memset(w, 0, 32);
  *neg = *p == '-';
  if (*p == '-' || *p == '+')
    p++;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p += 2;
  }
  if (*p == '\0')
    return -1;
  for (; *p; p++) {
    unsigned d;
    if (*p >= '0' && *p <= '9')
      d = (unsigned)(*p - '0');
    else if (base == 16 && *p >= 'a' && *p <= 'f')
      d = (unsigned)(*p - 'a' + 10);
    else if (base == 16 && *p >= 'A' && *p <= 'F')
      d = (unsigned)(*p - 'A' + 10);
    else
      return -1;
    if (big_muladd(w, base, d) != 0)
      return -1;
  }
  return 0;
}

/* Decimal text of magnitude 'w' (destroyed) into 'buf' (>= 80 bytes). */
static void big_to_dec(uint8_t w[32], int neg, char *buf) {
  char tmp[80];
  size_t n = 0;

  do
    tmp[n++] = (char)('0' + big_divmod(w, 10));
  while (!big_is_zero(w));
  if (neg)
    *buf++ = '-';
  while (n)
    *buf++ = tmp[--n];
  *buf = '\0';
}

static const uint8_t kind_size[] = {
#define XX(name, value, text, size) [value] = size,
    MYC_FIELD_KIND_MAP(XX)
#undef XX
};

static int kind_signed(myc_field_kind k) {
  return k == MYC_FIELD_I8 || k == MYC_FIELD_I16 || k == MYC_FIELD_I32 ||
         k == MYC_FIELD_I64 || k == MYC_FIELD_I256;
}

static int kind_float(myc_field_kind k) {
  return k == MYC_FIELD_F32 || k == MYC_FIELD_F64;
}

static const char *float_bound(myc_contract_set *cs, const char *text,
                               myc__bound *b, const char **why) {
  char *end;

  errno = 0;
  b->d = strtod(text, &end);
  if (*text == '\0' || *end != '\0' || errno != 0 || !isfinite(b->d)) {
    *why = "is not a finite number";
    return NULL;
  }
  return format(cs, "%.17g", b->d);
}

/* Range check of magnitude 'mag' with sign 'neg' for a kind of 'bits'. */
static const char *int_range(int neg, const uint8_t mag[32], unsigned bits,
                             int sgn) {
  int fit = big_fits(mag, sgn ? bits - 1 : bits);
  if (!sgn && neg && !big_is_zero(mag))
    return "is negative for an unsigned field";
  if (fit == 1 || (fit == 2 && sgn && neg))
    return NULL;
  return "is out of the field type's range";
}

const char *myc__contract_bound(myc_contract_set *cs, myc_field_kind kind,
                                const char *text, myc__bound *b,
                                const char **why) {
  uint8_t mag[32];
  char dec[80];
  int neg;

  memset(b, 0, sizeof(*b));
  *why = NULL;
  if (kind_float(kind))
    return float_bound(cs, text, b, why);
  if (big_parse(text, &neg, mag) != 0) {
    *why = "is not an integer";
    return NULL;
  }
  if ((*why = int_range(neg, mag, kind_size[kind] * 8u, kind_signed(kind))))
    return NULL;
  neg = neg && !big_is_zero(mag); /* "-0" is 0 */
  memcpy(b->w, mag, 32);
  if (neg)
    big_negate(b->w);
  /* Flipping the sign bit maps two's complement order onto unsigned
   * order, so one comparison serves every kind. */
  if (kind_signed(kind))
    b->w[31] ^= 0x80;
  big_to_dec(mag, neg, dec);
  return myc__contract_strndup(cs, dec, strlen(dec));
}

/* ===================================================================== */
/* Canonical text and digests                                             */
/* ===================================================================== */

static void hex_digest(const void *data, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[SHA256_DIGEST_LENGTH];

  SHA256(data, len, md);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}

/* One line per field: everything that changes the bytes or what a
 * receiver accepts; never descriptions or the order of rules. */
static char *field_canon(myc_contract_set *cs, const myc__field *f) {
  const myc__rules *r = &f->rules;
  char minl[24] = "", maxl[24] = "";

  if (r->has_min_length)
    snprintf(minl, sizeof(minl), " min_length=%u", (unsigned)r->min_length);
  if (r->has_max_length)
    snprintf(maxl, sizeof(maxl), " max_length=%u", (unsigned)r->max_length);
  return format(cs,
                "field %s %s count=%u offset=%u size=%u%s%s%s%s%s%s%s%s%s\n",
                f->pub.name, f->pub.type, (unsigned)f->pub.count,
                (unsigned)f->pub.offset, (unsigned)f->pub.size,
                f->pub.optional ? " optional" : "",
                r->has_min ? " min=" : "", r->has_min ? r->min_text : "",
                r->has_max ? " max=" : "", r->has_max ? r->max_text : "",
                minl, maxl, r->not_empty ? " not_empty" : "",
                r->not_zero ? " not_zero" : "");
}

static int type_canon(myc_contract_set *cs, myc_contract_type *t) {
  char *head = format(cs, "type %u %s size=%zu\n", (unsigned)t->tag,
                      t->name, t->size);
  char **lines = myc__contract_alloc(cs, (t->nfields + 1) * sizeof(char *));
  size_t total = 0;
  char *canon;

  if (head == NULL || lines == NULL)
    return MYC_ENOMEM;
  lines[0] = head;
  for (size_t i = 0; i < t->nfields; i++)
    if ((lines[i + 1] = field_canon(cs, &t->fields[i])) == NULL)
      return MYC_ENOMEM;
  for (size_t i = 0; i <= t->nfields; i++)
    total += strlen(lines[i]);
  if ((canon = myc__contract_alloc(cs, total + 1)) == NULL)
    return MYC_ENOMEM;
  for (size_t i = 0, n = 0; i <= t->nfields; n += strlen(lines[i]), i++)
    memcpy(canon + n, lines[i], strlen(lines[i]));
  t->canon = canon;
  hex_digest(canon, total, t->digest);
  return 0;
}

static int set_digest(myc_contract_set *cs) {
  char *head = format(cs, "mycelium-contracts 1\nschema %u %u %u\n",
                      (unsigned)cs->schema_id, (unsigned)cs->version,
                      (unsigned)cs->min_compatible);
  size_t total, n;
  char *all;

  if (head == NULL)
    return MYC_ENOMEM;
  total = strlen(head);
  for (size_t i = 0; i < cs->ntypes; i++)
    total += strlen(cs->types[i].canon);
  if ((all = myc__contract_alloc(cs, total + 1)) == NULL)
    return MYC_ENOMEM;
  n = strlen(head);
  memcpy(all, head, n);
  for (size_t i = 0; i < cs->ntypes; i++) {
    memcpy(all + n, cs->types[i].canon, strlen(cs->types[i].canon));
    n += strlen(cs->types[i].canon);
  }
  hex_digest(all, total, cs->digest);
  return 0;
}

static int by_tag(const void *a, const void *b) {
  const myc_contract_type *x = a, *y = b;
  return x->tag < y->tag ? -1 : x->tag > y->tag;
}

static int by_name(const void *a, const void *b) {
  const myc_contract_type *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int needs_check(const myc__field *f) {
  const myc__rules *r = &f->rules;
  myc_field_kind k = f->pub.kind;
  return k == MYC_FIELD_STRING || k == MYC_FIELD_VEC || k == MYC_FIELD_BOOL ||
         r->has_min || r->has_max || r->has_min_length ||
         r->has_max_length || r->not_empty || r->not_zero;
}

static int list_checked(myc_contract_set *cs, myc_contract_type *t) {
  t->checked = myc__contract_alloc(cs, (t->nfields + 1) * sizeof(void *));
  if (t->checked == NULL)
    return MYC_ENOMEM;
  for (size_t i = 0; i < t->nfields; i++)
    if (needs_check(&t->fields[i]))
      t->checked[t->nchecked++] = &t->fields[i];
  return 0;
}

/* Orders the types, builds the name index and the digests of a set the
 * parser found no fault in.  Returns 0 or MYC_ENOMEM. */
static int finish(myc_contract_set *cs) {
  if (cs->ntypes)
    qsort(cs->types, cs->ntypes, sizeof(*cs->types), by_tag);
  cs->by_name = myc__contract_alloc(cs, (cs->ntypes + 1) * sizeof(void *));
  if (cs->by_name == NULL)
    return MYC_ENOMEM;
  for (size_t i = 0; i < cs->ntypes; i++) {
    cs->by_name[i] = &cs->types[i];
    if (type_canon(cs, &cs->types[i]) != 0 ||
        list_checked(cs, &cs->types[i]) != 0)
      return MYC_ENOMEM;
  }
  if (cs->ntypes)
    qsort(cs->by_name, cs->ntypes, sizeof(*cs->by_name), by_name);
  return set_digest(cs);
}

/* ===================================================================== */
/* Lifecycle                                                              */
/* ===================================================================== */

static myc_contract_set *set_new(myc_alloc_fn alloc, void *ud,
                                 const char *file) {
  myc_contract_set *cs;
  myc_contract_set tmp = {.alloc = alloc ? alloc : myc__default_alloc,
                          .ud = ud};

  /* The set lives in its own arena: allocate from a stack header first,
   * then move the header into the arena. */
  cs = myc__contract_alloc(&tmp, sizeof(*cs));
  if (cs == NULL)
    return NULL;
  *cs = tmp;
  cs->file = myc__contract_strndup(cs, file, strlen(file));
  if (cs->file == NULL) {
    myc_contract_free(cs);
    return NULL;
  }
  return cs;
}

void myc_contract_free(myc_contract_set *cs) {
  myc__chunk *c, *next;
  myc_alloc_fn fn;
  void *ud;

  if (cs == NULL)
    return;
  /* 'cs' itself is in one of the chunks: read what we need first. */
  c = cs->chunks;
  fn = cs->alloc;
  ud = cs->ud;
  for (; c != NULL; c = next) {
    next = c->next;
    raw_alloc(fn, ud, c, sizeof(*c) + c->size, 0);
  }
}

int myc_contract_load_string(myc_contract_set **out, const char *name,
                             const char *text, size_t len,
                             myc_alloc_fn alloc, void *ud) {
  myc_contract_set *cs;
  int rc;

  if (out != NULL)
    *out = NULL;
  if (out == NULL || name == NULL || (text == NULL && len != 0))
    return MYC_EINVAL;
  if ((cs = set_new(alloc, ud, name)) == NULL)
    return MYC_ENOMEM;
  rc = myc__contract_parse(cs, text ? text : "", len);
  if (rc == 0 && cs->ndiags == 0)
    rc = finish(cs);
  if (rc != 0) {
    myc_contract_free(cs);
    return rc;
  }
  if (cs->ndiags != 0)
    cs->ntypes = 0; /* a faulty set answers no lookups */
  *out = cs;
  return cs->ndiags ? MYC_ECONTRACT : 0;
}

/* Reads a whole file through the hook into '*buf' ('*cap' bytes allocated,
 * '*len' used).  Returns 0, -errno, or MYC_ENOMEM; on error nothing is
 * left allocated. */
static int read_file(const char *path, myc_alloc_fn fn, void *ud, char **buf,
                     size_t *len, size_t *cap) {
  FILE *f = fopen(path, "rb");
  size_t got;
  int rc = 0;

  *buf = NULL;
  *len = *cap = 0;
  if (f == NULL)
    return -errno;
  do {
    if (*len == *cap) {
      size_t ncap = *cap ? *cap * 2 : 8192;
      char *nb = fn(ud, *buf, *cap, ncap);
      if (nb == NULL) {
        rc = MYC_ENOMEM;
        break;
      }
      *buf = nb;
      *cap = ncap;
    }
    got = fread(*buf + *len, 1, *cap - *len, f);
    *len += got;
  } while (got != 0);
  if (rc == 0 && ferror(f))
    rc = errno ? -errno : -EIO;
  fclose(f);
  if (rc != 0 && *buf != NULL) {
    fn(ud, *buf, *cap, 0);
    *buf = NULL;
  }
  return rc;
}

/* A set holding the single diagnostic that 'path' could not be read. */
static int unreadable(myc_contract_set **out, const char *path,
                      myc_alloc_fn fn, void *ud, int err) {
  if ((*out = set_new(fn, ud, path)) == NULL)
    return MYC_ENOMEM;
  if (myc__contract_diag(*out, "io", 0, NULL, "cannot read: %s",
                         strerror(-err)) != 0) {
    myc_contract_free(*out);
    *out = NULL;
    return MYC_ENOMEM;
  }
  return MYC_ECONTRACT;
}

int myc_contract_load(myc_contract_set **out, const char *path,
                      myc_alloc_fn alloc, void *ud) {
  myc_alloc_fn fn = alloc ? alloc : myc__default_alloc;
  size_t len, cap;
  char *buf;
  int rc;

  if (out != NULL)
    *out = NULL;
  if (out == NULL || path == NULL)
    return MYC_EINVAL;
  rc = read_file(path, fn, ud, &buf, &len, &cap);
  if (rc == MYC_ENOMEM)
    return rc;
  if (rc != 0)
    return unreadable(out, path, fn, ud, rc);
  rc = myc_contract_load_string(out, path, buf, len, fn, ud);
  fn(ud, buf, cap, 0);
  return rc;
}

/* ===================================================================== */
/* Lookups                                                                */
/* ===================================================================== */

size_t myc_contract_error_count(const myc_contract_set *cs) {
  return cs ? cs->ndiags : 0;
}

const char *myc_contract_error(const myc_contract_set *cs, size_t i) {
  return cs && i < cs->ndiags ? cs->diags[i].text : NULL;
}

const char *myc_contract_error_kind(const myc_contract_set *cs, size_t i) {
  return cs && i < cs->ndiags ? cs->diags[i].kind : NULL;
}

int myc_contract_error_line(const myc_contract_set *cs, size_t i) {
  return cs && i < cs->ndiags ? cs->diags[i].line : 0;
}

const char *myc_contract_digest(const myc_contract_set *cs) {
  return cs ? cs->digest : "";
}

const char *myc_contract_file(const myc_contract_set *cs) {
  return cs && cs->file ? cs->file : "";
}

uint32_t myc_contract_schema_id(const myc_contract_set *cs) {
  return cs ? cs->schema_id : 0;
}

uint16_t myc_contract_schema_version(const myc_contract_set *cs) {
  return cs ? cs->version : 0;
}

uint16_t myc_contract_min_compatible(const myc_contract_set *cs) {
  return cs ? cs->min_compatible : 0;
}

size_t myc_contract_type_count(const myc_contract_set *cs) {
  return cs ? cs->ntypes : 0;
}

const myc_contract_type *myc_contract_type_at(const myc_contract_set *cs,
                                              size_t i) {
  return cs && i < cs->ntypes ? &cs->types[i] : NULL;
}

const myc_contract_type *myc_contract_type_by_name(const myc_contract_set *cs,
                                                   const char *name) {
  size_t lo = 0, hi = cs && name ? cs->ntypes : 0;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, cs->by_name[mid]->name);
    if (c == 0)
      return cs->by_name[mid];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const myc_contract_type *myc_contract_type_by_tag(const myc_contract_set *cs,
                                                  uint32_t tag) {
  size_t lo = 0, hi = cs ? cs->ntypes : 0;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cs->types[mid].tag == tag)
      return &cs->types[mid];
    if (tag < cs->types[mid].tag)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const char *myc_contract_type_name(const myc_contract_type *t) {
  return t ? t->name : NULL;
}

uint16_t myc_contract_type_tag(const myc_contract_type *t) {
  return t ? (uint16_t)t->tag : 0;
}

size_t myc_contract_type_size(const myc_contract_type *t) {
  return t ? t->size : 0;
}

const char *myc_contract_type_domain(const myc_contract_type *t) {
  return t ? t->domain : NULL;
}

const char *myc_contract_type_digest(const myc_contract_type *t) {
  return t ? t->digest : NULL;
}

size_t myc_contract_field_count(const myc_contract_type *t) {
  return t ? t->nfields : 0;
}

const myc_contract_field *myc_contract_field_at(const myc_contract_type *t,
                                                size_t i) {
  return t && i < t->nfields ? &t->fields[i].pub : NULL;
}

int myc_contract_field_index(const myc_contract_type *t, const char *name) {
  for (size_t i = 0; t && name && i < t->nfields; i++)
    if (strcmp(t->fields[i].pub.name, name) == 0)
      return (int)i;
  return -1;
}

/* ===================================================================== */
/* Runtime check of a filled payload                                      */
/* ===================================================================== */

typedef struct {
  const myc_contract_type *t;
  const myc__field *f;
  char *err;
  size_t errlen;
} check;

static int violation(const check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int violation(const check *c, const char *fmt, ...) {
  va_list ap;
  int n;

  if (c->err == NULL || c->errlen == 0)
    return MYC_ECONTRACT;
  n = snprintf(c->err, c->errlen, "%s.%s: ", c->t->name, c->f->pub.name);
  if (n >= 0 && (size_t)n < c->errlen) {
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return MYC_ECONTRACT;
}

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

static int check_length(const check *c, const uint8_t *p) {
  const myc__rules *r = &c->f->rules;
  unsigned n = (unsigned)p[0] | (unsigned)p[1] << 8;

  if (n > c->f->pub.count)
    return violation(c, "length %u exceeds capacity %u", n,
                     (unsigned)c->f->pub.count);
  if (n == 0 && c->f->pub.optional)
    return 0;
  if (r->not_empty && n == 0)
    return violation(c, "violates not_empty");
  if (r->has_min_length && n < r->min_length)
    return violation(c, "violates min_length %u (length %u)",
                     (unsigned)r->min_length, n);
  if (r->has_max_length && n > r->max_length)
    return violation(c, "violates max_length %u (length %u)",
                     (unsigned)r->max_length, n);
  return 0;
}

static double load_float(const myc__field *f, const uint8_t *p) {
  if (f->pub.kind == MYC_FIELD_F32) {
    float v;
    memcpy(&v, p, sizeof(v));
    return v;
  }
  double v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static int check_float(const check *c, const uint8_t *p) {
  const myc__rules *r = &c->f->rules;
  double v = load_float(c->f, p);

  if (v == 0 && c->f->pub.optional)
    return 0;
  if (r->not_zero && v == 0)
    return violation(c, "violates not_zero");
  /* Written so that NaN fails both bounds. */
  if (r->has_min && !(v >= r->min.d))
    return violation(c, "violates min %s (value %.17g)", r->min_text, v);
  if (r->has_max && !(v <= r->max.d))
    return violation(c, "violates max %s (value %.17g)", r->max_text, v);
  return 0;
}

/* Text of an integer field of up to 8 bytes, for messages. */
static void int_text(const myc__field *f, const uint8_t *p, char *buf,
                     size_t n) {
  uint64_t u = 0;
  unsigned size = f->pub.size;

  if (size > 8) {
    snprintf(buf, n, "%s", "");
    return;
  }
  memcpy(&u, p, size);
  if (kind_signed(f->pub.kind) && size < 8 && (u >> (size * 8 - 1)) & 1)
    u |= ~(uint64_t)0 << (size * 8);
  if (kind_signed(f->pub.kind))
    snprintf(buf, n, " (value %lld)", (long long)(int64_t)u);
  else
    snprintf(buf, n, " (value %llu)", (unsigned long long)u);
}

static int check_int(const check *c, const uint8_t *p) {
  const myc__rules *r = &c->f->rules;
  unsigned size = c->f->pub.size;
  uint8_t w[32];
  char val[40];

  if (c->f->pub.optional && all_zero(p, size))
    return 0;
  if (r->not_zero && all_zero(p, size))
    return violation(c, "violates not_zero");
  if (!r->has_min && !r->has_max)
    return 0;
  memcpy(w, p, size);
  memset(w + size, kind_signed(c->f->pub.kind) && (p[size - 1] & 0x80)
                       ? 0xff : 0, 32 - size);
  if (kind_signed(c->f->pub.kind))
    w[31] ^= 0x80;
  /* The value is formatted only for a violation: this runs on every
   * typed emit. */
  if (r->has_min && big_cmp(w, r->min.w) < 0) {
    int_text(c->f, p, val, sizeof(val));
    return violation(c, "violates min %s%s", r->min_text, val);
  }
  if (r->has_max && big_cmp(w, r->max.w) > 0) {
    int_text(c->f, p, val, sizeof(val));
    return violation(c, "violates max %s%s", r->max_text, val);
  }
  return 0;
}

static int check_field(const check *c, const uint8_t *p) {
  switch (c->f->pub.kind) {
  case MYC_FIELD_STRING:
  case MYC_FIELD_VEC:
    return check_length(c, p);
  case MYC_FIELD_BOOL:
    if (p[0] > 1)
      return violation(c, "bool byte is %u, not 0 or 1", (unsigned)p[0]);
    return 0;
  case MYC_FIELD_ARRAY:
    if (c->f->rules.not_zero && !c->f->pub.optional &&
        all_zero(p, c->f->pub.size))
      return violation(c, "violates not_zero");
    return 0;
  case MYC_FIELD_F32:
  case MYC_FIELD_F64:
    return check_float(c, p);
  default:
    return check_int(c, p);
  }
}

int myc__contract_check(const myc_contract_type *t, size_t i, uint32_t *out,
                        const char **min, const char **max) {
  const myc__field *f;
  const myc__rules *r;

  if (i >= t->nchecked)
    return -1;
  f = t->checked[i];
  r = &f->rules;
  out[0] = f->pub.offset;
  out[1] = f->pub.size;
  out[2] = (uint32_t)f->pub.kind;
  out[3] = f->pub.count;
  out[4] = (f->pub.optional ? MYC__CHECK_OPTIONAL : 0) |
           (r->not_zero ? MYC__CHECK_NOT_ZERO : 0) |
           (r->not_empty ? MYC__CHECK_NOT_EMPTY : 0) |
           (r->has_min ? MYC__CHECK_MIN : 0) |
           (r->has_max ? MYC__CHECK_MAX : 0) |
           (r->has_min_length ? MYC__CHECK_MIN_LENGTH : 0) |
           (r->has_max_length ? MYC__CHECK_MAX_LENGTH : 0);
  out[5] = r->min_length;
  out[6] = r->max_length;
  *min = r->has_min ? r->min_text : NULL;
  *max = r->has_max ? r->max_text : NULL;
  return 0;
}

int myc_contract_validate(const myc_contract_type *t, const void *payload,
                          size_t len, char *err, size_t errlen) {
  check c = {.t = t, .err = err, .errlen = errlen};
  const uint8_t *base = payload;
  int rc;

  if (err != NULL && errlen != 0)
    err[0] = '\0';
  if (t == NULL || (payload == NULL && len != 0))
    return MYC_EINVAL;
  if (len != t->size) {
    if (err != NULL && errlen != 0)
      snprintf(err, errlen, "%s: payload is %zu bytes, the type is %zu",
               t->name, len, t->size);
    return MYC_EINVAL;
  }
  for (size_t i = 0; i < t->nchecked; i++) {
    c.f = t->checked[i];
    if ((rc = check_field(&c, base + c.f->pub.offset)) != 0)
      return rc;
  }
  return 0;
}
