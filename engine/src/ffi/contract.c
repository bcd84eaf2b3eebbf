/* contract.c -- the facts of a contract type the Lua side compiles its
 * checks from (see ffi.h). */
#include "ffi/ffi.h"

#include "contract/contract.h"

int myc_ffi_contract_nonzero(const myc_contract_type *t, uint32_t *out,
                             int max) {
  return myc__contract_nonzero(t, out, max);
}
