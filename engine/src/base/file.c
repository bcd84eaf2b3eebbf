/* file.c -- whole-file reads (see file.h). */
#include "base/file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int myc__read_file(const myc__alloc *a, const char *path, char **out,
                   size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  long size;
  char *buf;
  *out = NULL;
  *len = 0;
  if (f == NULL) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return MYC_ENOENT;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    return MYC_EINVAL;
  }
  buf = myc__malloc(a, (size_t)size + 1);
  if (buf == NULL) {
    fclose(f);
    snprintf(err, errlen, "out of memory reading %s", path);
    return MYC_ENOMEM;
  }
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
    snprintf(err, errlen, "cannot read %s: %s", path,
             ferror(f) ? strerror(errno) : "file changed while reading");
    myc__free(a, buf, (size_t)size + 1);
    fclose(f);
    return MYC_EINVAL;
  }
  fclose(f);
  buf[size] = '\0';
  *out = buf;
  *len = (size_t)size;
  return 0;
}
