/* contract.c -- the facts of a contract type the Lua side compiles its
 * checks from (see ffi.h). */
#include "ffi/ffi.h"

#include "contract/contract.h"

int myc_ffi_contract_check(const myc_contract_type *t, uint32_t i,
                           uint32_t *out, const char **min, const char **max) {
  return myc__contract_check(t, i, out, min, max);
}
