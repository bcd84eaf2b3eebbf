/* ws_handshake.h -- the HTTP/1.1 upgrade that opens a WebSocket (RFC 6455
 * section 4): the client's request and random key, the check of the
 * server's 101 reply, and the accept value both sides compute. */
#ifndef MYC_WS_HANDSHAKE_H
#define MYC_WS_HANDSHAKE_H

#include "net/http_msg.h"
#include "net/url.h"

#define MYC_WS_KEY_LEN 24    /* base64 of 16 random bytes */
#define MYC_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/* A fresh Sec-WebSocket-Key (NUL-terminated).  Returns 0, or MYC_ETLS
 * when the system has no randomness to give. */
int myc__ws_new_key(char out[MYC_WS_KEY_LEN + 1]);

/* The Sec-WebSocket-Accept value for 'key' (NUL-terminated). */
void myc__ws_accept(const char *key, size_t keylen,
                    char out[MYC_WS_ACCEPT_LEN + 1]);

/* Writes the upgrade request for 'u' into 'dst'.  'protocol' and
 * 'headers' (complete "Name: value\r\n" lines) may be NULL.  Returns its
 * length, or MYC_ETOOBIG if it does not fit in 'cap'. */
int myc__ws_request(char *dst, size_t cap, const myc__url *u, const char *key,
                    const char *protocol, const char *headers);

/* Checks the server's reply head against RFC 6455 section 4.1: status
 * 101, "Upgrade: websocket", "Connection: upgrade", the accept value of
 * 'key', and no subprotocol we did not ask for.  Returns 0, or UV_EPROTO
 * with the reason in 'err'. */
int myc__ws_check_reply(const myc__http_msg *m, const char *key,
                        const char *protocol, char *err, size_t errlen);

#endif
