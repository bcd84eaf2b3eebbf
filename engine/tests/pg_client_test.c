/* pg_client_test.c -- the PostgreSQL client against a real server started
 * here (initdb in a temporary directory, postgres on a free 127.0.0.1
 * port; as root both run as 'nobody', since postgres refuses root), on a
 * plain libuv loop.  The server runs under `timeout`: it cannot outlive a
 * crashed test by more than two minutes. */
#include "net/pg_client.h"

#include "test.h"
#include "test_net.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/myc-pgtest.XXXXXX";
static char bin[256];
static int port;
static const myc__alloc heap = {myc__default_alloc, NULL};

/* ---- the server --------------------------------------------------------- */

static int sh(const char *fmt, ...) {
  char cmd[2048], full[2300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (geteuid() == 0)
    snprintf(full, sizeof full, "runuser -u nobody -- sh -c '%s'", cmd);
  else
    snprintf(full, sizeof full, "%s", cmd);
  return system(full);
}

static int start_server(void) {
  int i;
  sh("timeout 120 %spostgres -D %s/data -p %d -c listen_addresses=127.0.0.1 "
     "-c unix_socket_directories=%s -c fsync=off >>%s/log 2>&1 &",
     bin, tmpdir, port, tmpdir, tmpdir);
  for (i = 0; i < 300; i++) {
    if (sh("%spg_isready -q -h 127.0.0.1 -p %d -t 1", bin, port) == 0)
      return 0;
    usleep(20000);
  }
  fprintf(stderr, "postgres did not start; see %s/log\n", tmpdir);
  return -1;
}

/* SIGKILL, as a crash would, then waits for its backends to go. */
static void kill_server(void) {
  sh("P=$(head -1 %s/data/postmaster.pid); C=$(pgrep -P $P); kill -9 $P; "
     "for i in $(seq 250); do A=0; for c in $C $P; do kill -0 $c 2>/dev/null "
     "&& A=1; done; [ $A = 0 ] && break; sleep 0.02; done",
     tmpdir);
}

static int setup_server(void) {
  FILE *f = popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | "
                  "tail -1", "r");
  if (f != NULL) {
    if (fgets(bin, sizeof bin - 1, f) != NULL) {
      bin[strcspn(bin, "\n")] = 0;
      if (*bin)
        strcat(bin, "/");
    }
    pclose(f);
  }
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  if (geteuid() == 0 && chown(tmpdir, 65534, 65534) != 0)
    return -1;
  port = test_free_port();
  if (sh("%sinitdb -D %s/data -U mycelium -A trust --no-sync -E UTF8 "
         "--locale=C >%s/initdb.log 2>&1",
         bin, tmpdir, tmpdir) != 0) {
    fprintf(stderr, "initdb failed (see %s/initdb.log): run scripts/deps.sh\n",
            tmpdir);
    return -1;
  }
  return start_server();
}

/* ---- harness ------------------------------------------------------------- */

typedef struct {
  int code;
  uint64_t id;
  int status;
  char text[512]; /* the rows as "a,b;c,NULL;" or the error */
  char sqlstate[8];
  int64_t affected;
} record;

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick;
  myc_pg *c;
  record recs[256];
  size_t n, results, ups, downs, closed;
} harness;

static void sink(void *ud, int code, const myc_pg_event *ev) {
  harness *h = ud;
  record *r = &h->recs[h->n < 255 ? h->n++ : 255];
  memset(r, 0, sizeof *r);
  r->code = code;
  r->id = ev->id;
  r->status = ev->status;
  snprintf(r->sqlstate, sizeof r->sqlstate, "%s", ev->sqlstate);
  if (ev->result != NULL) {
    myc_pg_result_info info;
    int i, j;
    size_t len, at = 0;
    myc__pg_result_info(ev->result, &info);
    r->affected = info.affected;
    for (i = 0; i < info.rows; i++)
      for (j = 0; j < info.cols; j++) {
        const char *v = myc__pg_result_value(ev->result, i, j, &len);
        at += (size_t)snprintf(r->text + at, sizeof r->text - at, "%.*s%c",
                               v ? (int)len : 4, v ? v : "NULL",
                               j + 1 < info.cols ? ',' : ';');
      }
  } else {
    snprintf(r->text, sizeof r->text, "%s", ev->error);
  }
  h->results += code == MYC_PG_EV_RESULT;
  h->ups += code == MYC_PG_EV_UP;
  h->downs += code == MYC_PG_EV_DOWN;
  h->closed += code == MYC_PG_EV_CLOSED;
}

static void tick(uv_timer_t *t) { (void)t; }

static void harness_init(harness *h) {
  memset(h, 0, sizeof *h);
  uv_loop_init(&h->loop);
  uv_timer_init(&h->loop, &h->tick);
  uv_timer_start(&h->tick, tick, 5, 5);
}

static void harness_free(harness *h) {
  if (h->c != NULL)
    myc__pg_free(h->c);
  uv_close((uv_handle_t *)&h->tick, NULL);
  while (uv_run(&h->loop, UV_RUN_NOWAIT) != 0)
    ;
  if (uv_loop_close(&h->loop) != 0)
    fprintf(stderr, "loop still busy at close\n");
}

static int wait_for(harness *h, const size_t *count, size_t want, int ms) {
  uint64_t end = uv_hrtime() / 1000000 + (uint64_t)ms;
  while (*count < want && uv_hrtime() / 1000000 < end)
    uv_run(&h->loop, UV_RUN_ONCE);
  return *count >= want;
}

static const char *url(void) {
  static char buf[128];
  snprintf(buf, sizeof buf, "postgresql://mycelium@127.0.0.1:%d/postgres", port);
  return buf;
}

static int open_client(harness *h, const char *u, const myc_pg_options *o) {
  char err[256];
  int rc = myc__pg_new(&h->loop, &heap, u, o, sink, h, &h->c, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "open %s: %s\n", u, err);
  return rc;
}

static int64_t query(harness *h, const char *sql, int n, ...) {
  const char *values[8];
  size_t lens[8];
  va_list ap;
  int i;
  va_start(ap, n);
  for (i = 0; i < n; i++) {
    values[i] = va_arg(ap, const char *);
    lens[i] = values[i] ? strlen(values[i]) : 0;
  }
  va_end(ap);
  return myc__pg_query(h->c, sql, n, values, lens);
}

/* The result record of query 'id', or an empty one (code 0). */
static const record *result_of(const harness *h, int64_t id) {
  static record none;
  size_t i;
  for (i = 0; i < h->n; i++)
    if (h->recs[i].code == MYC_PG_EV_RESULT && h->recs[i].id == (uint64_t)id)
      return &h->recs[i];
  memset(&none, 0, sizeof none);
  none.status = 1;
  return &none;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_bad_url(void) {
  harness h;
  char err[256] = "";
  myc_pg_options o;
  harness_init(&h);
  CHECK_EQ(myc__pg_new(&h.loop, &heap, "postgresql://h/db?nosuch=1", NULL,
                       sink, &h, &h.c, err, sizeof err),
           MYC_EINVAL);
  CHECK(h.c == NULL);
  CHECK(strstr(err, "bad URL 'postgresql://h/db?nosuch=1'") != NULL);
  CHECK(strstr(err, "nosuch") != NULL);
  CHECK_EQ(myc__pg_new(&h.loop, &heap, "postgresql://a,b/db", NULL, sink, &h,
                       &h.c, err, sizeof err),
           MYC_EINVAL);
  CHECK(strstr(err, "one host only") != NULL);
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 500;
  o.reconnect_max_ms = 100;
  CHECK_EQ(myc__pg_new(&h.loop, &heap, url(), &o, sink, &h, &h.c, err,
                       sizeof err),
           MYC_EINVAL);
  CHECK(strstr(err, "reconnect_min_ms (500)") != NULL);
  harness_free(&h);
}

static void test_queries(void) {
  harness h;
  int64_t a, b, c, d, e, f, g;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url(), NULL), 0);
  CHECK_STR(myc__pg_state(h.c), "connecting");
  /* Accepted while connecting; run once up, in order. */
  a = query(&h, "CREATE TABLE IF NOT EXISTS t (k text PRIMARY KEY, v text)", 0);
  b = query(&h, "INSERT INTO t VALUES ($1, $2), ($3, $4)", 4, "x", "it's",
            "y", NULL);
  c = query(&h, "SELECT k, v FROM t WHERE k = $1", 1, "x");
  d = query(&h, "SELECT k, v FROM t WHERE k = $1", 1, "y"); /* prepared */
  e = query(&h, "SELECT * FROM no_such_table", 0);
  f = query(&h, "SELECT count(*) FROM pg_prepared_statements", 0);
  g = query(&h, "SELECT k, v FROM t WHERE k = $1", 1, "zz");
  CHECK(a > 0 && b == a + 1 && g == a + 6);
  CHECK_EQ(myc__pg_pending(h.c), 7);
  CHECK(wait_for(&h, &h.results, 7, 5000));
  CHECK_EQ(h.ups, 1);
  CHECK_STR(myc__pg_state(h.c), "up");
  CHECK_EQ(result_of(&h, a)->status, 0);
  CHECK_EQ(result_of(&h, b)->affected, 2);
  CHECK_STR(result_of(&h, c)->text, "x,it's;");
  CHECK_STR(result_of(&h, d)->text, "y,NULL;");
  CHECK_EQ(result_of(&h, e)->status, MYC_EINVAL);
  CHECK_STR(result_of(&h, e)->sqlstate, "42P01");
  CHECK(strstr(result_of(&h, e)->text, "relation \"no_such_table\" does not "
                                       "exist") != NULL);
  CHECK(strncmp(result_of(&h, e)->text, "postgres 127.0.0.1:", 19) == 0);
  /* CREATE, INSERT, SELECT and itself were prepared; the failed one not. */
  CHECK_STR(result_of(&h, f)->text, "4;");
  CHECK_STR(result_of(&h, g)->text, "");
  CHECK_EQ(myc__pg_pending(h.c), 0);
  /* Bad input is refused at once. */
  CHECK_EQ(query(&h, "", 0), MYC_EINVAL);
  CHECK_EQ(myc__pg_query(h.c, "SELECT $1", 1, (const char *[]){"a\0b"},
                         (size_t[]){3}),
           MYC_EINVAL);
  CHECK(strstr(myc__pg_error(h.c), "NUL byte") != NULL);
  /* close: what was accepted still runs, then CLOSED. */
  a = query(&h, "SELECT 7", 0);
  myc__pg_close(h.c);
  CHECK_STR(myc__pg_state(h.c), "closing");
  CHECK_EQ(query(&h, "SELECT 8", 0), MYC_ESTATE);
  CHECK(wait_for(&h, &h.closed, 1, 5000));
  CHECK_STR(result_of(&h, a)->text, "7;");
  CHECK_STR(myc__pg_state(h.c), "closed");
  harness_free(&h);
}

static void test_timeout(void) {
  harness h;
  myc_pg_options o;
  int64_t a, b;
  uint64_t t0;
  harness_init(&h);
  memset(&o, 0, sizeof o);
  o.query_timeout_ms = 200;
  o.reconnect_min_ms = 20;
  /* One down, the timed-out query's: a redial slower than the default
   * 2 s (a loaded machine forking a backend) would add another. */
  o.connect_timeout_ms = 20000;
  CHECK_EQ(open_client(&h, url(), &o), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  t0 = uv_hrtime() / 1000000;
  a = query(&h, "SELECT pg_sleep(5)", 0);
  b = query(&h, "SELECT 1", 0);
  CHECK(wait_for(&h, &h.results, 2, 5000));
  CHECK(uv_hrtime() / 1000000 - t0 < 1500);
  CHECK_EQ(result_of(&h, a)->status, UV_ETIMEDOUT);
  CHECK(strstr(result_of(&h, a)->text, "no result within 200 ms") != NULL);
  CHECK_EQ(result_of(&h, b)->status, UV_ETIMEDOUT);
  CHECK(wait_for(&h, &h.ups, 2, 25000));
  CHECK_EQ(h.downs, 1);
  a = query(&h, "SELECT 2", 0);
  CHECK(wait_for(&h, &h.results, 3, 5000));
  CHECK_STR(result_of(&h, a)->text, "2;");
  harness_free(&h);
}

static void test_kill_restart(void) {
  harness h;
  myc_pg_options o;
  int64_t a;
  harness_init(&h);
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 200;
  CHECK_EQ(open_client(&h, url(), &o), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  kill_server();
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  CHECK_STR(myc__pg_state(h.c), "down");
  CHECK(h.n >= 2 && h.recs[1].code == MYC_PG_EV_DOWN);
  CHECK(strncmp(h.recs[1].text, "postgres 127.0.0.1:", 19) == 0);
  CHECK_EQ(query(&h, "SELECT 1", 0), UV_ENOTCONN);
  CHECK(strstr(myc__pg_error(h.c), "next attempt in") != NULL);
  CHECK_EQ(start_server(), 0);
  CHECK(wait_for(&h, &h.ups, 2, 5000));
  /* The statements of the old connection are prepared again. */
  a = query(&h, "SELECT v FROM t WHERE k = $1", 1, "x");
  CHECK(wait_for(&h, &h.results, 1, 5000));
  CHECK_STR(result_of(&h, a)->text, "it's;");
  harness_free(&h);
}

static void test_refused_and_host_name(void) {
  harness h;
  myc_pg_options o;
  char u[128];
  int64_t a;
  int held = -1;
  harness_init(&h);
  memset(&o, 0, sizeof o);
  o.reconnect_min_ms = 1000;
  snprintf(u, sizeof u, "postgresql://mycelium@127.0.0.1:%d/postgres",
           test_refusing_port(&held));
  CHECK_EQ(open_client(&h, u, &o), 0);
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  CHECK_EQ(h.recs[0].status, UV_ECONNREFUSED);
  CHECK(strstr(h.recs[0].text, "cannot connect") != NULL);
  myc__pg_free(h.c);
  h.c = NULL;
  close(held);
  /* A host name goes through uv_getaddrinfo, not libpq's blocking one. */
  snprintf(u, sizeof u, "postgresql://mycelium@localhost:%d/postgres", port);
  CHECK_EQ(open_client(&h, u, NULL), 0);
  CHECK(strncmp(myc__pg_server(h.c), "localhost:", 10) == 0);
  a = query(&h, "SELECT 3", 0);
  CHECK(wait_for(&h, &h.results, 1, 5000));
  CHECK_STR(result_of(&h, a)->text, "3;");
  harness_free(&h);
}

/* A name that cannot be looked up fails the attempt naming it (RFC 6761:
 * ".invalid" never resolves).  Closed during the lookup: a query that
 * waited for the address fails saying so (whether or not the lookup could
 * still be cancelled), then CLOSED follows; no connection is made. */
static void test_lookup(void) {
  harness h;
  char u[160];
  int64_t a;
  harness_init(&h);
  CHECK_EQ(open_client(&h, "postgresql://x@no-such-host.invalid:5432/db",
                       NULL),
           0);
  CHECK(wait_for(&h, &h.downs, 1, 5000));
  CHECK(h.recs[0].status < 0);
  CHECK(strstr(h.recs[0].text, "postgres no-such-host.invalid:5432: cannot "
                               "resolve 'no-such-host.invalid': ") != NULL);
  harness_free(&h);

  harness_init(&h);
  snprintf(u, sizeof u, "postgresql://mycelium@localhost:%d/postgres", port);
  CHECK_EQ(open_client(&h, u, NULL), 0);
  CHECK_STR(myc__pg_state(h.c), "connecting");
  a = query(&h, "SELECT 1", 0);
  CHECK(a > 0);
  myc__pg_close(h.c);
  CHECK_STR(myc__pg_state(h.c), "closing");
  CHECK(wait_for(&h, &h.closed, 1, 5000));
  CHECK_EQ(h.results, 1);
  CHECK_EQ(h.ups, 0);
  CHECK_EQ(result_of(&h, a)->status, MYC_ESTATE);
  CHECK(strstr(result_of(&h, a)->text,
               ": client closed before it connected") != NULL);
  CHECK_STR(myc__pg_state(h.c), "closed");
  harness_free(&h);
}

static void test_free_with_pending(void) {
  harness h;
  harness_init(&h);
  CHECK_EQ(open_client(&h, url(), NULL), 0);
  CHECK(wait_for(&h, &h.ups, 1, 5000));
  CHECK(query(&h, "SELECT pg_sleep(0.2)", 0) > 0);
  CHECK(query(&h, "SELECT 1", 0) > 0);
  uv_run(&h.loop, UV_RUN_NOWAIT);
  myc__pg_free(h.c); /* abandons both, no event */
  h.c = NULL;
  uv_run(&h.loop, UV_RUN_NOWAIT);
  CHECK_EQ(h.results, 0);
  harness_free(&h);
}

int main(void) {
  static const test_case cases[] = {
      {"bad_url", test_bad_url},
      {"queries", test_queries},
      {"timeout", test_timeout},
      {"kill_restart", test_kill_restart},
      {"refused_and_host_name", test_refused_and_host_name},
      {"lookup", test_lookup},
      {"free_with_pending", test_free_with_pending},
      {NULL, NULL}};
  int rc;
  signal(SIGPIPE, SIG_IGN);
  if (setup_server() != 0)
    return 1;
  rc = run_tests(cases);
  kill_server();
  (void)remove_tmpdir(tmpdir); /* a leftover directory fails nothing */
  return rc;
}
