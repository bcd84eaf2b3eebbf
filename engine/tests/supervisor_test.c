/* supervisor_test.c -- supervision and hot reload on threaded engines:
 * reloads in the middle of a stream from another worker (nothing lost,
 * duplicated or reordered), status while a handler is stuck, the control
 * channel's protocol, group restarts across workers. */
#include "test.h"
#include "test_engine.h"

#include "control_client.h"

#include "mycelium.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef MYC_TEST_ASAN
#define STREAM_TOTAL 200000
#else
#define STREAM_TOTAL 1000000
#endif

static char tmpdir[] = "/tmp/myc_supervisor_test_XXXXXX";

/* opts = {total = N} as MessagePack */
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

/* ---- a reload in the middle of a stream ---------------------------------- */

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
    "  for i = 1, 500 do\n"
    "    if sent == total then return end\n"
    "    sent = sent + 1\n"
    "    pub(tostring(sent))\n"
    "  end\n"
    "  ctx:emit('go', '')\n"
    "end\n"
    "return M\n";

/* The consumer checks sequence numbers; its state crosses every reload.
 * VERSION is replaced in each file so that a reload really changes code. */
static const char consumer_src[] =
    "local M = { subscribe = { 'data' } }\n"
    "local VERSION = '%s'\n"
    "local n, expect, dup, gaps, inits = 0, 1, 0, 0, 0\n"
    "function M.init(ctx, opts, st)\n"
    "  if st then n, expect, dup, gaps, inits = st.n, st.expect, st.dup,\n"
    "    st.gaps, st.inits end\n"
    "  inits = inits + 1\n"
    "end\n"
    "function M.on_message(ctx, msg)\n"
    "  local v = tonumber(msg.data)\n"
    "  n = n + 1\n"
    "  if v < expect then dup = dup + 1\n"
    "  elseif v > expect then gaps = gaps + (v - expect) end\n"
    "  if v >= expect then expect = v + 1 end\n"
    "  if v == ctx.opts.total then\n"
    "    ctx:emit('result', string.format('%%d %%d %%d %%d %%s', n, dup, "
    "gaps,\n"
    "      inits, VERSION))\n"
    "  end\n"
    "end\n"
    "function M.snapshot(ctx)\n"
    "  return { n = n, expect = expect, dup = dup, gaps = gaps, inits = inits "
    "}\n"
    "end\n"
    "return M\n";

typedef struct {
  myc_engine *e;
  char text[128];
  _Atomic int done;
  _Atomic int reloads, refused;
  const char *paths[2];
} stream_state;

static void on_result(void *ud, const myc_message *m) {
  stream_state *st = ud;
  size_t n = m->len < sizeof st->text - 1 ? m->len : sizeof st->text - 1;
  memcpy(st->text, m->data, n);
  st->text[n] = '\0';
  atomic_store(&st->done, 1);
  myc_engine_stop(st->e, 0);
}

static void *reloader(void *arg) {
  stream_state *st = arg;
  char err[1024];
  int k = 0;
  while (!atomic_load(&st->done)) {
    int rc =
        myc_engine_reload(st->e, "consumer", st->paths[k % 2], err, sizeof err);
    if (rc == 0)
      atomic_fetch_add(&st->reloads, 1);
    else if (!atomic_load(&st->done))
      atomic_fetch_add(&st->refused, 1);
    k++;
    usleep(5000);
  }
  return NULL;
}

static void reload_mid_stream_loses_nothing(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  stream_state st;
  unsigned char opts[16];
  char src[2048], err[512];
  const char *prod;
  pthread_t th;
  long n = 0, dup = -1, gaps = -1, inits = 0;
  myc_service_stats ss;
  double t0;

  memset(&st, 0, sizeof st);
  prod = test_module(tmpdir, "producer.lua", producer_src);
  snprintf(src, sizeof src, consumer_src, "a");
  st.paths[0] = test_module(tmpdir, "consumer_a.lua", src);
  snprintf(src, sizeof src, consumer_src, "b");
  st.paths[1] = test_module(tmpdir, "consumer_b.lua", src);
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_fn = test_quiet_log;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  st.e = e;
  sc.opts = opts;
  sc.opts_len = pack_total(opts, STREAM_TOTAL);
  sc.name = "producer";
  sc.module = prod;
  sc.worker = 0;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  sc.name = "consumer";
  sc.module = st.paths[1];
  sc.worker = 1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "results", "result", on_result, &st, 0),
           0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  t0 = test_now_s();
  CHECK_EQ(pthread_create(&th, NULL, reloader, &st), 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  atomic_store(&st.done, 1);
  pthread_join(th, NULL);
  myc_engine_service_stats(e, 1, &ss);
  myc_engine_free(e);
  printf("  %d messages in %.2f s, %d reloads (%d refused), last pause "
         "%.3f ms: %s\n",
         STREAM_TOTAL, test_now_s() - t0, atomic_load(&st.reloads),
         atomic_load(&st.refused), ss.last_pause_ms, st.text);
  CHECK(sscanf(st.text, "%ld %ld %ld %ld", &n, &dup, &gaps, &inits) == 4);
  CHECK_EQ(n, STREAM_TOTAL);
  CHECK_EQ(dup, 0);
  CHECK_EQ(gaps, 0);
  CHECK_EQ(ss.dropped, 0);
  CHECK_EQ(ss.in, STREAM_TOTAL);
  CHECK(atomic_load(&st.reloads) >= 1);
  /* every successful reload ran one init in a new instance; the reloader
   * keeps going until the engine has stopped, so the reloads after the
   * consumer sent its result are not in its count */
  CHECK(inits >= 1 && inits <= 1 + (long)ss.reloads);
  CHECK_EQ(ss.reload_failures, 0);
}

/* ---- status while a handler is stuck ------------------------------------- */

/* A compiled loop the hook cannot reach (docs/SUPERVISION.md): it runs
 * until the test creates the file %s (at most 60 s, so that a failed
 * test ends), then the pending interruption ends the handler.  Only FFI
 * calls in the loop: a Lua C function would stop the compilation. */
static const char stuck_fmt[] =
    "local ffi = require 'ffi'\n"
    "ffi.cdef 'struct st_ts { long s, ns; }; "
    "int clock_gettime(int, struct st_ts *); int access(const char *, int);'\n"
    "local ts = ffi.new('struct st_ts')\n"
    "local function now() ffi.C.clock_gettime(1, ts)\n"
    "  return tonumber(ts.s) + tonumber(ts.ns) * 1e-9 end\n"
    "local flag = '%s'\n"
    "return { subscribe = { 'stuck' }, on_message = function(ctx, msg)\n"
    "  local stop, x = now() + 60, 0\n"
    "  while now() < stop and ffi.C.access(flag, 0) ~= 0 do x = x + 1 end\n"
    "end }\n";

static void status_answers_while_a_handler_is_stuck(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  myc_service_stats st;
  char err[512], sock[300], url[320], reply[8192], flag[300], src[1024];
  int seen = 0, i;
  FILE *f;

  snprintf(sock, sizeof sock, "%s/ctl.sock", tmpdir);
  snprintf(flag, sizeof flag, "%s/unstick", tmpdir);
  snprintf(src, sizeof src, stuck_fmt, flag);
  snprintf(url, sizeof url, "unix://%s", sock);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.control = url;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  sc.name = "stuck";
  sc.module = test_module(tmpdir, "stuck.lua", src);
  sc.worker = 0;
  sc.handler_timeout_ms = 100;
  /* Loading (under a sanitizer, on a busy machine) may take more than
   * the 100 ms of a handler. */
  sc.load_timeout_ms = 30000;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  CHECK_EQ(myc_publish(e, "stuck", MYC_KIND_RAW, 0, "x", 1), 0);
  /* the worker is busy until the flag exists: ask from this thread
   * meanwhile, for up to 30 s on a loaded machine */
  for (i = 0; i < 3000 && !seen; i++) {
    usleep(10000);
    myc_engine_service_stats(e, 0, &st);
    seen = strcmp(st.running, "handler stuck") == 0 && st.running_ms > 300 &&
           st.timeouts == 1;
  }
  CHECK(seen);
  CHECK(control_request(sock, "status\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "\"running\":\"handler stuck\"") != NULL);
  CHECK(strstr(reply, "\"timeouts\":1") != NULL);
  CHECK(strncmp(reply, "{\"ok\":true,\"protocol\":1,", 24) == 0);
  f = fopen(flag, "w");
  CHECK(f != NULL);
  fclose(f);
  myc_engine_stop(e, 0);
  CHECK_EQ(myc_engine_run(e, 0), 0);
  myc_engine_service_stats(e, 0, &st);
  CHECK_EQ(st.errors, 1); /* interrupted when the loop ended */
  myc_engine_free(e);
  CHECK(access(sock, F_OK) != 0); /* the socket file is removed */
}

/* ---- the control protocol
 * ---------------------------------------------------- */

typedef struct {
  myc_engine *e;
  int rc;
} runner_arg;

static void *run_engine(void *arg) {
  runner_arg *r = arg;
  r->rc = myc_engine_run(r->e, 0);
  return NULL;
}

static void control_channel_reloads_and_reports(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  char err[512], sock[300], url[320], reply[8192];
  const char *bad;
  runner_arg ra;
  pthread_t th;

  snprintf(sock, sizeof sock, "%s/ctl2.sock", tmpdir);
  snprintf(url, sizeof url, "unix://%s", sock);
  /* a stale socket file from a dead engine is replaced */
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", sock);
    CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
  }
  myc_engine_config_init(&cfg);
  cfg.workers = 2;
  cfg.log_fn = test_quiet_log;
  cfg.control = url;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  sc.name = "svc";
  sc.module = test_module(tmpdir, "svc.lua", "return { subscribe = { 'in' }, "
                                    "on_message = function() end }\n");
  sc.worker = 1;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  ra.e = e;
  CHECK_EQ(pthread_create(&th, NULL, run_engine, &ra), 0);

  CHECK(control_request(sock, "ping\n", reply, sizeof reply) > 0);
  CHECK_STR(reply, "{\"ok\":true,\"protocol\":1}\n");
  CHECK(control_request(sock, "reload svc\n", reply, sizeof reply) > 0);
  CHECK(strncmp(reply, "{\"ok\":true,\"service\":\"svc\",\"version\":2,", 39) ==
        0);
  bad = test_module(tmpdir, "bad.lua", "return {\n  on_message = function( end }\n");
  {
    char req[512];
    snprintf(req, sizeof req, "reload svc %s\n", bad);
    CHECK(control_request(sock, req, reply, sizeof reply) > 0);
  }
  CHECK(strncmp(reply, "{\"ok\":false,\"code\":\"ELUA\",\"error\":", 34) == 0);
  CHECK(strstr(reply, "bad.lua:2:") != NULL);
  CHECK(control_request(sock, "reload nope\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "\"code\":\"ENOENT\"") != NULL);
  CHECK(control_request(sock, "frobnicate\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "unknown request 'frobnicate'") != NULL);
  CHECK(control_request(sock, "status text", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "SERVICE") != NULL);
  CHECK(strstr(reply, "svc") != NULL);
  CHECK(control_request(sock, "status\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "\"name\":\"svc\",\"worker\":1,\"state\":\"running\"") !=
        NULL);
  CHECK(strstr(reply, "\"version\":2") != NULL);
  CHECK(strstr(reply, "\"reload_failures\":1") != NULL);

  /* a second engine cannot take a live socket */
  {
    myc_engine *e2;
    CHECK_EQ(myc_engine_new(&e2, &cfg), 0);
    CHECK(myc_engine_start(e2, err, sizeof err) < 0);
    CHECK(strstr(err, "cannot listen on") != NULL);
    myc_engine_free(e2);
  }
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  CHECK_EQ(ra.rc, 0);
  myc_engine_free(e);
}

/* ---- a group across workers --------------------------------------------- */

typedef struct {
  _Atomic int starts;
} starts;

static void count_start(void *ud, const myc_message *m) {
  (void)m;
  atomic_fetch_add(&((starts *)ud)->starts, 1);
}

static void one_for_all_across_workers(void) {
  myc_engine_config cfg;
  myc_engine *e;
  myc_service_config sc = {0};
  myc_service_stats st;
  starts s;
  char err[512];
  runner_arg ra;
  pthread_t th;
  const char *mod;
  int i, ok = 0;

  atomic_init(&s.starts, 0);
  mod = test_module(tmpdir, "member.lua",
                   "return { init = function(ctx) ctx:emit('started', "
                   "ctx.name) end, subscribe = { 'boom' }, on_message = "
                   "function(ctx) if ctx.name == 'a' then error('x') end "
                   "end }\n");
  myc_engine_config_init(&cfg);
  cfg.workers = 3;
  cfg.log_fn = test_quiet_log;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK_EQ(myc_engine_add_group(e, "g", MYC_ONE_FOR_ALL, NULL), 0);
  CHECK_EQ(myc_engine_add_group(e, "g", MYC_ONE_FOR_ALL, NULL), MYC_EEXIST);
  CHECK_EQ(myc_engine_add_c_service(e, "starts", "started", count_start, &s, 2),
           0);
  sc.module = mod;
  sc.group = "g";
  for (i = 0; i < 3; i++) {
    char name[2] = {(char)('a' + i), 0};
    sc.name = name;
    sc.worker = i;
    CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  }
  sc.name = "lost";
  sc.group = "nope";
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), MYC_EINVAL);
  CHECK(strstr(err, "no supervisor group 'nope'") != NULL);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  ra.e = e;
  CHECK_EQ(pthread_create(&th, NULL, run_engine, &ra), 0);
  CHECK_EQ(myc_publish(e, "boom", MYC_KIND_RAW, 0, "", 0), 0);
  for (i = 0; i < 200 && !ok; i++) {
    usleep(10000);
    ok = atomic_load(&s.starts) == 6;
  }
  CHECK(ok);
  for (i = 1; i <= 3; i++) {
    myc_engine_service_stats(e, (uint32_t)i, &st);
    CHECK_EQ(st.restarts, 1);
    CHECK_STR(st.group, "g");
  }
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  myc_engine_free(e);
}

/* ---- a reload's copy into prepared memory --------------------------------
 */

/* A state of 20 000 entries under every key type the copy carries, and a
 * digest of it that the next version recomputes from what it was given. */
static const char big_state_src[] =
    "local M = { subscribe = { 'check' } }\n"
    "local st\n"
    "local function digest(t)\n"
    "  local n, sum = 0, 0\n"
    "  for k, v in pairs(t) do\n"
    "    n = n + 1\n"
    "    local kv = type(k) == 'string' and #k or type(k) == 'number' and k\n"
    "      or (k and 7 or 3)\n"
    "    local vv = type(v) == 'table' and v.a + #v.b + (v[1] or 0)\n"
    "      or type(v) == 'string' and #v or type(v) == 'boolean' and 1 or v\n"
    "    sum = (sum + kv * 31 + vv) %% 1000000007\n"
    "  end\n"
    "  return n .. ':' .. sum .. ':' .. tostring(t[true]) .. ':' ..\n"
    "    tostring(t[false]) .. ':' .. tostring(t[0.5]) .. ':' .. t[5000].b\n"
    "end\n"
    "function M.init(ctx, opts, got)\n"
    "  if got then st = got; return end\n"
    "  st = { [true] = 'yes', [false] = 0, [0.5] = 'half' }\n"
    "  for i = 1, 10000 do\n"
    "    st[string.format('0x%%040x', i)] = i * 1.5\n"
    "    st[i] = { a = i, b = string.rep('z', i %% 50), i }\n"
    "  end\n"
    "end\n"
    "function M.on_message(ctx) ctx:emit('digest', '%s ' .. digest(st)) end\n"
    "function M.snapshot() return st end\n"
    "return M\n";

typedef struct {
  char text[2][128];
  _Atomic int n;
} digests;

/* Set on the worker's thread (by the C service below, which runs
 * there): the hook counts that thread's calls only, the swap's and not
 * the loader's, which compiles the new code and prepares its memory. */
static _Thread_local int on_worker;

typedef struct {
  _Atomic long worker_calls;
  _Atomic long long live;
} worker_alloc;

static void *worker_alloc_fn(void *ud, void *ptr, size_t osize,
                             size_t nsize) {
  worker_alloc *wa = ud;
  void *p;
  if (nsize == 0) {
    if (ptr != NULL)
      atomic_fetch_sub(&wa->live, (long long)osize);
    free(ptr);
    return NULL;
  }
  if (on_worker)
    atomic_fetch_add(&wa->worker_calls, 1);
  p = realloc(ptr, nsize);
  if (p != NULL)
    atomic_fetch_add(&wa->live,
                     (long long)nsize - (ptr ? (long long)osize : 0));
  return p;
}

static void on_digest(void *ud, const myc_message *m) {
  digests *d = ud;
  size_t n = m->len < 127 ? m->len : 127;
  int i = atomic_load(&d->n);
  on_worker = 1;
  if (i < 2) {
    memcpy(d->text[i], m->data, n);
    d->text[i][n] = '\0';
    atomic_store(&d->n, i + 1);
  }
}

static int wait_digests(digests *d, int n) {
  int i;
  for (i = 0; i < 1000 && atomic_load(&d->n) < n; i++)
    usleep(10000);
  return atomic_load(&d->n) >= n;
}

/* The state crosses the reload exactly, and the copy takes its memory
 * from the region prepared before the swap: the Lua allocation hook sees
 * about 3 000 calls from the worker during the reload (the swap, and the
 * old instance's stop right after it), not one per block copied (more
 * than 20 000). */
static void reload_copies_into_prepared_memory(void) {
  worker_alloc lua;
  myc_engine_config cfg;
  myc_service_config sc = {0};
  myc_engine *e;
  digests d;
  runner_arg ra;
  pthread_t th;
  char src[4096], err[512], path2[512];
  long before;

  memset(&d, 0, sizeof d);
  atomic_init(&lua.worker_calls, 0);
  atomic_init(&lua.live, 0);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.lua_alloc = worker_alloc_fn;
  cfg.lua_alloc_ud = &lua;
  cfg.log_fn = test_quiet_log;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  snprintf(src, sizeof src, big_state_src, "v2");
  snprintf(path2, sizeof path2, "%s", test_module(tmpdir, "big2.lua", src));
  snprintf(src, sizeof src, big_state_src, "v1");
  sc.name = "big";
  sc.module = test_module(tmpdir, "big1.lua", src);
  sc.worker = 0;
  CHECK_EQ(myc_engine_add_service(e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc_engine_add_c_service(e, "d", "digest", on_digest, &d, 0), 0);
  CHECK_EQ(myc_engine_start(e, err, sizeof err), 0);
  ra.e = e;
  ra.rc = 0;
  CHECK_EQ(pthread_create(&th, NULL, run_engine, &ra), 0);
  CHECK_EQ(myc_publish(e, "check", MYC_KIND_RAW, 0, "", 0), 0);
  CHECK(wait_digests(&d, 1));
  before = atomic_load(&lua.worker_calls);
  CHECK_EQ(myc_engine_reload(e, "big", path2, err, sizeof err), 0);
  CHECK(atomic_load(&lua.worker_calls) - before < 5000);
  CHECK_EQ(myc_publish(e, "check", MYC_KIND_RAW, 0, "", 0), 0);
  CHECK(wait_digests(&d, 2));
  myc_engine_stop(e, 0);
  pthread_join(th, NULL);
  CHECK(strncmp(d.text[0], "v1 20003:", 9) == 0);
  CHECK(strstr(d.text[0], ":yes:0:half:") != NULL);
  CHECK_STR(d.text[1] + 3, d.text[0] + 3);
  CHECK(strncmp(d.text[1], "v2 ", 3) == 0);
  myc_engine_free(e);
  CHECK_EQ(atomic_load(&lua.live), 0);
}

/* ---- allocation failures --------------------------------------------------
 */

typedef struct {
  int n;
} seen_count;

static void count_seen(void *ud, const myc_message *m) {
  (void)m;
  ((seen_count *)ud)->n++;
}

/* Every engine allocation of a run with a crash, a restart and a reload
 * fails in turn: each failure is survived or reported, and nothing leaks
 * (the Lua heaps have their own hook, which must balance too). */
static void allocation_failures_leak_nothing(void) {
  const char *v1 = test_module(tmpdir, 
      "af1.lua", "local n = 0\n"
                 "return { subscribe = { 'in' }, init = function(c, o, s)\n"
                 "  n = s and s.n or 0 end,\n"
                 "  on_message = function(ctx, m)\n"
                 "    if m.data == 'boom' then error('boom') end\n"
                 "    n = n + 1; ctx:emit('out', tostring(n)) end,\n"
                 "  snapshot = function() return { n = n } end }\n");
  const char *v2 = test_module(tmpdir, 
      "af2.lua", "local n = 0\n"
                 "return { subscribe = { 'in' }, init = function(c, o, s)\n"
                 "  n = s and s.n or 0 end,\n"
                 "  on_message = function(ctx, m)\n"
                 "    n = n + 1; ctx:emit('out', 'v2:' .. n) end }\n");
  char path2[256];
  long n;
  int done = 0;
  snprintf(path2, sizeof path2, "%s", v2);
  for (n = 1; !done; n++) {
    failing_alloc fa = {n, 0, 0}, lua = {0, 0, 0};
    myc_engine_config cfg;
    myc_service_config sc = {0};
    myc_engine *e;
    seen_count seen = {0};
    char err[512];
    myc_engine_config_init(&cfg);
    cfg.manual = 1;
    cfg.workers = 1;
    cfg.alloc = failing_alloc_fn;
    cfg.alloc_ud = &fa;
    cfg.lua_alloc = failing_alloc_fn;
    cfg.lua_alloc_ud = &lua;
    cfg.log_fn = test_quiet_log;
    cfg.supervisor.backoff_initial_ms = 0;
    if (myc_engine_new(&e, &cfg) != 0) {
      CHECK_EQ(fa.live, 0);
      continue;
    }
    sc.name = "svc";
    sc.module = v1;
    sc.worker = -1;
    if (myc_engine_add_service(e, &sc, err, sizeof err) == 0 &&
        myc_engine_add_c_service(e, "sink", "out", count_seen, &seen, -1) ==
            0 &&
        myc_engine_start(e, err, sizeof err) == 0 &&
        myc_publish(e, "in", MYC_KIND_RAW, 0, "a", 1) == 0 &&
        myc_publish(e, "in", MYC_KIND_RAW, 0, "boom", 4) == 0 &&
        myc_publish(e, "in", MYC_KIND_RAW, 0, "b", 1) == 0) {
      myc_engine_advance(e, 1);
      if (myc_engine_reload(e, "svc", path2, err, sizeof err) == 0 &&
          myc_publish(e, "in", MYC_KIND_RAW, 0, "c", 1) == 0) {
        myc_engine_advance(e, 1);
        done = seen.n == 3 && fa.count < fa.fail_at;
      }
    }
    myc_engine_free(e);
    CHECK_EQ(fa.live, 0);
    CHECK_EQ(lua.live, 0);
  }
  printf("  %ld allocations to get through\n", n - 1);
  CHECK(n > 10);
}

int main(void) {
  static const test_case cases[] = {
      {"reload_mid_stream_loses_nothing", reload_mid_stream_loses_nothing},
      {"status_answers_while_a_handler_is_stuck",
       status_answers_while_a_handler_is_stuck},
      {"control_channel_reloads_and_reports",
       control_channel_reloads_and_reports},
      {"one_for_all_across_workers", one_for_all_across_workers},
      {"reload_copies_into_prepared_memory",
       reload_copies_into_prepared_memory},
      {"allocation_failures_leak_nothing", allocation_failures_leak_nothing},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
