/* add_services_test.c -- myc_engine_add_services: many services whose
 * Lua states are made on loader threads end as myc_engine_add_service
 * called for each in turn: the same error for the first service that
 * fails, the services before it added in order, nothing left of the
 * others (the ASan run checks the leaks). */
#include "test.h"
#include "test_engine.h"

#include "runtime/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#ifdef MYC_TEST_ASAN
#define N 48
#else
#define N 160
#endif

static char tmpdir[] = "/tmp/myc_add_many_XXXXXX";
static char names[N][16];
static const char *good, *bad, *raises;

static _Atomic int acks;

static void on_ack(void *ud, const myc_message *m) {
  (void)ud;
  (void)m;
  atomic_fetch_add(&acks, 1);
}

static void *run_engine(void *e) {
  myc_engine_run(e, 0);
  return NULL;
}

static myc_engine *new_engine(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_fn = test_quiet_log;
  if (myc_engine_new(&e, &cfg) != 0 ||
      myc_engine_add_c_service(e, "acks", "many.ack", on_ack, NULL, 0) != 0)
    abort();
  return e;
}

/* N services of module "good", but the one at index "at" of "module". */
static void configs(myc_service_config *scs, int at, const char *module) {
  int i;
  for (i = 0; i < N; i++) {
    memset(&scs[i], 0, sizeof scs[i]);
    snprintf(names[i], sizeof names[i], "svc%d", i);
    scs[i].name = names[i];
    scs[i].module = i == at ? module : good;
    scs[i].worker = -1;
  }
}

static void every_service_is_added_in_order_and_runs(void) {
  static myc_service_config scs[N];
  myc_engine *e = new_engine();
  myc_service_stats st;
  pthread_t th;
  char err[512];
  double t0;
  int i;
  configs(scs, -1, NULL);
  CHECK_EQ(myc_engine_add_services(e, scs, N, err, sizeof err), 0);
  CHECK_EQ(myc_engine_service_count(e), N + 1);
  for (i = 0; i < N; i++) {
    CHECK_EQ(myc_engine_service_stats(e, (uint32_t)i + 1, &st), 0);
    CHECK_STR(st.name, names[i]);
  }
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_services(e, scs, 1, err, sizeof err), MYC_ESTATE);
  atomic_store(&acks, 0);
  CHECK_EQ(pthread_create(&th, NULL, run_engine, e), 0);
  CHECK_EQ(myc_publish(e, "many.tick", MYC_KIND_RAW, 0, "", 0), 0);
  t0 = test_now_s();
  while (atomic_load(&acks) < N && test_now_s() - t0 < 30)
    usleep(1000);
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  CHECK_EQ(atomic_load(&acks), N);
  myc_engine_free(e);
}

/* The batch's outcome against the loop's, for a bad module at 'at' and
 * another bad one further on (which a loader may reach first). */
static void same_as_one_by_one(int at, const char *module) {
  static myc_service_config scs[N];
  char err[512], loop_err[512];
  myc_engine *e = new_engine(), *one = new_engine();
  int rc, loop_rc = 0, i;
  configs(scs, at, module);
  scs[N - 3].module = bad; /* later, and a failure too */
  rc = myc_engine_add_services(e, scs, N, err, sizeof err);
  for (i = 0; i < N && loop_rc == 0; i++)
    loop_rc = myc_engine_add_service(one, &scs[i], loop_err, sizeof loop_err);
  CHECK(rc < 0);
  CHECK_EQ(rc, loop_rc);
  CHECK_STR(err, loop_err);
  CHECK(strstr(err, names[at]) != NULL);
  CHECK_EQ(myc_engine_service_count(e), (uint32_t)at + 1);
  CHECK_EQ(myc_engine_service_count(one), (uint32_t)at + 1);
  CHECK(myc__engine_find(e, names[at - 1], strlen(names[at - 1])) != NULL);
  CHECK(myc__engine_find(e, names[at], strlen(names[at])) == NULL);
  CHECK(myc__engine_find(e, names[N - 1], strlen(names[N - 1])) == NULL);
  myc_engine_free(e);
  myc_engine_free(one);
}

static void a_syntax_error_is_the_first_failure_with_its_file_and_line(void) {
  char err[512];
  myc_engine *e = new_engine();
  static myc_service_config scs[N];
  same_as_one_by_one(N / 3, bad);
  configs(scs, N / 3, bad);
  CHECK(myc_engine_add_services(e, scs, N, err, sizeof err) == MYC_ELUA);
  CHECK(strstr(err, "bad.lua:") != NULL && strstr(err, "svc") != NULL);
  myc_engine_free(e);
}

static void a_raising_or_missing_module_is_reported_as_one_by_one(void) {
  same_as_one_by_one(N / 2, raises);
  same_as_one_by_one(5, "/nonexistent/mod.lua");
}

static void bad_names_budgets_and_duplicates_stop_it_in_order(void) {
  static myc_service_config scs[N];
  char err[512];
  myc_engine *e = new_engine();
  configs(scs, -1, NULL);
  scs[20].name = names[7]; /* given twice: the second place fails */
  scs[30].memory_limit_mb = -5;
  CHECK_EQ(myc_engine_add_services(e, scs, N, err, sizeof err), MYC_EEXIST);
  CHECK_STR(err, "service 'svc7' is defined twice");
  CHECK_EQ(myc_engine_service_count(e), 21);
  myc_engine_free(e);
  e = new_engine();
  configs(scs, 10, bad);
  scs[4].memory_limit_mb = -5;
  CHECK_EQ(myc_engine_add_services(e, scs, N, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "svc4") != NULL && strstr(err, "memory_limit_mb"));
  CHECK_EQ(myc_engine_service_count(e), 5);
  CHECK_EQ(myc_engine_add_services(e, NULL, 3, err, sizeof err), MYC_EINVAL);
  CHECK_EQ(myc_engine_add_services(e, NULL, 0, err, sizeof err), 0);
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"every_service_is_added_in_order_and_runs",
       every_service_is_added_in_order_and_runs},
      {"a_syntax_error_is_the_first_failure_with_its_file_and_line",
       a_syntax_error_is_the_first_failure_with_its_file_and_line},
      {"a_raising_or_missing_module_is_reported_as_one_by_one",
       a_raising_or_missing_module_is_reported_as_one_by_one},
      {"bad_names_budgets_and_duplicates_stop_it_in_order",
       bad_names_budgets_and_duplicates_stop_it_in_order},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  good = test_module(tmpdir, "good.lua",
                     "return { handlers = { ['many.tick'] = function(ctx)\n"
                     "  ctx:emit('many.ack', 'ok')\n"
                     "end } }\n");
  bad = test_module(tmpdir, "bad.lua", "local x = 1\nreturn {{{\n");
  raises = test_module(tmpdir, "raises.lua", "error('no config here')\n");
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
