/* request_test.c -- request/reply through every outcome in a loop (a
 * reply, a timeout on the virtual clock, no responder, a responder that
 * crashes on the request, a requester restarted or reloaded with
 * requests pending), on a manual engine.  Under ASan (the asan label) the
 * loop proves that no path leaks a frame or a pending request. */
#include "test.h"
#include "test_engine.h"

#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_request_test_XXXXXX";
static char client_path[512];

enum { O_REPLY, O_TIMEOUT, O_NO_RESPONDER, O_FAILED, O_OTHER, O_N };

typedef struct {
  int n[O_N];
} outcomes;

static void on_out(void *ud, const myc_message *m) {
  outcomes *o = ud;
  static const char *names[] = {"reply", "timeout", "no_responder",
                                "failed"};
  int i;
  for (i = 0; i < O_OTHER; i++)
    if (m->len == strlen(names[i]) && memcmp(m->data, names[i], m->len) == 0)
      break;
  o->n[i]++;
}

static const char *server_src =
    "return { handlers = {\n"
    "  ['q.echo'] = function(ctx, msg) ctx:reply(msg, msg.data) end,\n"
    "  ['q.hold'] = function(ctx, msg) end,\n"
    "  ['q.crash'] = function(ctx, msg) error('crash on request') end } }\n";

/* "go" names the topic; the callback form alternates with the coroutine
 * form.  "die" crashes the requester. */
static const char *client_src =
    "local n = 0\n"
    "local M = { subscribe = { 'go', 'die' } }\n"
    "function M.on_message(ctx, msg)\n"
    "  if msg.topic == 'die' then error('requester dies') end\n"
    "  local t = msg.data\n"
    "  n = n + 1\n"
    "  local function show(r, why) ctx:emit('out', r and 'reply' or why) end\n"
    "  if n % 2 == 0 then\n"
    "    ctx:request(t, 'x', { timeout_ms = 50 }, show)\n"
    "  else\n"
    "    ctx:fork(function()\n"
    "      show(ctx:request(t, 'x', { timeout_ms = 50 }))\n"
    "    end)\n"
    "  end\n"
    "end\n"
    "return M\n";

static int add_lua(myc_engine *e, const char *name, const char *path) {
  myc_service_config sc;
  char err[512];
  memset(&sc, 0, sizeof sc);
  sc.name = name;
  sc.module = path;
  if (myc_engine_add_service(e, &sc, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

static void go(myc_engine *e, const char *topic) {
  myc_publish(e, "go", MYC_KIND_RAW, 0, topic, strlen(topic));
}

static uint64_t dropped(myc_engine *e) {
  myc_service_stats st;
  return test_service_stats(e, "client", &st) == 0 ? st.requests_dropped
                                                   : UINT64_MAX;
}

static void every_outcome_in_a_loop(void) {
  myc_engine_config cfg;
  myc_engine *e;
  outcomes o;
  char err[512];
  int round, rounds = 20;
  myc_engine_config_init(&cfg);
  cfg.manual = 1;
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  /* Crashes every round: restarts must neither wait nor give up, and a
   * reloaded requester that crashes is not rolled back. */
  cfg.supervisor.backoff_initial_ms = cfg.supervisor.backoff_max_ms = 1;
  cfg.supervisor.jitter = 0;
  cfg.supervisor.max_restarts = 100000;
  cfg.supervisor.reload_probation_s = 0;
  memset(&o, 0, sizeof o);
  CHECK(myc_engine_new(&e, &cfg) == 0);
  CHECK(add_lua(e, "server",
                test_module(tmpdir, "server.lua", server_src)) == 0);
  CHECK(add_lua(e, "client", client_path) == 0);
  CHECK(myc_engine_add_c_service(e, "sink", "out", on_out, &o, 0) == 0);
  CHECK(myc_engine_start(e, err, sizeof err) == 0);
  for (round = 0; round < rounds; round++) {
    go(e, "q.echo");
    go(e, "q.echo");
    go(e, "q.nobody");
    go(e, "q.crash");
    go(e, "q.hold");
    go(e, "q.hold");
    myc_engine_run_once(e, 0);
    myc_engine_advance(e, 50); /* the two held requests time out */
    myc_engine_run_once(e, 0);
    /* Pending requests dropped: by a crash of the requester (restarted
     * after its backoff), then by a reload. */
    go(e, "q.hold");
    myc_engine_run_once(e, 0);
    myc_publish(e, "die", MYC_KIND_RAW, 0, "", 0);
    myc_engine_run_once(e, 0);
    myc_engine_advance(e, 1000);
    myc_engine_run_once(e, 0);
    go(e, "q.hold");
    myc_engine_run_once(e, 0);
    CHECK(myc_engine_reload(e, "client", NULL, err, sizeof err) == 0);
    myc_engine_run_once(e, 0);
    myc_engine_advance(e, 100); /* nothing times out: nobody waits */
    myc_engine_run_once(e, 0);
  }
  CHECK_EQ(o.n[O_REPLY], 2 * rounds);
  CHECK_EQ(o.n[O_TIMEOUT], 2 * rounds);
  CHECK_EQ(o.n[O_NO_RESPONDER], rounds);
  CHECK_EQ(o.n[O_FAILED], rounds);
  CHECK_EQ(o.n[O_OTHER], 0);
  CHECK_EQ(dropped(e), 2 * rounds);
  myc_engine_free(e);
}

int main(void) {
  static const test_case cases[] = {
      {"every_outcome_in_a_loop", every_outcome_in_a_loop}, {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  snprintf(client_path, sizeof client_path, "%s",
           test_module(tmpdir, "client.lua", client_src));
  rc = run_tests(cases);
  unlink(client_path);
  {
    char p[600];
    snprintf(p, sizeof p, "%s/server.lua", tmpdir);
    unlink(p);
  }
  rmdir(tmpdir);
  return rc;
}
