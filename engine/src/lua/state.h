/* state.h -- what every Lua state the engine makes (a service instance,
 * the config reader) gets before it runs anything: the runtime and the
 * module's directory on package.path, and the C modules preloaded. */
#ifndef MYC_LUA_STATE_H
#define MYC_LUA_STATE_H

#include <lua.h>

/* Prepends 'lua_dir' (the runtime) and, if not NULL, the directory of
 * 'module' to package.path, and makes "mycelium.core" requirable.  The
 * standard libraries must be open.  May raise (out of memory): call it
 * from a protected context. */
void myc__lua_prepare(lua_State *L, const char *lua_dir, const char *module);

/* The directory holding mycelium/host.lua (the Lua runtime): 'configured'
 * if not NULL, else $MYCELIUM_PATH, else where it was installed next to
 * this library (found from the library's own path, so an installed tree
 * can be moved), else the source tree the library was built from.  The
 * string is static or the caller's.  Cannot fail: the last candidate is
 * returned even when it holds no runtime (the load then says so). */
const char *myc__find_lua_dir(const char *configured);

#endif
