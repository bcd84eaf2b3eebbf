/* file.c -- whole-file reads (see file.h).  Only regular files: opening
 * a FIFO waits for a writer, a directory "reads" as a huge size and a
 * device may never end, so anything else is refused before reading. */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m))
    return "a directory";
  if (S_ISFIFO(m))
    return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m))
    return "a device";
  if (S_ISSOCK(m))
    return "a socket";
  return "not a regular file";
}

/* Reads exactly 'n' bytes of 'fd' into 'buf'.  Returns 0, or -1 with
 * errno set (0: the file ended early). */
static int read_all(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r == 0)
        errno = 0;
      return -1;
    }
    got += (size_t)r;
  }
  return 0;
}

int myc__regular_or_absent(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0 || S_ISREG(st.st_mode))
    return 0;
  snprintf(err, errlen, "cannot read %s: it is %s, not a regular file", path,
           kind_of(st.st_mode));
  return MYC_EINVAL;
}

int myc__read_file(const myc__alloc *a, const char *path, char **out,
                   size_t *len, char *err, size_t errlen) {
  /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
   * below); regular files ignore it. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  struct stat st;
  size_t size;
  char *buf;
  *out = NULL;
  *len = 0;
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return MYC_ENOENT;
  }
  if (fstat(fd, &st) != 0) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    close(fd);
    return MYC_EINVAL;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "cannot read %s: it is %s, not a regular file "
             "(give the path of a .lua file)", path, kind_of(st.st_mode));
    close(fd);
    return MYC_EINVAL;
  }
  size = (size_t)st.st_size;
  buf = myc__malloc(a, size + 1);
  if (buf == NULL) {
    close(fd);
    snprintf(err, errlen, "out of memory reading %s (%zu bytes)", path, size);
    return MYC_ENOMEM;
  }
  if (read_all(fd, buf, size) != 0) {
    snprintf(err, errlen, "cannot read %s: %s", path,
             errno ? strerror(errno) : "file changed while reading");
    myc__free(a, buf, size + 1);
    close(fd);
    return MYC_EINVAL;
  }
  close(fd);
  buf[size] = '\0';
  *out = buf;
  *len = size;
  return 0;
}

int myc__file_digest(const myc__alloc *a, const char *path, uint64_t *out) {
  char why[256], *p;
  size_t len, i;
  uint64_t h = 14695981039346656037ull;
  int rc = myc__read_file(a, path, &p, &len, why, sizeof why);
  *out = 0;
  if (rc != 0)
    return rc;
  for (i = 0; i < len; i++)
    h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  myc__free(a, p, len + 1);
  *out = h;
  return 0;
}
