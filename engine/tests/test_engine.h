/* test_engine.h -- what tests of whole engines share: a manual engine of
 * one worker, and Lua modules written to a temporary directory. */
#ifndef MYC_TEST_ENGINE_H
#define MYC_TEST_ENGINE_H

#include "mycelium.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* A manual engine of one worker with the default settings, or NULL. */
static inline myc_engine *test_manual_engine(void) {
  myc_engine_config cfg;
  myc_engine *e = NULL;
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.workers = 1;
  return myc_engine_new(&e, &cfg) == 0 ? e : NULL;
}

/* The stats of the service called 'name' into '*st': 0, or -1 if there
 * is none. */
static inline int test_service_stats(myc_engine *e, const char *name,
                                     myc_service_stats *st) {
  uint32_t i, n = myc_engine_service_count(e);
  for (i = 0; i < n; i++)
    if (myc_engine_service_stats(e, i, st) == 0 && strcmp(st->name, name) == 0)
      return 0;
  return -1;
}

/* Writes 'src' to 'dir'/'name' and returns the path: one of four static
 * buffers in turn, so that a call may take two or three paths at once. */
static inline const char *test_module(const char *dir, const char *name,
                                      const char *src) {
  static char paths[4][512];
  static int k;
  char *path = paths[k++ % 4];
  FILE *f;
  snprintf(path, sizeof paths[0], "%s/%s", dir, name);
  f = fopen(path, "w");
  if (f == NULL)
    return path;
  fputs(src, f);
  fclose(f);
  return path;
}

/* A log function that drops every line: tests that provoke errors. */
static inline void test_quiet_log(void *ud, int level, const char *line,
                                  size_t len) {
  (void)ud, (void)level, (void)line, (void)len;
}

/* Monotonic seconds, for deadlines in tests. */
static inline double test_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
