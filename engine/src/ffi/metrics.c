/* metrics.c -- the FFI entry points of ctx.metrics: the metrics a
 * service declares live in its engine's observation (observe/custom.c). */
#include "ffi/ffi.h"

#include "observe/observe.h"

#include <stdio.h>

int myc_ffi_metric(myc_service *s, int kind, const char *name,
                   const char *help, const char *labels, size_t labels_len,
                   uint32_t nlabels, const double *buckets, uint32_t nbuckets,
                   uint32_t max_series, char *err, size_t errlen) {
  myc__observe *o = s->eng->observe;
  if (o == NULL) {
    snprintf(err, errlen, "this engine keeps no metrics");
    return MYC_ESTATE;
  }
  return myc__custom_family(&o->custom, &s->eng->alloc, kind, name, help,
                            labels, labels_len, nlabels, buckets, nbuckets,
                            max_series, err, errlen);
}

double *myc_ffi_metric_cell(myc_service *s, int id, const char *values,
                            size_t len, int *overflow) {
  myc__observe *o = s->eng->observe;
  *overflow = 0;
  if (o == NULL || id < 0)
    return NULL;
  return myc__custom_cell(&o->custom, &s->eng->alloc, (uint32_t)id, s, values,
                          len, overflow);
}
