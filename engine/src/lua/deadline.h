/* deadline.h -- a time limit on what a plain Lua state runs (the config
 * reader, which also runs service files given on the command line to see
 * whether they are a config). */
#ifndef MYC_LUA_DEADLINE_H
#define MYC_LUA_DEADLINE_H

#include <lua.h>
#include <stdint.h>

typedef struct {
  int64_t at_ns; /* monotonic */
  double ms;
  int fired; /* it raised */
} myc__lua_deadline;

/* From now on, what 'L' runs raises "still running after its budget of
 * MS ms" once 'ms' milliseconds have passed (and again at every check
 * while it goes on, so that a pcall cannot swallow it).  Turns the JIT
 * off: LuaJIT runs hooks in its interpreter only.  'd' must stay valid
 * while 'L' runs.  May raise (out of memory) like any API call. */
void myc__lua_deadline_set(lua_State *L, myc__lua_deadline *d, double ms);

#endif
