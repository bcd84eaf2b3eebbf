/* file.h -- reading a whole file (a service's module, a config) into
 * memory from the engine's allocator, with a message that names it. */
#ifndef MYC_FILE_H
#define MYC_FILE_H

#include "base/alloc.h"

/* Reads the regular file 'path' into a buffer of '*len' + 1 bytes
 * (NUL-terminated) from 'a'; free it with myc__free(a, *out, *len + 1).
 * Returns 0, or a negative code with "cannot open PATH: reason" (or
 * read) in 'err'; then '*out' is NULL.  A directory, a FIFO, a device or
 * a socket is refused without waiting or reading ("cannot read PATH: it
 * is a FIFO, not a regular file ..."). */
int myc__read_file(const myc__alloc *a, const char *path, char **out,
                   size_t *len, char *err, size_t errlen);

/* A 64-bit digest (FNV-1a) of what the regular file 'path' holds, in
 * '*out': to tell later whether it changed.  Returns 0, or the negative
 * code of myc__read_file (then '*out' is 0). */
int myc__file_digest(const myc__alloc *a, const char *path, uint64_t *out);

/* 0 when 'path' is a regular file or cannot be looked at (the reader
 * will say why), else MYC_EINVAL with "cannot read PATH: it is a FIFO,
 * not a regular file" in 'err'. */
int myc__regular_or_absent(const char *path, char *err, size_t errlen);

#endif
