/* host.c -- a C program embedding Mycelium (docs/EMBEDDING.md).
 *
 * Run it from this directory: it loads greeter.lua, greeter2.lua and
 * contracts.yaml from here.  Part 1 runs the engine on threads of its
 * own, part 2 on the program's libuv loop.  Each part publishes from C,
 * receives in C, hot-reloads the Lua service and stops the engine; the
 * program exits 1 at the first surprise, so `make test` runs it as a
 * test (ctest -R example/embed).
 */
#include <msgpack.h>
#include <mycelium.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "embed_host: " __VA_ARGS__);                             \
      fputc('\n', stderr);                                                     \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* What the C service received, as "topic: text" lines. */
typedef struct {
  uv_mutex_t lock; /* part 1: the C service runs on a worker thread */
  uv_cond_t cond;
  int n;
  char got[8][128];
  uv_thread_t host; /* the main thread */
  int off_host;     /* messages handled on another thread */
  uv_timer_t *next; /* part 2: the host's next step */
} inbox;

static void step(uv_timer_t *t); /* part 2 */

/* A table payload is MessagePack: decoded here with msgpack-c. */
static void decode_alert(const myc_message *m, char *out, size_t outlen) {
  msgpack_unpacked u;
  size_t off = 0;
  uint64_t sensor = 0;
  double f = 0;
  uint32_t i;
  msgpack_unpacked_init(&u);
  if (msgpack_unpack_next(&u, (const char *)m->data, m->len, &off) ==
          MSGPACK_UNPACK_SUCCESS &&
      u.data.type == MSGPACK_OBJECT_MAP) {
    for (i = 0; i < u.data.via.map.size; i++) {
      msgpack_object k = u.data.via.map.ptr[i].key;
      msgpack_object v = u.data.via.map.ptr[i].val;
      if (k.type != MSGPACK_OBJECT_STR)
        continue;
      if (k.via.str.size == 6 && memcmp(k.via.str.ptr, "sensor", 6) == 0 &&
          v.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        sensor = v.via.u64;
      if (k.via.str.size == 10 &&
          memcmp(k.via.str.ptr, "fahrenheit", 10) == 0 &&
          v.type == MSGPACK_OBJECT_FLOAT64)
        f = v.via.f64;
    }
  }
  msgpack_unpacked_destroy(&u);
  snprintf(out, outlen, "sensor %llu at %.1f F", (unsigned long long)sensor, f);
}

/* The C service: called for every message on "out.*", on the thread of
 * the worker it was placed on.  'm' is valid during the call only. */
static void on_out(void *ud, const myc_message *m) {
  inbox *in = ud;
  char text[100];
  uv_thread_t self = uv_thread_self();
  if (m->kind == MYC_KIND_TABLE)
    decode_alert(m, text, sizeof text);
  else
    snprintf(text, sizeof text, "%.*s", (int)m->len, (const char *)m->data);
  uv_mutex_lock(&in->lock);
  if (in->n < 8)
    snprintf(in->got[in->n++], sizeof in->got[0], "%.*s: %s", (int)m->topic_len,
             m->topic, text);
  in->off_host += !uv_thread_equal(&self, &in->host);
  uv_cond_signal(&in->cond);
  uv_mutex_unlock(&in->lock);
  /* On the host's loop, the C service may use the loop's handles. */
  if (in->next != NULL)
    uv_timer_start(in->next, step, 0, 0);
}

static void inbox_init(inbox *in) {
  memset(in, 0, sizeof *in);
  uv_mutex_init(&in->lock);
  uv_cond_init(&in->cond);
  in->host = uv_thread_self();
}

static void inbox_destroy(inbox *in) {
  uv_cond_destroy(&in->cond);
  uv_mutex_destroy(&in->lock);
}

/* Waits (at most 5 s) until 'n' messages arrived. */
static void wait_for(inbox *in, int n) {
  uv_mutex_lock(&in->lock);
  while (in->n < n)
    if (uv_cond_timedwait(&in->cond, &in->lock, UINT64_C(5000000000)) != 0)
      break;
  uv_mutex_unlock(&in->lock);
  CHECK(in->n >= n, "waited for %d messages, got %d", n, in->n);
}

static void expect(inbox *in, int i, const char *line, const char *part) {
  CHECK(strcmp(in->got[i], line) == 0, "%s: message %d is \"%s\", not \"%s\"",
        part, i + 1, in->got[i], line);
  printf("%s: %s\n", part, line);
}

/* An engine with the contracts, the Lua service and the C service. */
static myc_engine *make_engine(uint32_t workers, inbox *in) {
  myc_engine_config cfg;
  myc_service_config sc;
  myc_contract_set *cs;
  myc_engine *e;
  char err[1024];
  int rc;
  myc_engine_config_init(&cfg);
  cfg.node = "embed";
  cfg.workers = workers;
  cfg.log_level = MYC_LOG_WARN;
  CHECK(myc_engine_new(&e, &cfg) == 0, "myc_engine_new failed");
  rc = myc_contract_load(&cs, "contracts.yaml", NULL, NULL);
  CHECK(rc == 0, "%s", cs ? myc_contract_error(cs, 0) : myc_strerror(rc));
  /* Before the Lua services: each gets the types when it is created. */
  CHECK(myc_engine_set_contracts(e, cs, 1) == 0, "contracts refused");
  memset(&sc, 0, sizeof sc);
  sc.name = "greeter";
  sc.module = "greeter.lua";
  sc.worker = -1; /* automatic placement */
  CHECK(myc_engine_add_service(e, &sc, err, sizeof err) == 0, "%s", err);
  rc = myc_engine_add_c_service(e, "sink", "out.*", on_out, in, -1);
  CHECK(rc == 0, "sink: %s", myc_strerror(rc));
  return e;
}

/* A typed payload: the contract type's layout, field by field. */
static int publish_reading(myc_engine *e, uint32_t sensor, double celsius) {
  const myc_contract_type *t =
      myc_contract_type_by_name(myc_engine_contracts(e), "Reading");
  const myc_contract_field *fs =
      myc_contract_field_at(t, (size_t)myc_contract_field_index(t, "sensor"));
  const myc_contract_field *fc =
      myc_contract_field_at(t, (size_t)myc_contract_field_index(t, "celsius"));
  uint8_t payload[64] = {0}; /* packed little-endian, as on x86-64 and arm64 */
  memcpy(payload + fs->offset, &sensor, sizeof sensor);
  memcpy(payload + fc->offset, &celsius, sizeof celsius);
  return myc_publish(e, "readings", MYC_KIND_TYPED, myc_contract_type_tag(t),
                     payload, myc_contract_type_size(t));
}

/* A table payload: a MessagePack map, packed with msgpack-c. */
static int publish_order(myc_engine *e, const char *item, int qty) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  int rc;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str_with_body(&pk, "item", 4);
  msgpack_pack_str_with_body(&pk, item, strlen(item));
  msgpack_pack_str_with_body(&pk, "qty", 3);
  msgpack_pack_int(&pk, qty);
  rc = myc_publish(e, "orders", MYC_KIND_TABLE, 0, sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

/* ---- part 1: the engine on its own threads ------------------------------ */

static void on_threads(void) {
  inbox in;
  myc_engine *e;
  myc_service_config sc;
  myc_service_stats st;
  char err[1024];
  int rc;

  inbox_init(&in);
  e = make_engine(2, &in);
  CHECK(myc_engine_start(e, err, sizeof err) == 0, "start: %s", err);

  CHECK(myc_publish(e, "names", MYC_KIND_RAW, 0, "Ada", 3) == 0, "raw");
  CHECK(publish_reading(e, 7, 22.0) == 0, "typed");
  CHECK(publish_order(e, "tea", 2) == 0, "table");
  /* Typed payloads are checked against the contract before they go. */
  CHECK(publish_reading(e, 0, 1.0) == MYC_ECONTRACT, "sensor 0 accepted");
  wait_for(&in, 3);
  expect(&in, 0, "out.greeting: hello Ada", "threads");
  expect(&in, 1, "out.alert: sensor 7 at 71.6 F", "threads");
  expect(&in, 2, "out.greeting: 2 x tea", "threads");

  /* Services are fixed once the engine runs. */
  memset(&sc, 0, sizeof sc);
  sc.name = "late";
  sc.module = "greeter.lua";
  sc.worker = -1;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  CHECK(rc == MYC_ESTATE && strstr(err, "before myc_engine_start()"),
        "adding a service after start: %s", myc_strerror(rc));
  printf("threads: adding a service after start: %s\n", err);

  /* Hot reload: code that does not load is refused, the running version
   * goes on; new code gets the old one's snapshot. */
  rc = myc_engine_reload(e, "greeter", "missing.lua", err, sizeof err);
  CHECK(rc != 0 && strstr(err, "missing.lua"), "reload of missing.lua: %s",
        myc_strerror(rc));
  printf("threads: reload refused: %s\n", err);
  rc = myc_engine_reload(e, "greeter", "greeter2.lua", err, sizeof err);
  CHECK(rc == 0, "reload: %s", err);
  CHECK(myc_publish(e, "names", MYC_KIND_RAW, 0, "Bob", 3) == 0, "raw");
  wait_for(&in, 4);
  expect(&in, 3, "out.greeting: hi Bob (greeting 2)", "threads");

  myc_engine_stop(e, 0);
  CHECK(myc_engine_run(e, 0) == 0, "exit code");
  CHECK(myc_engine_service_stats(e, 0, &st) == 0 && st.in == 4 && st.out == 4 &&
            st.version == 2,
        "greeter handled %llu, emitted %llu, version %u",
        (unsigned long long)st.in, (unsigned long long)st.out, st.version);
  printf("threads: stopped; greeter handled %llu messages, version %u\n",
         (unsigned long long)st.in, st.version);
  myc_engine_free(e);
  inbox_destroy(&in);
}

/* ---- part 2: worker 0 on the host's libuv loop -------------------------- */

typedef struct {
  myc_engine *e;
  inbox in;
  uv_timer_t next;
  int code;
} loop_host;

static loop_host lh;

/* The host's steps, each run from its loop once the previous answer came
 * (on_out starts 'next'): nothing here blocks or polls. */
static void step(uv_timer_t *t) {
  char err[1024];
  int rc;
  (void)t;
  if (lh.in.n == 0) {
    CHECK(myc_publish(lh.e, "names", MYC_KIND_RAW, 0, "Ada", 3) == 0, "raw");
  } else if (lh.in.n == 1) {
    /* From the loop's thread, for a service of worker 0: loaded and
     * swapped before it returns. */
    rc = myc_engine_reload(lh.e, "greeter", "greeter2.lua", err, sizeof err);
    CHECK(rc == 0, "reload: %s", err);
    CHECK(myc_publish(lh.e, "names", MYC_KIND_RAW, 0, "Bob", 3) == 0, "raw");
  } else {
    myc_engine_stop(lh.e, 7);
    uv_close((uv_handle_t *)&lh.next, NULL);
    lh.in.next = NULL;
  }
}

static void on_stopped(void *ud, int code) {
  loop_host *h = ud;
  h->code = code;
}

static void on_host_loop(void) {
  uv_loop_t loop;
  char err[1024];
  uv_loop_init(&loop);
  inbox_init(&lh.in);
  /* One worker: both services run on the loop's thread. */
  lh.e = make_engine(1, &lh.in);
  lh.code = -1;
  uv_timer_init(&loop, &lh.next);
  lh.in.next = &lh.next;
  CHECK(myc_engine_start_on_loop(lh.e, &loop, on_stopped, &lh, err,
                                 sizeof err) == 0,
        "start: %s", err);
  uv_timer_start(&lh.next, step, 0, 0);
  /* Returns once the engine stopped: it leaves nothing on the loop. */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(lh.code == 7, "on_stopped gave %d", lh.code);
  expect(&lh.in, 0, "out.greeting: hello Ada", "host loop");
  expect(&lh.in, 1, "out.greeting: hi Bob (greeting 2)", "host loop");
  CHECK(lh.in.off_host == 0, "%d messages handled off the loop's thread",
        lh.in.off_host);
  printf("host loop: every message handled on the loop's thread; "
         "stopped with code %d\n",
         lh.code);
  myc_engine_free(lh.e);
  CHECK(uv_loop_close(&loop) == 0, "handles left on the host's loop");
  inbox_destroy(&lh.in);
}

int main(void) {
  printf("mycelium %s\n", myc_version());
  on_threads();
  on_host_loop();
  return 0;
}
