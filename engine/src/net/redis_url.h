/* redis_url.h -- the Redis client's URLs:
 * redis://[[user]:password@]host[:port][/db]. */
#ifndef MYC_REDIS_URL_H
#define MYC_REDIS_URL_H

#include "mycelium.h"

#include <stddef.h>

typedef struct {
  char host[256]; /* without the brackets of an IPv6 address */
  char user[128];
  char password[256];
  int has_password;
  int port; /* default 6379 */
  int db;   /* default 0 */
} myc__redis_url;

/* Parses 'url' into 'out'.  Returns 0, or MYC_EINVAL with the reason
 * (quoting the URL without its user part) in 'err'.  Percent-escapes in
 * user and password are decoded; TLS (rediss://), Unix sockets and query
 * strings are refused. */
int myc__redis_url_parse(const char *url, myc__redis_url *out, char *err,
                         size_t errlen);

#endif
