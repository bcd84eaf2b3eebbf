/* http_msg.c -- joining and looking up HTTP message heads (see
 * http_msg.h).  A field name or value can arrive split across reads, so
 * pieces are appended until the parser moves on to the next part. */
#include "net/http_msg.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

void myc__http_msg_init(myc__http_msg *m, enum http_parser_type t,
                        void *owner) {
  http_parser_init(&m->parser, t);
  m->parser.data = m;
  m->owner = owner;
  myc__http_msg_reset(m);
}

void myc__http_msg_reset(myc__http_msg *m) {
  m->url_len = m->len = 0;
  m->url[0] = m->buf[0] = '\0';
  m->in_value = m->overflow = m->complete = 0;
}

static int append(myc__http_msg *m, const char *at, size_t n, int lower) {
  size_t i;
  /* One byte stays free for the terminator of the current piece. */
  if (n + 1 > sizeof m->buf - m->len) {
    m->overflow = 1;
    return 1; /* stops the parser: the message is refused */
  }
  for (i = 0; i < n; i++)
    m->buf[m->len + i] = lower ? (char)tolower((unsigned char)at[i]) : at[i];
  m->len += n;
  m->buf[m->len] = '\0'; /* so the last value reads as a string */
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  myc__http_msg *m = myc__http_msg_of(p);
  if (n >= sizeof m->url - m->url_len) {
    m->overflow = 1;
    return 1;
  }
  memcpy(m->url + m->url_len, at, n);
  m->url_len += n;
  m->url[m->url_len] = '\0';
  return 0;
}

static int on_field(http_parser *p, const char *at, size_t n) {
  myc__http_msg *m = myc__http_msg_of(p);
  if (m->in_value) {
    if (append(m, "", 1, 0)) /* ends the previous value */
      return 1;
    m->in_value = 0;
  }
  return append(m, at, n, 1);
}

static int on_value(http_parser *p, const char *at, size_t n) {
  myc__http_msg *m = myc__http_msg_of(p);
  if (!m->in_value) {
    if (append(m, "", 1, 0)) /* ends the name */
      return 1;
    m->in_value = 1;
  }
  return append(m, at, n, 0);
}

void myc__http_msg_settings(http_parser_settings *s) {
  memset(s, 0, sizeof *s);
  s->on_url = on_url;
  s->on_header_field = on_field;
  s->on_header_value = on_value;
}

const char *myc__http_msg_get(const myc__http_msg *m, const char *name) {
  size_t i = 0, end = m->len;
  if (m->len == 0)
    return NULL;
  while (i < end) {
    const char *k = m->buf + i, *v = k + strlen(k) + 1;
    if (v > m->buf + end)
      break;
    if (strcmp(k, name) == 0)
      return v;
    i = (size_t)(v - m->buf) + strlen(v) + 1;
  }
  return NULL;
}

int myc__http_msg_has_token(const myc__http_msg *m, const char *name,
                            const char *token) {
  const char *v = myc__http_msg_get(m, name);
  size_t n = strlen(token);
  while (v != NULL && *v != '\0') {
    size_t len;
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    len = strcspn(v, ", \t");
    if (len == n && strncasecmp(v, token, n) == 0)
      return 1;
    v += len;
  }
  return 0;
}
