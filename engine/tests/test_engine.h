/* test_engine.h -- what tests of whole engines share: a manual engine of
 * one worker, and Lua modules written to a temporary directory. */
#ifndef MYC_TEST_ENGINE_H
#define MYC_TEST_ENGINE_H

#include "mycelium.h"

#include <stdio.h>

/* A manual engine of one worker with the default settings, or NULL. */
static inline myc_engine *test_manual_engine(void) {
  myc_engine_config cfg;
  myc_engine *e = NULL;
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.workers = 1;
  return myc_engine_new(&e, &cfg) == 0 ? e : NULL;
}

/* Writes 'src' to 'dir'/'name' and returns the path (a static buffer:
 * copy it before the next call). */
static inline const char *test_module(const char *dir, const char *name,
                                      const char *src) {
  static char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  if (f == NULL)
    return path;
  fputs(src, f);
  fclose(f);
  return path;
}

#endif
