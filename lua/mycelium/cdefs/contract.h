/* lua/mycelium/cdefs/contract.h -- the "contract" section of mycelium.cdefs: declared
 * in a Lua state when a module first needs it (cdefs.need). */
/* engine/include/mycelium.h: contracts */
typedef struct myc_contract_set myc_contract_set;
typedef struct myc_contract_type myc_contract_type;
typedef struct {
  const char *name; const char *type; int kind; int elem_kind;
  uint32_t elem_size; uint32_t count; uint32_t offset; uint32_t size;
  int optional; int line;
} myc_contract_field;
int myc_contract_load(myc_contract_set **out, const char *path,
                      myc_alloc_fn alloc, void *ud);
int myc_contract_load_string(myc_contract_set **out, const char *name,
                             const char *text, size_t len, myc_alloc_fn alloc,
                             void *ud);
void myc_contract_free(myc_contract_set *cs);
size_t myc_contract_error_count(const myc_contract_set *cs);
const char *myc_contract_error(const myc_contract_set *cs, size_t i);
const char *myc_contract_error_kind(const myc_contract_set *cs, size_t i);
int myc_contract_error_line(const myc_contract_set *cs, size_t i);
const char *myc_contract_digest(const myc_contract_set *cs);
uint32_t myc_contract_schema_id(const myc_contract_set *cs);
uint16_t myc_contract_schema_version(const myc_contract_set *cs);
uint16_t myc_contract_min_compatible(const myc_contract_set *cs);
size_t myc_contract_type_count(const myc_contract_set *cs);
const myc_contract_type *myc_contract_type_at(const myc_contract_set *cs, size_t i);
const char *myc_contract_type_name(const myc_contract_type *t);
uint16_t myc_contract_type_tag(const myc_contract_type *t);
size_t myc_contract_type_size(const myc_contract_type *t);
const char *myc_contract_type_domain(const myc_contract_type *t);
const char *myc_contract_type_digest(const myc_contract_type *t);
size_t myc_contract_field_count(const myc_contract_type *t);
const myc_contract_field *myc_contract_field_at(const myc_contract_type *t, size_t i);
int myc_contract_validate(const myc_contract_type *t, const void *payload,
                          size_t len, char *err, size_t errlen);
/* engine/src/ffi/table.h: this section of the table; ffi.h names the
   parameters (unnamed here, they cost every parse) */
struct myc_ffi_contract {
  int (*myc_ffi_contract_check)(const myc_contract_type *, uint32_t, uint32_t *,
                                const char **, const char **);
};
