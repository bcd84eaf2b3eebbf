/* http_msg_test.c -- HTTP/1.1 heads as http-parser delivers them
 * (http_msg.h): responses fed whole, byte by byte and split anywhere give
 * the same status, headers and body; chunked bodies; repeated headers and
 * token lists; a head too large is refused; a kept-alive connection's
 * next message starts clean; requests keep their target.
 */
#include "test.h"

#include "net/http_msg.h"

typedef struct {
  char body[256];
  size_t body_len;
  int complete, heads;
} sink;

static int on_headers(http_parser *p) {
  myc__http_msg *m = myc__http_msg_of(p);
  sink *s = m->owner;
  m->complete = 1;
  s->heads++;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  sink *s = myc__http_msg_of(p)->owner;
  if (s->body_len + n < sizeof s->body) {
    memcpy(s->body + s->body_len, at, n);
    s->body_len += n;
  }
  return 0;
}

static int on_complete(http_parser *p) {
  sink *s = myc__http_msg_of(p)->owner;
  s->complete++;
  return 0;
}

static int on_begin(http_parser *p) {
  myc__http_msg_reset(myc__http_msg_of(p));
  return 0;
}

static http_parser_settings settings(void) {
  http_parser_settings st;
  myc__http_msg_settings(&st);
  st.on_message_begin = on_begin;
  st.on_headers_complete = on_headers;
  st.on_body = on_body;
  st.on_message_complete = on_complete;
  return st;
}

/* Feeds 'text' in pieces of 'step' bytes (0: whole); returns the bytes
 * the parser took. */
static size_t feed(myc__http_msg *m, const char *text, size_t step) {
  http_parser_settings st = settings();
  size_t len = strlen(text), done = 0;
  if (step == 0)
    step = len;
  while (done < len) {
    size_t n = len - done < step ? len - done : step;
    size_t took = http_parser_execute(&m->parser, &st, text + done, n);
    done += took;
    if (took != n)
      break;
  }
  return done;
}

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "X-Split-Header: first part, second part\r\n"
    "Set-Cookie: a=1\r\n"
    "Set-Cookie: b=2\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"result\":42}";

static void test_whole_and_partial(void) {
  static const size_t steps[] = {0, 1, 2, 3, 7, 16, 64};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    myc__http_msg m;
    sink s = {0};
    myc__http_msg_init(&m, HTTP_RESPONSE, &s);
    CHECK_EQ(feed(&m, response, steps[i]), strlen(response));
    CHECK_EQ(m.parser.status_code, 200);
    CHECK_EQ(s.heads, 1);
    CHECK_EQ(s.complete, 1);
    CHECK(m.complete);
    /* names are looked up lowercase; values keep their case */
    CHECK_STR(myc__http_msg_get(&m, "content-type"), "application/json");
    CHECK_STR(myc__http_msg_get(&m, "x-split-header"),
              "first part, second part");
    CHECK_STR(myc__http_msg_get(&m, "set-cookie"), "a=1"); /* the first */
    CHECK_STR(myc__http_msg_get(&m, "content-length"), "13");
    CHECK(myc__http_msg_get(&m, "Content-Type") == NULL);
    CHECK(myc__http_msg_get(&m, "missing") == NULL);
    CHECK_EQ(s.body_len, 13);
    CHECK(memcmp(s.body, "{\"result\":42}", 13) == 0);
    CHECK(!m.overflow);
  }
}

static void test_tokens(void) {
  myc__http_msg m;
  sink s = {0};
  myc__http_msg_init(&m, HTTP_RESPONSE, &s);
  CHECK_EQ(feed(&m, response, 5), strlen(response));
  CHECK(myc__http_msg_has_token(&m, "connection", "upgrade"));
  CHECK(myc__http_msg_has_token(&m, "connection", "KEEP-ALIVE"));
  CHECK(!myc__http_msg_has_token(&m, "connection", "close"));
  CHECK(!myc__http_msg_has_token(&m, "connection", "up"));
  CHECK(!myc__http_msg_has_token(&m, "connection", "keep"));
  CHECK(myc__http_msg_has_token(&m, "x-split-header", "second"));
  CHECK(!myc__http_msg_has_token(&m, "missing", "x"));
}

static const char chunked[] =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "1\r\n,\r\n"
    "6;ext=1\r\n world\r\n"
    "0\r\n"
    "Trailer: x\r\n"
    "\r\n";

static void test_chunked(void) {
  static const size_t steps[] = {0, 1, 4, 9};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    myc__http_msg m;
    sink s = {0};
    myc__http_msg_init(&m, HTTP_RESPONSE, &s);
    CHECK_EQ(feed(&m, chunked, steps[i]), strlen(chunked));
    CHECK_EQ(s.complete, 1);
    CHECK_EQ(s.body_len, 12);
    CHECK(memcmp(s.body, "hello, world", 12) == 0);
    CHECK(myc__http_msg_has_token(&m, "transfer-encoding", "chunked"));
  }
}

/* A partial response is not complete: what came so far is kept. */
static void test_incomplete(void) {
  myc__http_msg m;
  sink s = {0};
  const char part[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs";
  myc__http_msg_init(&m, HTTP_RESPONSE, &s);
  CHECK_EQ(feed(&m, part, 0), strlen(part));
  CHECK_EQ(s.heads, 0);
  CHECK(!m.complete);
  CHECK_EQ(feed(&m, "ocket\r\nConnection: Upgrade\r\n\r\n", 3), 30);
  CHECK(m.parser.upgrade);
  CHECK_EQ(s.heads, 1);
  CHECK_EQ(m.parser.status_code, 101);
  CHECK_STR(myc__http_msg_get(&m, "upgrade"), "websocket");
}

/* Two responses on one connection: the second starts with a clean head. */
static void test_keep_alive(void) {
  myc__http_msg m;
  sink s = {0};
  const char two[] = "HTTP/1.1 200 OK\r\nA: 1\r\nContent-Length: 2\r\n\r\nok"
                     "HTTP/1.1 404 Not Found\r\nB: 2\r\nContent-Length: 0\r\n"
                     "\r\n";
  myc__http_msg_init(&m, HTTP_RESPONSE, &s);
  CHECK_EQ(feed(&m, two, 0), strlen(two));
  CHECK_EQ(s.complete, 2);
  CHECK_EQ(m.parser.status_code, 404);
  CHECK(myc__http_msg_get(&m, "a") == NULL);
  CHECK_STR(myc__http_msg_get(&m, "b"), "2");
}

/* A head larger than MYC_HTTP_HEAD_MAX stops the parser and is marked. */
static void test_overflow(void) {
  static char big[MYC_HTTP_HEAD_MAX + 200];
  myc__http_msg m;
  sink s = {0};
  size_t n;
  strcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ");
  n = strlen(big);
  memset(big + n, 'v', MYC_HTTP_HEAD_MAX);
  strcpy(big + n + MYC_HTTP_HEAD_MAX, "\r\n\r\n");
  myc__http_msg_init(&m, HTTP_RESPONSE, &s);
  CHECK(feed(&m, big, 100) < strlen(big));
  CHECK(m.overflow);
  CHECK_EQ(s.heads, 0);
  CHECK(HTTP_PARSER_ERRNO(&m.parser) != HPE_OK);
}

static void test_request(void) {
  myc__http_msg m;
  sink s = {0};
  const char req[] = "GET /feed?x=1 HTTP/1.1\r\nHost: [::1]:9000\r\n"
                     "Upgrade: websocket\r\n\r\n";
  myc__http_msg_init(&m, HTTP_REQUEST, &s);
  CHECK_EQ(feed(&m, req, 2), strlen(req));
  CHECK_EQ(m.parser.method, HTTP_GET);
  CHECK_STR(m.url, "/feed?x=1");
  CHECK_STR(myc__http_msg_get(&m, "host"), "[::1]:9000");
}

/* Not HTTP at all: the parser stops with an error, nothing is complete. */
static void test_garbage(void) {
  myc__http_msg m;
  sink s = {0};
  myc__http_msg_init(&m, HTTP_RESPONSE, &s);
  CHECK(feed(&m, "SSH-2.0-OpenSSH_9.2\r\n", 0) < 21);
  CHECK(HTTP_PARSER_ERRNO(&m.parser) != HPE_OK);
  CHECK_EQ(s.heads, 0);
}

int main(void) {
  static const test_case cases[] = {
      {"whole_and_partial", test_whole_and_partial},
      {"tokens", test_tokens},
      {"chunked", test_chunked},
      {"incomplete", test_incomplete},
      {"keep_alive", test_keep_alive},
      {"overflow", test_overflow},
      {"request", test_request},
      {"garbage", test_garbage},
      {NULL, NULL},
  };
  return run_tests(cases);
}
