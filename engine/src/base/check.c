/* check.c -- assertion support (see check.h). */
#include "base/check.h"

#include <stdio.h>
#include <stdlib.h>

uintptr_t myc__thread_token(void) {
  static _Thread_local char tag;
  return (uintptr_t)&tag;
}

void myc__assert_fail(const char *what, const char *file, int line) {
  fprintf(stderr, "mycelium: assertion failed: %s (%s:%d)\n", what, file,
          line);
  abort();
}
