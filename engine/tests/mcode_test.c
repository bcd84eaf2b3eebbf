/* mcode_test.c -- jit.mcode_protect: LuaJIT's code areas kept writable
 * and executable on request, traces still right, other callers of
 * mprotect() untouched, protection back on request. */
#include "lua/mcode.h"
#include "mycelium.h"
#include "test.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* A hot loop and a branchy function called from it: root traces and side
 * traces, so LuaJIT both writes new code and patches exits. */
static const char *const HOT =
    "local function f(i) if i % 3 == 0 then return i * 2 "
    "elseif i % 5 == 0 then return i - 1 else return i end end "
    "local s = 0 for i = 1, 200000 do s = s + f(i) end return s";

static double run_hot(void) {
  lua_State *L = luaL_newstate();
  double v = -1;
  if (L == NULL)
    return v;
  luaL_openlibs(L);
  if (luaL_dostring(L, HOT) == 0)
    v = lua_tonumber(L, -1);
  lua_close(L);
  return v;
}

static double expected(void) {
  double s = 0;
  long i;
  for (i = 1; i <= 200000; i++)
    s += i % 3 == 0 ? i * 2 : i % 5 == 0 ? i - 1 : i;
  return s;
}

/* The permissions /proc/self/maps gives the mapping holding 'p'
 * ("rwxp", "r-xp", ...), or "" if none. */
static void perms_of(const void *p, char out[5]) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  uintptr_t a = (uintptr_t)p;
  out[0] = '\0';
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && a >= lo &&
        a < hi) {
      memcpy(out, perms, 5);
      break;
    }
  }
  if (f != NULL)
    fclose(f);
}

/* RWX mappings that are not LuaJIT's (ASan has one of its own). */
static int rwx_baseline;

static int any_rwx(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int n = 0;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    n += strstr(line, " rwxp ") != NULL;
  if (f != NULL)
    fclose(f);
  return n;
}

/* Whether a sanitizer's mprotect() comes first (the switch then says it
 * changes nothing, and nothing changes); found once, in main. */
static int in_effect;

static int interposed(void) { return in_effect; }

static void unprotected_code_stays_writable_and_runs_right(void) {
  myc__mcode_stats before, after;
  int rc;
  myc__mcode_stats_get(&before);
  rc = myc_jit_set_mcode_protect(0);
  if (!interposed()) {
    CHECK_EQ(rc, MYC_ESTATE);
    CHECK(run_hot() == expected());
    myc__mcode_stats_get(&after);
    CHECK_EQ(after.made_rwx, before.made_rwx);
    printf("     (a sanitizer's mprotect comes first: not in effect)\n");
    return;
  }
  CHECK_EQ(rc, 0);
  CHECK(run_hot() == expected());
  myc__mcode_stats_get(&after);
  /* LuaJIT asked, and every switch it asked for became RWX. */
  CHECK(after.luajit_calls > before.luajit_calls);
  CHECK(after.made_rwx > before.made_rwx);
  CHECK_EQ(after.made_rwx - before.made_rwx,
           after.luajit_calls - before.luajit_calls);
  /* A state alive with compiled code has an RWX area. */
  {
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    luaL_openlibs(L);
    CHECK(luaL_dostring(L, HOT) == 0);
    CHECK(lua_tonumber(L, -1) == expected());
    CHECK(any_rwx() > rwx_baseline);
    lua_close(L);
  }
  myc_jit_set_mcode_protect(1);
}

static void other_callers_are_untouched(void) {
  long page = sysconf(_SC_PAGESIZE);
  char perms[5];
  void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED);
  CHECK(myc_jit_set_mcode_protect(0) == 0 || !interposed());
  CHECK_EQ(mprotect(p, (size_t)page, PROT_READ | PROT_EXEC), 0);
  perms_of(p, perms);
  CHECK_STR(perms, "r-xp");
  CHECK_EQ(mprotect(p, (size_t)page, PROT_READ | PROT_WRITE), 0);
  perms_of(p, perms);
  CHECK_STR(perms, "rw-p");
  munmap(p, (size_t)page);
  myc_jit_set_mcode_protect(1);
}

static void protection_comes_back(void) {
  myc__mcode_stats before, after;
  CHECK_EQ(myc_jit_set_mcode_protect(1), 0);
  myc__mcode_stats_get(&before);
  CHECK(run_hot() == expected());
  myc__mcode_stats_get(&after);
  CHECK_EQ(after.made_rwx, before.made_rwx);
  if (interposed())
    CHECK(after.luajit_calls > before.luajit_calls);
  {
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    luaL_openlibs(L);
    CHECK(luaL_dostring(L, HOT) == 0);
    CHECK_EQ(any_rwx(), rwx_baseline);
    lua_close(L);
  }
}

int main(void) {
  static const test_case cases[] = {
      {"protection_comes_back", protection_comes_back},
      {"unprotected_code_stays_writable_and_runs_right",
       unprotected_code_stays_writable_and_runs_right},
      {"other_callers_are_untouched", other_callers_are_untouched},
      {"protection_comes_back_after_unprotected", protection_comes_back},
      {NULL, NULL}};
  rwx_baseline = any_rwx();
  in_effect = myc_jit_set_mcode_protect(0) == 0;
  myc_jit_set_mcode_protect(1);
#if !defined(MYC_TEST_ASAN)
  if (!in_effect) {
    fprintf(stderr, "the engine's mprotect() is not the process's\n");
    return 1;
  }
#endif
  return run_tests(cases);
}
