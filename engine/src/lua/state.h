/* state.h -- what every Lua state the engine makes (a service instance,
 * the config reader) gets before it runs anything: the runtime and the
 * module's directory on package.path, and the C modules preloaded. */
#ifndef MYC_LUA_STATE_H
#define MYC_LUA_STATE_H

#include <lua.h>

struct myc_ffi_table;

/* Prepends 'lua_dir' (the runtime) and, if not NULL, the directory of
 * 'module' to package.path, and makes "mycelium.core" requirable.  With
 * 'ffi_table' (ffi/table.h: the functions the runtime binds through,
 * handed down by the layer that knows them) set,
 * package.loaded["mycelium.ffi"] is that pointer, a light userdata.  The
 * standard libraries must be open.  May raise (out of memory): call it
 * from a protected context. */
void myc__lua_prepare(lua_State *L, const char *lua_dir, const char *module,
                      const struct myc_ffi_table *ffi_table);

/* The directory holding mycelium/host.lua (the Lua runtime): 'configured'
 * if not NULL, else $MYCELIUM_PATH, else where it was installed next to
 * this library (found from the library's own path, so an installed tree
 * can be moved), else the source tree the library was built from.  The
 * string is static or the caller's.  Cannot fail: the last candidate is
 * returned even when it holds no runtime (the load then says so). */
const char *myc__find_lua_dir(const char *configured);

#endif
