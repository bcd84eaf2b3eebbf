/* lua_core.h -- the "mycelium.core" Lua C module: MessagePack encoding and
 * decoding of Lua values (msgpack-c), for config opts and mycelium.testing;
 * services encode tables with lua/mycelium/msgpack.lua (same bytes). */
#ifndef MYC_LUA_CORE_H
#define MYC_LUA_CORE_H

#include "mycelium.h"

#include <lua.h>

/* Opens the module.  Also loadable from any LuaJIT process with
 * package.loadlib(path_to_libmycelium, "luaopen_mycelium_core"). */
MYC_EXTERN int luaopen_mycelium_core(lua_State *L);

/* Prepares a state the engine creates: prepends 'lua_dir' (the runtime)
 * and, if not NULL, the directory of 'module' to package.path, and makes
 * "mycelium.core" requirable.  May raise (out of memory): call it from a
 * protected context. */
void myc__lua_prepare(lua_State *L, const char *lua_dir, const char *module);

#endif
