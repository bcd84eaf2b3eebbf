/* http_response.c -- fuzzes the head of an HTTP response as the clients
 * read it (net/http_msg.c over http-parser): the bytes arrive in two
 * pieces split where the first byte says, since a head may be cut
 * anywhere by the network. */
#include "net/http_msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int on_head_done(http_parser *p) {
  myc__http_msg_of(p)->complete = 1;
  return 2; /* as ws.c: the head only */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static myc__http_msg m;
  http_parser_settings s;
  const char *p = (const char *)data + 1;
  size_t n, cut, used;
  if (size < 1)
    return 0;
  n = size - 1;
  cut = n ? data[0] % (n + 1) : 0;
  myc__http_msg_init(&m, HTTP_RESPONSE, NULL);
  myc__http_msg_settings(&s);
  s.on_headers_complete = on_head_done;
  used = http_parser_execute(&m.parser, &s, p, cut);
  /* Zero bytes would tell http-parser the connection ended. */
  if (used == cut && cut < n && !m.complete &&
      HTTP_PARSER_ERRNO(&m.parser) == HPE_OK)
    used += http_parser_execute(&m.parser, &s, p + cut, n - cut);
  if (used > n || m.len > sizeof m.buf)
    abort();
  /* Lookups walk the stored pairs: they must stay inside them. */
  (void)myc__http_msg_get(&m, "content-length");
  (void)myc__http_msg_get(&m, "");
  (void)myc__http_msg_has_token(&m, "connection", "upgrade");
  (void)myc__http_msg_has_token(&m, "transfer-encoding", "chunked");
  return 0;
}
