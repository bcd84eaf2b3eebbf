/* http_msg.h -- the head of one HTTP/1.1 message (request line or status
 * line, and headers) as http-parser delivers it in pieces: the pieces
 * are joined and kept for lookup by name.  Clients use it for responses
 * (the WebSocket upgrade, JSON-RPC over HTTP), servers for requests.
 */
#ifndef MYC_HTTP_MSG_H
#define MYC_HTTP_MSG_H

#include <http_parser.h>
#include <stddef.h>

#define MYC_HTTP_HEAD_MAX 16384

typedef struct {
  http_parser parser; /* parser.data points back to this struct */
  void *owner;
  char url[2048]; /* requests: the request target */
  size_t url_len;
  char buf[MYC_HTTP_HEAD_MAX]; /* "name\0value\0" pairs, names lowercase */
  size_t len;
  int in_value; /* the last piece was part of a value */
  int overflow; /* the head did not fit: refuse the message */
  int complete; /* for the owner: its on_headers_complete has run */
} myc__http_msg;

/* Prepares 'm' to parse a message of type 't' (HTTP_REQUEST or
 * HTTP_RESPONSE) for 'owner'.  Cannot fail. */
void myc__http_msg_init(myc__http_msg *m, enum http_parser_type t, void *owner);

/* Forgets the head collected so far, leaving the parser alone: for the
 * next message on a kept-alive connection (call it from
 * on_message_begin).  Cannot fail. */
void myc__http_msg_reset(myc__http_msg *m);

/* Fills the head callbacks of 's' (url, header field and value); the
 * owner adds its own on_headers_complete, on_body, on_message_complete,
 * which find it as myc__http_msg_of(parser)->owner. */
void myc__http_msg_settings(http_parser_settings *s);

static inline myc__http_msg *myc__http_msg_of(http_parser *p) {
  return (myc__http_msg *)p->data;
}

/* The value of header 'name' (lowercase), or NULL.  With repeated
 * headers, the first. */
const char *myc__http_msg_get(const myc__http_msg *m, const char *name);

/* Nonzero when header 'name' lists 'token' (comma-separated,
 * case-insensitive), as "Connection: keep-alive, Upgrade" lists
 * "upgrade". */
int myc__http_msg_has_token(const myc__http_msg *m, const char *name,
                            const char *token);

#endif
