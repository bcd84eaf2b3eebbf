/* msgpack_test.c -- MessagePack from a hostile peer (issue 11): a header
 * claiming 2^32 entries made msgpack-c ask for hundreds of GiB before it
 * found the input was 10 bytes long (under ASan: an out-of-memory abort).
 * The decoder now refuses what cannot fit in the input first, and every
 * well-formed value still round-trips. */
#include "test.h"

#include "lua/msgpack.h"

#include <lauxlib.h>
#include <lualib.h>

/* unpack(bytes): 1 when it returned nil and the malformed message. */
static int refused(lua_State *L, const char *bytes, size_t len) {
  int ok;
  lua_getfield(L, -1, "unpack");
  lua_pushlstring(L, bytes, len);
  if (lua_pcall(L, 1, 2, 0) != 0) {
    lua_pop(L, 1);
    return 0;
  }
  ok = lua_isnil(L, -2) && lua_isstring(L, -1) &&
       strcmp(lua_tostring(L, -1), "malformed MessagePack payload") == 0;
  lua_pop(L, 2);
  return ok;
}

static lua_State *core_state(void) {
  lua_State *L = luaL_newstate();
  if (L != NULL) {
    luaL_openlibs(L);
    myc__lua_core_open(L);
  }
  return L;
}

#define BYTES(s) (s), sizeof(s) - 1

static void headers_claiming_more_than_the_input_are_refused(void) {
  lua_State *L = core_state();
  CHECK(L != NULL);
  CHECK(refused(L, BYTES("\xdd\xff\xff\xff\xff\x01\x02\x03\x04\x05")));
  CHECK(refused(L, BYTES("\xdf\xff\xff\xff\xff\x01\x02\x03\x04\x05")));
  CHECK(refused(L, BYTES("\xdc\xff\xff\x01")));
  CHECK(refused(L, BYTES("\xde\x00\x03\x01\x02\x03\x04\x05")));
  CHECK(refused(L, BYTES("\x91\xdd\xff\xff\xff\xff\x00")));
  CHECK(refused(L, BYTES("\xdb\xff\xff\xff\xff" "abc")));
  CHECK(refused(L, BYTES("\xc6\x7f\xff\xff\xff" "abc")));
  CHECK(refused(L, BYTES("\xc9\xff\xff\xff\xff\x01" "abc")));
  CHECK(refused(L, BYTES("\x93\x01\x02")));  /* one element short */
  CHECK(refused(L, BYTES("\xcb\x00\x00"))); /* a truncated double */
  CHECK(refused(L, BYTES("\xc1")));         /* never used */
  CHECK(refused(L, BYTES("\xda\x00")));     /* truncated length */
  CHECK(refused(L, "", 0));
  lua_close(L);
}

static void well_formed_values_still_decode(void) {
  static const char *lua =
      "local core = ...\n"
      "local v = { 1, -1, 2^40, -2^40, 0.5, 'x', string.rep('s', 70000),"
      "  true, false, { a = { b = { 1, 2, 3 } }, [''] = 'e' },"
      "  { [1] = 'one', [3] = 'three' } }\n"
      "local back = core.unpack(core.pack(v))\n"
      "assert(back[7] == string.rep('s', 70000) and back[3] == 2^40)\n"
      "assert(back[10].a.b[3] == 3 and back[11][3] == 'three')\n"
      "assert(core.unpack('\\xc7\\x01\\x05\\x00') == nil)\n" /* ext: nil */
      "assert(select('#', core.unpack('\\xd8\\x01' .. string.rep('x', 16))) == 1)\n"
      "local t = core.unpack('\\x82\\xa1a\\x01\\xa1b\\xc0')\n"
      "assert(t.a == 1 and t.b == nil)\n";
  lua_State *L = core_state();
  CHECK(L != NULL);
  CHECK_EQ(luaL_loadstring(L, lua), 0);
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    CHECK(0);
  }
  lua_close(L);
}

int main(void) {
  static const test_case cases[] = {
      {"headers claiming more than the input are refused",
       headers_claiming_more_than_the_input_are_refused},
      {"well-formed values still decode", well_formed_values_still_decode},
      {NULL, NULL}};
  return run_tests(cases);
}
