-- scripts/check-symbols.lua -- libmycelium exports exactly three sets: the
-- embedding API of engine/include/mycelium.h (MYC_EXTERN), the module
-- opener that hands a LuaJIT outside the engine the table of FFI functions
-- (MYC_FFI: luaopen_mycelium_core, engine/src/ffi/table.h) and the one
-- libc function it defines ahead of libc for LuaJIT's calls (mprotect,
-- engine/src/lua/mcode.c, myc_jit_set_mcode_protect).  The FFI functions
-- themselves (ffi/ffi.h) are reached through that table, not exported.
-- This fails when `nm -D` of the built library shows anything else (an
-- internal symbol or an FFI function escaping -fvisibility=hidden) or
-- misses a declared one.
--
--   luajit scripts/check-symbols.lua build/libmycelium.so [root]
--   luajit scripts/check-symbols.lua --self-test

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Adds to 'out' the names of the functions 'macro' marks in C 'text'.
local function declared(text, macro, out)
  local pattern = macro .. "[^;]-([%w_]+)%s*%b()%s*;"
  for name in text:gsub("/%*.-%*/", " "):gmatch(pattern) do
    out[name] = true
  end
end

-- Exported function names from `nm -D --defined-only` output.
local function exported(nm)
  local out = {}
  for kind, name in nm:gmatch("%x+ (%a) ([%w_@%.]+)") do
    if kind == "T" or kind == "D" or kind == "B" or kind == "R" then
      out[(name:gsub("@.*", ""))] = true
    end
  end
  return out
end

local function compare(want, have)
  local errors = {}
  for name in pairs(have) do
    if not want[name] then
      errors[#errors + 1] = "exported but not declared in mycelium.h, ffi/table.h or mcode.c: " .. name
    end
  end
  for name in pairs(want) do
    if not have[name] then
      errors[#errors + 1] = "declared but not exported: " .. name
    end
  end
  table.sort(errors)
  return errors
end

local function self_test()
  local want = {}
  declared("MYC_EXTERN int myc_a(int x);\n", "MYC_EXTERN", want)
  declared("/* the table */\nint myc_ffi_b(void);\nMYC_FFI int\nluaopen_m(lua_State *L);\n",
           "MYC_FFI", want)
  local cases = {
    { "0001 T myc_a\n0002 T luaopen_m\n", nil },
    { "0001 T myc_a\n0002 T luaopen_m\n0003 T myc__leak\n", "myc__leak" },
    { "0001 T myc_a\n0002 T luaopen_m\n0003 T myc_ffi_b\n", "not declared in mycelium.h, ffi/table.h or mcode.c: myc_ffi_b" },
    { "0001 T myc_a\n", "declared but not exported: luaopen_m" },
    { "0001 T myc_a\n0002 T luaopen_m\n0004 T luaopen_x\n", "luaopen_x" },
  }
  for i, c in ipairs(cases) do
    local text = table.concat(compare(want, exported(c[1])), "; ")
    if (c[2] == nil and text ~= "") or (c[2] and not text:find(c[2], 1, true)) then
      io.stderr:write("check-symbols: self-test case ", i, " gave: ", text, "\n")
      os.exit(1)
    end
  end
  print("check-symbols: self-test: " .. #cases .. " cases")
end

if arg[1] == "--self-test" then
  self_test()
  os.exit(0)
end
local lib, root = arg[1], arg[2] or "."
if lib == nil then
  io.stderr:write("usage: check-symbols.lua path/to/libmycelium.so [root]\n")
  os.exit(2)
end
local want = {}
declared(read(root .. "/engine/include/mycelium.h"), "MYC_EXTERN", want)
declared(read(root .. "/engine/src/ffi/table.h"), "MYC_FFI", want)
declared(read(root .. "/engine/src/lua/mcode.c"), "MYC_EXTERN", want)
local p = assert(io.popen("nm -D --defined-only '" .. lib .. "'"))
local nm = p:read("*a")
p:close()
local have = exported(nm)
if next(have) == nil then
  io.stderr:write("check-symbols: nm -D shows nothing for ", lib, "\n")
  os.exit(1)
end
local errors = compare(want, have)
if #errors > 0 then
  io.stderr:write(table.concat(errors, "\n"), "\n")
  os.exit(1)
end
local n = 0
for _ in pairs(have) do n = n + 1 end
print(string.format("check-symbols: %s exports %d symbols, all of them declared "
  .. "in mycelium.h, ffi/table.h or mcode.c", lib, n))
