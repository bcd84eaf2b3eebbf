/* url.c -- fuzzes the URL parsers of the network clients: net/url.c (ws,
 * wss, http, https) and net/redis_url.c (redis://), with the invariants
 * the clients rely on when they succeed. */
#include "net/url.h"
#include "net/redis_url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static myc__url u;
  static myc__redis_url r;
  char err[256], *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  if (myc__url_parse(&u, text, err, sizeof err) == 0) {
    if (u.host[0] == '\0' || u.path[0] != '/' || u.port == 0 ||
        memchr(u.host, '\0', sizeof u.host) == NULL ||
        memchr(u.path, '\0', sizeof u.path) == NULL ||
        memchr(u.authority, '\0', sizeof u.authority) == NULL)
      abort();
  } else if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0') {
    abort();
  }
  if (myc__redis_url_parse(text, &r, err, sizeof err) == 0) {
    if (r.host[0] == '\0' || r.port <= 0 || r.port > 65535 || r.db < 0)
      abort();
  } else if (err[0] == '\0') {
    abort();
  }
  free(text);
  return 0;
}
