/* hist.h -- a histogram with fixed integer bucket bounds, written by one
 * thread and read by any: counts are per bucket (not cumulative) and
 * relaxed atomics, so a reader on another thread never waits and never
 * sees a torn count, only one a moment old.
 *
 * MYC_METRICS (a build option, on by default) says whether the engine
 * keeps its histograms and timings on the dispatch path at all.
 */
#ifndef MYC_HIST_H
#define MYC_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#ifndef MYC_METRICS
#define MYC_METRICS 1
#endif

#define MYC_HIST_MAX 16

/* Upper bounds (inclusive, ascending) of the buckets but the last
 * (+Inf).  Constant data shared by every histogram of one kind. */
typedef struct {
  uint32_t n; /* at most MYC_HIST_MAX */
  uint64_t le[MYC_HIST_MAX];
} myc__hist_bounds;

typedef struct {
  _Atomic uint64_t n[MYC_HIST_MAX + 1];
  _Atomic uint64_t sum;
} myc__hist;

/* Adds 'weight' observations of 'v' (the sum grows by v * weight).  The
 * owning thread only. */
static inline void myc__hist_add(myc__hist *h, const myc__hist_bounds *b,
                                 uint64_t v, uint64_t weight) {
  uint32_t i = 0;
  while (i < b->n && v > b->le[i])
    i++;
  atomic_store_explicit(&h->n[i],
                        atomic_load_explicit(&h->n[i], memory_order_relaxed) +
                            weight,
                        memory_order_relaxed);
  atomic_store_explicit(&h->sum,
                        atomic_load_explicit(&h->sum, memory_order_relaxed) +
                            v * weight,
                        memory_order_relaxed);
}

/* The bounds of the engine's histograms (nanoseconds or messages). */
extern const myc__hist_bounds myc__hist_handler_ns;
extern const myc__hist_bounds myc__hist_round_ns;
extern const myc__hist_bounds myc__hist_batch;

#endif
