/* redis_url.c -- redis://[[user]:password@]host[:port][/db] URLs (see
 * redis_url.h).  A message about a bad URL never shows its user part. */
#include "net/redis_url.h"

#include <stdio.h>
#include <string.h>

#define DEFAULT_PORT 6379
#define MAX_DB 1000000

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Copies s[0..n) percent-decoded into dst.  Returns 0, or -1 when it
 * does not fit or has a bad escape. */
static int decode(char *dst, size_t cap, const char *s, size_t n) {
  size_t i, o = 0;
  for (i = 0; i < n; i++) {
    int ch = (unsigned char)s[i];
    if (ch == '%') {
      if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
        return -1;
      ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
      i += 2;
    }
    if (o + 1 >= cap || ch == 0)
      return -1;
    dst[o++] = (char)ch;
  }
  dst[o] = '\0';
  return 0;
}

static int url_error(char *err, size_t errlen, const char *url,
                     const char *why) {
  /* Never echo a password: show the URL without its user part. */
  const char *at = strchr(url, '@');
  if (strncmp(url, "redis://", 8) == 0 && at != NULL)
    snprintf(err, errlen, "redis: bad URL 'redis://...@%s': %s", at + 1, why);
  else
    snprintf(err, errlen, "redis: bad URL '%s': %s", url, why);
  return MYC_EINVAL;
}

static int parse_number(const char *s, size_t n, long max, long *out) {
  long v = 0;
  size_t i;
  if (n == 0 || n > 9)
    return -1;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_userinfo(const char *s, size_t n, myc__redis_url *u) {
  const char *colon = memchr(s, ':', n);
  if (colon == NULL)
    return -1;
  u->has_password = 1;
  if (decode(u->user, sizeof u->user, s, (size_t)(colon - s)) != 0)
    return -1;
  return decode(u->password, sizeof u->password, colon + 1,
                n - (size_t)(colon - s) - 1);
}

static int host_char_ok(int ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
}

int myc__redis_url_parse(const char *url, myc__redis_url *u, char *err,
                         size_t errlen) {
  const char *p, *end, *at = NULL, *host, *hend, *q;
  long v;
  memset(u, 0, sizeof *u);
  u->port = DEFAULT_PORT;
  if (url == NULL)
    return url_error(err, errlen, "", "no URL");
  if (strncmp(url, "rediss://", 9) == 0)
    return url_error(err, errlen, url, "TLS (rediss://) is not supported");
  if (strncmp(url, "redis://", 8) != 0)
    return url_error(err, errlen, url, "expected redis://host[:port][/db]");
  p = url + 8;
  end = p + strcspn(p, "/?#");
  for (q = p; q < end; q++)
    if (*q == '@')
      at = q;
  if (at != NULL) {
    if (parse_userinfo(p, (size_t)(at - p), u) != 0)
      return url_error(err, errlen, url,
                       "bad user part (expected "
                       "[user]:password@, percent-encoded)");
    p = at + 1;
  }
  host = p;
  if (*p == '[') {
    host = p + 1;
    hend = memchr(host, ']', (size_t)(end - host));
    if (hend == NULL)
      return url_error(err, errlen, url, "unterminated [IPv6 address]");
    p = hend + 1;
  } else {
    for (hend = p; hend < end && *hend != ':'; hend++)
      if (!host_char_ok(*hend))
        return url_error(err, errlen, url, "bad character in the host");
    p = hend;
  }
  if (hend == host || (size_t)(hend - host) >= sizeof u->host)
    return url_error(err, errlen, url, "no host, or a host name too long");
  memcpy(u->host, host, (size_t)(hend - host));
  if (p < end && *p == ':') {
    if (parse_number(p + 1, (size_t)(end - p - 1), 65535, &v) != 0 || v == 0)
      return url_error(err, errlen, url, "the port must be 1 to 65535");
    u->port = (int)v;
  } else if (p != end) {
    return url_error(err, errlen, url, "unexpected text after the host");
  }
  if (*end == '/' && end[1] != '\0') {
    if (parse_number(end + 1, strlen(end + 1), MAX_DB, &v) != 0)
      return url_error(err, errlen, url,
                       "the path must be a database "
                       "number (/0, /1, ...)");
    u->db = (int)v;
  } else if (*end != '\0' && strcmp(end, "/") != 0) {
    return url_error(err, errlen, url,
                     "query strings and fragments are "
                     "not supported");
  }
  return 0;
}
