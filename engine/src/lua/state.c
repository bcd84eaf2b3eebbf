/* state.c -- Lua states the engine makes (see state.h). */
#include "lua/state.h"

#include "lua/msgpack.h"

#include <lauxlib.h>
#include <string.h>

void myc__lua_prepare(lua_State *L, const char *lua_dir, const char *module) {
  const char *slash = module ? strrchr(module, '/') : NULL;
  int dirlen = slash ? (int)(slash - module) : 1;
  const char *dir = slash ? module : ".";

  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
  if (module != NULL) {
    /* lua_pushfstring knows no "%.*s": cut the directory out first. */
    lua_pushlstring(L, dir, (size_t)dirlen);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_tostring(L, -1),
                    lua_tostring(L, -1));
    lua_remove(L, -2);
  } else {
    lua_pushliteral(L, "");
  }
  lua_getfield(L, -3, "path");
  lua_concat(L, 3);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_mycelium_core);
  lua_setfield(L, -2, "mycelium.core");
  lua_pop(L, 2);
}
