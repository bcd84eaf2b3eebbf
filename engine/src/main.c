/* main.c -- the `mycelium` command: run, check, reload, status. */
#include "mycelium.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: mycelium run CONFIG.lua           run the engine from a config file\n"
    "       mycelium run SERVICE.lua...       run service files, default config\n"
    "       mycelium check CONFIG.lua|SERVICE.lua...\n"
    "                                         validate config, contracts, services\n"
    "       mycelium check CONTRACTS.yaml     validate contracts, print digest\n"
    "       mycelium reload [--socket PATH] SERVICE\n"
    "       mycelium status [--socket PATH]\n"
    "       mycelium --version | --help\n"
    "\n"
    "Environment: MYCELIUM_PATH  directory holding the Lua runtime (lua/)\n";

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
  int rc = load(nfiles, files, &e);
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
  if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "status") == 0) {
    fprintf(stderr,
            "mycelium: '%s' needs the control channel, which is not "
            "supported yet\n",
            cmd);
    return 2;
  }
  fprintf(stderr, "mycelium: unknown command '%s'\n%s", cmd, usage);
  return 2;
}
