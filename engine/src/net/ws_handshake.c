/* ws_handshake.c -- the WebSocket opening handshake (see
 * ws_handshake.h).  Hashing and base64 are OpenSSL's. */
#include "net/ws_handshake.h"

#include "mycelium.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int myc__ws_new_key(char out[MYC_WS_KEY_LEN + 1]) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1)
    return MYC_ETLS;
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
  return 0;
}

void myc__ws_accept(const char *key, size_t keylen,
                    char out[MYC_WS_ACCEPT_LEN + 1]) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned char buf[128 + sizeof GUID];
  unsigned int n = 0;
  /* A valid key is 24 bytes; a longer one cannot match anything anyway. */
  if (keylen > 128)
    keylen = 128;
  memcpy(buf, key, keylen);
  memcpy(buf + keylen, GUID, sizeof GUID - 1);
  EVP_Digest(buf, keylen + sizeof GUID - 1, digest, &n, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)out, digest, (int)n);
}

int myc__ws_request(char *dst, size_t cap, const myc__url *u, const char *key,
                    const char *protocol, const char *headers) {
  int n = snprintf(dst, cap,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "%s%s%s"
                   "User-Agent: mycelium/%s\r\n"
                   "%s\r\n",
                   u->path, u->authority, key,
                   protocol ? "Sec-WebSocket-Protocol: " : "",
                   protocol ? protocol : "", protocol ? "\r\n" : "",
                   myc_version(), headers ? headers : "");
  return n < 0 || (size_t)n >= cap ? MYC_ETOOBIG : n;
}

int myc__ws_check_reply(const myc__http_msg *m, const char *key,
                        const char *protocol, char *err, size_t errlen) {
  const http_parser *p = &m->parser;
  const char *accept = myc__http_msg_get(m, "sec-websocket-accept");
  const char *proto = myc__http_msg_get(m, "sec-websocket-protocol");
  char want[MYC_WS_ACCEPT_LEN + 1];

  if (p->status_code != 101) {
    snprintf(err, errlen, "the server refused the WebSocket upgrade: HTTP %u",
             p->status_code);
    return UV_EPROTO;
  }
  if (!myc__http_msg_has_token(m, "upgrade", "websocket") ||
      !myc__http_msg_has_token(m, "connection", "upgrade")) {
    snprintf(err, errlen,
             "bad WebSocket upgrade reply: missing "
             "'Upgrade: websocket' or 'Connection: Upgrade'");
    return UV_EPROTO;
  }
  myc__ws_accept(key, strlen(key), want);
  if (accept == NULL || strcmp(accept, want) != 0) {
    snprintf(err, errlen,
             "bad WebSocket upgrade reply: Sec-WebSocket-Accept "
             "is %s, expected %s",
             accept ? accept : "missing", want);
    return UV_EPROTO;
  }
  if (proto != NULL && (protocol == NULL || strcasecmp(proto, protocol) != 0)) {
    snprintf(err, errlen,
             "bad WebSocket upgrade reply: subprotocol '%s' "
             "was not requested",
             proto);
    return UV_EPROTO;
  }
  return 0;
}
