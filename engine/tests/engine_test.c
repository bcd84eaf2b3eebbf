/* engine_test.c -- whole engines: threads, cross-worker delivery, the stop
 * sequence, C subscribers, and allocation failures end to end. */
#include "test.h"
#include "test_engine.h"

#include "mycelium.h"

#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_engine_test_XXXXXX";

static const char *write_module(const char *name, const char *src) {
  static char path[256];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  f = fopen(path, "w");
  fputs(src, f);
  fclose(f);
  return path;
}

typedef struct {
  _Atomic uint64_t count;
  _Atomic uint64_t out_of_order;
  uint64_t last_seq;
  myc_engine *stop_engine;
  uint64_t stop_at;
} counter;

static void count_cb(void *ud, const myc_message *m) {
  counter *c = ud;
  uint64_t n = atomic_fetch_add(&c->count, 1) + 1;
  /* per-source order: seq counts every emit of the source (all topics),
   * so it must only grow */
  if (m->seq <= c->last_seq)
    atomic_fetch_add(&c->out_of_order, 1);
  c->last_seq = m->seq;
  if (c->stop_engine != NULL && n == c->stop_at)
    myc_engine_stop(c->stop_engine, 5);
}

static const char producer_src[] =
    "local M = { subscribe = { 'go' } }\n"
    "local sent, total, pub = 0, 0\n"
    "function M.init(ctx, opts)\n"
    "  total = opts.total\n"
    "  pub = ctx:publisher('data')\n"
    "  ctx:emit('go', '')\n"
    "end\n"
    "local function resume(ctx) ctx:emit('go', '') end\n"
    "function M.on_message(ctx, msg)\n"
    "  if ctx:pressure('data') > 0.5 then return ctx:after(1, resume) end\n"
    "  for i = 1, 1000 do\n"
    "    if sent == total then return end\n"
    "    sent = sent + 1\n"
    "    pub(string.rep('x', 64))\n"
    "  end\n"
    "  ctx:emit('go', '')\n"
    "end\n"
    "return M\n";

static const char lua_consumer_src[] =
    "local M = { subscribe = { 'data' } }\n"
    "local n = 0\n"
    "function M.on_message(ctx, msg)\n"
    "  n = n + 1\n"
    "  if n == ctx.opts.total then ctx:emit('lua.done', tostring(n)) end\n"
    "end\n"
    "return M\n";

/* opts = {total = N} as MessagePack: fixmap(1) "total" uint32 */
static size_t pack_total(unsigned char *buf, uint32_t n) {
  buf[0] = 0x81;
  buf[1] = 0xa5;
  memcpy(buf + 2, "total", 5);
  buf[7] = 0xce;
  buf[8] = (unsigned char)(n >> 24);
  buf[9] = (unsigned char)(n >> 16);
  buf[10] = (unsigned char)(n >> 8);
  buf[11] = (unsigned char)n;
  return 12;
}

static void cross_worker_delivery_is_complete_and_ordered(void) {
  const uint32_t total = 200000;
  myc_engine_config cfg;
  myc_engine *e;
  counter c_data = {0}, c_done = {0};
  unsigned char opts[16];
  myc_service_config sc = {0};
  char err[512];
  char prod_path[256], cons_path[256];
  myc_service_stats st;

  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  strcpy(prod_path, write_module("producer.lua", producer_src));
  strcpy(cons_path, write_module("consumer.lua", lua_consumer_src));
  sc.opts = opts;
  sc.opts_len = pack_total(opts, total);
  sc.name = "producer";
  sc.module = prod_path;
  sc.worker = 0;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  sc.name = "lua_consumer";
  sc.module = cons_path;
  sc.worker = 0;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "c_consumer", "data", count_cb, &c_data, 1), 0);
  c_done.stop_engine = e;
  c_done.stop_at = 1;
  CHECK_EQ(myc_engine_add_c_service(e, "done", "lua.done", count_cb, &c_done, 1), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_engine_run(e, 0), 5);
  /* the stop came from the Lua consumer's last message; the C consumer on
   * the other worker must have everything too once drained */
  myc_engine_service_stats(e, 2, &st);
  myc_engine_free(e);
  CHECK_EQ(st.dropped, 0);
  CHECK_EQ(atomic_load(&c_data.count), total);
  CHECK_EQ(atomic_load(&c_data.out_of_order), 0);
  CHECK_EQ(atomic_load(&c_done.count), 1);
}

static void slow_cb(void *ud, const myc_message *m) {
  count_cb(ud, m);
  usleep(20);
}

/* A producer flooding a slow consumer on another worker: the sender
 * refuses once two mailboxes' worth are in transit, so memory stays
 * bounded, and every message is handled or counted. */
static void cross_worker_flood_is_bounded_and_counted(void) {
  const uint32_t total = 20000;
  myc_engine_config cfg;
  myc_engine *e;
  counter c = {0};
  unsigned char opts[16];
  myc_service_config sc = {0};
  myc_mailbox_config small = {64, MYC_POLICY_DROP_OLDEST, 0.8, 0, 0};
  myc_service_stats st;
  char err[512], path[256];
  static const char flood_src[] =
      "local M = { subscribe = { 'go' } }\n"
      "local sent, total = 0\n"
      "function M.init(ctx, opts) total = opts.total ctx:emit('go', '') end\n"
      "function M.on_message(ctx)\n"
      "  for i = 1, 1000 do sent = sent + 1 ctx:emit('data', 'x') end\n"
      "  if sent < total then ctx:emit('go', '') end\n"
      "end\n"
      "return M\n";

  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.mailbox = small;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  strcpy(path, write_module("flood.lua", flood_src));
  sc.opts = opts;
  sc.opts_len = pack_total(opts, total);
  sc.name = "flood";
  sc.module = path;
  sc.worker = 0;
  sc.mailbox = NULL;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "slow", "data", slow_cb, &c, 1), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  /* Stops once the sender has refused some: polled, for up to 30 s on a
   * loaded machine, rather than a fixed time that may pass before the
   * flood has begun. */
  for (int i = 0; i < 30000; i++) {
    myc_engine_service_stats(e, 1, &st);
    if (st.dropped_newest > 0)
      break;
    usleep(1000);
  }
  myc_engine_stop(e, 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  myc_engine_service_stats(e, 1, &st);
  myc_engine_free(e);
  CHECK(st.dropped_newest > 0);
  CHECK_EQ(atomic_load(&c.count) + st.dropped, total);
  CHECK_EQ(atomic_load(&c.out_of_order), 0);
}

static void stop_drains_accepted_messages(void) {
  myc_engine_config cfg;
  myc_engine *e;
  counter c = {0};
  char err[512];
  int i;
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "in.*", count_cb, &c, 1), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  for (i = 0; i < 5000; i++)
    CHECK_EQ(myc_publish(e, "in.x", MYC_KIND_RAW, 0, "abc", 3), 0);
  myc_engine_stop(e, 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  CHECK_EQ(atomic_load(&c.count), 5000);
  myc_engine_free(e);
}

static void free_without_run_stops_the_threads(void) {
  myc_engine_config cfg;
  myc_engine *e;
  counter c = {0};
  myc_engine_config_init(&cfg);
  cfg.workers = 3;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "*", count_cb, &c, 2), 0);
  CHECK_EQ(myc_engine_start(e, NULL, 0), 0);
  CHECK_EQ(myc_publish(e, "x", MYC_KIND_RAW, 0, "", 0), 0);
  myc_engine_free(e);
  CHECK_EQ(atomic_load(&c.count), 1);
}

static void bad_arguments_are_refused(void) {
  myc_engine_config cfg;
  myc_engine *e;
  counter c = {0};
  char err[256];
  myc_service_config sc = {0};
  myc_engine_config_init(&cfg);
  cfg.workers = 500;
  CHECK_EQ(myc_engine_new(&e, &cfg), MYC_EINVAL);
  CHECK(e == NULL);
  myc_engine_config_init(&cfg);
  cfg.mailbox.threshold = 2;
  CHECK_EQ(myc_engine_new(&e, &cfg), MYC_EINVAL);
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "a", "bad..topic", count_cb, &c, -1), MYC_ETOPIC);
  CHECK_EQ(myc_engine_add_c_service(e, "a", "ok", count_cb, &c, 9), MYC_EINVAL);
  CHECK_EQ(myc_engine_add_c_service(e, "a", "ok", count_cb, &c, -1), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "a", "ok", count_cb, &c, -1), MYC_EEXIST);
  sc.name = "b";
  sc.module = "/nonexistent.lua";
  sc.worker = -1;
  CHECK(myc_engine_add_service(e, &sc, err, sizeof err) < 0);
  CHECK(strstr(err, "service 'b'") != NULL);
  CHECK_EQ(myc_engine_service_count(e), 1);
  CHECK_EQ(myc_publish(e, "bad topic", MYC_KIND_RAW, 0, "", 0), MYC_ETOPIC);
  CHECK_EQ(myc_engine_run(e, 0), MYC_ESTATE);
  CHECK_STR(myc_err_name(MYC_EFULL), "EFULL");
  CHECK_STR(myc_strerror(MYC_EFULL), "mailbox full");
  CHECK_STR(myc_err_name(-2), "ENOENT"); /* libuv / errno codes pass through */
  myc_engine_free(e);
}

typedef struct {
  int calls, kind;
  uint16_t type;
  size_t len;
  uint32_t n;
} typed_seen;

static void typed_cb(void *ud, const myc_message *m) {
  typed_seen *t = ud;
  t->calls++;
  t->kind = m->kind;
  t->type = m->type;
  t->len = m->len;
  if (m->len >= 4)
    memcpy(&t->n, m->data, 4);
}

static const char tick_yaml[] = "schema: {id: 7, version: 1}\n"
                                "messages:\n"
                                "  Tick:\n"
                                "    tlv_type: 1000\n"
                                "    fields:\n"
                                "      n: {type: u32, validation: [{min: 1}]}\n"
                                "      flag: {type: bool}\n";

static myc_engine *tick_engine(int validate, typed_seen *seen) {
  myc_engine_config cfg;
  myc_contract_set *cs;
  myc_engine *e;
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  if (myc_engine_new(&e, &cfg) != 0)
    return NULL;
  if (myc_contract_load_string(&cs, "tick.yaml", tick_yaml,
                               sizeof tick_yaml - 1, NULL, NULL) != 0 ||
      myc_engine_set_contracts(e, cs, validate) != 0 ||
      myc_engine_add_c_service(e, "sink", "t", typed_cb, seen, -1) != 0 ||
      myc_engine_start(e, NULL, 0) != 0) {
    myc_engine_free(e);
    return NULL;
  }
  return e;
}

/* A C publisher fills a payload through the field offsets; the engine
 * refuses what does not match its contracts before sending anything. */
static void typed_publish_checks_the_contracts(void) {
  typed_seen seen = {0};
  myc_engine *e = tick_engine(1, &seen);
  const myc_contract_type *t;
  const myc_contract_field *f;
  uint8_t payload[8] = {0};
  uint32_t n = 42;

  CHECK(e != NULL);
  t = myc_contract_type_by_name(myc_engine_contracts(e), "Tick");
  CHECK(t != NULL);
  CHECK_EQ(myc_contract_type_size(t), 5);
  f = myc_contract_field_at(t, (size_t)myc_contract_field_index(t, "n"));
  memcpy(payload + f->offset, &n, sizeof n);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, payload, 5), 0);
  myc_engine_run_once(e, 0);
  CHECK_EQ(seen.calls, 1);
  CHECK_EQ(seen.kind, MYC_KIND_TYPED);
  CHECK_EQ(seen.type, 1000);
  CHECK_EQ(seen.len, 5);
  CHECK_EQ(seen.n, 42);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1001, payload, 5),
           MYC_ECONTRACT);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, payload, 4), MYC_EINVAL);
  payload[4] = 2; /* a bool byte other than 0 or 1 */
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, payload, 5),
           MYC_ECONTRACT);
  memset(payload, 0, sizeof payload); /* n = 0 violates min 1 */
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, payload, 5),
           MYC_ECONTRACT);
  myc_engine_run_once(e, 0);
  CHECK_EQ(seen.calls, 1);
  myc_engine_free(e);

  /* validate = false skips the rules, not the tag and size checks */
  memset(&seen, 0, sizeof seen);
  e = tick_engine(0, &seen);
  CHECK(e != NULL);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, payload, 5), 0);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1001, payload, 5),
           MYC_ECONTRACT);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, payload, 6), MYC_EINVAL);
  myc_engine_run_once(e, 0);
  CHECK_EQ(seen.calls, 1);
  myc_engine_free(e);
}

static void set_contracts_is_refused_when_too_late(void) {
  const char *mod = write_module("idle.lua", "return { init = function() end }\n");
  myc_engine_config cfg;
  myc_service_config sc = {0};
  myc_contract_set *cs, *bad;
  myc_engine *e;
  char err[256];
  typed_seen seen = {0};

  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK(myc_engine_contracts(e) == NULL);
  CHECK_EQ(myc_publish(e, "t", MYC_KIND_TYPED, 1000, "12345", 5),
           MYC_ECONTRACT);
  CHECK_EQ(myc_contract_load_string(&bad, "bad.yaml", "schema: [", 9, NULL,
                                    NULL),
           MYC_ECONTRACT);
  CHECK_EQ(myc_engine_set_contracts(e, bad, 1), MYC_EINVAL);
  myc_contract_free(bad);
  CHECK_EQ(myc_engine_set_contracts(e, NULL, 1), MYC_EINVAL);
  /* C services may come first; a Lua service may not */
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "t", typed_cb, &seen, -1), 0);
  sc.name = "idle";
  sc.module = mod;
  sc.worker = -1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_contract_load_string(&cs, "tick.yaml", tick_yaml,
                                    sizeof tick_yaml - 1, NULL, NULL),
           0);
  CHECK_EQ(myc_engine_set_contracts(e, cs, 1), MYC_ESTATE);
  myc_engine_free(e);
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_set_contracts(e, cs, 1), 0);
  CHECK(myc_engine_contracts(e) == cs);
  CHECK_STR(myc_contract_file(cs), "tick.yaml");
  CHECK_EQ(myc_engine_set_contracts(e, cs, 1), MYC_ESTATE);
  myc_engine_free(e); /* frees 'cs' */
}

/* Every engine allocation of a whole manual engine run fails in turn:
 * each failure is reported, and nothing leaks.  The Lua heaps use a
 * separate, counted hook (LuaJIT cannot survive a failure inside
 * lua_newstate; failures inside a running state are the memory limit's
 * business), which must balance too. */
static void allocation_failures_leak_nothing(void) {
  const char *mod = write_module("echo.lua",
                                 "return { subscribe = { 'in' }, on_message = "
                                 "function(ctx, m) ctx:emit('out', { m.data }) "
                                 "end }\n");
  long n;
  int succeeded = 0;
  for (n = 1; !succeeded; n++) {
    failing_alloc fa = {n, 0, 0}, lua = {0, 0, 0};
    myc_engine_config cfg;
    myc_service_config sc = {0};
    myc_engine *e;
    counter c = {0};
    char err[512];
    myc_engine_config_init(&cfg);
    cfg.manual = 1;
    cfg.alloc = failing_alloc_fn;
    cfg.alloc_ud = &fa;
    cfg.lua_alloc = failing_alloc_fn;
    cfg.lua_alloc_ud = &lua;
    cfg.log_fn = test_quiet_log;
    if (myc_engine_new(&e, &cfg) != 0) {
      CHECK_EQ(fa.live, 0);
      continue;
    }
    sc.name = "echo";
    sc.module = mod;
    sc.worker = -1;
    if (myc_engine_add_service(e, &sc, err, sizeof err) == 0 &&
        myc_engine_add_c_service(e, "sink", "out", count_cb, &c, -1) == 0 &&
        myc_engine_start(e, err, sizeof err) == 0 &&
        myc_publish(e, "in", MYC_KIND_RAW, 0, "hi", 2) == 0) {
      myc_engine_run_once(e, 0);
      succeeded = atomic_load(&c.count) == 1 && fa.count < fa.fail_at;
    }
    myc_engine_free(e);
    CHECK_EQ(fa.live, 0);
    CHECK_EQ(lua.live, 0);
  }
  CHECK(n > 10);
}

/* Messages made with ctx:new return their buffer whatever becomes of them:
 * emitted, kept across handlers, dropped, left behind by a handler that
 * failed or by a rule violation, or still held when the engine stops. */
static void typed_messages_from_lua_leak_nothing(void) {
  const char *mod = write_module(
      "typed.lua",
      "local M = { subscribe = { 'go' } }\n"
      "function M.init(ctx)\n"
      "  M.kept = ctx:new('Tick', { n = 1 })\n"
      "  ctx:new('Tick', { n = 2 })\n"
      "end\n"
      "function M.on_message(ctx, msg)\n"
      "  local d = msg.data\n"
      /* A message lives until its activation ends: the one kept from
       * init is refused, its buffer already back with the engine. */
      "  if d == 'emit' and not pcall(ctx.emit, ctx, 't', M.kept) then\n"
      "    ctx:emit('t', ctx:new('Tick', { n = 1 }))\n"
      "  end\n"
      "  if d == 'keep' then M.kept2 = ctx:new('Tick', { n = 3 }) end\n"
      "  if d == 'drop' then\n"
      "    for i = 1, 1000 do ctx:new('Tick', { n = 4 }) end\n"
      "    collectgarbage()\n"
      "  end\n"
      "  if d == 'fail' then ctx:new('Tick'); error('boom') end\n"
      "  if d == 'send' then ctx:emit('t', ctx:new('Tick', { n = 5 })) end\n"
      "  if d == 'long' then\n"
      "    ctx:emit(string.rep('x', 200), ctx:new('Tick', { n = 6 }))\n"
      "  end\n"
      "  if d == 'bad' then ctx:emit('t', ctx:new('Tick')) end\n"
      "  if d == 'stale' then ctx:emit('t', M.kept) end\n"
      "end\n"
      "return M\n");
  static const char *const steps[] = {"emit", "keep", "drop", "fail",
                                      "send", "long", "bad",  "stale"};
  char long_topic[201];
  failing_alloc fa = {0, 0, 0}, lua = {0, 0, 0};
  myc_engine_config cfg;
  myc_service_config sc = {0};
  myc_contract_set *cs;
  myc_engine *e;
  typed_seen seen = {0}, seen_long = {0};
  char err[512];
  size_t i;

  memset(long_topic, 'x', 200);
  long_topic[200] = '\0';
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.alloc = failing_alloc_fn;
  cfg.alloc_ud = &fa;
  cfg.lua_alloc = failing_alloc_fn;
  cfg.lua_alloc_ud = &lua;
  cfg.log_fn = test_quiet_log;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_contract_load_string(&cs, "tick.yaml", tick_yaml,
                                    sizeof tick_yaml - 1, failing_alloc_fn,
                                    &fa),
           0);
  CHECK_EQ(myc_engine_set_contracts(e, cs, 1), 0);
  sc.name = "typed";
  sc.module = mod;
  sc.worker = -1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "sink", "t", typed_cb, &seen, -1), 0);
  /* a topic longer than a ctx:new buffer has room for: moved, not lost */
  CHECK_EQ(myc_engine_add_c_service(e, "long", long_topic, typed_cb,
                                    &seen_long, -1),
           0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  for (i = 0; i < sizeof steps / sizeof *steps; i++) {
    CHECK_EQ(myc_publish(e, "go", MYC_KIND_RAW, 0, steps[i],
                         strlen(steps[i])),
             0);
    /* 'fail' restarts the service after its backoff */
    myc_engine_advance(e, 100);
  }
  CHECK_EQ(seen.calls, 2);
  CHECK_EQ(seen.n, 5);
  CHECK_EQ(seen_long.calls, 1);
  CHECK_EQ(seen_long.n, 6);
  myc_engine_free(e);
  CHECK_EQ(fa.live, 0);
  CHECK_EQ(lua.live, 0);

  /* An init that fails is never stopped: closing its state releases. */
  mod = write_module("initfail.lua", "return { init = function(ctx)\n"
                                     "  ctx:new('Tick'); error('no') end }\n");
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_contract_load_string(&cs, "tick.yaml", tick_yaml,
                                    sizeof tick_yaml - 1, failing_alloc_fn,
                                    &fa),
           0);
  CHECK_EQ(myc_engine_set_contracts(e, cs, 1), 0);
  sc.module = mod;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), MYC_ELUA);
  myc_engine_free(e);
  CHECK_EQ(fa.live, 0);
}

/* ---- a config file, and the engine's log --------------------------- */

typedef struct {
  char text[2048];
  int lines;
} capture;

static void capture_line(void *ud, int level, const char *line, size_t len) {
  capture *c = ud;
  size_t used = strlen(c->text);
  (void)level;
  if (used + len + 2 < sizeof c->text) {
    memcpy(c->text + used, line, len);
    c->text[used + len] = '\n';
    c->text[used + len + 1] = '\0';
  }
  c->lines++;
}

static void engine_from_a_config_file(void) {
  counter seen = {0};
  myc_engine *e;
  char err[1024], cfg[300];
  write_module("echo.lua",
               "return { subscribe = { 'in' }, on_message = function(ctx, m) "
               "ctx:emit('out', m.data .. '!') end }");
  snprintf(cfg, sizeof cfg, "%s",
           write_module("config.lua",
                        "return { node = 'filed', workers = 1,\n"
                        "  log = { level = 'warn' },\n"
                        "  services = { { name = 'echo', module = 'echo.lua' } } }"));
  CHECK_EQ(myc_engine_from_file(&e, cfg, err, sizeof err), 0);
  CHECK_EQ(myc_engine_service_count(e), 1);
  CHECK_EQ(myc_engine_add_c_service(e, "seen", "out", count_cb, &seen, 0), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_publish(e, "in", MYC_KIND_RAW, 0, "x", 1), 0);
  myc_engine_stop(e, 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  CHECK_EQ(atomic_load(&seen.count), 1);
  myc_engine_free(e);

  /* What cannot be built says which file and which key. */
  CHECK(myc_engine_from_file(&e, "/nonexistent/x.lua", err, sizeof err) != 0);
  CHECK(e == NULL);
  CHECK(strstr(err, "/nonexistent/x.lua") != NULL);
  snprintf(cfg, sizeof cfg, "%s",
           write_module("typo.lua", "return { wrkers = 2, services = {} }"));
  CHECK_EQ(myc_engine_from_file(&e, cfg, err, sizeof err), MYC_ECONFIG);
  CHECK(strstr(err, "wrkers") != NULL);
  CHECK(strstr(err, "workers") != NULL); /* the nearest key */
}

static void engine_log_goes_to_the_sink_by_level(void) {
  myc_engine_config cfg;
  myc_engine *e;
  capture c = {{0}, 0};
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.node = "n1";
  cfg.log_fn = capture_line;
  cfg.log_ud = &c;
  cfg.log_level = MYC_LOG_INFO;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  myc_engine_log(e, MYC_LOG_DEBUG, "svc", "not written");
  myc_engine_log(e, MYC_LOG_WARN, "svc", "written");
  myc_engine_log(e, MYC_LOG_ERROR, NULL, "no service");
  myc_engine_free(e);
  CHECK_EQ(c.lines, 2);
  CHECK(strstr(c.text, "not written") == NULL);
  CHECK(strstr(c.text, "WARN") != NULL && strstr(c.text, "svc") != NULL);
  CHECK(strstr(c.text, "written") != NULL);
  CHECK(strstr(c.text, "no service") != NULL);
}

/* The runtime's modules are compiled once per engine: once the first
 * service loaded host.lua, a change to the file reaches no later service
 * of that engine (they load the bytecode), but a new engine compiles it
 * again.  The runtime here is a stand-in host, in its own directory. */
static const char fake_host[] =
    "return { new = function() return {\n"
    "  dispatch = function() end, timer = function() end,\n"
    "  event = function() end, init = function() end,\n"
    "  stop = function() end, snapshot = function() end,\n"
    "  live = function() return {} end } end }\n";

static int add_named(myc_engine *e, const char *name, const char *module,
                     char *err, size_t errlen) {
  myc_service_config sc = {0};
  sc.name = name;
  sc.module = module;
  sc.worker = -1;
  return myc_engine_add_service(e, &sc, err, errlen);
}

static void runtime_modules_are_compiled_once_per_engine(void) {
  myc_engine_config cfg;
  myc_engine *e, *e2;
  char runtime[300], dir[320], err[1024], mod[300];
  snprintf(runtime, sizeof runtime, "%s/runtime", tmpdir);
  snprintf(dir, sizeof dir, "%s/mycelium", runtime);
  snprintf(mod, sizeof mod, "%s", write_module("any.lua", "return {}"));
  CHECK_EQ(mkdir(runtime, 0700), 0);
  CHECK_EQ(mkdir(dir, 0700), 0);
  write_module("runtime/mycelium/host.lua", fake_host);
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.lua_path = runtime;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(add_named(e, "first", mod, err, sizeof err), 0);
  write_module("runtime/mycelium/host.lua", "error('compiled again')");
  CHECK_EQ(add_named(e, "second", mod, err, sizeof err), 0);
  CHECK_EQ(myc_engine_new(&e2, &cfg), 0);
  CHECK(add_named(e2, "third", mod, err, sizeof err) != 0);
  CHECK(strstr(err, "compiled again") != NULL);
  myc_engine_free(e2);
  myc_engine_free(e);
}

/* The cached runtime is stripped of debug information (it was a third
 * of what the runtime's code takes in each state), but an error inside it
 * still names its file: line 0, from the first state that compiled it as
 * from the next ones that load the dump.  With MYC_JIT_LOG set it keeps
 * its lines (a trace abort must name one). */
static void runtime_error_at(const char *sub, int jit_log, const char *want) {
  myc_engine_config cfg;
  myc_engine *e;
  char runtime[64], dir[96], err[1024], mod[300], host[96];
  int i;
  snprintf(runtime, sizeof runtime, "%s/%s", tmpdir, sub);
  snprintf(dir, sizeof dir, "%s/mycelium", runtime);
  snprintf(host, sizeof host, "%s/mycelium/host.lua", sub);
  snprintf(mod, sizeof mod, "%s", write_module("any2.lua", "return {}"));
  CHECK_EQ(mkdir(runtime, 0700), 0);
  CHECK_EQ(mkdir(dir, 0700), 0);
  write_module(host, "local M = {}\n"
                     "function M.new()\n"
                     "  local t = nil\n"
                     "  return t.x\n"
                     "end\n"
                     "return M\n");
  if (jit_log)
    setenv("MYC_JIT_LOG", tmpdir, 1);
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.lua_path = runtime;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  unsetenv("MYC_JIT_LOG");
  for (i = 0; i < 2; i++) {
    CHECK(add_named(e, i ? "second" : "first", mod, err, sizeof err) != 0);
    CHECK(strstr(err, want) != NULL);
  }
  myc_engine_free(e);
}

static void runtime_errors_name_their_file_without_lines(void) {
  runtime_error_at("stripped", 0,
                   "stripped/mycelium/host.lua:0: attempt to index");
}

static void runtime_errors_name_their_line_with_a_jit_log(void) {
  runtime_error_at("lines", 1, "lines/mycelium/host.lua:4: attempt to index");
}

int main(void) {
  static const test_case cases[] = {
      {"engine_from_a_config_file", engine_from_a_config_file},
      {"engine_log_goes_to_the_sink_by_level",
       engine_log_goes_to_the_sink_by_level},
      {"cross_worker_delivery_is_complete_and_ordered",
       cross_worker_delivery_is_complete_and_ordered},
      {"cross_worker_flood_is_bounded_and_counted",
       cross_worker_flood_is_bounded_and_counted},
      {"stop_drains_accepted_messages", stop_drains_accepted_messages},
      {"free_without_run_stops_the_threads", free_without_run_stops_the_threads},
      {"bad_arguments_are_refused", bad_arguments_are_refused},
      {"allocation_failures_leak_nothing", allocation_failures_leak_nothing},
      {"typed_publish_checks_the_contracts",
       typed_publish_checks_the_contracts},
      {"set_contracts_is_refused_when_too_late",
       set_contracts_is_refused_when_too_late},
      {"typed_messages_from_lua_leak_nothing",
       typed_messages_from_lua_leak_nothing},
      {"runtime_modules_are_compiled_once_per_engine",
       runtime_modules_are_compiled_once_per_engine},
      {"runtime_errors_name_their_file_without_lines",
       runtime_errors_name_their_file_without_lines},
      {"runtime_errors_name_their_line_with_a_jit_log",
       runtime_errors_name_their_line_with_a_jit_log},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
