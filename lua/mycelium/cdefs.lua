-- mycelium.cdefs -- the one declaration of what the Lua runtime shares with
-- the engine's C: the structs (frames, the service view, counters, configs,
-- the network clients' options and events), the FFI entry points of
-- engine/src/ffi/ffi.h (myc_ffi_*), and the public functions of mycelium.h
-- the runtime calls.  Every other module takes its declarations from here
-- (cdefs.need(section)); scripts/check-ffi.lua checks that this file and
-- the C headers declare the same functions.  When a state first asks for
-- the library, every declared struct's size and field offsets are
-- compared with the engine's, and the error codes are read from it
-- rather than copied.
local ffi = require "ffi"

local format, tonumber, tostring = string.format, tonumber, tostring
local error, pcall, pairs, ipairs, assert = error, pcall, pairs, ipairs, assert

-- The declarations, in sections a state declares when it first needs them
-- (a service's state only needs "core"; parsing what it never uses would
-- cost every state, and every restart, its time).  'types' lists the
-- structs a section shares with C, whose layouts are checked.
local SECTIONS = {
  core = {
    types = { "myc_frame", "myc_buf", "myc_svc_view", "myc_service_stats",
              "myc_ffi_layout" },
    text = [[
/* engine/src/core/buf.h */
typedef struct myc_frame {
  uint32_t frame_len; uint16_t type; uint8_t kind; uint8_t flags;
  uint8_t trace_id[16]; uint8_t span_id[8]; uint8_t parent_id[8];
  uint64_t seq; uint64_t ts_ns;
  uint32_t payload_len; uint16_t topic_len; uint8_t source_len; uint8_t version;
} myc_frame;
typedef struct myc_buf {
  void *next; uint32_t refs; uint32_t cap; uint32_t topic_id;
  uint8_t size_class; uint8_t shared; uint8_t origin; uint8_t wire_prefix[9];
  myc_frame hdr;
} myc_buf;

/* engine/src/runtime/service.h */
typedef struct {
  myc_buf **batch; int32_t cursor; uint32_t batch_n; uint32_t faults;
} myc_svc_view;
typedef struct myc_service myc_service;

/* engine/include/mycelium.h: what every state needs */
typedef struct myc_engine myc_engine;
typedef void *(*myc_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);
typedef void (*myc_log_fn)(void *ud, int level, const char *line, size_t len);
typedef struct {
  const char *name; int32_t worker; const char *state;
  uint64_t in, out, errors, dropped, dropped_oldest, dropped_newest, rejected;
  uint32_t queue_depth, queue_capacity; uint64_t memory_bytes;
  const char *restart; const char *group;
  uint64_t restarts, timeouts, reloads, reload_failures, rollbacks;
  uint64_t memory_limit, memory_peak; uint32_t version;
  char running[128]; double running_ms; double last_pause_ms;
} myc_service_stats;
const char *myc_strerror(int err);
const char *myc_err_name(int err);

/* engine/src/ffi/ffi.h */
typedef struct { const char *type; const char *field; uint32_t value; } myc_ffi_layout;
const myc_ffi_layout *myc_ffi_layouts(uint32_t *n);
const char *myc_ffi_errno(uint32_t i, int *code);
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
void myc_ffi_shutdown(myc_service *s, int code);
uint32_t myc_ffi_queue_depth(myc_service *s);
uint32_t myc_ffi_queue_capacity(myc_service *s);
int myc_ffi_over_threshold(myc_service *s);
double myc_ffi_pressure(myc_service *s, uint32_t topic_id);
int myc_ffi_stats(myc_service *s, const char *name, size_t len,
                  myc_service_stats *out);
int myc_ffi_log_level(myc_service *s);
int myc_ffi_log_format(myc_service *s);
void myc_ffi_log(myc_service *s, int level, const char *msg, size_t len,
                 const char *extra, size_t extra_len);
void myc_ffi_trace(myc_service *s, uint8_t *out24);
const char *myc_ffi_node(myc_service *s);
void myc_ffi_exit(myc_service *s, int how);
void myc_ffi_unhandled(myc_service *s);
void myc_ffi_hex(char *dst, const uint8_t *src, size_t n);
]],
  },
  engine = {
    types = { "myc_mailbox_config", "myc_supervisor_config",
              "myc_engine_config", "myc_service_config", "myc_drop_stats" },
    text = [[
/* engine/include/mycelium.h: the embedding API mycelium.testing drives */
typedef struct { uint32_t capacity; int policy; double threshold; } myc_mailbox_config;
typedef struct {
  double backoff_initial_ms, backoff_max_ms, multiplier, jitter;
  uint32_t max_restarts; double window_s, reset_s, reload_probation_s;
} myc_supervisor_config;
typedef struct {
  const char *node; uint32_t workers; myc_mailbox_config mailbox;
  int log_level; int log_format; myc_log_fn log_fn; void *log_ud;
  const char *lua_path; int manual; myc_alloc_fn alloc; void *alloc_ud;
  myc_alloc_fn lua_alloc; void *lua_alloc_ud;
  myc_supervisor_config supervisor; const char *control; int reload;
} myc_engine_config;
typedef struct {
  const char *name; const char *module; const void *opts; size_t opts_len;
  int32_t worker; const myc_mailbox_config *mailbox;
  int restart; const char *group; double memory_limit_mb;
  double handler_timeout_ms; double reload_probation_s;
} myc_service_config;
typedef struct {
  const char *topic; uint64_t dropped_oldest, dropped_newest, rejected, shutdown;
} myc_drop_stats;
void myc_engine_config_init(myc_engine_config *cfg);
int myc_engine_new(myc_engine **out, const myc_engine_config *cfg);
int myc_engine_add_service(myc_engine *e, const myc_service_config *sc,
                           char *err, size_t errlen);
typedef enum { MYC_ONE_FOR_ONE, MYC_ONE_FOR_ALL, MYC_REST_FOR_ONE } myc_strategy;
int myc_engine_add_group(myc_engine *e, const char *name, myc_strategy strategy,
                         const myc_supervisor_config *sc);
int myc_engine_set_contracts(myc_engine *e, myc_contract_set *cs, int validate);
int myc_engine_start(myc_engine *e, char *err, size_t errlen);
int64_t myc_engine_run_once(myc_engine *e, uint64_t max_batches);
int myc_engine_advance(myc_engine *e, double ms);
int myc_engine_shutdown(myc_engine *e);
int myc_engine_stopping(myc_engine *e, int *code);
void myc_engine_free(myc_engine *e);
int myc_engine_reload(myc_engine *e, const char *name, const char *module,
                      char *err, size_t errlen);
int myc_publish(myc_engine *e, const char *topic, int kind, uint16_t type,
                const void *data, size_t len);
uint32_t myc_engine_service_count(myc_engine *e);
int myc_engine_service_stats(myc_engine *e, uint32_t index, myc_service_stats *st);
int myc_engine_service_drops(myc_engine *e, uint32_t index, myc_drop_stats *out,
                             uint32_t max);
typedef struct myc_ffi_logs myc_ffi_logs;
myc_ffi_logs *myc_ffi_test_logs_new(myc_alloc_fn alloc, void *ud);
void myc_ffi_test_logs_free(myc_ffi_logs *l);
void myc_ffi_test_log_sink(void *ud, int level, const char *line, size_t len);
int64_t myc_ffi_test_logs_next(myc_ffi_logs *l, char *dst, size_t cap);
typedef struct myc_ffi_collector myc_ffi_collector;
int myc_ffi_test_collector(myc_engine *e, const char *name, const char *pattern,
                           myc_ffi_collector **out);
uint32_t myc_ffi_test_collected(myc_ffi_collector *c, myc_buf **out, uint32_t max);
void myc_ffi_test_buf_release(myc_engine *e, myc_buf *b);
int myc_ffi_test_fault(myc_engine *e, const char *name, uint32_t n);
]],
  },
  contract = {
    types = { "myc_contract_field" },
    text = [[
/* engine/include/mycelium.h: contracts */
typedef struct myc_contract_set myc_contract_set;
typedef struct myc_contract_type myc_contract_type;
typedef struct {
  const char *name; const char *type; int kind; int elem_kind;
  uint32_t elem_size; uint32_t count; uint32_t offset; uint32_t size;
  int optional; int line;
} myc_contract_field;
int myc_contract_load(myc_contract_set **out, const char *path,
                      myc_alloc_fn alloc, void *ud);
int myc_contract_load_string(myc_contract_set **out, const char *name,
                             const char *text, size_t len, myc_alloc_fn alloc,
                             void *ud);
void myc_contract_free(myc_contract_set *cs);
size_t myc_contract_error_count(const myc_contract_set *cs);
const char *myc_contract_error(const myc_contract_set *cs, size_t i);
const char *myc_contract_error_kind(const myc_contract_set *cs, size_t i);
int myc_contract_error_line(const myc_contract_set *cs, size_t i);
const char *myc_contract_digest(const myc_contract_set *cs);
uint32_t myc_contract_schema_id(const myc_contract_set *cs);
uint16_t myc_contract_schema_version(const myc_contract_set *cs);
uint16_t myc_contract_min_compatible(const myc_contract_set *cs);
size_t myc_contract_type_count(const myc_contract_set *cs);
const myc_contract_type *myc_contract_type_at(const myc_contract_set *cs, size_t i);
const char *myc_contract_type_name(const myc_contract_type *t);
uint16_t myc_contract_type_tag(const myc_contract_type *t);
size_t myc_contract_type_size(const myc_contract_type *t);
const char *myc_contract_type_domain(const myc_contract_type *t);
const char *myc_contract_type_digest(const myc_contract_type *t);
size_t myc_contract_field_count(const myc_contract_type *t);
const myc_contract_field *myc_contract_field_at(const myc_contract_type *t, size_t i);
int myc_contract_validate(const myc_contract_type *t, const void *payload,
                          size_t len, char *err, size_t errlen);
]],
  },
  net = {
    types = { "myc_ws_options", "myc_ws_close_info", "myc_http_options",
              "myc_http_response", "myc_redis_event", "myc_redis_value",
              "myc_redis_options" },
    text = [[
/* engine/src/net/ws.h */
typedef struct myc_ws myc_ws;
typedef struct {
  const char *ca_file; int32_t insecure; int32_t reconnect;
  double backoff_initial_ms, backoff_max_ms, backoff_multiplier;
  double backoff_jitter; int32_t max_attempts; double open_timeout_ms;
  double ping_interval_ms; double pong_timeout_ms; double close_timeout_ms;
  double max_message; double max_buffered;
  const char *protocol; const char *headers;
} myc_ws_options;
typedef struct {
  int32_t code; int32_t err; int32_t attempt; double reconnect_ms;
  const char *reason; size_t reason_len; const char *error;
} myc_ws_close_info;
void myc_ffi_ws_options_init(myc_ws_options *o);
myc_ws *myc_ffi_ws_open(myc_service *s, uint64_t source, const char *url,
                        const myc_ws_options *o, char *err, size_t errlen);
int myc_ffi_ws_send(myc_ws *ws, int binary, const void *p, size_t n);
int myc_ffi_ws_ping(myc_ws *ws, const void *p, size_t n);
int myc_ffi_ws_close(myc_ws *ws, int code, const char *reason, size_t n);
void myc_ffi_ws_pause(myc_ws *ws);
void myc_ffi_ws_resume(myc_ws *ws);
int myc_ffi_ws_state(const myc_ws *ws);
double myc_ffi_ws_buffered(const myc_ws *ws);
void myc_ffi_ws_release(myc_ws *ws);

/* engine/src/net/http.h */
typedef struct myc_http myc_http;
typedef struct {
  const char *ca_file; int32_t insecure; double timeout_ms; double max_body;
} myc_http_options;
typedef struct {
  int32_t status; int32_t err; const char *body; size_t body_len;
  const char *error;
} myc_http_response;
void myc_ffi_http_options_init(myc_http_options *o);
myc_http *myc_ffi_http_request(myc_service *s, uint64_t source,
                               const char *method, const char *url,
                               const char *headers, const void *body, size_t n,
                               const myc_http_options *o, char *err,
                               size_t errlen);
void myc_ffi_http_release(myc_http *h);

/* engine/src/net/redis_client.h */
typedef struct myc_redis myc_redis;
typedef struct {
  uint64_t id; int32_t status; int32_t retry_ms; const void *reply;
  const char *error;
} myc_redis_event;
typedef struct {
  int32_t type; int64_t integer; const char *str; size_t len; size_t elements;
} myc_redis_value;
typedef struct {
  const char *password; uint32_t connect_timeout_ms; uint32_t command_timeout_ms;
  uint32_t reconnect_min_ms; uint32_t reconnect_max_ms; uint32_t max_pending;
} myc_redis_options;
int myc_ffi_redis_open(myc_service *s, uint64_t source, const char *url,
                       const myc_redis_options *opt, myc_redis **out,
                       char *err, size_t errlen);
int64_t myc_ffi_redis_command(myc_redis *c, int argc, const char *const *argv,
                              const size_t *lens);
void myc_ffi_redis_close(myc_redis *c);
void myc_ffi_redis_free(myc_redis *c);
const char *myc_ffi_redis_state(const myc_redis *c);
const char *myc_ffi_redis_server(const myc_redis *c);
const char *myc_ffi_redis_error(const myc_redis *c);
uint32_t myc_ffi_redis_pending(const myc_redis *c);
void myc_ffi_redis_reply_view(const void *r, myc_redis_value *out);
const void *myc_ffi_redis_reply_element(const void *r, size_t i);
]],
  },
}

local M = {
  KIND_RAW = 1,
  KIND_TABLE = 2,
  KIND_TYPED = 3,
}

-- Sections a section's declarations refer to.
local DEPENDS = { engine = { "contract" } }

-- The sections declared in this state (ffi.cdef is per state, and a
-- declaration cannot be repeated).
local declared = {}

-- Which section declares each shared struct, for the layout check.
local OWNER = {}
for name, sec in pairs(SECTIONS) do
  for _, t in ipairs(sec.types) do OWNER[t] = name end
end

-- The layout facts of the library in use, by type (see check).
local facts_by_type

-- Compares the declarations of section 'name' with the engine's layout
-- facts 'by_type': reading frames or counters with a stale layout would
-- corrupt silently.  Raises naming the first struct or field that differs.
local function check_section(name, by_type)
  for _, ctype in ipairs(SECTIONS[name].types) do
    for _, f in ipairs(by_type[ctype] or {}) do
      local ok, have = pcall(function()
        if f.field == nil then return ffi.sizeof(ctype) end
        return ffi.offsetof(ctype, f.field)
      end)
      if not ok or have ~= f.value then
        error(format("mycelium: lua/mycelium/cdefs.lua does not match the "
                     .. "engine: %s%s is %s here, %d in the engine (rebuild, "
                     .. "or point MYCELIUM_PATH at the lua/ of this build)",
                     ctype, f.field and "." .. f.field or " size",
                     ok and tostring(have) or "undeclared", f.value), 0)
      end
    end
  end
end

-- Declares section 'name' ("core", "engine", "contract", "net") in this
-- state if it is not yet, and checks its structs once a library is
-- known.  Modules call it for what they use.
function M.need(name)
  if declared[name] then return end
  assert(SECTIONS[name], "mycelium.cdefs: no section " .. tostring(name))
  for _, dep in ipairs(DEPENDS[name] or {}) do M.need(dep) end
  ffi.cdef(SECTIONS[name].text)
  declared[name] = true
  if facts_by_type then check_section(name, facts_by_type) end
end

M.need("core")
M.HDR_OFFSET = ffi.offsetof("myc_buf", "hdr")
M.FRAME_SIZE = ffi.sizeof("myc_frame")

-- The layout facts of 'lib' by type.  An engine struct that no section
-- declares is refused: the two sides would have drifted apart.
local function read_facts(lib)
  local n = ffi.new("uint32_t[1]")
  local facts = lib.myc_ffi_layouts(n)
  local by_type = {}
  for i = 0, n[0] - 1 do
    local f = facts[i]
    local ctype = ffi.string(f.type)
    if OWNER[ctype] == nil then
      error(format("mycelium: the engine shares struct %s, which "
                   .. "lua/mycelium/cdefs.lua does not declare (rebuild, or "
                   .. "point MYCELIUM_PATH at the lua/ of this build)", ctype), 0)
    end
    by_type[ctype] = by_type[ctype] or {}
    table.insert(by_type[ctype], { field = f.field ~= nil and ffi.string(f.field) or nil,
                                   value = f.value })
  end
  return by_type
end

-- Checks every section declared so far against the layouts of 'lib' (a
-- namespace from ffi.load, or ffi.C inside the engine).  Returns 'lib'.
function M.check(lib)
  local by_type = read_facts(lib)
  for name in pairs(declared) do check_section(name, by_type) end
  return lib
end

-- The engine's error codes by name (EFULL = -5003, ...), from the library.
local function read_errors(lib)
  local t, code = {}, ffi.new("int[1]")
  local i = 0
  while true do
    local name = lib.myc_ffi_errno(i, code)
    if name == nil then break end
    t[ffi.string(name)] = tonumber(code[0])
    i = i + 1
  end
  return t
end

local function has_engine(ns)
  return (pcall(function() return ns.myc_ffi_layouts end))
end

-- Where the library is when this Lua is not running inside the engine:
-- $MYCELIUM_LIB, the build tree next to the source tree's lua/, then
-- luarocks' tree (next to the C modules), then the system's.
local function find_library()
  local env = os.getenv("MYCELIUM_LIB")
  if env and env ~= "" then return env end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/mycelium/cdefs%.lua$")
  if here then
    local p = here .. "/../build/libmycelium.so"
    local f = io.open(p, "rb")
    if f then f:close() return p end
  end
  return package.searchpath("libmycelium", package.cpath) or "mycelium"
end

local lib

-- The engine's C namespace, checked: ffi.C inside the engine (a service's
-- state, or a process that loaded the library globally), else the library
-- loaded globally, so that service states made by it resolve ffi.C too.
-- Sets M.E, the engine's error codes by name.
function M.library()
  if lib == nil then
    local l
    if has_engine(ffi.C) then
      l = ffi.C
    else
      M.path = find_library()
      l = ffi.load(M.path, true)
    end
    local by_type = read_facts(l)
    for name in pairs(declared) do check_section(name, by_type) end
    facts_by_type = by_type
    M.E = read_errors(l)
    lib = l
  end
  return lib
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
