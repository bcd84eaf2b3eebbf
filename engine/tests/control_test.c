/* control_test.c -- the control channel against hostile or careless
 * clients: the request parser and the reply's strings alone
 * (supervise/control_proto.c), then a threaded engine's socket flooded
 * with idle connections, left waiting, and asked to reload files that are
 * not Lua, by paths with spaces, with names that are not UTF-8. */
#include "test.h"
#include "test_engine.h"

#include "mycelium.h"
#include "runtime/engine.h"
#include "supervise/control_proto.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc_control_test_XXXXXX";

/* ---- the protocol's text ------------------------------------------------ */

static int parse(const char *text, myc__ctl_request *req, char *err) {
  static char line[MYC__CTL_LINE_MAX + 1];
  size_t n = strlen(text);
  memcpy(line, text, n);
  return myc__control_parse(line, n, req, err, 512);
}

static void parses_requests(void) {
  myc__ctl_request r;
  char err[512];
  CHECK_EQ(parse("reload svc /srv/my mods/svc v2.lua", &r, err), 0);
  CHECK_EQ(r.verb, MYC__CTL_RELOAD);
  CHECK_STR(r.service, "svc");
  CHECK_STR(r.module, "/srv/my mods/svc v2.lua");
  CHECK_EQ(parse("\treload  svc\r", &r, err), 0);
  CHECK(r.module == NULL);
  CHECK_EQ(parse("status text", &r, err), 0);
  CHECK_EQ(r.verb, MYC__CTL_STATUS);
  CHECK_EQ(r.text, 1);
  CHECK_EQ(parse("status json\r", &r, err), 0);
  CHECK_EQ(r.text, 0);
  CHECK_EQ(parse("ping", &r, err), 0);
  CHECK_EQ(r.verb, MYC__CTL_PING);

  CHECK_EQ(parse("", &r, err), MYC_EINVAL);
  CHECK(strstr(err, "empty request") != NULL);
  CHECK_EQ(parse("reload", &r, err), MYC_EINVAL);
  CHECK(strstr(err, "reload takes SERVICE [MODULE]") != NULL);
  CHECK_EQ(parse("status yaml", &r, err), MYC_EINVAL);
  CHECK(strstr(err, "status takes json or text, not 'yaml'") != NULL);
  CHECK_EQ(parse("status text json", &r, err), MYC_EINVAL);
  CHECK_EQ(parse("ping pong", &r, err), MYC_EINVAL);
  CHECK(strstr(err, "ping takes no argument") != NULL);
  CHECK_EQ(parse("frobnicate now", &r, err), MYC_EINVAL);
  CHECK(strstr(err, "unknown request 'frobnicate'") != NULL);
  {
    char line[] = "reload a\0/etc/passwd";
    CHECK_EQ(myc__control_parse(line, sizeof line - 1, &r, err, sizeof err),
             MYC_EINVAL);
    CHECK(strstr(err, "NUL byte") != NULL);
  }
}

static void json_string(const char *in, char *out, size_t cap) {
  const myc__alloc a = {myc__default_alloc, NULL};
  myc__sbuf b = {&a, NULL, 0, 0, 0};
  myc__sb_json(&b, in);
  snprintf(out, cap, "%s", b.failed ? "(failed)" : b.p);
  myc__free(&a, b.p, b.cap);
}

static void replies_are_valid_json(void) {
  char out[256];
  json_string("plain \"q\" \\ \n\x01", out, sizeof out);
  CHECK_STR(out, "\"plain \\\"q\\\" \\\\ \\u000a\\u0001\"");
  json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8d\x84", out, sizeof out);
  CHECK_STR(out, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8d\x84\"");
  /* Stray, overlong, surrogate, truncated and past-U+10FFFF bytes. */
  json_string("\xff\xfe|\xc0\xaf|\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80", out,
              sizeof out);
  CHECK_STR(out, "\"\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                 "\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd\"");
  json_string(NULL, out, sizeof out);
  CHECK_STR(out, "\"\"");
}

static void reload_errors_hide_file_tokens(void) {
  char m[256];
  snprintf(m, sizeof m,
           "service 's': /etc/shadow:1: '<name>' expected near "
           "'$6$salt$hash'");
  myc__control_hide_token(m, sizeof m);
  CHECK_STR(m, "service 's': /etc/shadow:1: '<name>' expected near a token "
               "not shown");
  snprintf(m, sizeof m, "x.lua:3: unfinished string near '\"hunter2'");
  myc__control_hide_token(m, sizeof m);
  CHECK(strstr(m, "hunter2") == NULL);
  /* Keywords and the end of the file say where, not what. */
  snprintf(m, sizeof m, "x.lua:2: '=' expected near 'end'");
  myc__control_hide_token(m, sizeof m);
  CHECK_STR(m, "x.lua:2: '=' expected near 'end'");
  snprintf(m, sizeof m, "x.lua:9: 'end' expected near '<eof>'");
  myc__control_hide_token(m, sizeof m);
  CHECK_STR(m, "x.lua:9: 'end' expected near '<eof>'");
}

/* ---- a live socket ------------------------------------------------------ */

static int connect_to(const char *path) {
  struct sockaddr_un sa;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads until the engine closes or 'ms' pass.  Returns the bytes read, or
 * -1 when the connection is still open at the end. */
static int read_reply(int fd, char *reply, size_t cap, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  size_t n = 0;
  ssize_t r;
  reply[0] = '\0';
  while (n < cap - 1) {
    if (poll(&p, 1, ms) != 1)
      return -1;
    r = read(fd, reply + n, cap - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
    reply[n] = '\0';
  }
  return (int)n;
}

static int request(const char *path, const char *req, char *reply, size_t cap) {
  int fd = connect_to(path), n;
  if (fd < 0)
    return -1;
  if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
    close(fd);
    return -1;
  }
  n = read_reply(fd, reply, cap, 5000);
  close(fd);
  return n;
}

typedef struct {
  myc_engine *e;
  pthread_t th;
  char sock[300];
} live;

static void *run_engine(void *arg) {
  myc_engine_run(((live *)arg)->e, 0);
  return NULL;
}

static int live_start(live *l, const char *name) {
  myc_engine_config cfg;
  myc_service_config sc = {0};
  char err[512], url[320];
  snprintf(l->sock, sizeof l->sock, "%s/%s", tmpdir, name);
  snprintf(url, sizeof url, "unix://%s", l->sock);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.control = url;
  if (myc_engine_new(&l->e, &cfg) != 0)
    return -1;
  sc.name = "svc";
  sc.module = test_module(tmpdir, "svc.lua", "return { subscribe = { 'in' }, "
                                    "on_message = function() end }\n");
  if (myc_engine_add_service(l->e, &sc, err, sizeof err) != 0 ||
      myc_engine_start(l->e, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    myc_engine_free(l->e);
    return -1;
  }
  return pthread_create(&l->th, NULL, run_engine, l);
}

static void live_stop(live *l) {
  myc_engine_stop(l->e, 0);
  pthread_join(l->th, NULL);
  myc_engine_free(l->e);
}

/* 400 clients that connect and say nothing used to take a descriptor
 * each for ever, until status itself could not be answered. */
static void idle_flood_leaves_room(void) {
  enum { FLOOD = 400 };
  static int fds[FLOOD];
  char reply[4096];
  int i, open_fds = 0, closed = 0;
  live l;
  CHECK_EQ(live_start(&l, "flood.sock"), 0);
  for (i = 0; i < FLOOD; i++) {
    fds[i] = connect_to(l.sock);
    if (fds[i] < 0) /* the backlog is full: the engine is busy closing */
      usleep(1000), fds[i] = connect_to(l.sock);
  }
  CHECK(request(l.sock, "status\n", reply, sizeof reply) > 0);
  CHECK(strncmp(reply, "{\"ok\":true,\"protocol\":1,", 24) == 0);
  /* The engine holds at most 64 of them; the others were told why. */
  for (i = 0; i < FLOOD; i++) {
    char buf[512];
    struct pollfd p = {fds[i], POLLIN, 0};
    if (fds[i] < 0 || poll(&p, 1, 0) == 0) {
      open_fds += fds[i] >= 0;
      continue;
    }
    if (read(fds[i], buf, sizeof buf - 1) > 0)
      closed++;
  }
  CHECK(open_fds <= 64);
  CHECK(closed >= FLOOD - 64 - 1);
  for (i = 0; i < FLOOD; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  live_stop(&l);
}

/* The socket is bound before the workers start; what runs beside them
 * starts after it.  This one asks for a reload from another thread and
 * holds the start while the request is read, so the request comes while
 * the engine is not running yet: it must wait for the start, not be
 * refused ("the engine is not running"). */
typedef struct {
  const char *sock;
  pthread_t th;
  char reply[1024];
} early_client;

static void *ask_early(void *arg) {
  early_client *x = arg;
  request(x->sock, "reload svc\n", x->reply, sizeof x->reply);
  return NULL;
}

static int start_asking(void *ud, char *err, size_t errlen) {
  early_client *x = ud;
  (void)err;
  (void)errlen;
  if (pthread_create(&x->th, NULL, ask_early, x) != 0)
    return MYC_ENOMEM;
  usleep(200 * 1000);
  return 0;
}

static void nothing_to_quiesce(void *ud) { (void)ud; }

static void a_request_during_the_start_waits_for_it(void) {
  myc_engine_config cfg;
  myc_service_config sc = {0};
  early_client x = {0};
  char err[512], url[320];
  live l;
  snprintf(l.sock, sizeof l.sock, "%s/early.sock", tmpdir);
  snprintf(url, sizeof url, "unix://%s", l.sock);
  x.sock = l.sock;
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.control = url;
  CHECK_EQ(myc_engine_new(&l.e, &cfg), 0);
  sc.name = "svc";
  sc.module = test_module(tmpdir, "svc.lua", "return { subscribe = { 'in' }, "
                                    "on_message = function() end }\n");
  CHECK_EQ(myc_engine_add_service(l.e, &sc, err, sizeof err), 0);
  CHECK_EQ(myc__engine_beside(l.e, start_asking, nothing_to_quiesce, NULL, &x), 0);
  CHECK_EQ(myc_engine_start(l.e, err, sizeof err), 0);
  CHECK_EQ(pthread_create(&l.th, NULL, run_engine, &l), 0);
  pthread_join(x.th, NULL);
  CHECK(strstr(x.reply, "\"ok\":true") != NULL);
  live_stop(&l);
}

static void idle_client_times_out(void) {
  char reply[512];
  live l;
  int fd;
  struct timespec t0, t1;
  CHECK_EQ(live_start(&l, "idle.sock"), 0);
  fd = connect_to(l.sock);
  CHECK(fd >= 0);
  CHECK(write(fd, "stat", 4) == 4); /* half a request, never finished */
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK(read_reply(fd, reply, sizeof reply, 8000) > 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(fd);
  CHECK(strstr(reply, "\"code\":\"ETIMEDOUT\"") != NULL);
  CHECK(strstr(reply, "no request line within 5 s") != NULL);
  CHECK(t1.tv_sec - t0.tv_sec >= 4 && t1.tv_sec - t0.tv_sec <= 7);
  live_stop(&l);
}

static void hostile_requests(void) {
  char reply[4096], req[600];
  const char *secret, *spaced;
  live l;
  CHECK_EQ(live_start(&l, "req.sock"), 0);
  /* A module path with spaces is the rest of the line. */
  spaced = test_module(tmpdir, "svc v2.lua", "return { subscribe = { 'in' }, "
                                    "on_message = function() end }\n");
  snprintf(req, sizeof req, "reload svc %s\n", spaced);
  CHECK(request(l.sock, req, reply, sizeof reply) > 0);
  CHECK(strstr(reply, "{\"ok\":true,\"service\":\"svc\",\"version\":2,") ==
        reply);
  /* A file that is not Lua: the reply names it, never what it holds. */
  secret = test_module(tmpdir, "shadow", "root:$6$s3cr3tSalt$hash:19000:0:99999:7:::\n"
                                "token sk_live_abcdef\n");
  snprintf(req, sizeof req, "reload svc %s\n", secret);
  CHECK(request(l.sock, req, reply, sizeof reply) > 0);
  CHECK(strstr(reply, "\"code\":\"ELUA\"") != NULL);
  CHECK(strstr(reply, "shadow:1:") != NULL);
  CHECK(strstr(reply, "s3cr3t") == NULL && strstr(reply, "$6$") == NULL &&
        strstr(reply, "root") == NULL && strstr(reply, "sk_live") == NULL);
  /* Bytes that are not UTF-8 come back as U+FFFD: the reply stays JSON. */
  CHECK(request(l.sock, "reload \xff\xfe\xc0\n", reply, sizeof reply) > 0);
  CHECK_STR(reply, "{\"ok\":false,\"code\":\"ENOENT\",\"error\":\"no service "
                   "named '\\ufffd\\ufffd\\ufffd'\"}\n");
  CHECK(request(l.sock, "\xe9t\xe9\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "unknown request '\\ufffdt\\ufffd'") != NULL);
  CHECK(request(l.sock, "status nope\n", reply, sizeof reply) > 0);
  CHECK(strstr(reply, "status takes json or text") != NULL);
  live_stop(&l);
}

static void missing_directory_is_named(void) {
  myc_engine_config cfg;
  myc_engine *e;
  char err[512], url[320];
  snprintf(url, sizeof url, "unix://%s/no/such/dir/ctl.sock", tmpdir);
  myc_engine_config_init(&cfg);
  cfg.workers = 1;
  cfg.log_fn = test_quiet_log;
  cfg.control = url;
  CHECK_EQ(myc_engine_new(&e, &cfg), 0);
  CHECK(myc_engine_start(e, err, sizeof err) < 0);
  myc_engine_free(e);
  CHECK(strstr(err, "/no/such/dir does not exist") != NULL);
  CHECK(strstr(err, "permission denied") == NULL);
}

int main(void) {
  static const test_case cases[] = {
      {"parses_requests", parses_requests},
      {"replies_are_valid_json", replies_are_valid_json},
      {"reload_errors_hide_file_tokens", reload_errors_hide_file_tokens},
      {"idle_flood_leaves_room", idle_flood_leaves_room},
      {"idle_client_times_out", idle_client_times_out},
      {"a_request_during_the_start_waits_for_it",
       a_request_during_the_start_waits_for_it},
      {"hostile_requests", hostile_requests},
      {"missing_directory_is_named", missing_directory_is_named},
      {NULL, NULL}};
  int rc;
  if (mkdtemp(tmpdir) == NULL)
    return 1;
  rc = run_tests(cases);
  return remove_tmpdir(tmpdir) != 0 ? 1 : rc;
}
