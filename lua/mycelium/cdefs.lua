-- mycelium.cdefs -- the one declaration of what Lua shares with the engine's
-- C (docs/ARCHITECTURE.md): the structs, the FFI entry points of
-- engine/src/ffi/ffi.h and the mycelium.h functions the runtime calls, in
-- sections a state declares when it needs them: "core" here (every
-- service's state parses it, so it stays small: about a third of the CPU
-- time of making a small service's state went to parsing declarations),
-- the others in cdefs/*.h ("service": what ctx and ctx.log call now and
-- then).
-- mycelium.cdefs.check does the rest: finding the library, reading the
-- other sections, checking layouts against the engine.
local ffi = require "ffi"

local tonumber, pairs, rawset, setmetatable = tonumber, pairs, rawset, setmetatable
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

/* engine/src/ffi/ffi.h */
typedef struct { const char *type; const char *field; uint32_t value; } myc_ffi_layout;
const myc_ffi_layout *myc_ffi_layouts(uint32_t *n);
const char *myc_ffi_errno(uint32_t i, int *code);
unsigned myc_ffi_abi_checked(myc_service *s, unsigned add);
int myc_ffi_emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
                 const void *data, size_t len);
myc_buf *myc_ffi_buf_new(myc_service *s, size_t size);
int myc_ffi_emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                     uint16_t type);
void myc_ffi_buf_ref(myc_buf *b);
void myc_ffi_buf_release(myc_service *s, myc_buf *b);
int64_t myc_ffi_topic(myc_service *s, const char *name, size_t len);
const char *myc_ffi_topic_name(myc_service *s, uint32_t id);
const char *myc_ffi_topic_check(const char *name, size_t len, int pattern);
int myc_ffi_subscribe(myc_service *s, const char *pattern, size_t len);
int myc_ffi_unsubscribe(myc_service *s, const char *pattern, size_t len);
int64_t myc_ffi_timer(myc_service *s, double delay_ms, double repeat_ms);
double myc_ffi_now(myc_service *s);
int64_t myc_ffi_clock_ns(myc_service *s);
void myc_ffi_trace(myc_service *s, uint8_t *out24);
int myc_ffi_metric(myc_service *s, int kind, const char *name,
                   const char *help, const char *labels, size_t labels_len,
                   uint32_t nlabels, const double *buckets, uint32_t nbuckets,
                   uint32_t max_series, char *err, size_t errlen);
double *myc_ffi_metric_cell(myc_service *s, int id, const char *values,
                            size_t len, int *overflow);
const char *myc_ffi_node(myc_service *s);
void myc_ffi_exit(myc_service *s, int how);
void myc_ffi_unhandled(myc_service *s);
void myc_ffi_hex(char *dst, const uint8_t *src, size_t n);
int myc_ffi_depend(myc_service *s, const char *path, size_t len);
]]

local M = { KIND_RAW = 1, KIND_TABLE = 2, KIND_TYPED = 3,
            HDR_OFFSET = ffi.offsetof("myc_buf", "hdr"),
            FRAME_SIZE = ffi.sizeof("myc_frame"),
            declared = { core = true },
            -- a bit per section in the engine's record of checked ones
            BIT = { core = 1, engine = 2, contract = 4, net = 8,
                    service = 16 } }

-- Declares section 'name' ("service", "engine", "contract", "net") if this state has
-- not yet; checked against the library once it is known.
function M.need(name)
  if not M.declared[name] then require("mycelium.cdefs.check").declare(M, name) end
end

-- The engine's namespace (ffi.C inside the engine, else the library,
-- loaded), its layouts checked unless a service's state deferred that to
-- check_once.
function M.library()
  if M.lib then return M.lib end
  if M.deferred then -- a service's state: ffi.C is the engine
    M.lib = ffi.C
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

-- "full" for a full mailbox, else the engine's message for 'rc'.
function M.strerror(rc)
  local C = M.library()
  if rc == M.E.EFULL then return "full" end
  return ffi.string(C.myc_strerror(rc))
end

-- The symbolic name of 'rc' ("EFULL", "ECONNREFUSED", ...).
function M.err_name(rc)
  return ffi.string(M.library().myc_err_name(rc))
end

return M
