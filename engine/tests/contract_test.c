/* contract_test.c -- contracts.yaml loading: every load-time error, the
 * packed layout of every field type, digest stability and sensitivity,
 * runtime checks of filled payloads, and allocation failure at every step.
 */
#define _POSIX_C_SOURCE 200809L
#include "contract/contract.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
static const char *current;

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,   \
              current, #cond);                                                \
      failures++;                                                             \
    }                                                                         \
  } while (0)

#define CHECK_EQ(a, b)                                                        \
  do {                                                                        \
    long long a_ = (long long)(a), b_ = (long long)(b);                       \
    if (a_ != b_) {                                                           \
      fprintf(stderr, "%s:%d: %s: %s == %lld, expected %lld\n", __FILE__,    \
              __LINE__, current, #a, a_, b_);                                 \
      failures++;                                                             \
    }                                                                         \
  } while (0)

#define HEAD                                                                  \
  "schema:\n"                                                                 \
  "  id: 0x4D594345\n"                                                        \
  "  version: 2\n"                                                            \
  "  min_compatible: 1\n"                                                     \
  "messages:\n"

static myc_contract_set *load(const char *yaml, int *rc) {
  myc_contract_set *cs = NULL;
  *rc = myc_contract_load_string(&cs, "t.yaml", yaml, strlen(yaml), NULL,
                                 NULL);
  return cs;
}

static void dump_errors(const myc_contract_set *cs) {
  for (size_t i = 0; i < myc_contract_error_count(cs); i++)
    fprintf(stderr, "    [%s] %s\n", myc_contract_error_kind(cs, i),
            myc_contract_error(cs, i));
}

/* Loads 'yaml' and checks that one diagnostic has 'kind', 'line' and
 * contains 'text'. */
static void expect_error(const char *yaml, const char *kind, int line,
                         const char *text) {
  int rc, found = 0;
  myc_contract_set *cs = load(yaml, &rc);

  CHECK_EQ(rc, MYC_ECONTRACT);
  CHECK(cs != NULL);
  for (size_t i = 0; i < myc_contract_error_count(cs); i++)
    if (strcmp(myc_contract_error_kind(cs, i), kind) == 0 &&
        myc_contract_error_line(cs, i) == line &&
        strstr(myc_contract_error(cs, i), text) != NULL &&
        strncmp(myc_contract_error(cs, i), "t.yaml:", 7) == 0)
      found = 1;
  if (!found) {
    fprintf(stderr, "%s: no [%s] at line %d containing \"%s\"; got:\n",
            current, kind, line, text);
    dump_errors(cs);
    failures++;
  }
  CHECK_EQ(myc_contract_type_count(cs), 0);
  CHECK_EQ(strlen(myc_contract_digest(cs)), 0);
  myc_contract_free(cs);
}

/* ===================================================================== */
/* A Rust Mycelium file loads as is                                       */
/* ===================================================================== */

static const char rust_format[] =
    "# comment\n"
    "schema:\n"
    "  id: 0x4D594345\n"
    "  version: 1\n"
    "  min_compatible: 1\n"
    "tag_ranges:\n"
    "  core: 1-999 # reserved\n"
    "  app: 1000-49999\n"
    "  experimental: 50000-65535\n"
    "messages:\n"
    "  InstrumentMeta:\n"
    "    tlv_type: 1018\n"
    "    domain: MarketData\n"
    "    description: \"Token metadata\"\n"
    "    schema_version: \"v1\"\n"
    "    rust_type: \"InstrumentMeta\"\n"
    "    rkyv: true\n"
    "    required_prior_messages: [Other]\n"
    "    sensitivity: high\n"
    "    log_payload: false\n"
    "    fields:\n"
    "      token_address:\n"
    "        type: \"[u8; 20]\"\n"
    "        description: \"ERC-20 token address\"\n"
    "        validation:\n"
    "          - not_zero: true\n"
    "      symbol:\n"
    "        type: \"String\"\n"
    "        validation:\n"
    "          - max_length: 32\n"
    "          - not_empty: true\n"
    "          - no_0x_prefix: true\n"
    "      decimals:\n"
    "        type: \"u8\"\n"
    "        validation:\n"
    "          - min: 1\n"
    "          - max: 30\n"
    "      chain_id:\n"
    "        type: \"u32\"\n"
    "        validation:\n"
    "          - known_chain: true\n"
    "  Signal:\n"
    "    tlv_type: 1020\n"
    "    domain: Signal\n"
    "    description: \"x\"\n"
    "    fields:\n"
    "      path:\n"
    "        type: \"Vec<[u8; 20]>\"\n"
    "        validation:\n"
    "          - min_length: 2\n"
    "          - max_length: 4\n"
    "      profit:\n"
    "        type: \"f64\"\n"
    "        validation:\n"
    "          - min: 0.0\n"
    "invariants:\n"
    "  - name: \"x\"\n"
    "    enforced_by: [contract_test]\n"
    "domains:\n"
    "  MarketData:\n"
    "    type_range: \"1-19\"\n"
    "types:\n"
    "  U256:\n"
    "    rust_type: \"primitive_types::U256\"\n";

static void test_rust_format(void) {
  int rc;
  myc_contract_set *cs = load(rust_format, &rc);
  const myc_contract_type *t;

  CHECK_EQ(rc, 0);
  dump_errors(cs);
  CHECK_EQ(myc_contract_error_count(cs), 0);
  CHECK_EQ(myc_contract_schema_id(cs), 0x4D594345);
  CHECK_EQ(myc_contract_schema_version(cs), 1);
  CHECK_EQ(myc_contract_min_compatible(cs), 1);
  CHECK_EQ(strlen(myc_contract_digest(cs)), 64);
  CHECK_EQ(myc_contract_type_count(cs), 2);
  t = myc_contract_type_by_name(cs, "InstrumentMeta");
  CHECK(t != NULL && t == myc_contract_type_by_tag(cs, 1018));
  CHECK(t == myc_contract_type_at(cs, 0)); /* tag order */
  CHECK(strcmp(myc_contract_type_domain(t), "MarketData") == 0);
  CHECK_EQ(myc_contract_type_size(t), 20 + 34 + 1 + 4);
  CHECK_EQ(myc_contract_field_index(t, "decimals"), 2);
  CHECK_EQ(myc_contract_field_index(t, "nope"), -1);
  CHECK(myc_contract_type_by_name(cs, "Nope") == NULL);
  CHECK(myc_contract_type_by_tag(cs, 1019) == NULL);
  CHECK(myc_contract_field_at(t, 4) == NULL);
  t = myc_contract_type_by_name(cs, "Signal");
  CHECK_EQ(myc_contract_type_size(t), 2 + 4 * 20 + 8);
  myc_contract_free(cs);
}

static void test_bandit_file(void) {
  myc_contract_set *cs = NULL;
  const char *dir = getenv("MYCELIUM_SOURCE_DIR");
  char path[1024];
  int rc;

  snprintf(path, sizeof(path), "%s/services/contracts.yaml",
           dir ? dir : "..");
  rc = myc_contract_load(&cs, path, NULL, NULL);
  if (rc != 0)
    dump_errors(cs);
  CHECK_EQ(rc, 0);
  CHECK(myc_contract_type_by_name(cs, "SwapEvent") != NULL);
  CHECK(myc_contract_type_by_name(cs, "PoolStateUpdate") != NULL);
  CHECK(myc_contract_type_by_name(cs, "InstrumentMeta") != NULL);
  CHECK(myc_contract_type_by_name(cs, "ArbitrageSignal") != NULL);
  myc_contract_free(cs);
}

/* ===================================================================== */
/* Layout of every field type                                             */
/* ===================================================================== */

static const char all_types[] = HEAD
    "  All:\n"
    "    tlv_type: 1000\n"
    "    fields:\n"
    "      a_u8: {type: u8}\n"
    "      a_u16: {type: u16}\n"
    "      a_u32: {type: u32}\n"
    "      a_u64: {type: u64}\n"
    "      a_i8: {type: i8}\n"
    "      a_i16: {type: i16}\n"
    "      a_i32: {type: i32}\n"
    "      a_i64: {type: i64}\n"
    "      a_f32: {type: f32}\n"
    "      a_f64: {type: f64}\n"
    "      a_bool: {type: bool}\n"
    "      addr: {type: \"[u8; 20]\"}\n"
    "      amount: {type: U256}\n"
    "      delta: {type: I256}\n"
    "      name:\n"
    "        type: String\n"
    "        validation: [{max_length: 10}]\n"
    "      nums:\n"
    "        type: Vec<u32>\n"
    "        validation: [{max_length: 3}]\n"
    "      path:\n"
    "        type: Vec<[u8; 20]>\n"
    "        validation: [{max_length: 2}]\n"
    "      words: {type: \"[u32; 4]\"}\n"
    "      pair: {type: \"[[u8;20]; 2]\"}\n"
    "      bigs:\n"
    "        type: Vec<U256>\n"
    "        validation: [{max_length: 2}]\n";

typedef struct {
  const char *name, *type;
  myc_field_kind kind, elem;
  uint32_t elem_size, count, offset, size;
} layout;

static const layout expected_layout[] = {
    {"a_u8", "u8", MYC_FIELD_U8, MYC_FIELD_U8, 1, 1, 0, 1},
    {"a_u16", "u16", MYC_FIELD_U16, MYC_FIELD_U16, 2, 1, 1, 2},
    {"a_u32", "u32", MYC_FIELD_U32, MYC_FIELD_U32, 4, 1, 3, 4},
    {"a_u64", "u64", MYC_FIELD_U64, MYC_FIELD_U64, 8, 1, 7, 8},
    {"a_i8", "i8", MYC_FIELD_I8, MYC_FIELD_I8, 1, 1, 15, 1},
    {"a_i16", "i16", MYC_FIELD_I16, MYC_FIELD_I16, 2, 1, 16, 2},
    {"a_i32", "i32", MYC_FIELD_I32, MYC_FIELD_I32, 4, 1, 18, 4},
    {"a_i64", "i64", MYC_FIELD_I64, MYC_FIELD_I64, 8, 1, 22, 8},
    {"a_f32", "f32", MYC_FIELD_F32, MYC_FIELD_F32, 4, 1, 30, 4},
    {"a_f64", "f64", MYC_FIELD_F64, MYC_FIELD_F64, 8, 1, 34, 8},
    {"a_bool", "bool", MYC_FIELD_BOOL, MYC_FIELD_BOOL, 1, 1, 42, 1},
    {"addr", "[u8; 20]", MYC_FIELD_ARRAY, MYC_FIELD_U8, 1, 20, 43, 20},
    {"amount", "U256", MYC_FIELD_U256, MYC_FIELD_U256, 32, 1, 63, 32},
    {"delta", "I256", MYC_FIELD_I256, MYC_FIELD_I256, 32, 1, 95, 32},
    {"name", "String", MYC_FIELD_STRING, MYC_FIELD_U8, 1, 10, 127, 12},
    {"nums", "Vec<u32>", MYC_FIELD_VEC, MYC_FIELD_U32, 4, 3, 139, 14},
    {"path", "Vec<[u8; 20]>", MYC_FIELD_VEC, MYC_FIELD_ARRAY, 20, 2, 153, 42},
    {"words", "[u32; 4]", MYC_FIELD_ARRAY, MYC_FIELD_U32, 4, 4, 195, 16},
    {"pair", "[[u8; 20]; 2]", MYC_FIELD_ARRAY, MYC_FIELD_ARRAY, 20, 2, 211,
     40},
    {"bigs", "Vec<U256>", MYC_FIELD_VEC, MYC_FIELD_U256, 32, 2, 251, 66},
};

static void test_layout(void) {
  int rc;
  myc_contract_set *cs = load(all_types, &rc);
  const myc_contract_type *t = myc_contract_type_by_name(cs, "All");
  size_t n = sizeof(expected_layout) / sizeof(expected_layout[0]);

  CHECK_EQ(rc, 0);
  dump_errors(cs);
  CHECK_EQ(myc_contract_field_count(t), n);
  for (size_t i = 0; i < n && i < myc_contract_field_count(t); i++) {
    const myc_contract_field *f = myc_contract_field_at(t, i);
    const layout *e = &expected_layout[i];
    current = e->name;
    CHECK(strcmp(f->name, e->name) == 0);
    CHECK(strcmp(f->type, e->type) == 0);
    CHECK_EQ(f->kind, e->kind);
    CHECK_EQ(f->elem_kind, e->elem);
    CHECK_EQ(f->elem_size, e->elem_size);
    CHECK_EQ(f->count, e->count);
    CHECK_EQ(f->offset, e->offset);
    CHECK_EQ(f->size, e->size);
  }
  current = "layout";
  CHECK_EQ(myc_contract_type_size(t), 251 + 66);
  myc_contract_free(cs);
}

/* ===================================================================== */
/* Load-time errors, each with file, line and field                       */
/* ===================================================================== */

/* Line 6 onwards of every snippet below follows HEAD (lines 1-5). */
static void test_syntax_and_missing(void) {
  expect_error("schema:\n  id: 1\n  version: [1\n", "yaml_syntax", 4,
               "YAML syntax error");
  expect_error("", "missing_key", 1, "empty file");
  expect_error("- a\n- b\n", "bad_value", 1, "must be a mapping");
  expect_error("messages: {}\n", "missing_key", 1, "'schema'");
  expect_error("schema:\n  version: 1\nmessages: {}\n", "missing_key", 1,
               "schema: missing required key 'id'");
  expect_error("schema:\n  id: 1\nmessages: {}\n", "missing_key", 1,
               "'version'");
  expect_error("schema: {id: 1, version: 1}\n", "missing_key", 1,
               "'messages'");
  expect_error(HEAD "  A:\n    fields: {}\n", "missing_key", 6,
               "A: missing required key 'tlv_type'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n", "missing_key", 6,
               "A: missing required key 'fields'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        description: no type\n",
               "missing_key", 9, "A.x: missing required key 'type'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      s: {type: String}\n",
               "missing_key", 9, "A.s: a String field needs a 'max_length'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      v: {type: \"Vec<u8>\"}\n",
               "missing_key", 9, "A.v:");
}

static void test_duplicates(void) {
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields: {}\n"
                    "  B:\n    tlv_type: 1000\n    fields: {}\n",
               "duplicate_tag", 9,
               "B: tlv_type 1000 is also used by A (line 6)");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields: {}\n"
                    "  A:\n    tlv_type: 1001\n    fields: {}\n",
               "duplicate_name", 9, "'A' defined twice (first at line 6)");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: u8}\n      x: {type: u16}\n",
               "duplicate_name", 10, "A: 'x' defined twice (first at line 9)");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    tlv_type: 1001\n"
                    "    fields: {}\n",
               "duplicate_key", 8, "'tlv_type' defined twice");
}

static void test_tags(void) {
  expect_error(HEAD "  A:\n    tlv_type: 70000\n    fields: {}\n",
               "tag_range", 7, "A: tlv_type 70000 is beyond u16");
  expect_error(HEAD "  A:\n    tlv_type: 99999999999\n    fields: {}\n",
               "tag_range", 7, "beyond u16");
  expect_error(HEAD "  A:\n    tlv_type: 0\n    fields: {}\n", "tag_range",
               7, "tlv_type 0 is outside the app");
  expect_error(HEAD "  A:\n    tlv_type: 18\n    fields: {}\n", "tag_range",
               7, "in the core range 1-999");
  expect_error("tag_ranges:\n  app: 2000-2999\n  experimental: 3000-3999\n"
               HEAD "  A:\n    tlv_type: 1500\n    fields: {}\n",
               "tag_range", 10, "outside the app (2000-2999)");
  expect_error(HEAD "  A:\n    tlv_type: abc\n    fields: {}\n", "bad_value",
               7, "tlv_type 'abc' is not a non-negative integer");
  expect_error(HEAD "  A:\n    tlv_type: -5\n    fields: {}\n", "bad_value",
               7, "A:");
  expect_error("tag_ranges:\n  core: 9-1\n" HEAD, "bad_range", 2,
               "core: '9-1' is not a range");
  expect_error("tag_ranges:\n  core: 1-1000\n" HEAD, "bad_range", 1,
               "'core' and 'app' overlap");
}

static void test_types(void) {
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: U512\n",
               "unknown_type", 10, "A.x: unknown field type 'U512'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: \"Vec<String>\"}\n",
               "unknown_type", 9, "'Vec<String>'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: \"[u8; 20\"}\n",
               "unknown_type", 9, "A.x");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: \"[u8; 0]\"}\n",
               "array_size", 9, "A.x: zero-size array in '[u8; 0]'");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: \"[u8; 70000]\"}\n",
               "array_size", 9, "oversize");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: \"[u64; 10000]\"}\n",
               "array_size", 9, "more than 65535 bytes");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: \"[u8; n]\"}\n",
               "array_size", 9, "not an integer");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      s:\n        type: String\n"
                    "        validation: [{max_length: 0}]\n",
               "array_size", 9, "zero capacity");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      s:\n        type: Vec<U256>\n"
                    "        validation: [{max_length: 3000}]\n",
               "array_size", 9, "oversize: 96002 bytes");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      a: {type: \"[u8; 40000]\"}\n"
                    "      b: {type: \"[u8; 40000]\"}\n",
               "too_large", 6, "A: payload is 80000 bytes");
}

static void test_names_and_values(void) {
  expect_error(HEAD "  Bad-Name:\n    tlv_type: 1000\n    fields: {}\n",
               "bad_name", 6, "message name must be an identifier");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      1x: {type: u8}\n",
               "bad_name", 9, "A.1x: field name must be an identifier");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      int: {type: u8}\n",
               "bad_name", 9, "C keyword");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      _myc_1: {type: u8}\n",
               "bad_name", 9, "reserved");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: {type: u8, optional: maybe}\n",
               "bad_value", 9, "'optional' must be true or false");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x: u8\n",
               "bad_value", 9, "A.x: a field must be a mapping");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields: [x]\n",
               "bad_value", 8, "'fields' must be a mapping");
  expect_error("schema: {id: 0x100000000, version: 1}\nmessages: {}\n",
               "bad_value", 1, "schema.id: '0x100000000' is not an integer");
  expect_error("schema: {id: 1, version: 2, min_compatible: 3}\n"
               "messages: {}\n",
               "bad_value", 1, "min_compatible 3 is above version 2");
}

static void test_rules(void) {
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      s:\n        type: String\n        validation:\n"
                    "          - max_length: 8\n          - min: 1\n",
               "bad_rule", 13, "A.s: rule 'min' does not apply to a String");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: u8\n        validation:\n"
                    "          - min: 300\n",
               "bad_rule", 12,
               "A.x: min '300' is out of the field type's range");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: u8\n        validation:\n"
                    "          - min: -1\n",
               "bad_rule", 12, "is negative for an unsigned field");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: i32\n        validation:\n"
                    "          - max: abc\n",
               "bad_rule", 12, "max 'abc' is not an integer");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: f64\n        validation:\n"
                    "          - max: .nan\n",
               "bad_rule", 12, "is not a finite number");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: i64\n        validation:\n"
                    "          - min: 5\n          - max: -5\n",
               "bad_rule", 9, "A.x: min 5 is greater than max -5");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: Vec<u8>\n        validation:\n"
                    "          - min_length: 5\n          - max_length: 4\n",
               "bad_rule", 9, "min_length 5 is greater than max_length 4");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: u8\n        validation:\n"
                    "          - min: 1\n          - min: 2\n",
               "bad_rule", 13, "rule 'min' given twice");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: \"[u8; 4]\"\n"
                    "        validation:\n          - not_zero: sure\n",
               "bad_rule", 12, "not_zero 'sure' is not true or false");
  expect_error(HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                    "      x:\n        type: bool\n        validation:\n"
                    "          - not_zero: true\n",
               "bad_rule", 12, "does not apply to a bool field");
}

/* One run lists every fault of the file, in file order. */
static void test_all_errors_reported(void) {
  static const char yaml[] = HEAD
      "  A:\n    tlv_type: 1000\n    fields:\n"
      "      x: {type: U512}\n"
      "      y: {type: \"[u8; 0]\"}\n"
      "  B:\n    tlv_type: 1000\n    fields: {}\n"
      "  C:\n    tlv_type: 70000\n    fields: {}\n";
  int rc;
  myc_contract_set *cs = load(yaml, &rc);

  CHECK_EQ(rc, MYC_ECONTRACT);
  CHECK_EQ(myc_contract_error_count(cs), 4);
  CHECK(strcmp(myc_contract_error_kind(cs, 0), "unknown_type") == 0);
  CHECK(strcmp(myc_contract_error_kind(cs, 1), "array_size") == 0);
  CHECK(strcmp(myc_contract_error_kind(cs, 2), "tag_range") == 0);
  CHECK(strcmp(myc_contract_error_kind(cs, 3), "duplicate_tag") == 0);
  CHECK(myc_contract_error(cs, 4) == NULL);
  CHECK(myc_contract_error_kind(cs, 4) == NULL);
  CHECK_EQ(myc_contract_error_line(cs, 4), 0);
  myc_contract_free(cs);
}

static void test_files(void) {
  char path[] = "/tmp/myc_contract_testXXXXXX";
  myc_contract_set *cs = NULL;
  int fd = mkstemp(path);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

  CHECK(f != NULL);
  if (f == NULL)
    return;
  fputs(all_types, f);
  fclose(f);
  CHECK_EQ(myc_contract_load(&cs, path, NULL, NULL), 0);
  CHECK_EQ(myc_contract_type_count(cs), 1);
  myc_contract_free(cs);
  unlink(path);
  CHECK_EQ(myc_contract_load(&cs, path, NULL, NULL), MYC_ECONTRACT);
  CHECK_EQ(myc_contract_error_count(cs), 1);
  CHECK(strcmp(myc_contract_error_kind(cs, 0), "io") == 0);
  CHECK(strstr(myc_contract_error(cs, 0), "cannot read") != NULL);
  CHECK(strstr(myc_contract_error(cs, 0), path) != NULL);
  myc_contract_free(cs);
  CHECK_EQ(myc_contract_load(NULL, path, NULL, NULL), MYC_EINVAL);
  CHECK_EQ(myc_contract_load(&cs, NULL, NULL, NULL), MYC_EINVAL);
  CHECK(cs == NULL);
  myc_contract_free(NULL);
}

/* ===================================================================== */
/* Digest: stable under formatting, sensitive to every field property     */
/* ===================================================================== */

static const char digest_base[] =
    "schema:\n"
    "  id: 7\n"
    "  version: 1\n"
    "messages:\n"
    "  X:\n"
    "    tlv_type: 1000\n"
    "    domain: D\n"
    "    description: \"x\"\n"
    "    fields:\n"
    "      a:\n"
    "        type: u32\n"
    "        validation:\n"
    "          - min: 16\n"
    "          - max: 100\n"
    "      b:\n"
    "        type: String\n"
    "        optional: true\n"
    "        validation:\n"
    "          - max_length: 8\n"
    "          - not_empty: true\n"
    "  Y:\n"
    "    tlv_type: 1001\n"
    "    fields:\n"
    "      c: {type: \"[u8; 20]\"}\n";

/* The same schema: other key and message order, comments, quoting, flow
 * style, hex numbers, rule order, another description. */
static const char digest_same[] =
    "# a comment\n"
    "messages:\n"
    "  Y:   # comment\n"
    "    fields:\n"
    "      c:\n"
    "        type: '[u8;20]'\n"
    "    tlv_type: 0x3E9\n"
    "  X:\n"
    "    fields:\n"
    "      a:\n"
    "        validation: [{max: 100}, {min: 0x10}]\n"
    "        type: \"u32\"\n"
    "      b: {validation: [{not_empty: yes}, {max_length: 8}],\n"
    "          optional: true, type: String, description: changed}\n"
    "    description: \"other\"\n"
    "    tlv_type: 1000\n"
    "    domain: D\n"
    "schema: {version: 1, id: 0x7, min_compatible: 1}\n";

typedef struct {
  char set[65], x[65], y[65];
} digests;

static int digests_of(const char *yaml, digests *d) {
  int rc;
  myc_contract_set *cs = load(yaml, &rc);

  if (rc != 0) {
    dump_errors(cs);
    myc_contract_free(cs);
    return rc;
  }
  snprintf(d->set, 65, "%s", myc_contract_digest(cs));
  snprintf(d->x, 65, "%s",
           myc_contract_type_digest(myc_contract_type_by_name(cs, "X")));
  snprintf(d->y, 65, "%s",
           myc_contract_type_digest(myc_contract_type_by_name(cs, "Y")));
  myc_contract_free(cs);
  return 0;
}

/* 'base' with the first 'from' replaced by 'to' (static buffer). */
static const char *mutate(const char *from, const char *to) {
  static char buf[4096];
  const char *at = strstr(digest_base, from);

  if (at == NULL) {
    fprintf(stderr, "%s: '%s' not in the base\n", current, from);
    failures++;
    return digest_base;
  }
  snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - digest_base),
           digest_base, to, at + strlen(from));
  return buf;
}

static void test_digest(void) {
  static const char *const changes[][2] = {
      {"type: u32", "type: u64"},
      {"      a:\n", "      a2:\n"},
      {"min: 16", "min: 17"},
      {"max: 100", "max: 101"},
      {"optional: true", "optional: false"},
      {"max_length: 8", "max_length: 9"},
      {"          - not_empty: true\n", ""},
      {"  version: 1\n", "  version: 2\n"},
      {"  id: 7\n", "  id: 8\n"},
  };
  digests base, same, d;

  CHECK_EQ(digests_of(digest_base, &base), 0);
  CHECK_EQ(digests_of(digest_same, &same), 0);
  CHECK(strcmp(base.set, same.set) == 0);
  CHECK(strcmp(base.x, same.x) == 0);
  CHECK(strcmp(base.y, same.y) == 0);
  CHECK(strcmp(base.x, base.y) != 0);
  for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
    current = changes[i][1];
    CHECK_EQ(digests_of(mutate(changes[i][0], changes[i][1]), &d), 0);
    CHECK(strcmp(d.set, base.set) != 0);
    /* Y is untouched: the handshake still sees it as compatible. */
    CHECK(strcmp(d.y, base.y) == 0);
  }
  current = "tag change";
  CHECK_EQ(digests_of(mutate("tlv_type: 1001", "tlv_type: 1002"), &d), 0);
  CHECK(strcmp(d.y, base.y) != 0 && strcmp(d.x, base.x) == 0);
  current = "field order";
  CHECK_EQ(digests_of(mutate("      a:\n        type: u32\n"
                             "        validation:\n"
                             "          - min: 16\n"
                             "          - max: 100\n",
                             ""),
                      &d),
           0);
  CHECK(strcmp(d.x, base.x) != 0);
}

/* ===================================================================== */
/* Runtime checks of a filled payload                                     */
/* ===================================================================== */

static const char checked[] = HEAD
    "  V:\n"
    "    tlv_type: 1000\n"
    "    fields:\n"
    "      u: {type: u8, validation: [{min: 1}, {max: 30}]}\n"
    "      i: {type: i64, validation: [{min: -5}, {max: 5}]}\n"
    "      f: {type: f64, validation: [{min: 0.0}]}\n"
    "      big: {type: U256, validation: [{max: \"1000000000000000000000\"}]}\n"
    "      neg: {type: I256, validation: [{min: -1000}]}\n"
    "      addr: {type: \"[u8; 20]\", validation: [{not_zero: true}]}\n"
    "      s:\n"
    "        type: String\n"
    "        validation: [{max_length: 4}, {min_length: 2},\n"
    "                     {not_empty: true}]\n"
    "      v: {type: Vec<u16>, validation: [{max_length: 3}]}\n"
    "      flag: {type: bool}\n"
    "      opt: {type: u32, optional: true, validation: [{min: 10}]}\n"
    "      nz: {type: i32, validation: [{not_zero: true}]}\n";

typedef struct {
  const myc_contract_type *t;
  uint8_t p[512];
  char err[256];
} filled;

static uint8_t *at(filled *v, const char *field) {
  int i = myc_contract_field_index(v->t, field);
  CHECK(i >= 0);
  return v->p + myc_contract_field_at(v->t, (size_t)(i < 0 ? 0 : i))->offset;
}

static void put(filled *v, const char *field, const void *bytes, size_t n) {
  memcpy(at(v, field), bytes, n);
}

static void fill_good(filled *v) {
  int64_t i = -5;
  double f = 0.0;
  uint8_t neg[32];

  memset(v->p, 0, sizeof(v->p));
  memset(neg, 0xff, sizeof(neg)); /* -1 */
  put(v, "u", "\x1e", 1);
  put(v, "i", &i, 8);
  put(v, "f", &f, 8);
  put(v, "big", "\x00\x00\xa0\xde\xc5\xad\xc9\x35\x36", 9); /* 10^21 */
  put(v, "neg", neg, 32);
  put(v, "addr", "\x01", 1);
  put(v, "s", "\x04\x00WETH", 6);
  put(v, "v", "\x03\x00", 2);
  put(v, "flag", "\x01", 1);
  put(v, "nz", "\xff\xff\xff\xff", 4);
}

static void expect_violation(filled *v, const char *text) {
  size_t size = myc_contract_type_size(v->t);
  int rc = myc_contract_validate(v->t, v->p, size, v->err, sizeof(v->err));

  CHECK_EQ(rc, MYC_ECONTRACT);
  if (strstr(v->err, text) == NULL) {
    fprintf(stderr, "%s: expected \"%s\", got \"%s\"\n", current, text,
            v->err);
    failures++;
  }
  fill_good(v);
}

static void test_validate(void) {
  int rc;
  myc_contract_set *cs = load(checked, &rc);
  filled v = {.t = myc_contract_type_by_name(cs, "V")};
  size_t size = myc_contract_type_size(v.t);
  int64_t i64;
  double d;

  CHECK_EQ(rc, 0);
  dump_errors(cs);
  fill_good(&v);
  CHECK_EQ(myc_contract_validate(v.t, v.p, size, v.err, sizeof(v.err)), 0);
  CHECK_EQ(strlen(v.err), 0);
  put(&v, "u", "\x00", 1);
  expect_violation(&v, "V.u: violates min 1 (value 0)");
  put(&v, "u", "\x1f", 1);
  expect_violation(&v, "V.u: violates max 30 (value 31)");
  i64 = -6;
  put(&v, "i", &i64, 8);
  expect_violation(&v, "V.i: violates min -5 (value -6)");
  i64 = 6;
  put(&v, "i", &i64, 8);
  expect_violation(&v, "V.i: violates max 5 (value 6)");
  d = -0.5;
  put(&v, "f", &d, 8);
  expect_violation(&v, "V.f: violates min 0 (value -0.5)");
  d = NAN;
  put(&v, "f", &d, 8);
  expect_violation(&v, "V.f: violates min 0");
  put(&v, "big", "\x01\x00\xa0\xde\xc5\xad\xc9\x35\x36", 9);
  expect_violation(&v, "V.big: violates max 1000000000000000000000");
  put(&v, "neg", "\x17\xfc", 2); /* -1001 */
  expect_violation(&v, "V.neg: violates min -1000");
  memset(at(&v, "addr"), 0, 20);
  expect_violation(&v, "V.addr: violates not_zero");
  put(&v, "s", "\x05\x00", 2);
  expect_violation(&v, "V.s: length 5 exceeds capacity 4");
  put(&v, "s", "\x01\x00", 2);
  expect_violation(&v, "V.s: violates min_length 2 (length 1)");
  put(&v, "s", "\x00\x00", 2);
  expect_violation(&v, "V.s: violates not_empty");
  put(&v, "v", "\x04\x00", 2);
  expect_violation(&v, "V.v: length 4 exceeds capacity 3");
  put(&v, "flag", "\x02", 1);
  expect_violation(&v, "V.flag: bool byte is 2");
  put(&v, "opt", "\x05", 1);
  expect_violation(&v, "V.opt: violates min 10 (value 5)");
  memset(at(&v, "nz"), 0, 4);
  expect_violation(&v, "V.nz: violates not_zero");
  /* An optional field left zero is absent: its rules do not apply. */
  put(&v, "opt", "\x00", 1);
  CHECK_EQ(myc_contract_validate(v.t, v.p, size, NULL, 0), 0);
  CHECK_EQ(myc_contract_validate(v.t, v.p, size - 1, v.err, sizeof(v.err)),
           MYC_EINVAL);
  CHECK(strstr(v.err, "V: payload is") != NULL);
  CHECK_EQ(myc_contract_validate(NULL, v.p, size, NULL, 0), MYC_EINVAL);
  myc_contract_free(cs);
}

/* Floats (f32 and f64: not_zero, bounds, NaN) and optional fields of
 * every kind of rule: an optional field left zero is absent, a required
 * one is checked. */
static const char floats[] = HEAD
    "  F:\n"
    "    tlv_type: 1001\n"
    "    fields:\n"
    "      nz64: {type: f64, validation: [{not_zero: true}]}\n"
    "      nz32: {type: f32, validation: [{not_zero: true}, {max: 10.5}]}\n"
    "      req: {type: f64, validation: [{min: 1.5}]}\n"
    "      opt: {type: f64, optional: true,\n"
    "            validation: [{min: 1.5}, {max: 2.5}]}\n"
    "      opt32: {type: f32, optional: true, validation: [{min: -1}]}\n"
    "      optint: {type: i16, optional: true,\n"
    "               validation: [{min: 1}, {max: 9}]}\n"
    "      optarr: {type: \"[u8; 4]\", optional: true,\n"
    "               validation: [{not_zero: true}]}\n"
    "      optstr: {type: String, optional: true,\n"
    "               validation: [{max_length: 4}, {min_length: 2}]}\n";

static void fill_floats(filled *v) {
  double nz64 = 0.25, req = 1.5;
  float nz32 = 3.5f;

  memset(v->p, 0, sizeof(v->p));
  put(v, "nz64", &nz64, 8);
  put(v, "nz32", &nz32, 4);
  put(v, "req", &req, 8);
}

static void float_violation(filled *v, const char *text) {
  size_t size = myc_contract_type_size(v->t);
  int rc = myc_contract_validate(v->t, v->p, size, v->err, sizeof(v->err));

  CHECK_EQ(rc, MYC_ECONTRACT);
  if (rc != 0 && strstr(v->err, text) == NULL) {
    fprintf(stderr, "%s: expected \"%s\", got \"%s\"\n", current, text,
            v->err);
    failures++;
  }
  fill_floats(v);
}

static int float_valid(filled *v) {
  int rc = myc_contract_validate(v->t, v->p, myc_contract_type_size(v->t),
                                 v->err, sizeof(v->err));
  if (rc != 0)
    fprintf(stderr, "%s: unexpected violation: %s\n", current, v->err);
  fill_floats(v);
  return rc;
}

static void test_validate_floats(void) {
  int rc;
  myc_contract_set *cs = load(floats, &rc);
  filled v = {.t = myc_contract_type_by_name(cs, "F")};
  double d;
  float f;
  int16_t i16;

  CHECK_EQ(rc, 0);
  dump_errors(cs);
  if (v.t == NULL) {
    myc_contract_free(cs);
    return;
  }
  fill_floats(&v);
  CHECK_EQ(float_valid(&v), 0);
  d = 0.0;
  put(&v, "nz64", &d, 8);
  float_violation(&v, "F.nz64: violates not_zero");
  f = 0.0f;
  put(&v, "nz32", &f, 4);
  float_violation(&v, "F.nz32: violates not_zero");
  /* The smallest values that are not zero pass not_zero. */
  d = 4.9406564584124654e-324;
  put(&v, "nz64", &d, 8);
  CHECK_EQ(float_valid(&v), 0);
  f = 1.4e-45f;
  put(&v, "nz32", &f, 4);
  CHECK_EQ(float_valid(&v), 0);
  f = 10.5f;
  put(&v, "nz32", &f, 4);
  CHECK_EQ(float_valid(&v), 0);
  f = 10.75f;
  put(&v, "nz32", &f, 4);
  float_violation(&v, "F.nz32: violates max 10.5 (value 10.75)");
  f = NAN;
  put(&v, "nz32", &f, 4);
  float_violation(&v, "F.nz32: violates max 10.5");
  /* A required field of zero is checked against its bounds. */
  d = 0.0;
  put(&v, "req", &d, 8);
  float_violation(&v, "F.req: violates min 1.5 (value 0)");
  d = 1.4999999999999998;
  put(&v, "req", &d, 8);
  float_violation(&v, "F.req: violates min 1.5");
  /* Optional fields: zero is absent, anything else is checked. */
  d = 1.0;
  put(&v, "opt", &d, 8);
  float_violation(&v, "F.opt: violates min 1.5 (value 1)");
  d = 2.75;
  put(&v, "opt", &d, 8);
  float_violation(&v, "F.opt: violates max 2.5 (value 2.75)");
  d = NAN;
  put(&v, "opt", &d, 8);
  float_violation(&v, "F.opt: violates min 1.5");
  d = 2.5;
  put(&v, "opt", &d, 8);
  CHECK_EQ(float_valid(&v), 0);
  f = -2.0f;
  put(&v, "opt32", &f, 4);
  float_violation(&v, "F.opt32: violates min -1 (value -2)");
  f = -1.0f;
  put(&v, "opt32", &f, 4);
  CHECK_EQ(float_valid(&v), 0);
  i16 = 10;
  put(&v, "optint", &i16, 2);
  float_violation(&v, "F.optint: violates max 9 (value 10)");
  i16 = -1;
  put(&v, "optint", &i16, 2);
  float_violation(&v, "F.optint: violates min 1 (value -1)");
  i16 = 9;
  put(&v, "optint", &i16, 2);
  CHECK_EQ(float_valid(&v), 0);
  put(&v, "optarr", "\x00\x00\x00\x01", 4);
  CHECK_EQ(float_valid(&v), 0);
  put(&v, "optstr", "\x01\x00x", 3);
  float_violation(&v, "F.optstr: violates min_length 2 (length 1)");
  put(&v, "optstr", "\x05\x00", 2);
  float_violation(&v, "F.optstr: length 5 exceeds capacity 4");
  put(&v, "optstr", "\x02\x00xy", 4);
  CHECK_EQ(float_valid(&v), 0);
  /* All optional fields zero (the fill) is valid: checked above. */
  myc_contract_free(cs);
}

/* ===================================================================== */
/* Allocation failure at every step                                       */
/* ===================================================================== */

typedef struct {
  long fail_at, count;
  long long live;
} failing;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  failing *f = ud;
  void *p;

  if (nsize == 0) {
    if (ptr != NULL)
      f->live -= (long long)osize;
    free(ptr);
    return NULL;
  }
  if (++f->count == f->fail_at)
    return NULL;
  p = realloc(ptr, nsize);
  if (p != NULL)
    f->live += (long long)nsize - (long long)(ptr ? osize : 0);
  return p;
}

/* Fails allocation 1, 2, ... until loading succeeds: every failure must
 * report MYC_ENOMEM, return no set and leave nothing allocated. */
static void alloc_loop(const char *what, const char *yaml, int want) {
  long n;

  current = what;
  for (n = 1; n < 100000; n++) {
    failing f = {.fail_at = n};
    myc_contract_set *cs = NULL;
    int rc = myc_contract_load_string(&cs, "t.yaml", yaml, strlen(yaml),
                                      failing_alloc, &f);
    if (rc == MYC_ENOMEM) {
      CHECK(cs == NULL);
      CHECK_EQ(f.live, 0);
      continue;
    }
    CHECK_EQ(rc, want);
    CHECK(cs != NULL);
    myc_contract_free(cs);
    CHECK_EQ(f.live, 0);
    break;
  }
  /* The set is one arena: few allocations, but at least one failed. */
  CHECK(n > 1);
}

/* The same through a file: the read buffer is allocated too, and the
 * Bandit contracts span several arena chunks. */
static void alloc_loop_file(void) {
  const char *dir = getenv("MYCELIUM_SOURCE_DIR");
  char path[1024];
  long n;

  current = "alloc: bandit file";
  snprintf(path, sizeof(path), "%s/services/contracts.yaml",
           dir ? dir : "..");
  for (n = 1; n < 100000; n++) {
    failing f = {.fail_at = n};
    myc_contract_set *cs = NULL;
    int rc = myc_contract_load(&cs, path, failing_alloc, &f);
    if (rc == MYC_ENOMEM) {
      CHECK(cs == NULL);
      CHECK_EQ(f.live, 0);
      continue;
    }
    CHECK_EQ(rc, 0);
    myc_contract_free(cs);
    CHECK_EQ(f.live, 0);
    break;
  }
  CHECK(n > 4);
}

static void test_alloc_failures(void) {
  alloc_loop_file();
  alloc_loop("alloc: rust format", rust_format, 0);
  alloc_loop("alloc: all types", all_types, 0);
  alloc_loop("alloc: errors", HEAD "  A:\n    tlv_type: 1000\n    fields:\n"
                                   "      x: {type: U512}\n"
                                   "      y: {type: \"[u8; 0]\"}\n",
             MYC_ECONTRACT);
}

/* The ranges a type's check comes down to when every rule is not_zero
 * on an integer or byte array; -1 as soon as anything else is checked. */
static void test_check_facts(void) {
  static const char yaml[] =
      HEAD "  Facts:\n"
           "    tlv_type: 1000\n"
           "    fields:\n"
           "      a: {type: u64, validation: [{not_zero: true}]}\n"
           "      free: {type: u16}\n"
           "      opt: {type: i32, optional: true,"
           " validation: [{min: -5}, {max: 0x10}]}\n"
           "      name: {type: String,"
           " validation: [{not_empty: true}, {max_length: 6}]}\n"
           "      b: {type: bool}\n"
           "      f: {type: f64, validation: [{max: 0.5}]}\n";
  uint32_t c[7];
  const char *min, *max;
  const myc_contract_type *t;
  int rc;
  myc_contract_set *cs = load(yaml, &rc);
  CHECK_EQ(rc, 0);
  dump_errors(cs);
  if (rc != 0) {
    myc_contract_free(cs);
    return;
  }
  t = myc_contract_type_at(cs, 0);
  /* 'free' has no rule and cannot be wrong: not listed. */
  CHECK_EQ(myc__contract_check(t, 0, c, &min, &max), 0);
  CHECK_EQ(c[0], 0);
  CHECK_EQ(c[1], 8);
  CHECK_EQ(c[2], MYC_FIELD_U64);
  CHECK_EQ(c[4], MYC__CHECK_NOT_ZERO);
  CHECK(min == NULL && max == NULL);
  CHECK_EQ(myc__contract_check(t, 1, c, &min, &max), 0);
  CHECK_EQ(c[0], 10); /* opt, after free */
  CHECK_EQ(c[2], MYC_FIELD_I32);
  CHECK_EQ(c[4], MYC__CHECK_OPTIONAL | MYC__CHECK_MIN | MYC__CHECK_MAX);
  CHECK(min != NULL && strcmp(min, "-5") == 0);
  CHECK(max != NULL && strcmp(max, "16") == 0);
  CHECK_EQ(myc__contract_check(t, 2, c, &min, &max), 0);
  CHECK_EQ(c[0], 14);
  CHECK_EQ(c[2], MYC_FIELD_STRING);
  CHECK_EQ(c[3], 6);
  CHECK_EQ(c[4], MYC__CHECK_NOT_EMPTY | MYC__CHECK_MAX_LENGTH);
  CHECK_EQ(c[6], 6);
  CHECK_EQ(myc__contract_check(t, 3, c, &min, &max), 0);
  CHECK_EQ(c[2], MYC_FIELD_BOOL);
  CHECK_EQ(c[4], 0);
  CHECK_EQ(myc__contract_check(t, 4, c, &min, &max), 0);
  CHECK_EQ(c[2], MYC_FIELD_F64);
  CHECK(min == NULL);
  CHECK(max != NULL && strcmp(max, "0.5") == 0);
  CHECK_EQ(myc__contract_check(t, 5, c, &min, &max), -1);
  myc_contract_free(cs);
}

/* ===================================================================== */

static const struct {
  const char *name;
  void (*fn)(void);
} tests[] = {
    {"rust_format", test_rust_format},
    {"bandit_file", test_bandit_file},
    {"layout", test_layout},
    {"syntax_and_missing", test_syntax_and_missing},
    {"duplicates", test_duplicates},
    {"tags", test_tags},
    {"types", test_types},
    {"names_and_values", test_names_and_values},
    {"rules", test_rules},
    {"all_errors_reported", test_all_errors_reported},
    {"files", test_files},
    {"digest", test_digest},
    {"validate", test_validate},
    {"validate_floats", test_validate_floats},
    {"check_facts", test_check_facts},
    {"alloc_failures", test_alloc_failures},
};

int main(void) {
  size_t n = sizeof(tests) / sizeof(tests[0]), failed = 0;

  for (size_t i = 0; i < n; i++) {
    int before = failures;
    current = tests[i].name;
    tests[i].fn();
    if (failures != before)
      failed++;
    printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
  }
  printf("%zu passed, %zu failed\n", n - failed, failed);
  return failed ? 1 : 0;
}
