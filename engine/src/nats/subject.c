/* subject.c -- topics and patterns to NATS subjects (see subject.h). */
#include "nats/subject.h"

#include <string.h>

static int token_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == ':' ||
         c == '/';
}

const char *myc__nats_prefix_check(const char *prefix) {
  size_t i, n = strlen(prefix), tok = 0;
  if (n >= MYC_NATS_PREFIX_MAX)
    return "longer than 127 bytes";
  for (i = 0; i < n; i++) {
    if (prefix[i] == '.') {
      if (tok == 0)
        return "empty token (two dots, or a dot at an end)";
      tok = 0;
    } else if (!token_char((unsigned char)prefix[i])) {
      return "invalid character (use letters, digits, '_', '-', ':', '/' "
             "and dots between tokens; no wildcards)";
    } else {
      tok++;
    }
  }
  if (n > 0 && tok == 0)
    return "empty token (two dots, or a dot at an end)";
  return NULL;
}

int myc__nats_subject(const char *prefix, const char *name, size_t len,
                      int pattern, char *out, size_t cap) {
  size_t plen = strlen(prefix), at = 0;
  /* "*" alone: everything; "a.b.*": everything under a.b. at any depth,
   * which is NATS' '>' (one or more tokens), not its '*' (exactly one). */
  int all = pattern && len == 1 && name[0] == '*';
  int under = pattern && !all && len >= 2 && name[len - 1] == '*';
  size_t body = all ? 0 : under ? len - 1 : len;
  size_t need = plen + (plen && (body || all) ? 1 : 0) + body +
                (all || under ? 1 : 0);
  if (need + 1 > cap)
    return -1;
  memcpy(out, prefix, plen);
  at = plen;
  if (plen > 0 && (body > 0 || all))
    out[at++] = '.';
  memcpy(out + at, name, body);
  at += body;
  if (all || under)
    out[at++] = '>';
  out[at] = '\0';
  return (int)at;
}

int myc__nats_topic_of(const char *prefix, const char *subject, size_t slen,
                       const char **topic, size_t *len) {
  size_t plen = strlen(prefix);
  if (plen == 0) {
    *topic = subject;
    *len = slen;
    return slen > 0 ? 0 : -1;
  }
  if (slen <= plen + 1 || memcmp(subject, prefix, plen) != 0 ||
      subject[plen] != '.')
    return -1;
  *topic = subject + plen + 1;
  *len = slen - plen - 1;
  return 0;
}
