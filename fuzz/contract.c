/* contract.c -- fuzzes the contracts compiler (contract/contract_parse.c,
 * libyaml underneath) with arbitrary YAML: it must return a set or a list
 * of errors, never crash, hang or leak. */
#include "mycelium.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  myc_contract_set *cs = NULL;
  size_t i, n;
  int rc = myc_contract_load_string(&cs, "fuzz.yaml", (const char *)data, size,
                                    NULL, NULL);
  if (rc != 0 && rc != MYC_ECONTRACT && rc != MYC_ENOMEM)
    abort(); /* not a documented outcome */
  if ((rc == 0 || rc == MYC_ECONTRACT) && cs == NULL)
    abort();
  n = cs != NULL ? myc_contract_error_count(cs) : 0;
  if (rc == MYC_ECONTRACT && n == 0)
    abort(); /* refused without saying why */
  for (i = 0; i < n; i++) {
    /* Every message is a string a person can read. */
    if (strlen(myc_contract_error(cs, i)) == 0 ||
        myc_contract_error_kind(cs, i) == NULL)
      abort();
    (void)myc_contract_error_line(cs, i);
  }
  if (rc == 0)
    (void)myc_contract_digest(cs);
  myc_contract_free(cs);
  return 0;
}
