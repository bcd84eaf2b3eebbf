/* msgpack.h -- the "mycelium.core" Lua C module: MessagePack encoding and
 * decoding of Lua values (msgpack-c), for config opts and mycelium.testing;
 * services encode tables with lua/mycelium/msgpack.lua (same bytes).  Also
 * core.regular(path), for the config reader (base/file.h). */
#ifndef MYC_LUA_MSGPACK_H
#define MYC_LUA_MSGPACK_H

#include "base/visibility.h"

#include <lua.h>

/* Opens the module.  Also loadable from any LuaJIT process with
 * package.loadlib(path_to_libmycelium, "luaopen_mycelium_core"). */
MYC_FFI int luaopen_mycelium_core(lua_State *L);

#endif
