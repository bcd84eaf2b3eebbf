/* main.c -- the `mycelium` command: run, check, reload, status. */
#include "mycelium.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static const char usage[] =
    "usage: mycelium run CONFIG.lua           run the engine from a config file\n"
    "       mycelium run SERVICE.lua...       run service files, default config\n"
    "       mycelium check CONFIG.lua|SERVICE.lua...\n"
    "                                         validate config, contracts, services\n"
    "       mycelium check CONTRACTS.yaml     validate contracts, print digest\n"
    "       mycelium reload [--socket PATH] SERVICE [MODULE.lua]\n"
    "                                         hot-reload a running service\n"
    "       mycelium status [--socket PATH] [--json]\n"
    "                                         services, restarts, queues, memory\n"
    "       mycelium trace TRACE_ID [--from FILE | --zipkin URL]\n"
    "                                         one trace's span tree (stdin: FILE -)\n"
    "       mycelium --version | --help\n"
    "\n"
    "Config file (a Lua file returning a table; every key, type and default:\n"
    "docs/CONFIG.md):\n"
    "  services    list of { module = \"svc.lua\", name, opts, worker, mailbox,\n"
    "              restart, group, memory_limit_mb, handler_timeout_ms,\n"
    "              load_timeout_ms, reload_probation_s } or module paths\n"
    "  node        node name (\"mycelium\")      workers   threads (one per core)\n"
    "  log         { level = \"info\", format = \"text\" | \"json\" }\n"
    "  mailbox     { capacity = 65536, policy = \"drop_oldest\", threshold = 0.8,\n"
    "                max_bytes, max_message_bytes }\n"
    "  contracts   \"contracts.yaml\"            validate  true | false\n"
    "  supervisor  { backoff_initial_ms, backoff_max_ms, multiplier, jitter,\n"
    "                max_restarts, window_s, reset_s, reload_probation_s }\n"
    "  supervisors { name = { strategy = \"one_for_one\", ... } }\n"
    "  reload      \"signal\" | \"watch\" | \"off\"  control   \"unix:///path\"\n"
    "  listen      { \"unix:///x.sock\", \"tcp://127.0.0.1:7400\" }  links to\n"
    "  connect     { ... }  other engines; link = { max_frame, ... }\n"
    "              { \"nats://127.0.0.1:4222\" }  NATS servers; nats = { prefix,\n"
    "              publish, ... }  (docs/NATS.md)\n"
    "  metrics     { listen = \"127.0.0.1:9464\" }  Prometheus GET /metrics\n"
    "  tracing     { export = \"zipkin\" | \"otlp\", endpoint = \"http://...\",\n"
    "                sample = 1.0, queue = 4096 }  span export\n"
    "\n"
    "Environment: MYCELIUM_PATH     directory holding the Lua runtime (lua/)\n"
    "             MYCELIUM_CONTROL  control socket when --socket is not given\n"
    "                               (default /tmp/mycelium.ctl); the engine\n"
    "                               listens where its config says: control =\n"
    "                               \"unix:///path\" (docs/CONTROL.md)\n";

/* Finds the Lua runtime relative to the binary: build/mycelium uses the
 * source tree's lua/, a luarocks tree has it in share/lua/5.1, a CMake
 * install in share/mycelium/lua.  (The library falls back to the paths it
 * was built with.) */
static void locate_lua_dir(void) {
  static const char *const layouts[] = {"../lua", "../share/lua/5.1",
                                        "../share/mycelium/lua"};
  char exe[PATH_MAX], candidate[PATH_MAX + 64];
  ssize_t n;
  char *slash;
  size_t i;
  const char *env = getenv("MYCELIUM_PATH");
  if (env != NULL && *env != '\0')
    return;
  n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return;
  exe[n] = '\0';
  slash = strrchr(exe, '/');
  if (slash == NULL)
    return;
  *slash = '\0';
  for (i = 0; i < sizeof layouts / sizeof *layouts; i++) {
    snprintf(candidate, sizeof candidate, "%s/%s/mycelium/host.lua", exe,
             layouts[i]);
    if (access(candidate, R_OK) == 0) {
      snprintf(candidate, sizeof candidate, "%s/%s", exe, layouts[i]);
      setenv("MYCELIUM_PATH", candidate, 0);
      return;
    }
  }
}

static int load(int nfiles, char **files, myc_engine **e) {
  char err[8192]; /* room for every error of a contracts file */
  int rc;
  if (nfiles == 0) {
    fprintf(stderr, "mycelium: give a config file or service files\n%s", usage);
    return 2;
  }
  rc = myc_engine_from_files(e, (const char *const *)files, nfiles, err,
                             sizeof err);
  if (rc != 0) {
    fprintf(stderr, "mycelium: %s\n", err);
    return 1;
  }
  return 0;
}

static int cmd_run(int nfiles, char **files) {
  myc_engine *e;
  char err[2048];
  int rc;
  /* A SIGHUP before myc_engine_run() handles it must not end the
   * process (the default): the control socket is up before that. */
  signal(SIGHUP, SIG_IGN);
  rc = load(nfiles, files, &e);
  if (rc != 0)
    return rc;
  rc = myc_engine_start(e, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "mycelium: %s\n", err);
    myc_engine_free(e);
    return 1;
  }
  rc = myc_engine_run(e, 1);
  myc_engine_free(e);
  return rc;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void print_contracts(const myc_contract_set *cs) {
  size_t n = myc_contract_type_count(cs);
  printf("ok: %s: schema 0x%08x version %u, %zu type%s, digest %s\n",
         myc_contract_file(cs), (unsigned)myc_contract_schema_id(cs),
         (unsigned)myc_contract_schema_version(cs), n, n == 1 ? "" : "s",
         myc_contract_digest(cs));
}

/* Prints every error of a contracts file (exit 1), or its schema digest
 * and types (exit 0). */
static int check_contracts(const char *path) {
  myc_contract_set *cs;
  size_t i;
  int rc = myc_contract_load(&cs, path, NULL, NULL);
  if (cs == NULL) {
    fprintf(stderr, "mycelium: %s: %s\n", path, myc_strerror(rc));
    return 1;
  }
  for (i = 0; i < myc_contract_error_count(cs); i++)
    fprintf(stderr, "%s\n", myc_contract_error(cs, i));
  if (rc == 0) {
    print_contracts(cs);
  } else {
    fprintf(stderr, "mycelium: %s: %zu error%s\n", path,
            myc_contract_error_count(cs),
            myc_contract_error_count(cs) == 1 ? "" : "s");
  }
  myc_contract_free(cs);
  return rc == 0 ? 0 : 1;
}

static int cmd_check(int nfiles, char **files) {
  myc_engine *e;
  myc_service_stats st;
  uint32_t i, n;
  int rc;
  if (nfiles == 1 && (has_suffix(files[0], ".yaml") ||
                      has_suffix(files[0], ".yml")))
    return check_contracts(files[0]);
  rc = load(nfiles, files, &e);
  if (rc != 0)
    return rc;
  n = myc_engine_service_count(e);
  printf("ok: %u service%s:", n, n == 1 ? "" : "s");
  for (i = 0; i < n; i++) {
    myc_engine_service_stats(e, i, &st);
    printf(" %s (worker %d)", st.name, st.worker);
  }
  printf("\n");
  if (myc_engine_contracts(e) != NULL)
    print_contracts(myc_engine_contracts(e));
  myc_engine_free(e);
  return 0;
}

/* ---- control channel client (docs/CONTROL.md) ---------------------------- */

#define REPLY_TIMEOUT_S 15

/* Sends one request line and reads the reply until the engine closes.
 * Returns 0, or 1 with the reason printed. */
static int control_call(const char *path, const char *req, char *reply,
                        size_t cap) {
  struct sockaddr_un sa;
  struct timeval tv = {REPLY_TIMEOUT_S, 0};
  size_t n = 0;
  ssize_t r;
  int fd;
  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "mycelium: socket path too long: %s\n", path);
    return 1;
  }
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    fprintf(stderr, "mycelium: cannot connect to the control socket %s: %s\n"
            "(is the engine running with control = \"unix://%s\"? "
            "--socket PATH picks another)\n", path, strerror(errno), path);
    if (fd >= 0)
      close(fd);
    return 1;
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
    fprintf(stderr, "mycelium: %s: %s\n", path, strerror(errno));
    close(fd);
    return 1;
  }
  while (n < cap - 1 && (r = read(fd, reply + n, cap - 1 - n)) > 0)
    n += (size_t)r;
  reply[n] = '\0';
  close(fd);
  if (n == 0) {
    fprintf(stderr, "mycelium: %s: no reply from the engine\n", path);
    return 1;
  }
  return 0;
}

/* Writes code point 'cp' (below U+10000: the engine escapes only control
 * characters and U+FFFD) as UTF-8; returns its length. */
static size_t utf8_put(char *out, long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  out[0] = (char)(0xE0 | (cp >> 12));
  out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[2] = (char)(0x80 | (cp & 0x3F));
  return 3;
}

/* The string value of "key" in a one-line JSON reply, unescaped into
 * 'out' ("" when absent). */
static void json_string(const char *json, const char *key, char *out,
                        size_t cap) {
  char pat[64];
  const char *p;
  size_t n = 0;
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  p = strstr(json, pat);
  out[0] = '\0';
  if (p == NULL)
    return;
  for (p += strlen(pat); *p && *p != '"' && n < cap - 1; p++) {
    if (*p == '\\' && p[1] != '\0') {
      p++;
      if (*p == 'n')
        out[n++] = '\n';
      else if (*p == 't')
        out[n++] = '\t';
      else if (*p == 'u' && strlen(p) >= 5 && n + 3 < cap - 1) {
        n += utf8_put(out + n,
                      strtol((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16));
        p += 4;
      } else
        out[n++] = *p;
    } else {
      out[n++] = *p;
    }
  }
  out[n] = '\0';
}

typedef struct {
  const char *socket;
  int json;
  int nargs;
  char *args[4];
} control_args;

static int parse_control_args(int argc, char **argv, control_args *a) {
  int i;
  const char *env = getenv("MYCELIUM_CONTROL");
  memset(a, 0, sizeof *a);
  a->socket = env && *env ? env : "/tmp/mycelium.ctl";
  for (i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
      a->socket = argv[++i];
    else if (strncmp(argv[i], "--socket=", 9) == 0)
      a->socket = argv[i] + 9;
    else if (strcmp(argv[i], "--json") == 0)
      a->json = 1;
    else if (argv[i][0] == '-' || a->nargs == 4)
      return -1;
    else
      a->args[a->nargs++] = argv[i];
  }
  if (strncmp(a->socket, "unix://", 7) == 0)
    a->socket += 7;
  return 0;
}

static int cmd_status(int argc, char **argv) {
  static char reply[1 << 20];
  control_args a;
  if (parse_control_args(argc, argv, &a) != 0 || a.nargs != 0) {
    fprintf(stderr, "usage: mycelium status [--socket PATH] [--json]\n");
    return 2;
  }
  if (control_call(a.socket, a.json ? "status\n" : "status text\n", reply,
                   sizeof reply) != 0)
    return 1;
  fputs(reply, stdout);
  return strncmp(reply, "{\"ok\":false", 11) == 0 ? 1 : 0;
}

static int cmd_reload(int argc, char **argv) {
  char reply[8192], req[PATH_MAX + 600], err[4096], module[PATH_MAX];
  control_args a;
  if (parse_control_args(argc, argv, &a) != 0 || a.nargs < 1 || a.nargs > 2) {
    fprintf(stderr,
            "usage: mycelium reload [--socket PATH] SERVICE [MODULE.lua]\n");
    return 2;
  }
  module[0] = '\0';
  if (strpbrk(a.args[0], " \t\r\n") != NULL ||
      (a.nargs == 2 && strpbrk(a.args[1], "\r\n") != NULL)) {
    fprintf(stderr, "mycelium: reload: a service name cannot hold spaces, nor "
                    "a module path line breaks\n");
    return 2;
  }
  /* The engine resolves paths from its own directory: send it absolute. */
  if (a.nargs == 2 && realpath(a.args[1], module) == NULL) {
    fprintf(stderr, "mycelium: %s: %s\n", a.args[1], strerror(errno));
    return 1;
  }
  snprintf(req, sizeof req, "reload %s%s%s\n", a.args[0], module[0] ? " " : "",
           module);
  if (control_call(a.socket, req, reply, sizeof reply) != 0)
    return 1;
  if (a.json)
    fputs(reply, stdout);
  if (strncmp(reply, "{\"ok\":true", 10) == 0) {
    const char *v = strstr(reply, "\"version\":");
    const char *p = strstr(reply, "\"pause_ms\":");
    if (!a.json)
      printf("reloaded %s: version %d (swap %.3f ms)\n", a.args[0],
             v ? atoi(v + 10) : 0, p ? atof(p + 11) : 0.0);
    return 0;
  }
  json_string(reply, "error", err, sizeof err);
  fprintf(stderr, "mycelium: reload refused: %s\n", err[0] ? err : reply);
  return 1;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "--help";
  locate_lua_dir();
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(usage, stdout);
    return argc > 1 ? 0 : 2;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("mycelium %s\n", myc_version());
    return 0;
  }
  if (strcmp(cmd, "run") == 0)
    return cmd_run(argc - 2, argv + 2);
  if (strcmp(cmd, "check") == 0)
    return cmd_check(argc - 2, argv + 2);
  if (strcmp(cmd, "status") == 0)
    return cmd_status(argc - 2, argv + 2);
  if (strcmp(cmd, "reload") == 0)
    return cmd_reload(argc - 2, argv + 2);
  if (strcmp(cmd, "trace") == 0)
    return myc_command("trace", argc - 2, argv + 2);
  fprintf(stderr, "mycelium: unknown command '%s'\n%s", cmd, usage);
  return 2;
}
