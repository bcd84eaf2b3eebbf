/* limits_test.c -- numbers at the edges from hostile embedders and configs
 * (issue 11): infinite, NaN and huge times and budgets are refused where
 * they come in, instead of overflowing their conversion to integers (the
 * sanitizer build checks every float-to-integer conversion). */
#include "test.h"

#include "test_engine.h"

#include <math.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_limits_test_XXXXXX";

static void advance_refuses_times_out_of_range(void) {
  myc_engine *e = test_manual_engine();
  char err[256];
  CHECK(e != NULL);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_engine_advance(e, INFINITY), MYC_EINVAL);
  CHECK_EQ(myc_engine_advance(e, 1e300), MYC_EINVAL);
  CHECK_EQ(myc_engine_advance(e, 1e13), MYC_EINVAL);
  CHECK_EQ(myc_engine_advance(e, NAN), MYC_EINVAL);
  CHECK_EQ(myc_engine_advance(e, -1), MYC_EINVAL);
  CHECK_EQ(myc_engine_advance(e, 1e12), 0);
  myc_engine_free(e);
}

/* Each bad value, alone, makes the engine and a group refuse the
 * settings. */
static void supervisor_settings_are_bounded(void) {
  static const struct {
    size_t off;
    double v;
  } bad[] = {
      {offsetof(myc_supervisor_config, reset_s), INFINITY},
      {offsetof(myc_supervisor_config, reset_s), 1e10},
      {offsetof(myc_supervisor_config, window_s), INFINITY},
      {offsetof(myc_supervisor_config, window_s), NAN},
      {offsetof(myc_supervisor_config, reload_probation_s), 1e300},
      {offsetof(myc_supervisor_config, backoff_initial_ms), INFINITY},
      {offsetof(myc_supervisor_config, backoff_max_ms), 1e13},
      {offsetof(myc_supervisor_config, multiplier), INFINITY},
      {offsetof(myc_supervisor_config, jitter), NAN},
  };
  myc_engine_config cfg;
  myc_engine *e;
  size_t i;
  for (i = 0; i < sizeof bad / sizeof *bad; i++) {
    myc_supervisor_config sc;
    myc_supervisor_config_init(&sc);
    *(double *)((char *)&sc + bad[i].off) = bad[i].v;
    myc_engine_config_init(&cfg);
    cfg.manual = 1;
    cfg.workers = 1;
    cfg.supervisor = sc;
    CHECK_EQ(myc_engine_new(&e, &cfg), MYC_EINVAL);
    CHECK(e == NULL);
    e = test_manual_engine();
    CHECK(e != NULL);
    CHECK_EQ(myc_engine_add_group(e, "g", MYC_ONE_FOR_ONE, &sc), MYC_EINVAL);
    myc_engine_free(e);
  }
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.supervisor.reset_s = 1e9;
  cfg.supervisor.backoff_max_ms = 1e12;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  myc_engine_free(e);
}

static double load_ms; /* the next add()'s load_timeout_ms */

static int add(myc_engine *e, double mem_mb, double timeout_ms,
               double probation_s, char *err, size_t errlen) {
  myc_service_config sc;
  memset(&sc, 0, sizeof sc);
  sc.name = "svc";
  sc.module = test_module(tmpdir, "svc.lua", "return { init = function() end }\n");
  sc.worker = -1;
  sc.memory_limit_mb = mem_mb;
  sc.handler_timeout_ms = timeout_ms;
  sc.reload_probation_s = probation_s;
  sc.load_timeout_ms = load_ms;
  return myc_engine_add_service(e, &sc, err, errlen);
}

static void service_budgets_are_bounded_and_named(void) {
  myc_engine *e = test_manual_engine();
  char err[512];
  CHECK(e != NULL);
  CHECK_EQ(add(e, 1e300, 0, 0, err, sizeof err), MYC_EINVAL);
  CHECK_STR(err, "service 'svc': memory_limit_mb must be 0 (no limit) or "
                 "from 1 to 1048576, got 1e+300");
  CHECK_EQ(add(e, 0.0001, 0, 0, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "memory_limit_mb") != NULL);
  CHECK_EQ(add(e, -1, 0, 0, err, sizeof err), MYC_EINVAL);
  CHECK_EQ(add(e, NAN, 0, 0, err, sizeof err), MYC_EINVAL);
  CHECK_EQ(add(e, 0, INFINITY, 0, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "handler_timeout_ms") != NULL);
  CHECK_EQ(add(e, 0, NAN, 0, err, sizeof err), MYC_EINVAL);
  CHECK_EQ(add(e, 0, 0, INFINITY, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "reload_probation_s") != NULL);
  load_ms = INFINITY;
  CHECK_EQ(add(e, 0, 0, 0, err, sizeof err), MYC_EINVAL);
  CHECK_STR(err, "service 'svc': load_timeout_ms must be at most 1e+12, "
                 "got inf");
  load_ms = 0;
  CHECK_EQ(myc_engine_service_count(e), 0);
  CHECK_EQ(add(e, 1, 1e12, 1e9, err, sizeof err), 0);
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"advance refuses times out of range",
       advance_refuses_times_out_of_range},
      {"supervisor settings are bounded", supervisor_settings_are_bounded},
      {"service budgets are bounded and named",
       service_budgets_are_bounded_and_named},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  unlink(test_module(tmpdir, "svc.lua", ""));
  rmdir(tmpdir);
  return rc;
}
