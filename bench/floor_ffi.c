/* floor_ffi.c -- floor: what one FFI call from JIT-compiled LuaJIT costs,
 * the least any engine call from a service can cost. */
#include "bench.h"

#include <lauxlib.h>
#include <lualib.h>

/* Called from Lua through ffi.C; exported by the runner. */
__attribute__((visibility("default"), noinline)) void myc_bench_nop(void) {
  __asm__ volatile("");
}

static const char loop_src[] =
    "local ffi = require 'ffi'\n"
    "ffi.cdef 'void myc_bench_nop(void);'\n"
    "local C, n = ffi.C, ...\n"
    "for i = 1, n do C.myc_bench_nop() end\n";

int bench_floor_ffi(void) {
  double runs[BENCH_RUNS];
  double n = 2e8 * bench_scale();
  int r;
  for (r = 0; r < BENCH_RUNS; r++) {
    lua_State *L = luaL_newstate();
    double t0;
    luaL_openlibs(L);
    if (luaL_loadstring(L, loop_src) != 0)
      return 1;
    lua_pushnumber(L, n);
    t0 = bench_now();
    if (lua_pcall(L, 1, 0, 0) != 0) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      return 1;
    }
    runs[r] = (bench_now() - t0) / n * 1e9;
    lua_close(L);
  }
  bench_report("floor", "ffi_empty_call_ns", bench_median(runs, BENCH_RUNS),
               "ns", "LuaJIT -> C, JIT on");
  return 0;
}
