/* contract_parse.c -- contracts.yaml (the Rust Mycelium format) to the
 * contract model, with load-time validation.
 *
 * The walk never stops at the first problem: every fault is recorded with
 * its line and the parse goes on, so one run of `mycelium check` shows the
 * whole list.  Keys the engine does not use are accepted and ignored.
 */
#include "contract/contract.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

enum { R_CORE, R_APP, R_EXPERIMENTAL, R_COUNT };

typedef struct {
  myc_contract_set *cs;
  yaml_document_t *doc;
  int oom; /* sticky: a diagnostic could not be recorded */
  uint32_t range[R_COUNT][2];
} parser;

static const char *const range_name[R_COUNT] = {"core", "app",
                                                "experimental"};

#define DIAG(p, ...)                                                          \
  do {                                                                        \
    if (myc__contract_diag((p)->cs, __VA_ARGS__) != 0)                        \
      (p)->oom = 1;                                                           \
  } while (0)

/* ===================================================================== */
/* YAML nodes                                                             */
/* ===================================================================== */

static yaml_node_t *node(parser *p, int id) {
  return yaml_document_get_node(p->doc, id);
}

static int line_of(const yaml_node_t *n) {
  return (int)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value
                                          : NULL;
}

static int is_map(const yaml_node_t *n) {
  return n && n->type == YAML_MAPPING_NODE;
}

static size_t map_len(const yaml_node_t *n) {
  return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* The value of 'key' in mapping 'map' (its first occurrence), or NULL. */
static yaml_node_t *get(parser *p, const yaml_node_t *map, const char *key) {
  yaml_node_pair_t *pr;

  if (!is_map(map))
    return NULL;
  for (pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
       pr++) {
    const char *k = scalar(node(p, pr->key));
    if (k != NULL && strcmp(k, key) == 0)
      return node(p, pr->value);
  }
  return NULL;
}

/* Line of 'key' in mapping 'map' (its first occurrence), else of 'map':
 * "schema: missing id" is best reported where "schema:" is written. */
static int key_line(parser *p, const yaml_node_t *map, const char *key) {
  yaml_node_pair_t *pr;

  for (pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
       pr++) {
    const char *k = scalar(node(p, pr->key));
    if (k != NULL && strcmp(k, key) == 0)
      return line_of(node(p, pr->key));
  }
  return line_of(map);
}

/* Scratch memory from the set's allocator, given back at once (the
 * arena would keep it as long as the set). */
static void *scratch_alloc(parser *p, size_t n) {
  void *m = p->cs->alloc(p->cs->ud, NULL, 0, n);
  if (m == NULL)
    p->oom = 1;
  return m;
}

static void scratch_free(parser *p, void *m, size_t n) {
  if (m != NULL)
    p->cs->alloc(p->cs->ud, m, n, 0);
}

typedef struct {
  const char *key; /* or NULL, sorted with the tag */
  uint32_t tag;
  uint32_t pos;
} sort_ref;

static int same_key(const sort_ref *x, const sort_ref *y) {
  return x->key && y->key ? strcmp(x->key, y->key) == 0 : x->tag == y->tag;
}

static int by_key_then_pos(const void *a, const void *b) {
  const sort_ref *x = a, *y = b;
  int c = x->key && y->key ? strcmp(x->key, y->key)
                           : (x->tag > y->tag) - (x->tag < y->tag);
  return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Sorts 'refs' (n of them, 'pos' numbering them) and writes in first[pos]
 * the position of the first with the same key: itself for a first.  One
 * sort instead of every pair compared: a contracts file of 20000 messages
 * or fields took seconds to check pairwise. */
static void find_firsts(sort_ref *refs, size_t n, uint32_t *first) {
  size_t i, head = 0;
  qsort(refs, n, sizeof *refs, by_key_then_pos);
  for (i = 0; i < n; i++) {
    if (!same_key(&refs[i], &refs[head]))
      head = i;
    first[refs[i].pos] = refs[head].pos;
  }
}

/* For each pair of mapping 'map' (of 'n' pairs), the index of the first
 * pair with the same key; a key that is not a string is its own.  NULL
 * when out of memory (p->oom set); free with keys_done(). */
static uint32_t *first_keys(parser *p, const yaml_node_t *map, size_t n) {
  uint32_t *first = scratch_alloc(p, n * sizeof *first + 1);
  sort_ref *refs = scratch_alloc(p, n * sizeof *refs + 1);
  size_t i, k = 0;

  if (first != NULL && refs != NULL) {
    for (i = 0; i < n; i++) {
      const char *key = scalar(node(p, map->data.mapping.pairs.start[i].key));
      first[i] = (uint32_t)i;
      if (key != NULL)
        refs[k++] = (sort_ref){key, 0, (uint32_t)i};
    }
    find_firsts(refs, k, first);
  }
  scratch_free(p, refs, n * sizeof *refs + 1);
  if (refs == NULL) {
    scratch_free(p, first, n * sizeof *first + 1);
    return NULL;
  }
  return first;
}

/* libyaml keeps duplicate keys; the Rust loader would reject them, and a
 * silently shadowed field would change the layout, so report each one.
 * Returns first_keys() of 'map', for the caller to skip repeats (then
 * keys_done()), or NULL when out of memory. */
static uint32_t *check_keys(parser *p, const yaml_node_t *map,
                            const char *where, const char *kind) {
  yaml_node_pair_t *start = map->data.mapping.pairs.start;
  size_t i, n = map_len(map);
  uint32_t *first = first_keys(p, map, n);

  for (i = 0; first != NULL && i < n; i++) {
    yaml_node_t *k = node(p, start[i].key);
    if (scalar(k) == NULL)
      DIAG(p, "bad_value", line_of(k), where, "keys must be plain strings");
    else if (first[i] != i)
      DIAG(p, kind, line_of(k), where, "'%s' defined twice (first at line %d)",
           scalar(k), line_of(node(p, start[first[i]].key)));
  }
  return first;
}

static void keys_done(parser *p, const yaml_node_t *map, uint32_t *first) {
  scratch_free(p, first, map_len(map) * sizeof *first + 1);
}

/* ===================================================================== */
/* Scalars                                                                */
/* ===================================================================== */

/* Decimal or 0x-hex unsigned integer.  Returns 0, -1 if 's' is not one,
 * -2 if it is above 'max'. */
static int to_uint(const char *s, uint64_t max, uint64_t *out) {
  int base = 10;
  uint64_t v = 0;

  if (s == NULL || *s == '\0')
    return -1;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s += 2;
    if (*s == '\0')
      return -1;
  }
  for (; *s; s++) {
    int d = *s >= '0' && *s <= '9'                ? *s - '0'
            : base == 16 && *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
            : base == 16 && *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                                   : -1;
    if (d < 0)
      return -1;
    if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
      return -2;
    v = v * (uint64_t)base + (uint64_t)d;
  }
  *out = v;
  return v > max ? -2 : 0;
}

/* YAML 1.1 booleans.  Returns 0 or 1, or -1 if 's' is not one. */
static int to_bool(const char *s) {
  static const char *const t[] = {"true", "yes", "on"};
  static const char *const f[] = {"false", "no", "off"};

  for (int i = 0; s && i < 3; i++) {
    if (strcasecmp(s, t[i]) == 0)
      return 1;
    if (strcasecmp(s, f[i]) == 0)
      return 0;
  }
  return -1;
}

static int is_ident(const char *s) {
  size_t n = 0;

  if (s == NULL || !(*s == '_' || (*s >= 'A' && *s <= 'Z') ||
                     (*s >= 'a' && *s <= 'z')))
    return 0;
  for (; *s; s++, n++)
    if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
          (*s >= '0' && *s <= '9')))
      return 0;
  return n <= 64;
}

/* Field names become members of FFI structs: C keywords cannot. */
static int is_c_keyword(const char *s) {
  static const char *const kw[] = {
      "auto",     "bool",   "break",    "case",     "char",   "const",
      "continue", "default", "do",      "double",   "else",   "enum",
      "extern",   "float",  "for",      "goto",     "if",     "inline",
      "int",      "long",   "register", "restrict", "return", "short",
      "signed",   "sizeof", "static",   "struct",   "switch", "typedef",
      "union",    "unsigned", "void",   "volatile", "while",  "_Bool",
      "_Complex", "_Imaginary", "__int64", "__attribute__", "__declspec"};

  for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
    if (strcmp(s, kw[i]) == 0)
      return 1;
  return 0;
}

/* ===================================================================== */
/* Field types                                                            */
/* ===================================================================== */

typedef struct {
  myc_field_kind kind;
  uint32_t size;
  char text[32];
} atom;

static const struct {
  const char *name;
  myc_field_kind kind;
  uint32_t size;
} scalars[] = {
#define XX(name, value, text, size) {text, MYC_FIELD_##name, size},
    MYC_FIELD_KIND_MAP(XX)
#undef XX
};

/* Array length or capacity.  Returns 0, or the "array_size" reason. */
static const char *count_of(const char *s, uint32_t *n) {
  uint64_t v;
  int rc = to_uint(s, MYC_CONTRACT_MAX_SIZE, &v);

  if (rc == -1)
    return "length is not an integer";
  if (rc == -2)
    return "oversize: more than 65535 elements";
  if (v == 0)
    return "zero-size array";
  *n = (uint32_t)v;
  return NULL;
}

/* An element type: a scalar, U256/I256, or [u8; N].  Returns 0, -1 for an
 * unknown type, or -2 with 'why' set for a bad length. */
static int parse_atom(const char *s, atom *a, const char **why) {
  size_t n = strlen(s);
  uint32_t count;

  for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
    if (scalars[i].size != 0 && strcmp(s, scalars[i].name) == 0) {
      a->kind = scalars[i].kind;
      a->size = scalars[i].size;
      snprintf(a->text, sizeof(a->text), "%s", s);
      return 0;
    }
  if (n < 6 || strncmp(s, "[u8;", 4) != 0 || s[n - 1] != ']')
    return -1;
  char num[16];
  if (n - 5 >= sizeof(num))
    return -1;
  memcpy(num, s + 4, n - 5);
  num[n - 5] = '\0';
  if ((*why = count_of(num, &count)) != NULL)
    return -2;
  a->kind = MYC_FIELD_ARRAY;
  a->size = count;
  snprintf(a->text, sizeof(a->text), "[u8; %u]", (unsigned)count);
  return 0;
}

static int type_error(parser *p, const char *where, int line, int rc,
                      const char *text, const char *why) {
  if (rc == -1)
    DIAG(p, "unknown_type", line, where, "unknown field type '%s'", text);
  else
    DIAG(p, "array_size", line, where, "%s in '%s'", why, text);
  return -1;
}

/* [T; N] with T an atom. */
static int parse_array(parser *p, myc__field *f, char *s, const char *raw,
                       const char *where, int line) {
  char *semi = strrchr(s, ';');
  const char *why = NULL;
  uint32_t n;
  atom a;
  int rc;

  if (semi == NULL)
    return type_error(p, where, line, -1, raw, NULL);
  s[strlen(s) - 1] = '\0';
  *semi = '\0';
  if ((rc = parse_atom(s + 1, &a, &why)) != 0)
    return type_error(p, where, line, rc, raw, why);
  if ((why = count_of(semi + 1, &n)) != NULL)
    return type_error(p, where, line, -2, raw, why);
  if ((uint64_t)n * a.size > MYC_CONTRACT_MAX_SIZE)
    return type_error(p, where, line, -2, raw,
                      "oversize: more than 65535 bytes");
  f->pub.kind = MYC_FIELD_ARRAY;
  f->pub.elem_kind = a.kind;
  f->pub.elem_size = a.size;
  f->pub.count = n;
  f->pub.size = n * a.size;
  snprintf(s, 64, "[%s; %u]", a.text, (unsigned)n); /* canonical */
  return 0;
}

/* Fills kind, element, count and size of 'f' from its type text (String
 * and Vec get their capacity from max_length later).  Returns 0, or -1
 * after recording why. */
static int parse_type(parser *p, myc__field *f, const char *raw,
                      const char *where, int line) {
  char s[80], canon[80];
  size_t n = 0;
  const char *why = NULL;
  atom a;
  int rc = 0;

  for (const char *c = raw; *c; c++)
    if (*c != ' ' && *c != '\t' && n < sizeof(s) - 1)
      s[n++] = *c;
  s[n] = '\0';
  if (n == 0 || strlen(raw) > 64)
    return type_error(p, where, line, -1, raw, NULL);
  if (strcmp(s, "String") == 0) {
    f->pub.kind = MYC_FIELD_STRING;
    f->pub.elem_kind = MYC_FIELD_U8;
    f->pub.elem_size = 1;
    snprintf(canon, sizeof(canon), "String");
  } else if (n > 5 && strncmp(s, "Vec<", 4) == 0 && s[n - 1] == '>') {
    s[n - 1] = '\0';
    if ((rc = parse_atom(s + 4, &a, &why)) != 0)
      return type_error(p, where, line, rc, raw, why);
    f->pub.kind = MYC_FIELD_VEC;
    f->pub.elem_kind = a.kind;
    f->pub.elem_size = a.size;
    snprintf(canon, sizeof(canon), "Vec<%s>", a.text);
  } else if (s[0] == '[' && s[n - 1] == ']' && strncmp(s, "[u8;", 4) != 0) {
    if (parse_array(p, f, s, raw, where, line) != 0)
      return -1;
    snprintf(canon, sizeof(canon), "%s", s);
  } else {
    if ((rc = parse_atom(s, &a, &why)) != 0)
      return type_error(p, where, line, rc, raw, why);
    f->pub.kind = a.kind;
    f->pub.elem_kind = a.kind == MYC_FIELD_ARRAY ? MYC_FIELD_U8 : a.kind;
    f->pub.elem_size = a.kind == MYC_FIELD_ARRAY ? 1 : a.size;
    f->pub.count = a.kind == MYC_FIELD_ARRAY ? a.size : 1;
    f->pub.size = a.size;
    snprintf(canon, sizeof(canon), "%s", a.text);
  }
  f->pub.type = myc__contract_strndup(p->cs, canon, strlen(canon));
  if (f->pub.type == NULL)
    p->oom = 1;
  return 0;
}

/* ===================================================================== */
/* Validation rules                                                       */
/* ===================================================================== */

static int numeric(myc_field_kind k) {
  return k != MYC_FIELD_BOOL && k != MYC_FIELD_ARRAY &&
         k != MYC_FIELD_STRING && k != MYC_FIELD_VEC;
}

static int sized(myc_field_kind k) {
  return k == MYC_FIELD_STRING || k == MYC_FIELD_VEC;
}

typedef struct {
  parser *p;
  myc__field *f;
  const char *where;
  int line;
} rule_ctx;

static int rule_applies(rule_ctx *r, const char *rule, int ok) {
  if (!ok)
    DIAG(r->p, "bad_rule", r->line, r->where,
         "rule '%s' does not apply to a %s field", rule, r->f->pub.type);
  return ok;
}

static void rule_bound(rule_ctx *r, const char *rule, const char *text,
                       myc__bound *b, const char **canon, unsigned *has) {
  const char *why = NULL;

  if (!rule_applies(r, rule, numeric(r->f->pub.kind)))
    return;
  *canon = myc__contract_bound(r->p->cs, r->f->pub.kind, text ? text : "", b,
                               &why);
  if (*canon != NULL)
    *has = 1;
  else if (why == NULL)
    r->p->oom = 1;
  else
    DIAG(r->p, "bad_rule", r->line, r->where, "%s '%s' %s", rule,
         text ? text : "", why);
}

static void rule_length(rule_ctx *r, const char *rule, const char *text,
                        uint32_t *out, unsigned *has) {
  uint64_t v;

  if (!rule_applies(r, rule, sized(r->f->pub.kind)))
    return;
  if (to_uint(text, MYC_CONTRACT_MAX_SIZE, &v) != 0) {
    DIAG(r->p, "bad_rule", r->line, r->where,
         "%s '%s' is not an integer from 0 to 65535", rule, text ? text : "");
    return;
  }
  *out = (uint32_t)v;
  *has = 1;
}

static void rule_flag(rule_ctx *r, const char *rule, const char *text,
                      int ok, unsigned *flag) {
  int b = to_bool(text);

  if (!rule_applies(r, rule, ok))
    return;
  if (b < 0)
    DIAG(r->p, "bad_rule", r->line, r->where, "%s '%s' is not true or false",
         rule, text ? text : "");
  else
    *flag = (unsigned)b;
}

/* One "rule: value" pair.  Rules the engine does not know (monotonic,
 * known_chain, ...) belong to other tools: accepted and ignored. */
static void parse_rule(rule_ctx *r, const char *rule, const char *text) {
  myc__rules *u = &r->f->rules;
  unsigned has;
  myc_field_kind k = r->f->pub.kind;

  if (strcmp(rule, "min") == 0) {
    has = u->has_min;
    rule_bound(r, rule, text, &u->min, &u->min_text, &has);
    u->has_min = has;
  } else if (strcmp(rule, "max") == 0) {
    has = u->has_max;
    rule_bound(r, rule, text, &u->max, &u->max_text, &has);
    u->has_max = has;
  } else if (strcmp(rule, "min_length") == 0) {
    has = u->has_min_length;
    rule_length(r, rule, text, &u->min_length, &has);
    u->has_min_length = has;
  } else if (strcmp(rule, "max_length") == 0) {
    has = u->has_max_length;
    rule_length(r, rule, text, &u->max_length, &has);
    u->has_max_length = has;
  } else if (strcmp(rule, "not_empty") == 0) {
    has = u->not_empty;
    rule_flag(r, rule, text, sized(k), &has);
    u->not_empty = has;
  } else if (strcmp(rule, "not_zero") == 0) {
    has = u->not_zero;
    rule_flag(r, rule, text, numeric(k) || k == MYC_FIELD_ARRAY, &has);
    u->not_zero = has;
  }
}

static const char *const rule_names[] = {"min",        "max",
                                         "min_length", "max_length",
                                         "not_empty",  "not_zero"};

/* Index of a rule the engine checks, or -1. */
static int rule_index(const char *k) {
  for (int i = 0; i < (int)(sizeof(rule_names) / sizeof(rule_names[0])); i++)
    if (strcmp(k, rule_names[i]) == 0)
      return i;
  return -1;
}

/* The pairs of one mapping of the validation list. */
static void parse_rule_map(rule_ctx *r, const yaml_node_t *m,
                           unsigned *seen) {
  for (yaml_node_pair_t *pr = m->data.mapping.pairs.start;
       pr < m->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node(r->p, pr->key), *v = node(r->p, pr->value);
    const char *name = scalar(k);
    int i = name ? rule_index(name) : -1;
    if (i < 0)
      continue;
    r->line = line_of(k);
    /* Two rules of one name would leave which one wins to key order. */
    if (*seen & (1u << i)) {
      DIAG(r->p, "bad_rule", r->line, r->where, "rule '%s' given twice",
           name);
      continue;
    }
    *seen |= 1u << i;
    if (scalar(v) == NULL)
      DIAG(r->p, "bad_rule", r->line, r->where, "rule '%s' needs a value",
           name);
    else
      parse_rule(r, name, scalar(v));
  }
}

static void parse_rules(parser *p, myc__field *f, const yaml_node_t *v,
                        const char *where) {
  rule_ctx r = {p, f, where, line_of(v)};
  unsigned seen = 0;

  if (v->type == YAML_MAPPING_NODE) {
    parse_rule_map(&r, v, &seen);
    return;
  }
  if (v->type != YAML_SEQUENCE_NODE) {
    if (!(scalar(v) && (*scalar(v) == '\0' || strcmp(scalar(v), "~") == 0 ||
                        strcmp(scalar(v), "null") == 0)))
      DIAG(p, "bad_value", line_of(v), where,
           "validation must be a list of 'rule: value' entries");
    return;
  }
  for (yaml_node_item_t *it = v->data.sequence.items.start;
       it < v->data.sequence.items.top; it++) {
    yaml_node_t *m = node(p, *it);
    if (is_map(m))
      parse_rule_map(&r, m, &seen);
    else
      DIAG(p, "bad_value", line_of(m), where,
           "validation entries must be 'rule: value'");
  }
}

static int bound_cmp(myc_field_kind k, const myc__bound *a,
                     const myc__bound *b) {
  if (k == MYC_FIELD_F32 || k == MYC_FIELD_F64)
    return a->d < b->d ? -1 : a->d > b->d;
  for (int i = 31; i >= 0; i--)
    if (a->w[i] != b->w[i])
      return a->w[i] < b->w[i] ? -1 : 1;
  return 0;
}

static void check_rules(parser *p, myc__field *f, const char *where) {
  const myc__rules *r = &f->rules;

  if (r->has_min && r->has_max &&
      bound_cmp(f->pub.kind, &r->min, &r->max) > 0)
    DIAG(p, "bad_rule", f->pub.line, where, "min %s is greater than max %s",
         r->min_text, r->max_text);
  if (r->has_min_length && r->has_max_length &&
      r->min_length > r->max_length)
    DIAG(p, "bad_rule", f->pub.line, where,
         "min_length %u is greater than max_length %u",
         (unsigned)r->min_length, (unsigned)r->max_length);
}

/* ===================================================================== */
/* Fields                                                                 */
/* ===================================================================== */

/* String and Vec take their capacity from max_length: the struct is
 * fixed-size, so the bound is the layout, not just a check. */
static void size_sized(parser *p, myc__field *f, const char *where) {
  uint64_t size;

  if (!f->rules.has_max_length) {
    DIAG(p, "missing_key", f->pub.line, where,
         "a %s field needs a 'max_length' validation rule (its capacity)",
         f->pub.type);
    return;
  }
  if (f->rules.max_length == 0) {
    DIAG(p, "array_size", f->pub.line, where, "zero capacity (max_length 0)");
    return;
  }
  f->pub.count = f->rules.max_length;
  size = 2u + (uint64_t)f->pub.count * f->pub.elem_size;
  if (size > MYC_CONTRACT_MAX_SIZE) {
    DIAG(p, "array_size", f->pub.line, where,
         "oversize: %llu bytes, more than 65535",
         (unsigned long long)size);
    return;
  }
  f->pub.size = (uint32_t)size;
}

static int field_name_ok(parser *p, const char *name, int line,
                         const char *where) {
  if (!is_ident(name))
    DIAG(p, "bad_name", line, where,
         "field name must be an identifier of at most 64 characters");
  else if (is_c_keyword(name))
    DIAG(p, "bad_name", line, where, "field name is a C keyword");
  else if (strncmp(name, "_myc_", 5) == 0)
    DIAG(p, "bad_name", line, where, "the prefix '_myc_' is reserved");
  else
    return 1;
  return 0;
}

/* Parses one field.  Returns 1 when its layout is known. */
static int parse_field(parser *p, myc_contract_type *t, myc__field *f,
                       yaml_node_t *key, yaml_node_t *v) {
  const char *name = scalar(key);
  char where[160];
  yaml_node_t *n;
  int ok, b;

  snprintf(where, sizeof(where), "%s.%s", t->name, name ? name : "?");
  f->pub.line = line_of(key);
  f->pub.name = myc__contract_strndup(p->cs, name, strlen(name));
  if (f->pub.name == NULL)
    return p->oom = 1, 0;
  ok = field_name_ok(p, name, f->pub.line, where);
  if (!is_map(v)) {
    DIAG(p, "bad_value", line_of(v), where,
         "a field must be a mapping with a 'type'");
    return 0;
  }
  keys_done(p, v, check_keys(p, v, where, "duplicate_key"));
  if ((n = get(p, v, "type")) == NULL) {
    DIAG(p, "missing_key", f->pub.line, where, "missing required key 'type'");
    return 0;
  }
  if (scalar(n) == NULL) {
    DIAG(p, "bad_value", line_of(n), where, "'type' must be a string");
    return 0;
  }
  if (parse_type(p, f, scalar(n), where, line_of(n)) != 0)
    return 0;
  if ((n = get(p, v, "optional")) != NULL) {
    if ((b = to_bool(scalar(n))) < 0)
      DIAG(p, "bad_value", line_of(n), where,
           "'optional' must be true or false");
    f->pub.optional = b > 0;
  }
  if ((n = get(p, v, "validation")) != NULL)
    parse_rules(p, f, n, where);
  check_rules(p, f, where);
  if (sized(f->pub.kind))
    size_sized(p, f, where);
  return ok && f->pub.size != 0;
}

/* Lays out the fields of 't' one after the other, packed. */
static void parse_fields(parser *p, myc_contract_type *t, yaml_node_t *m) {
  size_t i = 0, k;
  uint64_t off = 0;
  uint32_t *first;
  int ok = 1;

  t->fields = myc__contract_alloc(p->cs, (map_len(m) + 1) * sizeof(*t->fields));
  if (t->fields == NULL) {
    p->oom = 1;
    return;
  }
  first = check_keys(p, m, t->name, "duplicate_name");
  for (k = 0; first != NULL && k < map_len(m) && !p->oom; k++) {
    yaml_node_pair_t *pr = &m->data.mapping.pairs.start[k];
    if (scalar(node(p, pr->key)) == NULL || first[k] != k)
      continue;
    myc__field *f = &t->fields[i++];
    ok &= parse_field(p, t, f, node(p, pr->key), node(p, pr->value));
    f->pub.offset = (uint32_t)off;
    off += f->pub.size;
  }
  keys_done(p, m, first);
  t->nfields = i;
  t->size = (size_t)off;
  if (ok && off > MYC_CONTRACT_MAX_SIZE)
    DIAG(p, "too_large", t->line, t->name,
         "payload is %llu bytes, more than 65535",
         (unsigned long long)off);
}

/* ===================================================================== */
/* Messages                                                               */
/* ===================================================================== */

static int in_range(const parser *p, int r, uint32_t tag) {
  return tag >= p->range[r][0] && tag <= p->range[r][1];
}

static void check_tag(parser *p, const myc_contract_type *t, int line) {
  if (t->tag > 65535)
    DIAG(p, "tag_range", line, t->name,
         "tlv_type %u is beyond u16 (at most 65535)", (unsigned)t->tag);
  else if (in_range(p, R_APP, t->tag) || in_range(p, R_EXPERIMENTAL, t->tag))
    return;
  else if (in_range(p, R_CORE, t->tag))
    DIAG(p, "tag_range", line, t->name,
         "tlv_type %u is in the core range %u-%u, reserved for the engine",
         (unsigned)t->tag, (unsigned)p->range[R_CORE][0],
         (unsigned)p->range[R_CORE][1]);
  else
    DIAG(p, "tag_range", line, t->name,
         "tlv_type %u is outside the app (%u-%u) and experimental (%u-%u) "
         "ranges",
         (unsigned)t->tag, (unsigned)p->range[R_APP][0],
         (unsigned)p->range[R_APP][1], (unsigned)p->range[R_EXPERIMENTAL][0],
         (unsigned)p->range[R_EXPERIMENTAL][1]);
}

static void parse_tag(parser *p, myc_contract_type *t, yaml_node_t *m) {
  yaml_node_t *n = get(p, m, "tlv_type");
  uint64_t v;
  int rc;

  if (n == NULL) {
    DIAG(p, "missing_key", t->line, t->name,
         "missing required key 'tlv_type'");
    return;
  }
  rc = to_uint(scalar(n), UINT32_MAX, &v);
  if (rc == -1) {
    DIAG(p, "bad_value", line_of(n), t->name,
         "tlv_type '%s' is not a non-negative integer",
         scalar(n) ? scalar(n) : "");
    return;
  }
  t->tag = rc == -2 ? UINT32_MAX : (uint32_t)v;
  check_tag(p, t, line_of(n));
}

static void parse_message(parser *p, myc_contract_type *t, yaml_node_t *key,
                          yaml_node_t *m) {
  const char *name = scalar(key);
  yaml_node_t *n;

  t->line = line_of(key);
  t->tag = UINT32_MAX; /* unknown: never a duplicate of anything */
  t->name = myc__contract_strndup(p->cs, name, strlen(name));
  if (t->name == NULL) {
    p->oom = 1;
    return;
  }
  if (!is_ident(name))
    DIAG(p, "bad_name", t->line, name,
         "message name must be an identifier of at most 64 characters");
  if (!is_map(m)) {
    DIAG(p, "bad_value", line_of(m), name, "a message must be a mapping");
    return;
  }
  keys_done(p, m, check_keys(p, m, name, "duplicate_key"));
  parse_tag(p, t, m);
  if ((n = get(p, m, "domain")) != NULL && scalar(n) != NULL &&
      (t->domain = myc__contract_strndup(p->cs, scalar(n),
                                         strlen(scalar(n)))) == NULL)
    p->oom = 1;
  if ((n = get(p, m, "fields")) == NULL)
    DIAG(p, "missing_key", t->line, name, "missing required key 'fields'");
  else if (!is_map(n))
    DIAG(p, "bad_value", line_of(n), name,
         "'fields' must be a mapping of field name to field");
  else
    parse_fields(p, t, n);
}

/* Names both messages, so the fix is obvious whichever one is wrong. */
static void check_duplicate_tags(parser *p) {
  myc_contract_set *cs = p->cs;
  size_t j, n = cs->ntypes, k = 0;
  uint32_t *first = scratch_alloc(p, n * sizeof *first + 1);
  sort_ref *refs = scratch_alloc(p, n * sizeof *refs + 1);

  for (j = 0; first != NULL && refs != NULL && j < n; j++) {
    first[j] = (uint32_t)j;
    /* An unknown or out-of-range tag is reported already. */
    if (cs->types[j].tag <= 65535)
      refs[k++] = (sort_ref){NULL, cs->types[j].tag, (uint32_t)j};
  }
  if (first != NULL && refs != NULL) {
    find_firsts(refs, k, first);
    for (j = 0; j < n; j++)
      if (first[j] != j)
        DIAG(p, "duplicate_tag", cs->types[j].line, cs->types[j].name,
             "tlv_type %u is also used by %s (line %d)",
             (unsigned)cs->types[j].tag, cs->types[first[j]].name,
             cs->types[first[j]].line);
  }
  scratch_free(p, refs, n * sizeof *refs + 1);
  scratch_free(p, first, n * sizeof *first + 1);
}

static void parse_messages(parser *p, yaml_node_t *root) {
  yaml_node_t *m = get(p, root, "messages");
  size_t i = 0, k;
  uint32_t *first;

  if (m == NULL) {
    DIAG(p, "missing_key", line_of(root), NULL,
         "missing required key 'messages'");
    return;
  }
  if (!is_map(m)) {
    DIAG(p, "bad_value", line_of(m), "messages",
         "must be a mapping of message name to message");
    return;
  }
  p->cs->types = myc__contract_alloc(p->cs, (map_len(m) + 1) *
                                                sizeof(*p->cs->types));
  if (p->cs->types == NULL) {
    p->oom = 1;
    return;
  }
  first = check_keys(p, m, "messages", "duplicate_name");
  for (k = 0; first != NULL && k < map_len(m) && !p->oom; k++) {
    yaml_node_pair_t *pr = &m->data.mapping.pairs.start[k];
    if (scalar(node(p, pr->key)) != NULL && first[k] == k)
      parse_message(p, &p->cs->types[i++], node(p, pr->key),
                    node(p, pr->value));
  }
  keys_done(p, m, first);
  p->cs->ntypes = i;
  check_duplicate_tags(p);
}

/* ===================================================================== */
/* Schema and tag ranges                                                  */
/* ===================================================================== */

static int schema_number(parser *p, yaml_node_t *schema, const char *key,
                         uint64_t max, uint64_t *out) {
  yaml_node_t *n = get(p, schema, key);
  char where[32];

  snprintf(where, sizeof(where), "schema.%s", key);
  if (n == NULL)
    return 1;
  if (to_uint(scalar(n), max, out) != 0) {
    DIAG(p, "bad_value", line_of(n), where,
         "'%s' is not an integer from 0 to %llu", scalar(n) ? scalar(n) : "",
         (unsigned long long)max);
    return -1;
  }
  return 0;
}

static void parse_schema(parser *p, yaml_node_t *root) {
  yaml_node_t *s = get(p, root, "schema");
  uint64_t id = 0, version = 0, minc = 0;
  int rc, line = key_line(p, root, "schema");

  if (s == NULL) {
    DIAG(p, "missing_key", line_of(root), NULL,
         "missing required key 'schema' (id, version)");
    return;
  }
  if (!is_map(s)) {
    DIAG(p, "bad_value", line_of(s), "schema", "must be a mapping");
    return;
  }
  keys_done(p, s, check_keys(p, s, "schema", "duplicate_key"));
  if (schema_number(p, s, "id", UINT32_MAX, &id) > 0)
    DIAG(p, "missing_key", line, "schema", "missing required key 'id'");
  if (schema_number(p, s, "version", UINT16_MAX, &version) > 0)
    DIAG(p, "missing_key", line, "schema", "missing required key 'version'");
  rc = schema_number(p, s, "min_compatible", UINT16_MAX, &minc);
  if (rc > 0)
    minc = version;
  else if (rc == 0 && minc > version)
    DIAG(p, "bad_value", line_of(get(p, s, "min_compatible")), "schema",
         "min_compatible %u is above version %u", (unsigned)minc,
         (unsigned)version);
  p->cs->schema_id = (uint32_t)id;
  p->cs->version = (uint16_t)version;
  p->cs->min_compatible = (uint16_t)minc;
}

/* "start-end" as in the Rust format. */
static int parse_range(const char *s, uint32_t r[2]) {
  const char *dash = s ? strchr(s, '-') : NULL;
  char a[16];
  uint64_t lo, hi;

  if (dash == NULL || (size_t)(dash - s) >= sizeof(a))
    return -1;
  memcpy(a, s, (size_t)(dash - s));
  a[dash - s] = '\0';
  if (to_uint(a, 65535, &lo) != 0 || to_uint(dash + 1, 65535, &hi) != 0 ||
      lo == 0 || lo > hi)
    return -1;
  r[0] = (uint32_t)lo;
  r[1] = (uint32_t)hi;
  return 0;
}

static void check_overlaps(parser *p, int line) {
  for (int i = 0; i < R_COUNT; i++)
    for (int j = i + 1; j < R_COUNT; j++)
      if (p->range[i][0] <= p->range[j][1] &&
          p->range[j][0] <= p->range[i][1])
        DIAG(p, "bad_range", line, "tag_ranges",
             "ranges '%s' and '%s' overlap", range_name[i], range_name[j]);
}

static void parse_ranges(parser *p, yaml_node_t *root) {
  yaml_node_t *m = get(p, root, "tag_ranges");

  if (m == NULL)
    return;
  if (!is_map(m)) {
    DIAG(p, "bad_range", line_of(m), "tag_ranges", "must be a mapping");
    return;
  }
  keys_done(p, m, check_keys(p, m, "tag_ranges", "duplicate_key"));
  for (int r = 0; r < R_COUNT; r++) {
    yaml_node_t *n = get(p, m, range_name[r]);
    if (n != NULL && parse_range(scalar(n), p->range[r]) != 0)
      DIAG(p, "bad_range", line_of(n), "tag_ranges",
           "%s: '%s' is not a range 'start-end' within 1-65535",
           range_name[r], scalar(n) ? scalar(n) : "");
  }
  check_overlaps(p, key_line(p, root, "tag_ranges"));
}

/* ===================================================================== */
/* Entry                                                                  */
/* ===================================================================== */

static void parse_root(parser *p) {
  yaml_node_t *root = yaml_document_get_root_node(p->doc);

  if (root == NULL) {
    DIAG(p, "missing_key", 1, NULL,
         "empty file: expected 'schema' and 'messages'");
    return;
  }
  if (!is_map(root)) {
    DIAG(p, "bad_value", line_of(root), NULL,
         "the file must be a mapping with 'schema' and 'messages'");
    return;
  }
  keys_done(p, root, check_keys(p, root, NULL, "duplicate_key"));
  parse_schema(p, root);
  parse_ranges(p, root);
  parse_messages(p, root);
}

static void syntax_error(parser *p, const yaml_parser_t *yp) {
  DIAG(p, "yaml_syntax", (int)yp->problem_mark.line + 1, NULL,
       "YAML syntax error at column %d: %s%s%s",
       (int)yp->problem_mark.column + 1,
       yp->problem ? yp->problem : "unknown problem",
       yp->context ? " " : "", yp->context ? yp->context : "");
}

int myc__contract_parse(myc_contract_set *cs, const char *text, size_t len) {
  parser p = {.cs = cs,
              .range = {{1, 999}, {1000, 49999}, {50000, 65535}}};
  yaml_parser_t yp;
  yaml_document_t doc;

  /* libyaml allocates with malloc and has no hook: its memory is outside
   * the set's budget, and all of it is released before we return. */
  if (!yaml_parser_initialize(&yp))
    return MYC_ENOMEM;
  yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
  if (!yaml_parser_load(&yp, &doc)) {
    int oom = yp.error == YAML_MEMORY_ERROR;
    if (!oom)
      syntax_error(&p, &yp);
    yaml_parser_delete(&yp);
    return oom || p.oom ? MYC_ENOMEM : 0;
  }
  p.doc = &doc;
  parse_root(&p);
  yaml_document_delete(&doc);
  yaml_parser_delete(&yp);
  return p.oom ? MYC_ENOMEM : 0;
}
