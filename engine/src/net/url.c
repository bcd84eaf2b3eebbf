/* url.c -- URL parsing for the network clients (see url.h).  The split
 * itself is http-parser's; this file checks the scheme and the limits. */
#include "net/url.h"

#include "mycelium.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
  const char *name;
  int websocket, tls;
  uint16_t port;
} schemes[] = {{"ws", 1, 0, 80},
               {"wss", 1, 1, 443},
               {"http", 0, 0, 80},
               {"https", 0, 1, 443}};

static int field(const struct http_parser_url *pu, const char *text, int f,
                 const char **p, size_t *n) {
  if (!(pu->field_set & (1 << f))) {
    *p = "";
    *n = 0;
    return 0;
  }
  *p = text + pu->field_data[f].off;
  *n = pu->field_data[f].len;
  return 1;
}

static int set_scheme(myc__url *u, const char *p, size_t n) {
  size_t i;
  for (i = 0; i < sizeof schemes / sizeof *schemes; i++)
    if (strlen(schemes[i].name) == n &&
        strncasecmp(schemes[i].name, p, n) == 0) {
      u->websocket = schemes[i].websocket;
      u->tls = schemes[i].tls;
      u->port = schemes[i].port;
      return 0;
    }
  return -1;
}

int myc__url_parse(myc__url *u, const char *text, char *err, size_t errlen) {
  struct http_parser_url pu;
  const char *p, *q;
  size_t n, qn;
  int v6;

  memset(u, 0, sizeof *u);
  http_parser_url_init(&pu);
  if (text == NULL || http_parser_parse_url(text, strlen(text), 0, &pu) != 0 ||
      !field(&pu, text, UF_SCHEMA, &p, &n)) {
    snprintf(err, errlen, "'%s' is not an absolute URL", text ? text : "");
    return MYC_EINVAL;
  }
  if (set_scheme(u, p, n) != 0) {
    snprintf(err, errlen, "'%s': scheme must be ws, wss, http or https", text);
    return MYC_EINVAL;
  }
  if (field(&pu, text, UF_USERINFO, &p, &n)) {
    snprintf(err, errlen,
             "'%s': credentials in the URL are not supported "
             "(pass an Authorization header)",
             text);
    return MYC_EINVAL;
  }
  if (!field(&pu, text, UF_HOST, &p, &n) || n == 0 || n > MYC_URL_HOST_MAX) {
    snprintf(err, errlen, "'%s': missing or overlong host", text);
    return MYC_EINVAL;
  }
  memcpy(u->host, p, n);
  v6 = memchr(p, ':', n) != NULL;
  if (field(&pu, text, UF_PORT, &p, &n)) {
    if (pu.port == 0) {
      snprintf(err, errlen, "'%s': port 0 is not valid", text);
      return MYC_EINVAL;
    }
    u->port = pu.port;
  }
  field(&pu, text, UF_PATH, &p, &n);
  field(&pu, text, UF_QUERY, &q, &qn);
  if (n + qn + 2 > MYC_URL_PATH_MAX) {
    snprintf(err, errlen, "'%s': path longer than %d bytes", text,
             MYC_URL_PATH_MAX);
    return MYC_EINVAL;
  }
  snprintf(u->path, sizeof u->path, "%s%.*s%s%.*s", n ? "" : "/", (int)n, p,
           qn ? "?" : "", (int)qn, q);
  snprintf(u->authority, sizeof u->authority, v6 ? "[%s]" : "%s", u->host);
  if (pu.field_set & (1 << UF_PORT))
    snprintf(u->authority + strlen(u->authority),
             sizeof u->authority - strlen(u->authority), ":%u", u->port);
  return 0;
}
