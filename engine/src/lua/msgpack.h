/* msgpack.h -- the "mycelium.core" Lua C module: MessagePack encoding and
 * decoding of Lua values (msgpack-c), for config opts and mycelium.testing;
 * services encode tables with lua/mycelium/msgpack.lua (same bytes).  Also
 * core.regular(path), for the config reader (base/file.h). */
#ifndef MYC_LUA_MSGPACK_H
#define MYC_LUA_MSGPACK_H

#include <lua.h>

/* Opens the module (package.preload of every Lua state the library
 * makes).  A LuaJIT outside the engine loads it with
 * package.loadlib(path_to_libmycelium, "luaopen_mycelium_core"), the
 * exported opener of ffi/table.h, which adds the FFI table. */
int myc__lua_core_open(lua_State *L);

#endif
