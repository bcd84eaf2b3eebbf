/* names_test.c -- service and group names from hostile embedders (issue
 * 11): the engine refuses names that would break a log line, a control
 * reply or a reload request, and quotes them escaped in its message. */
#include "test.h"

#include "test_engine.h"

#include "base/log.h"

static void noop_cb(void *ud, const myc_message *m) {
  (void)ud;
  (void)m;
}

static void bad_service_names_are_refused(void) {
  static const char *bad[] = {"", "a b", "a\"b", "a\nERROR forged", "-x",
                              ".x", "a\\b", "a\tb", "a;b", "\xc3\xa9"};
  char long_name[300];
  myc_engine *e = test_manual_engine();
  size_t i;
  CHECK(e != NULL);
  for (i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_EQ(myc_engine_add_c_service(e, bad[i], "t", noop_cb, NULL, -1),
             MYC_EINVAL);
  memset(long_name, 'n', sizeof long_name);
  long_name[256] = '\0';
  CHECK_EQ(myc_engine_add_c_service(e, long_name, "t", noop_cb, NULL, -1),
           MYC_EINVAL);
  long_name[255] = '\0';
  CHECK_EQ(myc_engine_add_c_service(e, long_name, "t", noop_cb, NULL, -1), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "A_b-c.d:e0", "t", noop_cb, NULL, -1),
           0);
  CHECK_EQ(myc_engine_add_c_service(e, "_x", "t", noop_cb, NULL, -1), 0);
  CHECK_EQ(myc_engine_service_count(e), 3);
  myc_engine_free(e);
}

static void the_message_quotes_the_name_escaped(void) {
  myc_service_config sc;
  myc_engine *e = test_manual_engine();
  char err[256];
  CHECK(e != NULL);
  memset(&sc, 0, sizeof sc);
  sc.name = "evil\nERROR [admin] forged\x01";
  sc.module = "/nonexistent.lua";
  sc.worker = -1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), MYC_EINVAL);
  CHECK_STR(err, "service name \"evil\\nERROR [admin] forged\\x01\" is "
                 "invalid: a service name is letters, digits and _ - . :, "
                 "starting with a letter, a digit or _");
  sc.name = NULL;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), MYC_EINVAL);
  CHECK_EQ(myc_engine_service_count(e), 0);
  myc_engine_free(e);
}

static void bad_group_names_are_refused(void) {
  myc_engine *e;
  myc_engine_config cfg;
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_add_group(e, "a \"b\"", MYC_ONE_FOR_ONE, NULL),
           MYC_EINVAL);
  CHECK_EQ(myc_engine_add_group(e, "a\nb", MYC_ONE_FOR_ONE, NULL), MYC_EINVAL);
  CHECK_EQ(myc_engine_add_group(e, "", MYC_ONE_FOR_ONE, NULL), MYC_EINVAL);
  CHECK_EQ(myc_engine_add_group(e, "pipeline.v2", MYC_ONE_FOR_ALL, NULL), 0);
  myc_engine_free(e);
}

/* myc__log_quote never writes past 'cap', whatever the input. */
static void escape_cuts_within_the_buffer(void) {
  char out[16];
  size_t cap;
  myc__log_quote(out, sizeof out, "a\nb\0c", 5);
  CHECK_STR(out, "a\\nb\\x00c");
  myc__log_quote(out, sizeof out, "abcdefghijklmnopqrstuvwxyz", 26);
  CHECK_STR(out, "abcdefghijkl...");
  myc__log_quote(out, sizeof out, "abcdefghijklmno", 15);
  CHECK_STR(out, "abcdefghijklmno");
  myc__log_quote(out, sizeof out, "\n\n\n\n\n\n\n\n", 8);
  CHECK_STR(out, "\\n\\n\\n\\n\\n\\n...");
  for (cap = 0; cap <= sizeof out; cap++) {
    memset(out, '#', sizeof out);
    myc__log_quote(out, cap, "\x01\x02\x03\x04\x05\x06", 6);
    if (cap > 0)
      CHECK(strlen(out) < cap);
    if (cap < sizeof out)
      CHECK(out[cap] == '#' || cap == 0);
  }
}

int main(void) {
  static const test_case cases[] = {
      {"bad service names are refused", bad_service_names_are_refused},
      {"the message quotes the name escaped",
       the_message_quotes_the_name_escaped},
      {"bad group names are refused", bad_group_names_are_refused},
      {"escape cuts within the buffer", escape_cuts_within_the_buffer},
      {NULL, NULL}};
  return run_tests(cases);
}
