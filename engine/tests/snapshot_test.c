/* snapshot_test.c -- the state-to-state copy of a reload's snapshot: keys
 * and values of every type come across unchanged (false and true keys,
 * negative, fractional and huge numbers, nested tables), a table reached
 * twice is copied twice, and what cannot be carried is refused by path.
 */
#include "test.h"

#include "lua/snapshot.h"

#include <lauxlib.h>
#include <lualib.h>

/* One canonical text of a value: keys sorted by their own text, numbers
 * with every digit, types tagged, so that two states can be compared. */
static const char dump_src[] =
    "local fmt, sort, concat = string.format, table.sort, table.concat\n"
    "local function dump(v)\n"
    "  local t = type(v)\n"
    "  if t == 'number' then\n"
    "    if v ~= v then return 'nan' end\n"
    "    if v == 0 then return 1 / v < 0 and 'n-0' or 'n0' end\n"
    "    return fmt('n%.17g', v)\n"
    "  end\n"
    "  if t == 'string' then return fmt('s%q', v) end\n"
    "  if t ~= 'table' then return tostring(v) end\n"
    "  local items = {}\n"
    "  for k, x in pairs(v) do items[#items + 1] = dump(k) .. '=' .. dump(x) end\n"
    "  sort(items)\n"
    "  return '{' .. concat(items, ',') .. '}'\n"
    "end\n"
    "return dump\n";

/* Every kind of key and value a service keeps.  Two different tables
 * with equal contents come out equal in the dump, so 'shared' is checked
 * apart. */
static const char value_src[] =
    "local shared = { 'same', n = -1 }\n"
    "return {\n"
    "  [true] = 'yes', [false] = 'no',\n"
    "  [-3] = 'minus three', [0.5] = 'half', [-2.25] = 'minus 2.25',\n"
    "  [0] = 'zero', [2^53] = 'big', [1e300] = 'huge', [-1e-300] = 'tiny',\n"
    "  [1] = 'one', [2] = 'two', [3] = false,\n"
    "  s = 'x\\0y', empty = '', long = string.rep('ab', 5000),\n"
    "  t = true, f = false, n = -0.125, negzero = -tonumber('0'), nan = 0/0,\n"
    "  inf = math.huge, ninf = -math.huge, int = -9007199254740993,\n"
    "  nested = { a = { [false] = { [-1.5] = { 'deep', [true] = 0.1 } } } },\n"
    "  [4] = { [false] = true, [true] = false },\n"
    "  ['with.dot'] = {}, shared1 = shared, shared2 = shared,\n"
    "  list = { shared, shared },\n"
    "}\n";

static lua_State *state(void) {
  lua_State *L = luaL_newstate();
  if (L != NULL)
    luaL_openlibs(L);
  return L;
}

/* Dump of the value on top of L's stack (left there), as a new string. */
static char *dump_top(lua_State *L) {
  size_t n;
  const char *s;
  char *out;
  if (luaL_loadstring(L, dump_src) != 0 || lua_pcall(L, 0, 1, 0) != 0)
    return NULL;
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0)
    return NULL;
  s = lua_tolstring(L, -1, &n);
  out = malloc(n + 1);
  if (out != NULL)
    memcpy(out, s, n + 1);
  lua_pop(L, 1);
  return out;
}

/* Runs 'src' (a chunk returning one value) in 'from', copies the value to
 * 'to'.  Returns the copy's result code; the value is on top of both. */
static int copy_chunk(lua_State *from, lua_State *to, const char *src,
                      char *err, size_t errlen) {
  if (luaL_loadstring(from, src) != 0 || lua_pcall(from, 0, 1, 0) != 0) {
    snprintf(err, errlen, "chunk: %s", lua_tostring(from, -1));
    return -1;
  }
  return myc__snapshot_copy(from, lua_gettop(from), to, NULL, err, errlen);
}

static void test_every_type(void) {
  lua_State *from = state(), *to = state();
  char err[512] = "", *want = NULL, *got = NULL;
  CHECK(from != NULL && to != NULL);
  CHECK_EQ(copy_chunk(from, to, value_src, err, sizeof err), 0);
  CHECK_EQ(lua_type(to, -1), LUA_TTABLE);
  want = dump_top(from);
  got = dump_top(to);
  if (want == NULL || got == NULL || strcmp(want, got) != 0)
    fprintf(stderr, "want %.300s\ngot  %.300s\n", want ? want : "(error)",
            got ? got : "(error)");
  CHECK(want != NULL && got != NULL && strcmp(want, got) == 0);
  /* The dump must see what a mutation would change: false keys kept
   * apart from true ones, negative and fractional keys exact. */
  CHECK(strstr(got, "false=s\"no\"") != NULL);
  CHECK(strstr(got, "true=s\"yes\"") != NULL);
  CHECK(strstr(got, "n-2.25=s\"minus 2.25\"") != NULL);
  CHECK(strstr(got, "n0.5=s\"half\"") != NULL);
  CHECK(strstr(got, "s\"negzero\"=n-0") != NULL);
  free(want);
  free(got);
  lua_close(from);
  lua_close(to);
}

/* A table reached twice is copied twice (snapshot.h): the copies are
 * equal and independent. */
static void test_shared_references(void) {
  lua_State *from = state(), *to = state();
  char err[512] = "";
  CHECK(from != NULL && to != NULL);
  CHECK_EQ(copy_chunk(from, to, value_src, err, sizeof err), 0);
  lua_setglobal(to, "got");
  CHECK_EQ(luaL_dostring(to,
                         "return got.shared1 ~= got.shared2"
                         " and got.shared1[1] == 'same'"
                         " and got.shared2[1] == 'same'"
                         " and got.shared2.n == -1"
                         " and got.list[1] ~= got.list[2]"
                         " and got.list[2][1] == 'same'"),
           0);
  CHECK(lua_toboolean(to, -1));
  /* Changing one copy leaves the other alone. */
  CHECK_EQ(luaL_dostring(to, "got.shared1[1] = 'changed'"
                             " return got.shared2[1]"),
           0);
  CHECK_STR(lua_tostring(to, -1), "same");
  lua_close(from);
  lua_close(to);
}

static void test_scalars_at_the_root(void) {
  static const char *const roots[] = {
      "return false", "return true", "return -0.5", "return nil",
      "return 'text'", "return -1e-300"};
  for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
    lua_State *from = state(), *to = state();
    char err[256] = "", *want, *got;
    CHECK(from != NULL && to != NULL);
    CHECK_EQ(copy_chunk(from, to, roots[i], err, sizeof err), 0);
    CHECK_EQ(lua_type(to, -1), lua_type(from, -1));
    want = dump_top(from);
    got = dump_top(to);
    CHECK(want != NULL && got != NULL);
    CHECK_STR(got, want);
    free(want);
    free(got);
    lua_close(from);
    lua_close(to);
  }
}

static void test_refused_by_path(void) {
  static const struct {
    const char *src, *err;
  } cases[] = {
      {"return { a = { [false] = { f = print } }, [true] = 1 }",
       "field 'a[false].f' is a function"},
      {"return { pools = { x = print } }",
       "field 'pools.x' is a function (only nil, booleans, numbers, "
       "strings and tables can be carried)"},
      {"return { [-1.5] = { co = coroutine.create(print) } }",
       "field '[-1.5].co' is a thread"},
      {"return { [{}] = 1 }",
       "has a key that is not a string, number or boolean"},
      {"local t = {} t.self = t return t", "is nested more than 64 levels"},
      {"return print", "the value is a function"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lua_State *from = state(), *to = state();
    char err[512] = "";
    int top;
    CHECK(from != NULL && to != NULL);
    top = lua_gettop(to);
    CHECK(copy_chunk(from, to, cases[i].src, err, sizeof err) != 0);
    if (strstr(err, cases[i].err) == NULL)
      fprintf(stderr, "case %zu: want \"%s\" in \"%s\"\n", i, cases[i].err,
              err);
    CHECK(strstr(err, cases[i].err) != NULL);
    CHECK_EQ(lua_gettop(to), top); /* nothing pushed */
    lua_close(from);
    lua_close(to);
  }
}

/* The strings a copy made, which size the next copy's string table:
 * every string key and value at every level, a repeated one each time. */
static void test_counts_strings(void) {
  lua_State *from = state(), *to = state();
  size_t strings = 0;
  char err[256] = "";
  CHECK(from != NULL && to != NULL);
  CHECK_EQ(luaL_dostring(from, "return { a = 'x', b = { c = 'x', [1] = 2 },"
                               " [true] = 0.5 }"),
           0);
  CHECK_EQ(myc__snapshot_copy(from, lua_gettop(from), to, &strings, err,
                              sizeof err),
           0);
  CHECK_EQ(strings, 5); /* a, x, b, c, x */
  lua_close(from);
  lua_close(to);
}

/* A table of 2 000 entries: an array part, string and number keys. */
static const char big_src[] =
    "local t = {}\n"
    "for i = 1, 500 do t[i] = i * 2 end\n"
    "for i = 1, 1000 do t[string.format('0x%040x', i)] = i * 1.5 end\n"
    "for i = 1, 500 do t[i + 0.5] = { i, tostring(i) } end\n"
    "return { big = t, small = { a = 1 } }\n";

static int hook_calls;
static int hook_raises;

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  hook_calls++;
  if (hook_raises)
    luaL_error(L, "interrupted");
}

/* Copies big_src out of 'from' into a fresh state, a count hook on
 * 'from' during the copy alone, and checks the copy against the
 * original.  '*calls': how often the hook ran. */
static void check_big_copy(lua_State *from, int *calls) {
  lua_State *to = state();
  char err[512] = "", *want, *got;
  *calls = -1;
  CHECK(to != NULL);
  CHECK_EQ(luaL_dostring(from, big_src), 0);
  hook_calls = 0;
  lua_sethook(from, count_hook, LUA_MASKCOUNT, 1);
  CHECK_EQ(myc__snapshot_copy(from, lua_gettop(from), to, NULL, err,
                              sizeof err),
           0);
  lua_sethook(from, NULL, 0, 0);
  *calls = hook_calls;
  want = dump_top(from);
  got = dump_top(to);
  CHECK(want != NULL && got != NULL && strcmp(want, got) == 0);
  free(want);
  free(got);
  lua_settop(from, 0);
  lua_close(to);
}

/* A big table is counted by a loop the source state runs (a count hook
 * on the source sees it; lua_next alone runs no Lua code), made in the
 * source by myc__snapshot_prepare or by the copy itself.  When that loop
 * cannot run (pairs replaced by the service, an error in the loop) the
 * copy counts with lua_next, and is the same. */
static void test_big_tables_counted_in_the_source(void) {
  lua_State *from = state();
  int calls;
  CHECK(from != NULL);
  CHECK_EQ(myc__snapshot_prepare(from), 0);
  hook_raises = 0;
  check_big_copy(from, &calls);
  CHECK(calls > 1000);
  /* An error raised in the loop (as by the watchdog's hook). */
  hook_raises = 1;
  check_big_copy(from, &calls);
  CHECK(calls > 0);
  lua_close(from);

  /* Not prepared: the first copy makes the loop. */
  from = state();
  hook_raises = 0;
  check_big_copy(from, &calls);
  CHECK(calls > 1000);
  lua_close(from);

  /* pairs replaced by the service (a Lua function; a C function that
   * does not give a function): no loop, lua_next counts. */
  from = state();
  CHECK_EQ(luaL_dostring(from, "local p = pairs; pairs = function(t) "
                               "return p(t) end"),
           0);
  CHECK_EQ(myc__snapshot_prepare(from), -1);
  check_big_copy(from, &calls);
  CHECK_EQ(calls, 0);
  lua_close(from);
  from = state();
  CHECK_EQ(luaL_dostring(from, "pairs = tostring"), 0);
  CHECK_EQ(myc__snapshot_prepare(from), -1);
  lua_close(from);
}

int main(void) {
  static const test_case cases[] = {
      {"counts_strings", test_counts_strings},
      {"every_type", test_every_type},
      {"shared_references", test_shared_references},
      {"scalars_at_the_root", test_scalars_at_the_root},
      {"refused_by_path", test_refused_by_path},
      {"big_tables_counted_in_the_source",
       test_big_tables_counted_in_the_source},
      {NULL, NULL},
  };
  return run_tests(cases);
}
