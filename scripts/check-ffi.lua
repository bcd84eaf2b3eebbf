-- scripts/check-ffi.lua -- the C<->Lua boundary is declared twice, once
-- for each compiler: engine/src/ffi/ffi.h (and mycelium.h) for C, and
-- lua/mycelium/cdefs.lua for LuaJIT, which declares ffi.h's functions as
-- the fields of the table the runtime binds through (ffi/table.h, a
-- struct per section).  This fails when they disagree on a function's
-- name, return type or parameter types, or on which section's struct
-- holds it and in what order, so that a change on one side cannot ship
-- without the other.  (Struct layouts, the table's included, are checked
-- again at run time, field by field: myc_ffi_layouts.)
--
--   luajit scripts/check-ffi.lua [root]
--   luajit scripts/check-ffi.lua --self-test

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function strip_comments(s)
  return (s:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " "))
end

-- "const char *const *argv" -> "const char*const*": the types alone.
local function param_type(p)
  p = p:gsub("^%s+", ""):gsub("%s+$", "")
  if p == "void" or p == "" then return p end
  -- Drop the parameter's name: the last identifier, unless it is all
  -- there is or the type's own last word.
  local t = p:gsub("([%w_]+)$", function(name)
    local before = p:sub(1, #p - #name)
    if before:match("[%w_%*]%s*$") then return "" end
    return name
  end)
  return (t:gsub("%s*%*%s*", "*"):gsub("%s+", " "):gsub("%s+$", ""))
end

-- name -> normalised "ret(name)(types)" for every function 'prefixes'
-- match, from C declarations in 'text'.
local function prototypes(text, keep)
  local out = {}
  text = strip_comments(text):gsub("MYC_FFI", ""):gsub("MYC_EXTERN", "")
  text = text:gsub("#[^\n]*", " ")
  for decl in text:gmatch("[^;{}]+;") do
    local ret, name, args = decl:match("^%s*([%w_%s%*]-)%s*([%w_]+)%s*%(([^()]*)%)%s*;$")
    if ret and keep(name) and not ret:match("typedef") then
      local types = {}
      for p in (args .. ","):gmatch("([^,]*),") do types[#types + 1] = param_type(p) end
      ret = ret:gsub("%s+", " "):gsub("^%s+", ""):gsub("%s*%*%s*", "*"):gsub("%s+$", "")
      out[name] = ret .. " " .. name .. "(" .. table.concat(types, ",") .. ")"
    end
  end
  return out
end

-- The C text of a Lua file's declarations: every ffi.cdef [[ ... ]] and
-- every section's text = [[ ... ]] (mycelium.cdefs declares in sections).
local function cdef_text(lua)
  local parts = {}
  for body in lua:gmatch("ffi%.cdef%s*%[%[(.-)%]%]") do parts[#parts + 1] = body end
  for body in lua:gmatch("text%s*=%s*%[%[(.-)%]%]") do parts[#parts + 1] = body end
  return table.concat(parts, "\n")
end

-- A field "ret (*name)(args);" read as the prototype "ret name(args);".
local function fields_as_prototypes(text)
  return (text:gsub("%(%s*%*%s*([%w_]+)%s*%)%s*%(", "%1("))
end

-- section -> its functions in order, from the X-macro lists of table.h
-- ("#define MYC_FFI_CORE(X) X(a) X(b)") or from the Lua structs
-- ("struct myc_ffi_core { int (*a)(...); ... };").
local function c_sections(text)
  local out = {}
  text = strip_comments(text):gsub("\\\n", " ")
  for sec, body in text:gmatch("#define MYC_FFI_(%u+)%(X%)([^\n]*)") do
    local names = {}
    for name in body:gmatch("X%(([%w_]+)%)") do names[#names + 1] = name end
    out[sec:lower()] = names
  end
  return out
end

local function lua_sections(text)
  local out = {}
  for sec, body in strip_comments(text):gmatch("struct myc_ffi_(%l+)%s*(%b{})") do
    if sec ~= "table" then
      local names = {}
      for name in body:gmatch("%(%s*%*%s*([%w_]+)%s*%)%s*%(") do names[#names + 1] = name end
      out[sec] = names
    end
  end
  return out
end

local function is_engine_fn(name)
  return name:match("^myc_") ~= nil
end

-- Compares the C headers' and the Lua declarations, and the sections of
-- ffi/table.h ('table_text') with the Lua structs; returns the errors.
local function compare(c_text, lua_text, table_text)
  local errors = {}
  local c = prototypes(c_text, is_engine_fn)
  local lua = prototypes(fields_as_prototypes(cdef_text(lua_text)), is_engine_fn)
  local c_sec, lua_sec, listed = c_sections(table_text), lua_sections(cdef_text(lua_text)), {}
  for sec, names in pairs(c_sec) do
    local have = table.concat(lua_sec[sec] or {}, " ")
    if have ~= table.concat(names, " ") then
      errors[#errors + 1] = string.format("section %s differs:\n  table.h:   %s\n  cdefs.lua: %s",
                                          sec, table.concat(names, " "), have)
    end
    for _, name in ipairs(names) do listed[name] = true end
  end
  for sec in pairs(lua_sec) do
    if c_sec[sec] == nil then
      errors[#errors + 1] = "cdefs.lua declares struct myc_ffi_" .. sec .. ", which table.h does not"
    end
  end
  for name in pairs(c) do
    if name:match("^myc_ffi_") and not listed[name] then
      errors[#errors + 1] = "ffi.h declares " .. name .. ", which no section of table.h holds"
    end
  end
  for name, sig in pairs(lua) do
    if c[name] == nil then
      errors[#errors + 1] = "cdefs.lua declares " .. name .. ", which no C header declares"
    elseif c[name] ~= sig then
      errors[#errors + 1] = string.format("%s differs:\n  C:   %s\n  Lua: %s", name, c[name], sig)
    end
  end
  for name in pairs(c) do
    if name:match("^myc_ffi_") and lua[name] == nil then
      errors[#errors + 1] = "ffi.h declares " .. name .. ", which cdefs.lua does not"
    end
  end
  table.sort(errors)
  return errors, lua
end

local function self_test()
  local c = "int myc_ffi_a(myc_service *s, const char *const *argv, size_t n);\n"
         .. "void myc_ffi_b(void);\nMYC_EXTERN int myc_pub(int x);\n"
  local tbl = "#define MYC_FFI_CORE(X) \\\n  X(myc_ffi_a) \\\n  X(myc_ffi_b)\n"
  local function core(fields) return "struct myc_ffi_core {\n" .. fields .. "\n};\nint myc_pub(int);" end
  local cases = {
    { core "int (*myc_ffi_a)(myc_service *x, const char *const*v, size_t);\nvoid (* myc_ffi_b)(void);", nil },
    { core "int (*myc_ffi_a)(myc_service *s, const char *argv, size_t n);\nvoid (*myc_ffi_b)(void);", "myc_ffi_a differs" },
    { core "int (*myc_ffi_a)(myc_service *s, const char *const *argv, size_t n);", "does not" },
    { core "int (*myc_ffi_a)(myc_service *s, const char *const *argv, size_t n);\nvoid (*myc_ffi_b)(void);\nint (*myc_gone)(int);", "no C header" },
    { core "long (*myc_ffi_a)(myc_service *s, const char *const *argv, size_t n);\nvoid (*myc_ffi_b)(void);", "myc_ffi_a differs" },
    { core "void (*myc_ffi_b)(void);\nint (*myc_ffi_a)(myc_service *s, const char *const *argv, size_t n);", "section core differs" },
    { core "int (*myc_ffi_a)(myc_service *s, const char *const *argv, size_t n);\nvoid (*myc_ffi_b)(void);"
      .. "\nstruct myc_ffi_net { void (*myc_ffi_b)(void); };", "struct myc_ffi_net, which table.h does not" },
  }
  for i, case in ipairs(cases) do
    local errors = compare(c, "ffi.cdef [[\n" .. case[1] .. "\n]]", tbl)
    local text = table.concat(errors, "; ")
    if (case[2] == nil and #errors ~= 0) or (case[2] and not text:find(case[2], 1, true)) then
      io.stderr:write("check-ffi: self-test case ", i, " gave: ", text, "\n")
      os.exit(1)
    end
  end
  local errors = compare(c .. "void myc_ffi_c(void);\n", "ffi.cdef [[\n" .. cases[1][1] .. "\n]]", tbl)
  if not table.concat(errors, "; "):find("ffi.h declares myc_ffi_c, which no section of table.h holds", 1, true) then
    io.stderr:write("check-ffi: self-test: a function outside table.h gave: ", table.concat(errors, "; "), "\n")
    os.exit(1)
  end
  print("check-ffi: self-test: " .. #cases + 1 .. " cases")
end

if arg[1] == "--self-test" then
  self_test()
  os.exit(0)
end
local root = arg[1] or "."
local c_text = read(root .. "/engine/include/mycelium.h") .. "\n"
  .. read(root .. "/engine/src/ffi/ffi.h")
-- mycelium.cdefs keeps its other sections in lua/mycelium/cdefs/*.h.
local lua_text = read(root .. "/lua/mycelium/cdefs.lua")
local p = io.popen("ls '" .. root .. "/lua/mycelium/cdefs/'*.h 2>/dev/null")
for f in p:lines() do lua_text = lua_text .. "\nffi.cdef [[\n" .. read(f) .. "\n]]" end
p:close()
local errors, lua = compare(c_text, lua_text, read(root .. "/engine/src/ffi/table.h"))
if #errors > 0 then
  io.stderr:write(table.concat(errors, "\n"), "\n")
  os.exit(1)
end
local n = 0
for _ in pairs(lua) do n = n + 1 end
print(string.format("check-ffi: cdefs.lua and the C headers agree on %d functions", n))
