/* url.h -- the URLs the network clients accept: ws://, wss://, http://
 * and https:// with a host name, IPv4 or bracketed IPv6 address, optional
 * port, path and query.  Parsed once when a client is created. */
#ifndef MYC_URL_H
#define MYC_URL_H

#include <stddef.h>
#include <stdint.h>

#define MYC_URL_HOST_MAX 255
#define MYC_URL_PATH_MAX 4096

typedef struct {
  int websocket;                        /* ws:// or wss:// (else http[s]://) */
  int tls;                              /* wss:// or https:// */
  char host[MYC_URL_HOST_MAX + 1];      /* without IPv6 brackets */
  uint16_t port;                        /* explicit, or the scheme's default */
  char path[MYC_URL_PATH_MAX + 1];      /* path and "?query", at least "/" */
  char authority[MYC_URL_HOST_MAX + 9]; /* the Host header value */
} myc__url;

/* Parses 'text' into 'u'.  Returns 0, or MYC_EINVAL with the reason in
 * 'err' (unknown scheme, no host, user info, a part too long).  'u' is
 * undefined on error. */
int myc__url_parse(myc__url *u, const char *text, char *err, size_t errlen);

#endif
