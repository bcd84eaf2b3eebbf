/* control_proto.c -- the control protocol's text (see control_proto.h):
 * a request line is words separated by spaces, except a reload's module
 * path, which is the rest of the line so that it may hold spaces.
 */
#include "supervise/control_proto.h"

#include "mycelium.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SEPARATORS " \t"

/* ---- requests ----------------------------------------------------------- */

/* The next word at '*p' (NUL-terminated in place), or NULL at the end. */
static char *next_word(char **p) {
  char *w = *p + strspn(*p, SEPARATORS), *end;
  if (*w == '\0')
    return NULL;
  end = w + strcspn(w, SEPARATORS);
  *p = end;
  if (*end != '\0') {
    *end = '\0';
    *p = end + 1;
  }
  return w;
}

#define USAGE "requests: ping, status [json|text], reload SERVICE [MODULE]"

static int parse_status(char *p, myc__ctl_request *req, char *err,
                        size_t errlen) {
  char *arg = next_word(&p);
  req->verb = MYC__CTL_STATUS;
  if (arg != NULL && strcmp(arg, "text") == 0)
    req->text = 1;
  else if (arg != NULL && strcmp(arg, "json") != 0) {
    snprintf(err, errlen, "status takes json or text, not '%.64s'", arg);
    return MYC_EINVAL;
  }
  if (arg != NULL && next_word(&p) != NULL) {
    snprintf(err, errlen, "status takes one word at most (%s)", USAGE);
    return MYC_EINVAL;
  }
  return 0;
}

static int parse_reload(char *p, myc__ctl_request *req, char *err,
                        size_t errlen) {
  req->verb = MYC__CTL_RELOAD;
  req->service = next_word(&p);
  if (req->service == NULL) {
    snprintf(err, errlen, "reload takes SERVICE [MODULE] (%s)", USAGE);
    return MYC_EINVAL;
  }
  p += strspn(p, SEPARATORS);
  req->module = *p != '\0' ? p : NULL;
  return 0;
}

int myc__control_parse(char *line, size_t len, myc__ctl_request *req, char *err,
                       size_t errlen) {
  char *p = line, *verb;
  memset(req, 0, sizeof *req);
  /* A NUL would cut the line short unseen: "reload a\0b" is not
   * "reload a". */
  if (memchr(line, '\0', len) != NULL) {
    snprintf(err, errlen, "the request holds a NUL byte (%s)", USAGE);
    return MYC_EINVAL;
  }
  line[len] = '\0';
  if (len > 0 && line[len - 1] == '\r') /* a terminal's "\r\n" */
    line[--len] = '\0';
  verb = next_word(&p);
  if (verb == NULL) {
    snprintf(err, errlen, "empty request (%s)", USAGE);
    return MYC_EINVAL;
  }
  if (strcmp(verb, "status") == 0)
    return parse_status(p, req, err, errlen);
  if (strcmp(verb, "reload") == 0)
    return parse_reload(p, req, err, errlen);
  if (strcmp(verb, "ping") == 0) {
    req->verb = MYC__CTL_PING;
    if (next_word(&p) == NULL)
      return 0;
    snprintf(err, errlen, "ping takes no argument (%s)", USAGE);
    return MYC_EINVAL;
  }
  snprintf(err, errlen, "unknown request '%.64s' (%s)", verb, USAGE);
  return MYC_EINVAL;
}

/* ---- replies ------------------------------------------------------------ */

void myc__sb_put(myc__sbuf *b, const char *s, size_t n) {
  if (b->failed)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = 2 * (b->len + n + 1) + 256;
    char *p = myc__realloc(b->a, b->p, b->cap, cap);
    if (p == NULL) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void myc__sb_printf(myc__sbuf *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0)
    myc__sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the UTF-8 sequence at 's' (NUL-terminated), or 0 when it is
 * not one: overlong forms, surrogates and code points past U+10FFFF are
 * refused as RFC 3629 says. */
static size_t utf8_len(const unsigned char *s) {
  unsigned char lo = 0x80, hi = 0xBF;
  size_t n, i;
  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    n = 2;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    n = 3;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    n = 4;
  else
    return 0;
  if (s[0] == 0xE0)
    lo = 0xA0;
  else if (s[0] == 0xED)
    hi = 0x9F;
  else if (s[0] == 0xF0)
    lo = 0x90;
  else if (s[0] == 0xF4)
    hi = 0x8F;
  if (s[1] < lo || s[1] > hi)
    return 0;
  /* A NUL fails the test before anything past it is read. */
  for (i = 2; i < n; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return n;
}

void myc__sb_json(myc__sbuf *b, const char *s) {
  const unsigned char *u = (const unsigned char *)(s != NULL ? s : "");
  char esc[8];
  size_t n;
  myc__sb_put(b, "\"", 1);
  while (*u != '\0') {
    n = utf8_len(u);
    if (n == 0) {
      myc__sb_put(b, "\\ufffd", 6);
      u++;
    } else if (*u == '"' || *u == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*u++;
      myc__sb_put(b, esc, 2);
    } else if (*u < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *u++);
      myc__sb_put(b, esc, 6);
    } else {
      myc__sb_put(b, (const char *)u, n);
      u += n;
    }
  }
  myc__sb_put(b, "\"", 1);
}

/* ---- reload errors ------------------------------------------------------ */

static int lua_keyword(const char *s, size_t n) {
  static const char *const words[] = {
      "and",      "break",  "do",   "else", "elseif", "end",   "false", "for",
      "function", "goto",   "if",   "in",   "local",  "nil",   "not",   "or",
      "repeat",   "return", "then", "true", "until",  "while", "<eof>"};
  size_t i;
  for (i = 0; i < sizeof words / sizeof *words; i++)
    if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0)
      return 1;
  return 0;
}

void myc__control_hide_token(char *msg, size_t cap) {
  char *near = strstr(msg, " near '"), *tok;
  size_t n;
  if (near == NULL)
    return;
  tok = near + 7;
  n = strlen(tok);
  if (n > 0 && tok[n - 1] == '\'' && lua_keyword(tok, n - 1))
    return;
  snprintf(near, cap - (size_t)(near - msg), " near a token not shown");
}
