-- mycelium.cdefs -- the one declaration of what Lua shares with the engine's
-- C (docs/ARCHITECTURE.md): the structs, the table of the FFI entry points
-- of engine/src/ffi/ffi.h (ffi/table.h: the library does not export them)
-- and the mycelium.h functions the runtime calls, in sections a state
-- declares when it needs them: "core" here (every service's state parses
-- it, so it stays small: about a third of the CPU time of making a small
-- service's state went to parsing declarations), the others in cdefs/*.h
-- ("service": what ctx and ctx.log call now and then).  Each section has
-- its struct in the table.
-- mycelium.cdefs.check does the rest: finding the library, reading the
-- other sections, checking layouts against the engine.
local ffi = require "ffi"

local tonumber, pairs, next, rawset, setmetatable = tonumber, pairs, next, rawset, setmetatable
local band = require("bit").band

ffi.cdef [[
/* engine/src/core/buf.h */
typedef struct myc_frame {
  uint32_t frame_len; uint16_t type; uint8_t kind; uint8_t flags;
  uint8_t trace_id[16]; uint8_t span_id[8]; uint8_t parent_id[8];
  uint64_t seq; uint64_t ts_ns;
  uint32_t payload_len; uint16_t topic_len; uint8_t source_len; uint8_t version;
} myc_frame;
typedef struct myc_buf {
  struct myc_buf *next; uint32_t refs; uint32_t cap; uint32_t topic_id;
  uint8_t size_class; uint8_t shared; uint8_t origin; uint8_t wire_prefix[9];
  myc_frame hdr;
} myc_buf;

/* engine/src/runtime/service.h */
typedef struct {
  myc_buf **batch; int32_t cursor; uint32_t batch_n; uint32_t faults;
  uint32_t requests;
  int64_t *marks;
  myc_buf **small_free; uint32_t *small_nfree; int32_t small_room;
} myc_svc_view;
typedef struct myc_service myc_service;

/* engine/include/mycelium.h: what every state needs */
typedef struct myc_engine myc_engine;
typedef void *(*myc_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);
typedef void (*myc_log_fn)(void *ud, int level, const char *line, size_t len);
const char *myc_strerror(int err);
const char *myc_err_name(int err);

/* engine/src/ffi/table.h: the table of ffi.h's functions, a pointer to a
   struct per section (typed when the section is declared), and the
   "core" section.  ffi.h names the parameters: unnamed here, they cost
   every state's parse a sixth less. */
struct myc_ffi_table { const void *core, *service, *contract, *engine, *net; };
typedef struct { const char *type; const char *field; uint32_t value; } myc_ffi_layout;
struct myc_ffi_core {
  const myc_ffi_layout *(*myc_ffi_layouts)(uint32_t *);
  const char *(*myc_ffi_errno)(uint32_t, int *);
  unsigned (*myc_ffi_abi_checked)(myc_service *, unsigned);
  int (*myc_ffi_emit)(myc_service *, uint32_t, int, uint16_t, const void *,
                      size_t);
  myc_buf *(*myc_ffi_buf_new)(myc_service *, size_t);
  int (*myc_ffi_emit_buf)(myc_service *, uint32_t, myc_buf *, int, uint16_t);
  void (*myc_ffi_buf_ref)(myc_buf *);
  void (*myc_ffi_buf_release)(myc_service *, myc_buf *);
  int64_t (*myc_ffi_topic)(myc_service *, const char *, size_t);
  const char *(*myc_ffi_topic_name)(myc_service *, uint32_t);
  const char *(*myc_ffi_topic_check)(const char *, size_t, int);
  int (*myc_ffi_subscribe)(myc_service *, const char *, size_t);
  int (*myc_ffi_unsubscribe)(myc_service *, const char *, size_t);
  int64_t (*myc_ffi_timer)(myc_service *, double, double);
  double (*myc_ffi_now)(myc_service *);
  int64_t (*myc_ffi_clock_ns)(myc_service *);
  void (*myc_ffi_trace)(myc_service *, uint8_t *);
  int (*myc_ffi_metric)(myc_service *, int, const char *, const char *,
                        const char *, size_t, uint32_t, const double *,
                        uint32_t, uint32_t, char *, size_t);
  double *(*myc_ffi_metric_cell)(myc_service *, int, const char *, size_t,
                                 int *);
  const char *(*myc_ffi_node)(myc_service *);
  void (*myc_ffi_exit)(myc_service *, int);
  void (*myc_ffi_unhandled)(myc_service *);
  void (*myc_ffi_hex)(char *, const uint8_t *, size_t);
  int (*myc_ffi_depend)(myc_service *, const char *, size_t);
};
]]

local M = { KIND_RAW = 1, KIND_TABLE = 2, KIND_TYPED = 3,
            HDR_OFFSET = ffi.offsetof("myc_buf", "hdr"),
            FRAME_SIZE = ffi.sizeof("myc_frame"),
            declared = { core = true },
            -- a bit per section in the engine's record of checked ones
            BIT = { core = 1, engine = 2, contract = 4, net = 8,
                    service = 16 } }

-- The ctypes of the struct of the table that holds a section's functions
-- and of a pointer to it, made when first needed: by name, every
-- ffi.offsetof would parse it.
local section_ct, section_ptr = {}, {}
setmetatable(section_ct, { __index = function(t, name)
  local ct = ffi.typeof("struct myc_ffi_" .. name)
  t[name], section_ptr[name] = ct, ffi.typeof("const struct myc_ffi_" .. name .. " *")
  return ct
end })

-- The namespace the runtime calls through ('C' in its modules) from the
-- engine's table 'tbl' (a light userdata) and 'lib' (ffi.C or the loaded
-- library): a function of ffi.h comes from the table's struct of the
-- section declaring it, one of mycelium.h from 'lib'.  Each is looked up
-- once and kept: later reads are a plain table's (indexing the struct
-- would make a new cdata on every read in the interpreter), and a
-- function kept in a module's upvalue is a constant in compiled code.
-- The section declaring a name is found with next() in a plain loop, not
-- with pairs(): a name can be looked up first in a finaliser (ffi.gc;
-- lua_close runs every one), and the LuaJIT 2.1 of 2022 leaves a compiled
-- pairs() loop (BC_ITERN) only through a side trace, which it never
-- records in a finaliser: the loop's end re-entered the trace for ever
-- (LuaJIT's "Ensure forward progress on trace exit to BC_ITERN",
-- 2023-08).  "core", which most lookups want, is tried first.
function M.bind(lib, tbl)
  local sections = ffi.cast("const struct myc_ffi_table *", tbl)
  local held = {} -- section -> its struct, read once
  local declared = M.declared
  return setmetatable({}, { __index = function(C, k)
    local name = "core"
    if not ffi.offsetof(section_ct.core, k) then
      name = next(declared)
      while name ~= nil
            and (name == "core" or not ffi.offsetof(section_ct[name], k)) do
        name = next(declared, name)
      end
    end
    if name ~= nil then
      local section = held[name]
      if section == nil then
        section = sections[name]
        if section == nil then
          error("mycelium: " .. k .. " is not in this build of libmycelium "
                .. "(built without MYC_WITH_NET?)", 2)
        end
        section = ffi.cast(section_ptr[name], section)
        held[name] = section
      end
      local f = section[k]
      rawset(C, k, f)
      return f
    end
    local f = lib[k]
    rawset(C, k, f)
    return f
  end })
end

-- Declares section 'name' ("service", "engine", "contract", "net") if this state has
-- not yet; checked against the library once it is known.
function M.need(name)
  if not M.declared[name] then require("mycelium.cdefs.check").declare(M, name) end
end

-- The namespace the runtime calls through (M.bind: the engine's FFI table,
-- and ffi.C inside the engine, else the library, loaded, for mycelium.h's
-- functions), its layouts checked unless a service's state deferred that
-- to check_once.
function M.library()
  if M.lib then return M.lib end
  if M.deferred then -- a service's state: the engine gave it the table
    M.lib = M.bind(ffi.C, assert(package.loaded["mycelium.ffi"],
                                 "mycelium: no FFI table in this state"))
    return M.lib
  end
  return require("mycelium.cdefs.check").library(M)
end

-- M.E, the engine's error codes by name (EFULL = -5003, ...), read from
-- the library when first used.
setmetatable(M, { __index = function(_, k)
  if k ~= "E" then return nil end
  local C, E, code, i = M.library(), {}, ffi.new("int[1]"), 0
  while true do
    local name = C.myc_ffi_errno(i, code)
    if name == nil then break end
    E[ffi.string(name)] = tonumber(code[0])
    i = i + 1
  end
  rawset(M, "E", E)
  return E
end })

-- A service's state defers the check until it knows its service.
function M.defer_check() M.deferred = true end

-- The check of a service's state ('s': its myc_service*): the first state
-- of the engine to declare a section checks it, the others trust it.
function M.check_once(s)
  local C = M.library()
  local done = C.myc_ffi_abi_checked(s, 0)
  M.svc = s
  for name in pairs(M.declared) do
    if band(done, M.BIT[name]) == 0 then
      require("mycelium.cdefs.check").once(M)
      break
    end
  end
  M.check_mode = "recorded" -- sections declared later: cdefs.check
end

-- Checks the sections this state declared against the layouts of 'l'
-- (another library, or a stand-in); raises on a difference.  Returns 'l'.
function M.check(l)
  return require("mycelium.cdefs.check").against(M, l)
end

-- The strings of each code, made once: a flood into a full mailbox
-- asks for them at every refused emit, and each ffi.string was a strlen
-- and an interning lookup.  Only codes in the engine's range are kept,
-- so that a caller passing arbitrary numbers cannot grow the tables.
local messages, names = {}, {}
local function cached(cache, rc, make)
  local s = cache[rc]
  if s ~= nil then return s end
  s = make(rc)
  if type(rc) == "number" and rc % 1 == 0 and rc < 0 and rc > -10000 then
    cache[rc] = s
  end
  return s
end

local function message_of(rc)
  if rc == M.E.EFULL then return "full" end
  return ffi.string(M.library().myc_strerror(rc))
end

local function name_of(rc)
  return ffi.string(M.library().myc_err_name(rc))
end

-- "full" for a full mailbox, else the engine's message for 'rc'.
function M.strerror(rc)
  return cached(messages, rc, message_of)
end

-- The symbolic name of 'rc' ("EFULL", "ECONNREFUSED", ...).
function M.err_name(rc)
  return cached(names, rc, name_of)
end

return M
