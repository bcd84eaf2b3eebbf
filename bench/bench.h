/* bench.h -- what every benchmark scenario shares: a clock, repeated runs
 * reduced to their median, and the result sink (a table on stdout and
 * JSON lines in build/bench/results.jsonl). */
#ifndef MYC_BENCH_H
#define MYC_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_RUNS 3

double bench_now(void); /* monotonic seconds */

/* Records one result: printed as a table row and appended as a JSON line
 * {"bench":..., "metric":..., "value":..., "unit":..., "cpu":...}, with
 * "min", "max" and "runs" when the value is a median of runs, and
 * "target" and "met" when the row answers a target (runner.c lists them). */
void bench_report(const char *bench, const char *metric, double value,
                  const char *unit, const char *note);

/* Median of 'n' values (n <= 16); reorders them.  Remembers their min and
 * max: bench_report prints them beside a value that is such a median. */
double bench_median(double *v, int n);

/* Reports the median of 'runs' values of one metric as one row, their min
 * and max beside it; reorders v. */
void bench_report_median(const char *bench, const char *metric, double *v,
                         int runs, const char *unit, const char *note);

/* Reports 'runs' values of one metric as three rows, METRIC_min,
 * METRIC_median (with 'note') and METRIC_max; reorders v. */
void bench_report_runs(const char *bench, const char *metric, double *v,
                       int runs, const char *unit, const char *note);

/* Runs fn(n, out) in a child process, so that its RSS starts clean; the
 * 'size' bytes it leaves in its 'out' come back on a pipe.  0 or 1. */
int bench_in_child(int (*fn)(int n, void *out), int n, void *out,
                   size_t size);

/* Scale for quick runs: BENCH_SCALE in the environment (default 1). */
double bench_scale(void);

typedef struct {
  const char *name;
  const char *about;
  int (*run)(void);
} bench_scenario;

/* Scenarios (one per file). */
int bench_floor_ffi(void);
int bench_floor_ring(void);
int bench_peer_zmq(void);
int bench_emit(void);
int bench_tracing(void);
int bench_workers(void);
int bench_typed(void);
int bench_reload(void);
int bench_bandit(void);
int bench_links(void);
int bench_services(void);
/* Part of "services": spawn + kill churn (churn.c). */
int bench_services_churn(void);
int bench_request(void);
int bench_processes(void);
int bench_nats(void);

/* Shared results the comparisons need, filled by the scenarios. */
extern double bench_zmq_inproc_rate;
extern double bench_ring_floor_rate; /* floor_ring's median, 0 if not run */

#endif
