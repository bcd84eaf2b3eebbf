/* processes.c -- Bandit as three processes (examples/pipeline): the
 * bundled sample looped by the replay server at 1 k, 10 k, 50 k and
 * 100 k accepted events/s and flooded, through one process (the
 * baseline, measured in the same invocation) and three processes linked
 * over Unix sockets and over TCP.  The work is examples/pipeline/bench,
 * which also writes build/bench/pipeline.jsonl and draws pipeline.png;
 * this scenario runs it and reports its medians (accepted events/s,
 * arrival -> signal p50/p99/p999) with the other scenarios. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void report(const char *mode, const char *rate, const char *what,
                   double v, const char *unit, const char *note) {
  char metric[96];
  snprintf(metric, sizeof metric, "%s_%s_%s", mode, rate, what);
  bench_report("pipeline", metric, v, unit, note);
}

int bench_processes(void) {
  char cmd[2048], line[512], mode[16], rate[16];
  double eps, p50, p99, p999, seconds = round(3 * bench_scale());
  int complete, points = 0, failed = 0;
  FILE *f;
  if (seconds < 1)
    seconds = 1;
  /* The scripts find the binaries of this build. */
  setenv("MYCELIUM_BIN", MYC_BUILD_DIR "/mycelium", 1);
  snprintf(cmd, sizeof cmd,
           "'%s/examples/pipeline/bench' --runs %d --seconds %.0f "
           "--out '%s/bench'",
           MYC_SOURCE_DIR, BENCH_RUNS, seconds, MYC_BUILD_DIR);
  if ((f = popen(cmd, "r")) == NULL)
    return 1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "RESULT %15s %15s %lf %lf %lf %lf %d", mode, rate, &eps,
               &p50, &p99, &p999, &complete) != 7)
      continue;
    points++;
    failed += !complete;
    report(mode, rate, "events_per_s", eps, "events/s",
           complete ? "accepted logs, median" : "LOST MESSAGES");
    report(mode, rate, "signal_p50", p50, "us", "log arrival -> signal");
    report(mode, rate, "signal_p99", p99, "us", "");
    report(mode, rate, "signal_p999", p999, "us", "");
  }
  if (pclose(f) != 0 || points == 0) {
    fprintf(stderr, "bench: pipeline: %s failed (%d points)\n", cmd, points);
    return 1;
  }
  /* A full "reject" mailbox downstream pauses the link into it
   * (docs/LINKS.md) rather than drop; what is still lost (at a sender's
   * queue bound: metadata does not slow down for its own output) is
   * reported, not hidden: each failed run printed its processes'
   * counters (drops by reason, refusals) above. */
  if (failed)
    fprintf(stderr, "bench: pipeline: %d point(s) lost messages or the end "
            "of a run's stream (counters above)\n", failed);
  return 0;
}
