/* capture.c -- loading a capture file (see capture.h).  Only line 1 is
 * parsed as JSON: later lines go out byte for byte, including the broken
 * ones a capture may hold on purpose. */
#include "capture.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    if (f)
      fclose(f);
    return -1;
  }
  *out = malloc((size_t)n + 1);
  if (*out == NULL || fread(*out, 1, (size_t)n, f) != (size_t)n) {
    free(*out);
    fclose(f);
    return -1;
  }
  (*out)[n] = '\0';
  *len = (size_t)n;
  fclose(f);
  return 0;
}

static int first_line(capture *c, const char *line, size_t n, char *err,
                      size_t errlen) {
  json_error_t je;
  json_t *j = json_loadb(line, n, 0, &je);
  json_t *r = j ? json_object_get(j, "result") : NULL;
  if (!json_is_string(r) || json_string_length(r) >= sizeof c->sub_id) {
    snprintf(err, errlen,
             "line 1 is not an eth_subscribe reply with a "
             "subscription id (%s)",
             j ? "no string result" : je.text);
    json_decref(j);
    return -1;
  }
  snprintf(c->sub_id, sizeof c->sub_id, "%s", json_string_value(r));
  json_decref(j);
  return 0;
}

/* Block number of a notification: "blockNumber" (logs) or "number"
 * (heads); 'last' when it has neither, as a broken line may. */
static uint64_t block_of(const char *p, size_t n, uint64_t last) {
  static const char *keys[] = {"\"blockNumber\":\"0x", "\"number\":\"0x"};
  size_t k;
  for (k = 0; k < 2; k++) {
    const char *hit = memmem(p, n, keys[k], strlen(keys[k]));
    if (hit != NULL)
      return strtoull(hit + strlen(keys[k]), NULL, 16);
  }
  return last;
}

static size_t header(unsigned char *h, size_t len) {
  h[0] = 0x81; /* FIN, text */
  if (len < 126) {
    h[1] = (unsigned char)len;
    return 2;
  }
  if (len < 65536) {
    h[1] = 126;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    return 4;
  }
  h[1] = 127;
  for (int i = 0; i < 8; i++)
    h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
  return 10;
}

/* Appends one notification as a frame, with its subscription member
 * rewritten when the server announces an id of its own. */
static void add(capture *c, const char *p, size_t n, const char *from,
                const char *to, size_t *pos) {
  char *dst = c->frames + *pos + 10, *start = dst;
  size_t fl = strlen(from), tl = strlen(to), hl;
  unsigned char h[10];
  const char *end = p + n, *hit;
  if (strcmp(from, to) != 0 &&
      (hit = memmem(p, (size_t)(end - p), from, fl)) != NULL) {
    memcpy(dst, p, (size_t)(hit - p));
    dst += hit - p;
    memcpy(dst, to, tl);
    dst += tl;
    p = hit + fl;
  }
  memcpy(dst, p, (size_t)(end - p));
  dst += end - p;
  n = (size_t)(dst - start);
  hl = header(h, n);
  memmove(c->frames + *pos + hl, start, n);
  memcpy(c->frames + *pos, h, hl);
  *pos += hl + n;
  c->bytes += n;
}

int capture_load(capture *c, const char *path, const char *sub_id, char *err,
                 size_t errlen) {
  char *text, *p, *nl, from[120], to[120];
  size_t len, lines = 0, pos = 0, i = 0, cap;
  uint64_t last = 0;
  memset(c, 0, sizeof *c);
  if (read_file(path, &text, &len) != 0) {
    snprintf(err, errlen, "cannot read %s", path);
    return -1;
  }
  for (p = text; p < text + len; p++)
    lines += *p == '\n';
  nl = memchr(text, '\n', len);
  if (nl == NULL || first_line(c, text, (size_t)(nl - text), err, errlen)) {
    if (nl == NULL)
      snprintf(err, errlen, "%s: fewer than two lines", path);
    free(text);
    return -1;
  }
  snprintf(from, sizeof from, "\"subscription\":\"%s\"", c->sub_id);
  snprintf(to, sizeof to, "\"subscription\":\"%s\"",
           sub_id ? sub_id : c->sub_id);
  if (sub_id)
    snprintf(c->sub_id, sizeof c->sub_id, "%s", sub_id);
  /* Room for every line, its header and an id that may grow. */
  cap = len + (lines + 1) * (10 + strlen(to));
  c->frames = malloc(cap);
  c->offset = malloc((lines + 2) * sizeof *c->offset);
  c->block = malloc((lines + 1) * sizeof *c->block);
  if (c->frames == NULL || c->offset == NULL || c->block == NULL) {
    free(text);
    capture_free(c);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (p = nl + 1; p < text + len; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(text + len - p));
    if (nl == NULL)
      nl = text + len;
    if (nl > p && nl[-1] == '\r')
      nl[-1] = ' ';
    /* A blank line is an empty message, not nothing: every line of a
     * capture is one message, and line numbers are how results are
     * compared (examples/bandit/data/README.md), so it must not be
     * skipped.  Only the newline ending the file starts no line. */
    if (nl == p && p == text + len)
      break;
    c->offset[i] = pos;
    c->block[i] = last = block_of(p, (size_t)(nl - p), last);
    add(c, p, (size_t)(nl - p), from, to, &pos);
    i++;
  }
  c->offset[i] = pos;
  c->n = i;
  free(text);
  return 0;
}

void capture_free(capture *c) {
  free(c->frames);
  free(c->offset);
  free(c->block);
  memset(c, 0, sizeof *c);
}
