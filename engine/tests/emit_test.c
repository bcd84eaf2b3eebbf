/* emit_test.c -- what a service may emit on (issue 11): '$' topics are the
 * engine's.  A service emitting on '$dead' used to forge dead letters; the
 * FFI emit now refuses it (MYC_ETOPIC), while the engine still publishes
 * a crashed handler's message there in the service's name. */
#include "test.h"

#include "test_engine.h"

#include "ffi/ffi.h"
#include "runtime/engine.h"

#include <unistd.h>

static char tmpdir[] = "/tmp/myc_emit_test_XXXXXX";

typedef struct {
  int n;
  char source[64];
} dead_seen;

static void on_dead(void *ud, const myc_message *m) {
  dead_seen *d = ud;
  d->n++;
  snprintf(d->source, sizeof d->source, "%.*s", (int)m->source_len,
           m->source);
}

static void services_cannot_emit_on_engine_topics(void) {
  static const char src[] =
      "return { subscribe = { 'in' }, on_message = function() error('boom') "
      "end }\n";
  myc_engine_config cfg;
  myc_service_config sc;
  myc_engine *e;
  myc_service *s;
  dead_seen dead = {0, ""};
  char err[512], path[512];
  int64_t id;
  myc_buf *b;

  snprintf(path, sizeof path, "%s", test_module(tmpdir, "crash.lua", src));
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.workers = 1;
  cfg.supervisor.backoff_initial_ms = 0;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  memset(&sc, 0, sizeof sc);
  sc.name = "crash";
  sc.module = path;
  sc.worker = -1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "watch", "$dead", on_dead, &dead, -1),
           0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  s = myc__engine_find(e, "crash", 5);
  CHECK(s != NULL);
  id = myc_ffi_topic(s, "$dead", 5);
  CHECK(id >= 0);
  CHECK_EQ(myc_ffi_emit(s, (uint32_t)id, MYC_KIND_RAW, 0, "forged", 6),
           MYC_ETOPIC);
  b = myc_ffi_buf_new(s, 8);
  CHECK(b != NULL);
  CHECK_EQ(myc_ffi_emit_buf(s, (uint32_t)id, b, MYC_KIND_RAW, 0), MYC_ETOPIC);
  id = myc_ffi_topic(s, "$other", 6);
  CHECK(id >= 0);
  CHECK_EQ(myc_ffi_emit(s, (uint32_t)id, MYC_KIND_RAW, 0, "x", 1), MYC_ETOPIC);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(dead.n, 0);
  /* The engine's own dead letter still goes out, from the service. */
  CHECK_EQ(myc_publish(e, "in", MYC_KIND_RAW, 0, "poison", 6), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(dead.n, 1);
  CHECK_STR(dead.source, "crash");
  myc_engine_free(e);
  remove(path);
}

int main(void) {
  static const test_case cases[] = {
      {"services cannot emit on engine topics",
       services_cannot_emit_on_engine_topics},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  rmdir(tmpdir);
  return rc;
}
