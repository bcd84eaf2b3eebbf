/* file.h -- reading a whole file (a service's module, a config) into
 * memory from the engine's allocator, with a message that names it. */
#ifndef MYC_FILE_H
#define MYC_FILE_H

#include "base/alloc.h"

/* Reads 'path' into a buffer of '*len' + 1 bytes (NUL-terminated) from
 * 'a'; free it with myc__free(a, *out, *len + 1).  Returns 0, or a
 * negative code with "cannot open PATH: reason" (or read) in 'err'; then
 * '*out' is NULL. */
int myc__read_file(const myc__alloc *a, const char *path, char **out,
                   size_t *len, char *err, size_t errlen);

#endif
