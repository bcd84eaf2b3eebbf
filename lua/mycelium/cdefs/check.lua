-- mycelium.cdefs.check -- the slow path of mycelium.cdefs: finding the
-- library, reading the declarations of a section, and comparing the
-- structs a state declared with the engine's layouts (myc_ffi_layouts:
-- every size and field offset).  Reading frames or counters with a stale
-- layout would corrupt silently; this turns it into an error at load.
local ffi = require "ffi"
local bit = require "bit"

local format, tostring = string.format, tostring
local error, pcall, pairs, ipairs, assert = error, pcall, pairs, ipairs, assert

local M = {}

-- 'types': the structs of a section that C shares (their layouts are
-- checked); 'needs': sections its declarations refer to.
local SECTIONS = {
  core = { types = { "myc_frame", "myc_buf", "myc_svc_view",
                     "myc_ffi_layout", "struct myc_ffi_table",
                     "struct myc_ffi_core" } },
  service = { types = { "myc_service_stats", "struct myc_ffi_service" } },
  engine = { needs = { "contract", "service" },
             types = { "myc_mailbox_config", "myc_supervisor_config",
                       "myc_engine_config", "myc_service_config",
                       "myc_drop_stats", "myc_lifecycle_stats",
                       "struct myc_ffi_engine" } },
  contract = { types = { "myc_contract_field", "struct myc_ffi_contract" } },
  net = { types = { "myc_ws_options", "myc_ws_close_info", "myc_ws_part",
                    "myc_ws_batch",
                    "myc_http_options", "myc_http_response",
                    "myc_redis_event", "myc_redis_value",
                    "myc_redis_options", "myc_pg_event", "myc_pg_options",
                    "myc_pg_result_info", "struct myc_ffi_net" } },
}

local OWNER = {} -- struct -> its section
for name, d in pairs(SECTIONS) do
  for _, t in ipairs(d.types) do OWNER[t] = name end
end

local here = debug.getinfo(1, "S").source:match("^@(.*)/check%.lua$") or "."

-- The layout facts of library 'lib' by type: the list, and the indices
-- of each type's facts in it.  A field's name is read when its section
-- is checked, and a type's once per run of its facts (the facts of one
-- type are adjacent): a state checks one or two sections of the four
-- hundred facts.  An engine struct that no section declares is refused,
-- the two sides having drifted apart.
local function facts_of(lib)
  local n = ffi.new("uint32_t[1]")
  local list = lib.myc_ffi_layouts(n)
  local by_type, last, ctype = {}, nil, nil
  for i = 0, n[0] - 1 do
    local p = list[i].type
    if p ~= last then
      last, ctype = p, ffi.string(p)
      if OWNER[ctype] == nil then
        error(format("mycelium: the engine shares struct %s, which "
                     .. "lua/mycelium/cdefs.lua does not declare (rebuild, or "
                     .. "point MYCELIUM_PATH at the lua/ of this build)", ctype), 0)
      end
      by_type[ctype] = by_type[ctype] or {}
    end
    local at = by_type[ctype]
    at[#at + 1] = i
  end
  return { list = list, by_type = by_type }
end

-- Checks the structs of section 'name' against the facts 'facts'.
-- Raises naming the first struct or field that differs.
local function check_section(name, facts)
  local list = facts.list
  for _, ctype in ipairs(SECTIONS[name].types) do
    -- The ctype once: by name, each sizeof and offsetof would parse it.
    local declared, ct = pcall(ffi.typeof, ctype)
    for _, i in ipairs(facts.by_type[ctype] or {}) do
      local f = list[i]
      local field = f.field ~= nil and ffi.string(f.field) or nil
      local ok, have = declared, "undeclared"
      if ok then
        if field == nil then have = ffi.sizeof(ct)
        else have = ffi.offsetof(ct, field) ok = have ~= nil end
      end
      if not ok or have ~= f.value then
        error(format("mycelium: lua/mycelium/cdefs.lua does not match the "
                     .. "engine: %s%s is %s here, %d in the engine (rebuild, "
                     .. "or point MYCELIUM_PATH at the lua/ of this build)",
                     ctype, field and "." .. field or " size",
                     ok and tostring(have) or "undeclared", f.value), 0)
      end
    end
  end
end

-- Each runs once per check over a few hundred facts: left to the
-- interpreter, they cost no trace compilation (and no machine-code pages)
-- in a new state.
jit.off(facts_of, true)
jit.off(check_section, true)

local facts -- of the library this state uses, read when first needed

local function check_now(cdefs, name)
  facts = facts or facts_of(cdefs.lib)
  check_section(name, facts)
end

-- A service's state: checks 'name' unless another state of the engine
-- has.
local function check_recorded(cdefs, name)
  local b = cdefs.BIT[name]
  if bit.band(cdefs.lib.myc_ffi_abi_checked(cdefs.svc, 0), b) == 0 then
    check_now(cdefs, name)
    cdefs.lib.myc_ffi_abi_checked(cdefs.svc, b)
  end
end

-- Declares section 'name' in the state of 'cdefs' (mycelium.cdefs), with
-- what it needs, and checks it if the library is known.
function M.declare(cdefs, name)
  local d = assert(SECTIONS[name], "mycelium.cdefs: no section " .. tostring(name))
  for _, dep in ipairs(d.needs or {}) do cdefs.need(dep) end
  local f, err = io.open(here .. "/" .. name .. ".h", "rb")
  if f == nil then
    error("mycelium.cdefs: cannot read its declarations: " .. err, 0)
  end
  ffi.cdef(f:read("*a"))
  f:close()
  cdefs.declared[name] = true
  if cdefs.check_mode == "now" then
    check_now(cdefs, name)
  elseif cdefs.check_mode == "recorded" then
    check_recorded(cdefs, name)
  end
end

-- Where the library is when this Lua is not running inside the engine:
-- $MYCELIUM_LIB, the build tree next to the source tree's lua/, then
-- luarocks' tree (next to the C modules), then the system's.
local function find_library()
  local env = os.getenv("MYCELIUM_LIB")
  if env and env ~= "" then return env end
  local p = here .. "/../../../build/libmycelium.so"
  local f = io.open(p, "rb")
  if f then f:close() return p end
  return package.searchpath("libmycelium", package.cpath) or "mycelium"
end

ffi.cdef [[
typedef struct { const char *dli_fname; void *dli_fbase;
                 const char *dli_sname; void *dli_saddr; } myc_dl_info;
int dladdr(const void *addr, myc_dl_info *info);
]]

-- The FFI table of the library at 'path' (luaopen_mycelium_core gives
-- it), kept in package.loaded["mycelium.ffi"] as the engine does.
local function table_of(path)
  local open, err = package.loadlib(path, "luaopen_mycelium_core")
  if open == nil then
    error("mycelium: cannot load " .. path .. ": " .. tostring(err), 0)
  end
  local tbl = open().ffi_table
  package.loaded["mycelium.ffi"] = tbl
  return tbl
end

-- Sets cdefs.lib: the namespace of the table and of ffi.C inside the
-- engine (a state it made, which has the table; or a process that
-- loaded the library globally, whose copy gives it), else of the
-- library loaded globally, so that the service states it makes resolve
-- ffi.C too.
function M.library(cdefs)
  local lib, tbl = ffi.C, package.loaded["mycelium.ffi"]
  if tbl == nil then
    local info = ffi.new("myc_dl_info")
    if pcall(function() return ffi.C.myc_strerror end)
       and ffi.C.dladdr(ffi.C.myc_strerror, info) ~= 0 then
      cdefs.path = ffi.string(info.dli_fname)
      tbl = table_of(cdefs.path)
    else
      cdefs.path = find_library()
      lib = ffi.load(cdefs.path, true)
      tbl = table_of(cdefs.path)
    end
  end
  lib = cdefs.bind(lib, tbl)
  cdefs.lib = lib
  if not cdefs.deferred then
    for name in pairs(cdefs.declared) do check_now(cdefs, name) end
    cdefs.check_mode = "now"
  end
  return lib
end

-- The first check of a service's state (cdefs.svc set): each section it
-- declared, unless another state of the engine checked it.
function M.once(cdefs)
  for name in pairs(cdefs.declared) do check_recorded(cdefs, name) end
end


-- Checks the sections 'cdefs' declared against the layouts of 'lib'
-- (another library, or a stand-in); raises on a difference.
function M.against(cdefs, lib)
  local f = facts_of(lib)
  for name in pairs(cdefs.declared) do check_section(name, f) end
  return lib
end

return M
