/* control.c -- fuzzes the control protocol's text (supervise/
 * control_proto.c): a request line parsed, its words escaped into JSON,
 * and a reload error's token hidden.  A JSON string written must be
 * valid UTF-8 with every control character escaped, whatever the bytes. */
#include "supervise/control_proto.h"

#include "mycelium.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const myc__alloc alloc = {myc__default_alloc, NULL};

/* Checks that 's' is one JSON string of valid UTF-8, by RFC 8259. */
static void check_json(const unsigned char *s, size_t n) {
  size_t i = 1, k, len;
  if (n < 2 || s[0] != '"' || s[n - 1] != '"')
    abort();
  while (i < n - 1) {
    unsigned char c = s[i];
    if (c < 0x20 || c == '"')
      abort();
    if (c == '\\') {
      if (strchr("\"\\/bfnrtu", s[i + 1]) == NULL || s[i + 1] == '\0')
        abort();
      i += s[i + 1] == 'u' ? 6 : 2;
      continue;
    }
    len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || i + len > n - 1)
      abort();
    for (k = 1; k < len; k++)
      if ((s[i + k] & 0xC0) != 0x80)
        abort();
    i += len;
  }
}

static void escape(const char *s) {
  myc__sbuf b = {&alloc, NULL, 0, 0, 0};
  myc__sb_json(&b, s);
  if (b.failed)
    abort();
  check_json((const unsigned char *)b.p, b.len);
  free(b.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  myc__ctl_request req;
  char err[512], msg[1024], *line;
  int rc;
  if (size > MYC__CTL_LINE_MAX)
    return 0;
  line = malloc(size + 1);
  if (line == NULL)
    return 0;
  memcpy(line, data, size);
  line[size] = '\0';
  escape(line);
  rc = myc__control_parse(line, size, &req, err, sizeof err);
  if (rc == 0) {
    if (req.verb < MYC__CTL_PING || req.verb > MYC__CTL_RELOAD)
      abort();
    if (req.verb == MYC__CTL_RELOAD &&
        (req.service == NULL || req.service[0] == '\0' ||
         strpbrk(req.service, " \t") != NULL))
      abort();
    if (req.service != NULL)
      escape(req.service);
    if (req.module != NULL)
      escape(req.module);
  } else {
    if (rc != MYC_EINVAL || err[0] == '\0')
      abort();
    escape(err);
  }
  /* The line as if it were a reload's error message. */
  memcpy(msg, data, size < sizeof msg ? size : sizeof msg - 1);
  msg[size < sizeof msg ? size : sizeof msg - 1] = '\0';
  myc__control_hide_token(msg, sizeof msg);
  escape(msg);
  free(line);
  return 0;
}
