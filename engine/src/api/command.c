/* command.c -- command-line tools written in Lua (`mycelium trace`): a
 * fresh state runs mycelium.tools.NAME's main(args, host), where 'host'
 * offers what the tool cannot do from plain Lua (an HTTP GET).
 */
#include "mycelium.h"

#include "ffi/table.h"
#include "lua/state.h"
#include "observe/trace.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#define GET_TIMEOUT_MS 10000

/* host.http_get(url) -> status, body | nil, reason */
static int http_get(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  myc__alloc a = {myc__default_alloc, NULL};
  myc__text body;
  char err[512] = "";
  int status;
  myc__text_init(&body, &a);
  status = myc__http_call("GET", url, NULL, NULL, 0, GET_TIMEOUT_MS, &body,
                             err, sizeof err);
  if (status < 0 || body.oom) {
    myc__text_free(&body);
    lua_pushnil(L);
    lua_pushstring(L, body.oom ? "out of memory" : err);
    return 2;
  }
  lua_pushinteger(L, status);
  lua_pushlstring(L, body.p ? body.p : "", body.len);
  myc__text_free(&body);
  return 2;
}

static int run(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  int argc = (int)lua_tointeger(L, 2), i;
  char **argv = lua_touserdata(L, 3);
  myc__lua_prepare(L, myc__find_lua_dir(NULL), NULL, myc__ffi_table());
  lua_getglobal(L, "require");
  lua_pushfstring(L, "mycelium.tools.%s", name);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, http_get);
  lua_setfield(L, -2, "http_get");
  lua_call(L, 2, 1);
  return 1;
}

int myc_command(const char *name, int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int rc;
  if (L == NULL) {
    fprintf(stderr, "mycelium %s: out of memory\n", name);
    return 1;
  }
  luaL_openlibs(L);
  lua_pushcfunction(L, run);
  lua_pushstring(L, name);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  if (lua_pcall(L, 3, 1, 0) != 0) {
    fprintf(stderr, "mycelium %s: %s\n", name, lua_tostring(L, -1));
    rc = 1;
  } else {
    rc = (int)luaL_optinteger(L, -1, 0);
  }
  lua_close(L);
  return rc;
}
