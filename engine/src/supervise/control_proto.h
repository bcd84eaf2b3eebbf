/* control_proto.h -- the text of the control protocol (docs/CONTROL.md),
 * apart from its socket so that it can be tested and fuzzed alone: one
 * request line parsed, and the strings of a JSON reply written.  No I/O.
 */
#ifndef MYC_CONTROL_PROTO_H
#define MYC_CONTROL_PROTO_H

#include "base/alloc.h"

#include <stddef.h>

/* Requests, and the bounds a connection keeps to. */
enum { MYC__CTL_PING = 1, MYC__CTL_STATUS, MYC__CTL_RELOAD };

#define MYC__CTL_LINE_MAX 4096

typedef struct {
  int verb;            /* MYC__CTL_* */
  int text;            /* status: the table for people instead of JSON */
  const char *service; /* reload: into the line */
  const char *module;  /* reload: NULL, or the rest of the line */
} myc__ctl_request;

/* Parses the request line of 'len' bytes at 'line' (its '\n' removed),
 * cutting it into words in place ('line' needs room for a NUL at
 * 'len').  Returns 0 with 'req' filled, or MYC_EINVAL with the reply's
 * message in 'err': the message names what was wrong and quotes at most
 * 64 bytes of the line, never anything else. */
int myc__control_parse(char *line, size_t len, myc__ctl_request *req, char *err,
                       size_t errlen);

/* A reply being built in memory from an allocator.  A failed allocation
 * sets 'failed' and makes every later call a no-op; the caller checks it
 * once at the end and frees 'p' ('cap' bytes). */
typedef struct {
  const myc__alloc *a;
  char *p;
  size_t len, cap;
  int failed;
} myc__sbuf;

void myc__sb_put(myc__sbuf *b, const char *s, size_t n);

/* printf into the reply; one call writes at most 1023 bytes. */
void myc__sb_printf(myc__sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends 's' (NUL-terminated; NULL gives "") as a JSON string.  Bytes
 * that are not UTF-8 become U+FFFD: a service name or a message may hold
 * anything, and the reply must stay valid JSON. */
void myc__sb_json(myc__sbuf *b, const char *s);

/* Hides the token a Lua syntax error quotes ("near 'secret'") in 'msg'
 * (a buffer of 'cap' bytes), unless it is a keyword or the end of the
 * file: a reload may name any file the engine can read, and the reply
 * must not carry what the file holds. */
void myc__control_hide_token(char *msg, size_t cap);

#endif
