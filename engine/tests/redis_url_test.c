/* redis_url_test.c -- parsing of the Redis client's URLs. */
#include "net/redis_url.h"

#include "test.h"

static void test_parse_url(void) {
  myc__redis_url u;
  char err[256];
  CHECK_EQ(myc__redis_url_parse("redis://127.0.0.1", &u, err, sizeof err), 0);
  CHECK_STR(u.host, "127.0.0.1");
  CHECK_EQ(u.port, 6379);
  CHECK_EQ(u.db, 0);
  CHECK_EQ(u.has_password, 0);
  CHECK_EQ(
      myc__redis_url_parse("redis://cache.local:7000/3", &u, err, sizeof err),
      0);
  CHECK_STR(u.host, "cache.local");
  CHECK_EQ(u.port, 7000);
  CHECK_EQ(u.db, 3);
  CHECK_EQ(myc__redis_url_parse("redis://:s%40cret@[::1]:6380/", &u, err,
                                sizeof err),
           0);
  CHECK_STR(u.host, "::1");
  CHECK_EQ(u.port, 6380);
  CHECK_STR(u.password, "s@cret");
  CHECK_STR(u.user, "");
  CHECK_EQ(myc__redis_url_parse("redis://app:pw@h", &u, err, sizeof err), 0);
  CHECK_STR(u.user, "app");
  CHECK_STR(u.password, "pw");

  CHECK_EQ(myc__redis_url_parse("http://h", &u, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "redis: bad URL 'http://h': expected redis://") != NULL);
  CHECK_EQ(myc__redis_url_parse("rediss://h", &u, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "TLS") != NULL);
  CHECK_EQ(myc__redis_url_parse("redis://h:0", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK_EQ(myc__redis_url_parse("redis://h:99999", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK(strstr(err, "port") != NULL);
  CHECK_EQ(myc__redis_url_parse("redis://h:12x", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK_EQ(myc__redis_url_parse("redis://", &u, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "no host") != NULL);
  CHECK_EQ(myc__redis_url_parse("redis://h/x", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK(strstr(err, "database number") != NULL);
  CHECK_EQ(myc__redis_url_parse("redis://h/1?x=1", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK_EQ(myc__redis_url_parse("redis://h o", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK_EQ(myc__redis_url_parse("redis://[::1", &u, err, sizeof err),
           MYC_EINVAL);
  /* The password never appears in a message. */
  CHECK_EQ(myc__redis_url_parse("redis://:hunter2@h:bad", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK(strstr(err, "hunter2") == NULL);
  CHECK_EQ(myc__redis_url_parse("redis://:%zz@h", &u, err, sizeof err),
           MYC_EINVAL);
  CHECK_EQ(myc__redis_url_parse("redis://nocolon@h", &u, err, sizeof err),
           MYC_EINVAL);
}

int main(void) {
  static const test_case cases[] = {{"parse_url", test_parse_url},
                                    {NULL, NULL}};
  return run_tests(cases);
}
