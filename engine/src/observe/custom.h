/* custom.h -- metrics a service declares (ctx.metrics): counters, gauges
 * and histograms with labels of its own, kept in cells of C memory that
 * the service's worker writes and the exposition reads.  The number of
 * series of a metric is bounded: past the bound every new combination of
 * label values goes to one overflow series per service, and is counted.
 */
#ifndef MYC_CUSTOM_H
#define MYC_CUSTOM_H

#include "base/text.h"
#include "runtime/service.h"

#include <uv.h>

enum { MYC_METRIC_COUNTER = 1, MYC_METRIC_GAUGE = 2, MYC_METRIC_HISTOGRAM = 3 };

#define MYC_METRIC_LABELS 8      /* labels of one metric at most */
#define MYC_METRIC_BUCKETS 32    /* buckets of one histogram at most */
#define MYC_METRIC_FAMILIES 1024 /* metrics of one engine at most */
#define MYC_METRIC_SERIES 10000  /* the highest bound of one metric */

typedef struct myc__family myc__family;

typedef struct {
  uv_mutex_t lock; /* families and series are added under it */
  myc__family **fam;
  uint32_t n, cap;
} myc__custom;

int myc__custom_init(myc__custom *c);
void myc__custom_free(myc__custom *c, const myc__alloc *a);

/* Declares the metric 'name' for service 's' (or finds it: every service
 * of the engine shares a metric of one name, its series told apart by
 * their 'service' label).  'labels' holds 'nlabels' names, each ended by
 * a NUL; 'buckets' the ascending upper bounds of a histogram.  Returns
 * the metric's id (>= 0) or a negative code with the reason in 'err': a
 * metric of that name declared otherwise (kind, labels, buckets, help),
 * or too many metrics.  Any thread. */
int myc__custom_family(myc__custom *c, const myc__alloc *a, int kind,
                       const char *name, const char *help,
                       const char *labels, size_t labels_len,
                       uint32_t nlabels, const double *buckets,
                       uint32_t nbuckets, uint32_t max_series, char *err,
                       size_t errlen);

/* The cell of service 's' for the label values 'values' ('len' bytes,
 * each value ended by a NUL) of metric 'id': one double for a counter or
 * a gauge; a histogram's count per bucket, then +Inf's, then the sum.
 * Past the bound, the service's overflow cell, with '*overflow' set (and
 * the update counted).  NULL: no memory or no such metric.  Only the
 * worker of 's' writes the cell (the exposition reads it). */
double *myc__custom_cell(myc__custom *c, const myc__alloc *a, uint32_t id,
                         myc_service *s, const char *values, size_t len,
                         int *overflow);

/* Appends every custom metric to 't'. */
void myc__custom_render(myc__custom *c, myc__text *t);

#endif
