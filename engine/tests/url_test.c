/* url_test.c -- the URLs the network clients accept (url.h): schemes and
 * their default ports, IPv4, names and bracketed IPv6 hosts, the Host
 * header value, path and query, and every refusal with its reason.
 */
#include "test.h"

#include "mycelium.h"
#include "net/url.h"

typedef struct {
  const char *text;
  int websocket, tls;
  const char *host;
  unsigned port;
  const char *path, *authority;
} good_url;

static const good_url goods[] = {
    /* the scheme's default port, and "/" for no path */
    {"ws://example.com", 1, 0, "example.com", 80, "/", "example.com"},
    {"wss://example.com", 1, 1, "example.com", 443, "/", "example.com"},
    {"http://example.com", 0, 0, "example.com", 80, "/", "example.com"},
    {"https://example.com", 0, 1, "example.com", 443, "/", "example.com"},
    /* the scheme in any case; an explicit port stays in the Host header,
     * even the default one */
    {"WSS://Node.Example:8546/ws", 1, 1, "Node.Example", 8546, "/ws",
     "Node.Example:8546"},
    {"ws://127.0.0.1:80/", 1, 0, "127.0.0.1", 80, "/", "127.0.0.1:80"},
    /* query kept, fragment dropped */
    {"https://h.io/rpc/v1?key=abc&x=1#frag", 0, 1, "h.io", 443,
     "/rpc/v1?key=abc&x=1", "h.io"},
    {"http://h.io/?q", 0, 0, "h.io", 80, "/?q", "h.io"},
    /* IPv6: the host without brackets, the Host header with them */
    {"ws://[::1]:9000/feed", 1, 0, "::1", 9000, "/feed", "[::1]:9000"},
    {"wss://[2001:db8::42]/", 1, 1, "2001:db8::42", 443, "/",
     "[2001:db8::42]"},
    {"http://[fe80::1]", 0, 0, "fe80::1", 80, "/", "[fe80::1]"},
    {"ws://h:65535/", 1, 0, "h", 65535, "/", "h:65535"},
};

static void test_accepted(void) {
  for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
    const good_url *g = &goods[i];
    myc__url u;
    char err[256] = "";
    int rc = myc__url_parse(&u, g->text, err, sizeof err);
    if (rc != 0)
      fprintf(stderr, "%s: %s\n", g->text, err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(u.websocket, g->websocket);
    CHECK_EQ(u.tls, g->tls);
    CHECK_STR(u.host, g->host);
    CHECK_EQ(u.port, g->port);
    CHECK_STR(u.path, g->path);
    CHECK_STR(u.authority, g->authority);
  }
}

static void expect_refused(const char *text, const char *reason) {
  myc__url u;
  static char err[8192]; /* the reason quotes the whole URL */
  err[0] = '\0';
  CHECK_EQ(myc__url_parse(&u, text, err, sizeof err), MYC_EINVAL);
  if (strstr(err, reason) == NULL)
    fprintf(stderr, "%.80s: want \"%s\" in \"%.200s\"\n",
            text ? text : "NULL", reason, err);
  CHECK(strstr(err, reason) != NULL);
}

static void test_refused(void) {
  char host[300], path[4200];
  expect_refused(NULL, "is not an absolute URL");
  expect_refused("", "is not an absolute URL");
  expect_refused("example.com/feed", "is not an absolute URL");
  expect_refused("//example.com/", "is not an absolute URL");
  expect_refused("ws://h:99999/", "is not an absolute URL");
  expect_refused("ftp://h/", "scheme must be ws, wss, http or https");
  expect_refused("wsx://h/", "scheme must be ws, wss, http or https");
  expect_refused("ws://user:secret@h/", "credentials in the URL are not "
                                        "supported");
  expect_refused("ws://h:0/", "port 0 is not valid");
  memcpy(host, "ws://", 5);
  memset(host + 5, 'a', MYC_URL_HOST_MAX + 1);
  strcpy(host + 5 + MYC_URL_HOST_MAX + 1, "/");
  expect_refused(host, "missing or overlong host");
  strcpy(path, "ws://h/");
  memset(path + 7, 'p', MYC_URL_PATH_MAX - 2);
  path[7 + MYC_URL_PATH_MAX - 2] = '\0';
  expect_refused(path, "path longer than 4096 bytes");
}

/* The longest host and path that fit are taken whole. */
static void test_limits(void) {
  char text[4400];
  myc__url u;
  char err[256];
  memcpy(text, "ws://", 5);
  memset(text + 5, 'h', MYC_URL_HOST_MAX);
  strcpy(text + 5 + MYC_URL_HOST_MAX, ":1/");
  CHECK_EQ(myc__url_parse(&u, text, err, sizeof err), 0);
  CHECK_EQ(strlen(u.host), MYC_URL_HOST_MAX);
  CHECK_EQ(strlen(u.authority), MYC_URL_HOST_MAX + 2);
  strcpy(text, "ws://h/");
  memset(text + 7, 'p', MYC_URL_PATH_MAX - 3);
  text[7 + MYC_URL_PATH_MAX - 3] = '\0';
  CHECK_EQ(myc__url_parse(&u, text, err, sizeof err), 0);
  CHECK_EQ(strlen(u.path), MYC_URL_PATH_MAX - 2);
}

int main(void) {
  static const test_case cases[] = {
      {"accepted", test_accepted},
      {"refused", test_refused},
      {"limits", test_limits},
      {NULL, NULL},
  };
  return run_tests(cases);
}
