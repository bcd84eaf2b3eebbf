/* kill_all.c -- N trivial services (bench/lua/trivial.lua) spawned into a
 * running engine of two workers, then all killed oldest first with
 * myc_engine_kill; prints the CPU time (the process, all threads) of the
 * spawns and of the kills until every removal is freed.  Built and run
 * against one or two builds by bench/run_kill_all.sh, so that a kill's
 * cost at 2 000 and at 10 000 services compares in one invocation. */
#include "mycelium.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
}
static void quiet(void *ud, int l, const char *s, size_t n) { (void)ud,(void)l,(void)s,(void)n; }
static void *run(void *e) { myc_engine_run(e, 0); return NULL; }
int main(int argc, char **argv) {
  int n = atoi(argv[1]), i;
  const char *path = argv[2];
  myc_engine_config cfg; myc_engine *e; myc_service_config sc;
  myc_lifecycle_stats st; char name[32], err[512]; pthread_t th;
  double c0, c1, s0;
  myc_engine_config_init(&cfg); cfg.workers = 2; cfg.log_fn = quiet;
  if (myc_engine_new(&e, &cfg) || myc_engine_start(e, err, sizeof err)) return 1;
  pthread_create(&th, NULL, run, e);
  memset(&sc, 0, sizeof sc); sc.module = path; sc.worker = -1;
  s0 = cpu();
  for (i = 0; i < n; i++) {
    snprintf(name, sizeof name, "s%d", i); sc.name = name;
    if (myc_engine_spawn(e, &sc, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
  }
  do { myc_engine_lifecycle_stats(e, &st); usleep(1000); } while (0);
  c0 = cpu();
  for (i = 0; i < n; i++) {
    snprintf(name, sizeof name, "s%d", i);
    if (myc_engine_kill(e, name, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
  }
  do { myc_engine_lifecycle_stats(e, &st); if (st.pending_free == 0 && st.services == 0) break; usleep(200); } while (1);
  c1 = cpu();
  printf("n=%d spawn_cpu_s=%.3f kill_cpu_s=%.3f kill_us_each=%.1f\n", n, c0 - s0, c1 - c0, (c1 - c0) * 1e6 / n);
  myc_engine_stop(e, 0); pthread_join(th, NULL); myc_engine_free(e);
  return 0;
}
