/* contract.h -- message contracts: the data model shared by the loader
 * (contract_parse.c) and the lookups, layout, digest and runtime checks
 * (contract.c).  A contract set is immutable once loaded, so any thread may
 * read it without a lock for as long as its owner keeps it alive.
 */
#ifndef MYC_CONTRACT_H
#define MYC_CONTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mycelium.h"

/* ===================================================================== */
/* Internal model                                                          */
/* ===================================================================== */

/* Largest payload, array, String or Vec capacity.  A typed message is one
 * engine buffer; 64 KiB keeps a pool of them reasonable and lets String
 * and Vec lengths be u16. */
#define MYC_CONTRACT_MAX_SIZE 65535u

/* A number from a min/max rule, widened to 256 bits two's complement,
 * little-endian, with the sign bit flipped for signed kinds so that one
 * unsigned comparison orders every integer kind.  Floats use 'd'. */
typedef struct {
  uint8_t w[32];
  double d;
} myc__bound;

typedef struct {
  unsigned has_min : 1, has_max : 1, has_min_length : 1, has_max_length : 1,
      not_empty : 1, not_zero : 1;
  myc__bound min, max;
  uint32_t min_length, max_length;
  const char *min_text, *max_text; /* canonical, for messages and digest */
} myc__rules;

typedef struct {
  myc_contract_field pub;
  myc__rules rules;
} myc__field;

struct myc_contract_type {
  const char *name;
  const char *domain;
  uint32_t tag; /* as written; only valid (<= 65535) in a good set */
  int line;
  size_t size;
  myc__field *fields;
  size_t nfields;
  /* Fields myc_contract_validate() looks at: those with a rule, and every
   * String, Vec and bool (length prefix, byte value).  Others cannot be
   * wrong, and validation runs on every typed emit. */
  const myc__field **checked;
  size_t nchecked;
  const char *canon; /* normalised text hashed into 'digest' */
  char digest[65];
};

/* What myc_contract_validate() checks of a field (out[4] below). */
#define MYC__CHECK_OPTIONAL 1u /* all zero passes whatever the rules */
#define MYC__CHECK_NOT_ZERO 2u
#define MYC__CHECK_NOT_EMPTY 4u
#define MYC__CHECK_MIN 8u
#define MYC__CHECK_MAX 16u
#define MYC__CHECK_MIN_LENGTH 32u
#define MYC__CHECK_MAX_LENGTH 64u

/* The 'i'-th field myc_contract_validate() looks at on 't' (0-based, in
 * the order it checks them), as facts a caller can compile the same
 * check from: out[0..6] = offset, size, kind, count (String and Vec
 * capacity), MYC__CHECK_* flags, min_length, max_length; 'min' and 'max'
 * the bounds' canonical text (decimal; "%.17g" for floats), NULL where
 * there is none.  Returns 0, or -1 past the last field (nothing
 * written).  Every String, Vec and bool is listed, ruled or not: their
 * bytes themselves can be wrong. */
int myc__contract_check(const myc_contract_type *t, size_t i, uint32_t *out,
                        const char **min, const char **max);

typedef struct myc__chunk myc__chunk;

typedef struct {
  int line;
  const char *kind;
  const char *text;
} myc__diag;

struct myc_contract_set {
  myc_alloc_fn alloc;
  void *ud;
  myc__chunk *chunks; /* arena: everything below lives in it */
  const char *file;
  uint32_t schema_id;
  uint16_t version, min_compatible;
  myc_contract_type *types; /* ascending tag */
  size_t ntypes;
  myc_contract_type **by_name; /* ascending name */
  myc__diag *diags;
  size_t ndiags, diag_cap;
  char digest[65];
};

/* Arena allocation from the set: zeroed, 8-byte aligned, freed only with
 * the set.  Returns NULL when the allocator fails. */
void *myc__contract_alloc(myc_contract_set *cs, size_t n);
char *myc__contract_strndup(myc_contract_set *cs, const char *s, size_t n);

/* Records a diagnostic "file:line: where: message".  Returns 0 or
 * MYC_ENOMEM (then nothing is recorded). */
int myc__contract_diag(myc_contract_set *cs, const char *kind, int line,
                       const char *where, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Parses YAML 'text' into 'cs' (schema, types, fields, rules), recording
 * every problem as a diagnostic.  Returns 0 (check cs->ndiags) or
 * MYC_ENOMEM. */
int myc__contract_parse(myc_contract_set *cs, const char *text, size_t len);

/* Canonical text of a bound for digest and messages; parses 'text' for a
 * field of kind 'kind' into 'b'.  Returns NULL with 'why' set when 'text'
 * is not a number of that kind, or out of its range. */
const char *myc__contract_bound(myc_contract_set *cs, myc_field_kind kind,
                                const char *text, myc__bound *b,
                                const char **why);

#endif
