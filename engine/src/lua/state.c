/* state.c -- Lua states the engine makes (see state.h). */
#include "lua/state.h"

#include "lua/msgpack.h"

#include <dlfcn.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static int lua_dir_ok(const char *dir) {
  char path[4096 + 32];
  snprintf(path, sizeof path, "%s/mycelium/host.lua", dir);
  return access(path, R_OK) == 0;
}

/* Written once (uv_once), read-only afterwards. */
static char installed_dir[4096];
static uv_once_t installed_once = UV_ONCE_INIT;

/* MYC_LUA_FROM_LIB is the install location of the runtime relative to
 * the library's (share/mycelium/lua from lib/, computed by CMake), so a
 * prefix installed with `cmake --install --prefix P` and moved elsewhere
 * still finds it. */
static void find_installed(void) {
  Dl_info info;
  const char *slash;
  if (dladdr((void *)myc__find_lua_dir, &info) == 0 || info.dli_fname == NULL)
    return;
  slash = strrchr(info.dli_fname, '/');
  if (slash == NULL)
    return;
  snprintf(installed_dir, sizeof installed_dir, "%.*s/%s",
           (int)(slash - info.dli_fname), info.dli_fname, MYC_LUA_FROM_LIB);
  if (!lua_dir_ok(installed_dir))
    installed_dir[0] = '\0';
}

const char *myc__find_lua_dir(const char *configured) {
  const char *env = getenv("MYCELIUM_PATH");
  if (configured != NULL)
    return configured;
  if (env != NULL && *env != '\0')
    return env;
  uv_once(&installed_once, find_installed);
  if (installed_dir[0] != '\0')
    return installed_dir;
  return MYC_SOURCE_LUA_DIR;
}

void myc__lua_prepare(lua_State *L, const char *lua_dir, const char *module,
                      const struct myc_ffi_table *ffi_table) {
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
  lua_pushcfunction(L, myc__lua_core_open);
  lua_setfield(L, -2, "mycelium.core");
  lua_pop(L, 2);
  if (ffi_table != NULL) {
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_pushlightuserdata(L, (void *)ffi_table);
    lua_setfield(L, -2, "mycelium.ffi");
    lua_pop(L, 1);
  }
}
