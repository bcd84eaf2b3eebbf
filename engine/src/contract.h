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

#if defined(__has_include)
#if __has_include("mycelium.h")
#include "mycelium.h"
#endif
#endif

/* Until the engine's public header is on this branch, the few names the
 * contract code needs from it are defined here with the same values, so
 * switching to the real header changes nothing. */
#ifndef MYCELIUM_H
#if defined(MYC_BUILDING)
#define MYC_EXTERN __attribute__((visibility("default")))
#else
#define MYC_EXTERN
#endif
#define MYC_EINVAL (-5001)
#define MYC_ENOMEM (-5002)
#define MYC_ECONTRACT (-5013)
typedef void *(*myc_alloc_fn)(void *ud, void *ptr, size_t osize,
                              size_t nsize);
#endif

/* ===================================================================== */
/* Public API (moves to the "Contracts" section of mycelium.h)             */
/* ===================================================================== */

#ifndef MYC_CONTRACT_PUBLIC
#define MYC_CONTRACT_PUBLIC

/* A loaded contracts file: its schema, message types and diagnostics. */
typedef struct myc_contract_set myc_contract_set;
/* One message type of a set; valid as long as the set is. */
typedef struct myc_contract_type myc_contract_type;

/* Field kinds, with the canonical spelling used in contracts.yaml. */
#define MYC_FIELD_KIND_MAP(XX)                                                \
  XX(U8, 1, "u8", 1)                                                         \
  XX(U16, 2, "u16", 2)                                                       \
  XX(U32, 3, "u32", 4)                                                       \
  XX(U64, 4, "u64", 8)                                                       \
  XX(I8, 5, "i8", 1)                                                         \
  XX(I16, 6, "i16", 2)                                                       \
  XX(I32, 7, "i32", 4)                                                       \
  XX(I64, 8, "i64", 8)                                                       \
  XX(F32, 9, "f32", 4)                                                       \
  XX(F64, 10, "f64", 8)                                                      \
  XX(BOOL, 11, "bool", 1)                                                    \
  XX(U256, 12, "U256", 32)                                                   \
  XX(I256, 13, "I256", 32)                                                   \
  XX(ARRAY, 14, "array", 0)                                                  \
  XX(STRING, 15, "String", 0)                                                \
  XX(VEC, 16, "Vec", 0)

typedef enum {
#define XX(name, value, text, size) MYC_FIELD_##name = (value),
  MYC_FIELD_KIND_MAP(XX)
#undef XX
} myc_field_kind;

/* Everything known about one field.  Layout is packed little-endian:
 * 'offset' is from the start of the payload, 'size' its bytes.
 *   scalars, U256, I256: count 1, elem_kind == kind, elem_size == size.
 *   ARRAY [T; N]:  count N elements of elem_kind/elem_size at 'offset'.
 *   STRING:        u16 length, then 'count' (capacity) bytes.
 *   VEC Vec<T>:    u16 length, then 'count' (capacity) elements.
 * An element of kind ARRAY is always [u8; elem_size]. */
typedef struct {
  const char *name;
  const char *type; /* canonical type text, e.g. "[u8; 20]", "Vec<U256>" */
  myc_field_kind kind;
  myc_field_kind elem_kind;
  uint32_t elem_size;
  uint32_t count;
  uint32_t offset;
  uint32_t size;
  int optional; /* 1 when the contract marks it optional (zero = absent) */
  int line;     /* line of its key in the contracts file */
} myc_contract_field;

/* Loads the contracts file at 'path'.  'alloc' may be NULL (realloc/free);
 * every allocation of the set goes through it.
 *
 * Returns 0 with a valid set in '*out'; MYC_ECONTRACT when the file could
 * not be read or has errors, with '*out' holding a set that lists ALL of
 * them (myc_contract_error*) and no types; MYC_ENOMEM or MYC_EINVAL (bad
 * arguments) with '*out' NULL.  The caller frees any non-NULL '*out' with
 * myc_contract_free(). */
MYC_EXTERN int myc_contract_load(myc_contract_set **out, const char *path,
                                 myc_alloc_fn alloc, void *ud);

/* As myc_contract_load(), from 'len' bytes of YAML at 'text'; 'name' is
 * the file name used in messages.  'text' need not be NUL-terminated and
 * is not referenced after the call. */
MYC_EXTERN int myc_contract_load_string(myc_contract_set **out,
                                        const char *name, const char *text,
                                        size_t len, myc_alloc_fn alloc,
                                        void *ud);

/* Frees a set and everything it owns; pointers obtained from it become
 * invalid.  NULL is a no-op.  Cannot fail. */
MYC_EXTERN void myc_contract_free(myc_contract_set *cs);

/* Number of diagnostics; 0 for a good set. */
MYC_EXTERN size_t myc_contract_error_count(const myc_contract_set *cs);

/* Diagnostic 'i' as "file:line: where: what", or NULL if 'i' is out of
 * range.  Owned by the set. */
MYC_EXTERN const char *myc_contract_error(const myc_contract_set *cs,
                                          size_t i);

/* Stable short name of diagnostic 'i' ("duplicate_tag", "unknown_type",
 * ...; docs/CONTRACTS.md lists them), or NULL if out of range. */
MYC_EXTERN const char *myc_contract_error_kind(const myc_contract_set *cs,
                                               size_t i);

/* Line (1-based) of diagnostic 'i', 0 if it has none or is out of range. */
MYC_EXTERN int myc_contract_error_line(const myc_contract_set *cs, size_t i);

/* The schema digest: 64 lowercase hex digits of SHA-256 over the
 * normalised schema (docs/CONTRACTS.md).  "" for a set with errors. */
MYC_EXTERN const char *myc_contract_digest(const myc_contract_set *cs);

/* The schema section: id, version and oldest compatible version. */
MYC_EXTERN uint32_t myc_contract_schema_id(const myc_contract_set *cs);
MYC_EXTERN uint16_t myc_contract_schema_version(const myc_contract_set *cs);
MYC_EXTERN uint16_t myc_contract_min_compatible(const myc_contract_set *cs);

/* Number of message types, and type 'i' in ascending tag order (NULL if
 * out of range). */
MYC_EXTERN size_t myc_contract_type_count(const myc_contract_set *cs);
MYC_EXTERN const myc_contract_type *
myc_contract_type_at(const myc_contract_set *cs, size_t i);

/* The type named 'name' or tagged 'tag', or NULL if there is none. */
MYC_EXTERN const myc_contract_type *
myc_contract_type_by_name(const myc_contract_set *cs, const char *name);
MYC_EXTERN const myc_contract_type *
myc_contract_type_by_tag(const myc_contract_set *cs, uint32_t tag);

/* Properties of a type.  Strings are owned by the set. */
MYC_EXTERN const char *myc_contract_type_name(const myc_contract_type *t);
MYC_EXTERN uint16_t myc_contract_type_tag(const myc_contract_type *t);
MYC_EXTERN size_t myc_contract_type_size(const myc_contract_type *t);
MYC_EXTERN const char *myc_contract_type_domain(const myc_contract_type *t);
/* Per-type digest (64 hex digits): equal on two nodes exactly when the
 * type's name, tag, fields, layout and rules are equal. */
MYC_EXTERN const char *myc_contract_type_digest(const myc_contract_type *t);

/* Fields, in declaration (= layout) order. */
MYC_EXTERN size_t myc_contract_field_count(const myc_contract_type *t);
/* Field 'i', or NULL if out of range. */
MYC_EXTERN const myc_contract_field *
myc_contract_field_at(const myc_contract_type *t, size_t i);
/* Index of the field named 'name', or -1. */
MYC_EXTERN int myc_contract_field_index(const myc_contract_type *t,
                                        const char *name);

/* Checks a filled payload of type 't' against its validation rules (and
 * the length prefixes of String and Vec fields against their capacity).
 * Returns 0, or MYC_ECONTRACT with "Type.field: rule" in 'err' (which may
 * be NULL) for the first violation; MYC_EINVAL if 'len' is not the type's
 * size.  Thread-safe; allocates nothing. */
MYC_EXTERN int myc_contract_validate(const myc_contract_type *t,
                                     const void *payload, size_t len,
                                     char *err, size_t errlen);

#endif /* MYC_CONTRACT_PUBLIC */

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
  const char *canon; /* normalised text hashed into 'digest' */
  char digest[65];
};

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
