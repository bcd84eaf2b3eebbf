/* emit_test.c -- what a service may emit on: '$' topics are the
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

typedef struct {
  int n;
  size_t len;
  uint8_t data[128];
  char topic[160];
} data_seen;

static void on_data(void *ud, const myc_message *m) {
  data_seen *d = ud;
  d->n++;
  d->len = m->len < sizeof d->data ? m->len : sizeof d->data;
  memcpy(d->data, m->data, d->len);
  snprintf(d->topic, sizeof d->topic, "%.*s", (int)m->topic_len, m->topic);
}

/* A manual one-worker engine, started, running the Lua service 'name'
 * (module 'src', written to 'path') and a C service "watch" that sees
 * every message into 'seen'.  Returns the Lua service with the engine in
 * '*out', or NULL. */
static myc_service *watched_engine(const char *name, const char *src,
                                   data_seen *seen, char path[512],
                                   myc_engine **out) {
  myc_service_config sc;
  myc_engine *e;
  char err[512], file[300];
  snprintf(file, sizeof file, "%s.lua", name);
  snprintf(path, 512, "%s", test_module(tmpdir, file, src));
  if ((*out = e = test_manual_engine()) == NULL)
    return NULL;
  memset(&sc, 0, sizeof sc);
  sc.name = name;
  sc.module = path;
  sc.worker = -1;
  if (myc_engine_add_service(e, &sc, err, sizeof err) != 0 ||
      myc_engine_add_c_service(e, "watch", "*", on_data, seen, -1) != 0 ||
      myc_engine_start(e, err, sizeof err) != 0)
    return NULL;
  return myc__engine_find(e, name, strlen(name));
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v) {
  size_t i;
  for (i = 0; i < n; i++)
    if (p[i] != v)
      return 0;
  return 1;
}

/* ctx:new's buffers (issue 13): after a first typed emit they are sized
 * by the tails the service has used, so a 96-byte message comes from the
 * first size class (the pool's inline fast path) instead of the 1 KiB
 * one; a recycled buffer's payload is zeroed although its header is not;
 * a topic longer than the room kept still goes out whole. */
static void typed_buffers_come_from_the_first_class(void) {
  static const char src[] = "return { init = function() end }\n";
  char long_topic[101];
  myc_engine *e;
  myc_service *s;
  data_seen seen;
  uint8_t junk[96];
  char path[512];
  int64_t t, tl;
  myc_buf *b;
  int i;

  memset(&seen, 0, sizeof seen);
  memset(junk, 0xAB, sizeof junk);
  memset(long_topic, 'x', 100);
  long_topic[100] = '\0';
  s = watched_engine("prod", src, &seen, path, &e);
  if (s == NULL)
    myc_engine_free(e);
  CHECK(s != NULL);
  t = myc_ffi_topic(s, "t", 1);
  tl = myc_ffi_topic(s, long_topic, 100);
  CHECK(t >= 0 && tl >= 0);
  /* Dirty buffers of the first class go back to the pool. */
  for (i = 0; i < 4; i++)
    CHECK_EQ(myc_ffi_emit(s, (uint32_t)t, MYC_KIND_RAW, 0, junk, 96), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen.n, 4);

  b = myc_ffi_buf_new(s, 96);
  CHECK(b != NULL);
  memset(myc__buf_payload(b), 0x11, 96);
  CHECK_EQ(myc_ffi_emit_buf(s, (uint32_t)t, b, MYC_KIND_TYPED, 7), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen.n, 5);
  CHECK(seen.len == 96 && all_bytes(seen.data, 96, 0x11));

  b = myc_ffi_buf_new(s, 96);
  CHECK(b != NULL);
  CHECK_EQ(b->size_class, 0);
  CHECK(all_bytes(myc__buf_payload(b), 96, 0));
  CHECK_EQ(myc_ffi_emit_buf(s, (uint32_t)tl, b, MYC_KIND_TYPED, 7), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen.n, 6);
  CHECK_STR(seen.topic, long_topic);
  CHECK(seen.len == 96 && all_bytes(seen.data, 96, 0));
  /* The long topic is remembered: no more regrowing for it. */
  b = myc_ffi_buf_new(s, 96);
  CHECK(b != NULL);
  CHECK(b->cap >= myc__frame_len(96, 100, 4));
  myc_ffi_buf_release(s, b);
  myc_engine_free(e);
  remove(path);
}

/* Whether ctx:new's inline path (mycelium.contract) would take a
 * first-class buffer for a payload of 'size': its test on the view. */
static int inline_fits(const myc_service *s, size_t size) {
  return (int64_t)((size + 7) & ~(size_t)7) <= s->view.small_room;
}

/* For every payload size up to 200, the view's small_room says "inline"
 * exactly when the C path hands out a first-class buffer: the two paths
 * agree on which messages they serve. */
static void check_room_agrees(myc_service *s) {
  size_t size;
  for (size = 0; size <= 200; size++) {
    myc_buf *b = myc_ffi_buf_new(s, size);
    CHECK(b != NULL);
    CHECK_EQ(b->size_class == 0, inline_fits(s, size));
    myc_ffi_buf_release(s, b);
  }
}

/* ctx:new's inline path reads the worker's first-class free list through
 * the service's view: where it is is set when the service is made, which
 * payloads fit is published by the C path (0 before the first ctx:new,
 * updated when a longer topic is emitted), which also refills an empty
 * list so that the next messages find buffers there. */
static void typed_inline_path_view(void) {
  static const char src[] = "return { init = function() end }\n";
  char long_topic[101];
  myc_engine *e;
  myc_service *s;
  myc__pool *pool;
  data_seen seen;
  char path[512];
  int32_t room;
  int64_t tl;
  myc_buf *b;

  memset(&seen, 0, sizeof seen);
  memset(long_topic, 'y', 100);
  long_topic[100] = '\0';
  s = watched_engine("inl", src, &seen, path, &e);
  if (s == NULL)
    myc_engine_free(e);
  CHECK(s != NULL);
  pool = &myc__service_worker(s)->pool;
  /* The free list is known from the start (ctx:new reads it once), the
   * room only after the first ctx:new. */
  CHECK_EQ(s->view.small_room, 0);
  CHECK(s->view.small_free == &pool->free[0]);
  CHECK(s->view.small_nfree == &pool->nfree[0]);

  /* The list is empty: the C path allocates, and leaves more behind. */
  CHECK(pool->free[0] == NULL);
  b = myc_ffi_buf_new(s, 16);
  CHECK(b != NULL);
  CHECK(s->view.small_free == &pool->free[0]);
  CHECK(s->view.small_nfree == &pool->nfree[0]);
  CHECK(pool->free[0] != NULL && pool->nfree[0] > 1);
  CHECK(s->view.small_room >= 16);
  myc_ffi_buf_release(s, b);
  check_room_agrees(s);

  /* A longer topic shrinks the room at once, still in step with C. */
  room = s->view.small_room;
  tl = myc_ffi_topic(s, long_topic, 100);
  CHECK(tl >= 0);
  b = myc_ffi_buf_new(s, 8);
  CHECK(b != NULL);
  CHECK_EQ(myc_ffi_emit_buf(s, (uint32_t)tl, b, MYC_KIND_TYPED, 7), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen.n, 1);
  CHECK(s->view.small_room < room);
  check_room_agrees(s);
  myc_engine_free(e);
  remove(path);
}

/* A fan-out's deliveries follow the subscriber list as it changes: the
 * emitting service keeps them grouped per version of the topic's list
 * (emit.c), and a subscription added or removed between two emits must
 * be seen by the second.  Fails if the kept grouping outlives a change:
 * the new subscriber would get nothing, the one that left one more. */
static void fan_out_follows_subscription_changes(void) {
  static const char src[] = "return { init = function() end }\n";
  myc_service_config sc;
  myc_engine *e;
  myc_service *s, *a, *c;
  data_seen seen[4];
  char path[512], err[512];
  int64_t id;
  int i;
  memset(seen, 0, sizeof seen);
  snprintf(path, sizeof path, "%s", test_module(tmpdir, "pub.lua", src));
  e = test_manual_engine();
  CHECK(e != NULL);
  memset(&sc, 0, sizeof sc);
  sc.name = "pub";
  sc.module = path;
  sc.worker = -1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "watch", "*", on_data, &seen[0], -1),
           0);
  CHECK_EQ(myc_engine_add_c_service(e, "a", "t", on_data, &seen[1], -1), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "b", "t", on_data, &seen[2], -1), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "c", "u", on_data, &seen[3], -1), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  s = myc__engine_find(e, "pub", 3);
  CHECK(s != NULL);
  a = myc__engine_find(e, "a", 1);
  c = myc__engine_find(e, "c", 1);
  CHECK(a != NULL && c != NULL);
  id = myc_ffi_topic(s, "t", 1);
  CHECK(id > 0);
  for (i = 0; i < 2; i++)
    CHECK_EQ(myc_ffi_emit(s, (uint32_t)id, MYC_KIND_RAW, 0, "x", 1), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen[0].n, 2); /* "watch" subscribes to everything */
  CHECK_EQ(seen[1].n, 2);
  CHECK_EQ(seen[2].n, 2);
  CHECK_EQ(seen[3].n, 0);
  /* In place (the list has room) and then by a new list: both seen. */
  CHECK_EQ(myc__topics_subscribe(&e->topics, c, "t", 1), 0);
  CHECK_EQ(myc_ffi_emit(s, (uint32_t)id, MYC_KIND_RAW, 0, "y", 1), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen[3].n, 1);
  CHECK_EQ(seen[1].n, 3);
  CHECK_EQ(myc__topics_unsubscribe(&e->topics, a, "t", 1), 0);
  CHECK_EQ(myc_ffi_emit(s, (uint32_t)id, MYC_KIND_RAW, 0, "z", 1), 0);
  CHECK(myc_engine_run_once(e, 0) >= 0);
  CHECK_EQ(seen[1].n, 3);
  CHECK_EQ(seen[2].n, 4);
  CHECK_EQ(seen[3].n, 2);
  CHECK_EQ(seen[0].n, 4);
  CHECK_STR(seen[3].topic, "t");
  CHECK_EQ(seen[3].len, 1);
  CHECK_EQ(seen[3].data[0], 'z');
  myc_engine_free(e);
  remove(path);
}

int main(void) {
  static const test_case cases[] = {
      {"ctx:new's inline path: the view agrees with the C path",
       typed_inline_path_view},
      {"a fan-out follows subscription changes",
       fan_out_follows_subscription_changes},
      {"services cannot emit on engine topics",
       services_cannot_emit_on_engine_topics},
      {"typed buffers come from the first class",
       typed_buffers_come_from_the_first_class},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  rmdir(tmpdir);
  return rc;
}
