/* ws_handshake_test.c -- the WebSocket opening handshake (ws_handshake.h):
 * RFC 6455's own accept-key example, fresh keys, the request for every
 * kind of URL (default ports, IPv6 hosts, queries, subprotocol, extra
 * headers), and the checks of the server's reply, each refusal with its
 * reason.
 */
#include "test.h"

#include "mycelium.h"
#include "net/url.h"
#include "net/ws_handshake.h"

#include <uv.h>

/* RFC 6455 section 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" is answered
 * with "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". */
static void test_rfc6455_example(void) {
  char out[MYC_WS_ACCEPT_LEN + 1];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  myc__ws_accept(key, strlen(key), out);
  CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK_EQ(strlen(out), MYC_WS_ACCEPT_LEN);
}

static int is_base64(const char *s) {
  for (; *s; s++)
    if (!(('A' <= *s && *s <= 'Z') || ('a' <= *s && *s <= 'z') ||
          ('0' <= *s && *s <= '9') || *s == '+' || *s == '/' || *s == '='))
      return 0;
  return 1;
}

static void test_new_key(void) {
  char a[MYC_WS_KEY_LEN + 1], b[MYC_WS_KEY_LEN + 1];
  CHECK_EQ(myc__ws_new_key(a), 0);
  CHECK_EQ(myc__ws_new_key(b), 0);
  CHECK_EQ(strlen(a), MYC_WS_KEY_LEN);
  CHECK(is_base64(a));
  /* 16 bytes: 22 digits and "==" */
  CHECK(a[21] != '=' && strcmp(a + 22, "==") == 0);
  CHECK(strcmp(a, b) != 0);
}

static void request_for(const char *url, const char *protocol,
                        const char *headers, char *out, size_t cap) {
  myc__url u;
  char err[256];
  out[0] = '\0';
  CHECK_EQ(myc__url_parse(&u, url, err, sizeof err), 0);
  CHECK(myc__ws_request(out, cap, &u, "dGhlIHNhbXBsZSBub25jZQ==", protocol,
                        headers) > 0);
}

static void test_request(void) {
  char req[2048], expect[1024];
  myc__url u;
  char err[256];
  request_for("ws://example.com", NULL, NULL, req, sizeof req);
  snprintf(expect, sizeof expect,
           "GET / HTTP/1.1\r\n"
           "Host: example.com\r\n"
           "Upgrade: websocket\r\n"
           "Connection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "User-Agent: mycelium/%s\r\n"
           "\r\n",
           myc_version());
  CHECK_STR(req, expect);
  request_for("wss://[2001:db8::1]:8546/feed?k=v", "json",
              "Authorization: Bearer t\r\n", req, sizeof req);
  CHECK(strncmp(req, "GET /feed?k=v HTTP/1.1\r\n", 24) == 0);
  CHECK(strstr(req, "\r\nHost: [2001:db8::1]:8546\r\n") != NULL);
  CHECK(strstr(req, "\r\nSec-WebSocket-Protocol: json\r\n") != NULL);
  CHECK(strstr(req, "\r\nAuthorization: Bearer t\r\n\r\n") != NULL);
  request_for("wss://[::1]/", NULL, NULL, req, sizeof req);
  CHECK(strstr(req, "\r\nHost: [::1]\r\n") != NULL);
  /* too small a buffer: refused, not cut */
  CHECK_EQ(myc__url_parse(&u, "ws://example.com/", err, sizeof err), 0);
  CHECK_EQ(myc__ws_request(req, 64, &u, "k", NULL, NULL), MYC_ETOOBIG);
}

/* Parses 'head' as a response and checks it against 'protocol'. */
static int check(const char *head, const char *protocol, char *err,
                 size_t errlen) {
  myc__http_msg m;
  http_parser_settings st;
  myc__http_msg_init(&m, HTTP_RESPONSE, NULL);
  myc__http_msg_settings(&st);
  (void)http_parser_execute(&m.parser, &st, head, strlen(head));
  err[0] = '\0';
  return myc__ws_check_reply(&m, "dGhlIHNhbXBsZSBub25jZQ==", protocol, err,
                             errlen);
}

#define GOOD_ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static void expect_reply(const char *head, const char *protocol, int rc,
                         const char *reason) {
  char err[512];
  int got = check(head, protocol, err, sizeof err);
  CHECK_EQ(got, rc);
  if (reason != NULL && strstr(err, reason) == NULL)
    fprintf(stderr, "want \"%s\" in \"%s\"\n", reason, err);
  CHECK(reason == NULL || strstr(err, reason) != NULL);
}

static void test_check_reply(void) {
  /* RFC 6455's example reply, and the same in other cases and orders */
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_ACCEPT
               "\r\n",
               NULL, 0, NULL);
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n" GOOD_ACCEPT
               "connection: keep-alive, UPGRADE\r\nupgrade: WebSocket\r\n\r\n",
               NULL, 0, NULL);
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_ACCEPT
               "Sec-WebSocket-Protocol: JSON\r\n\r\n",
               "json", 0, NULL);
  expect_reply("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NULL, UV_EPROTO,
               "the server refused the WebSocket upgrade: HTTP 200");
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Connection: Upgrade\r\n" GOOD_ACCEPT "\r\n",
               NULL, UV_EPROTO, "missing 'Upgrade: websocket'");
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: keep-alive\r\n" GOOD_ACCEPT
               "\r\n",
               NULL, UV_EPROTO, "or 'Connection: Upgrade'");
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
               NULL, UV_EPROTO,
               "Sec-WebSocket-Accept is AAAAAAAAAAAAAAAAAAAAAAAAAAA=, "
               "expected s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
               NULL, UV_EPROTO, "Sec-WebSocket-Accept is missing");
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_ACCEPT
               "Sec-WebSocket-Protocol: chat\r\n\r\n",
               NULL, UV_EPROTO, "subprotocol 'chat' was not requested");
  expect_reply("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_ACCEPT
               "Sec-WebSocket-Protocol: chat\r\n\r\n",
               "json", UV_EPROTO, "subprotocol 'chat' was not requested");
}

int main(void) {
  static const test_case cases[] = {
      {"rfc6455_example", test_rfc6455_example},
      {"new_key", test_new_key},
      {"request", test_request},
      {"check_reply", test_check_reply},
      {NULL, NULL},
  };
  return run_tests(cases);
}
