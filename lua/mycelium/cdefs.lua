-- mycelium.cdefs -- FFI declarations of the engine's frame layout and of the
-- functions the Lua host calls (engine/src/buf.h, service.h, lua_api.h).
-- Loaded once per Lua state; checks its layout against the engine's.
local ffi = require "ffi"

ffi.cdef [[
typedef struct myc_frame {
  uint32_t frame_len;
  uint16_t type;
  uint8_t kind;
  uint8_t flags;
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_id[8];
  uint64_t seq;
  uint64_t ts_ns;
  uint32_t payload_len;
  uint16_t topic_len;
  uint8_t source_len;
  uint8_t version;
} myc_frame;

typedef struct myc_buf {
  void *next;
  uint32_t refs;
  uint32_t cap;
  uint32_t topic_id;
  uint8_t size_class;
  uint8_t shared;
  uint8_t origin;
  uint8_t wire_prefix[9];
  myc_frame hdr;
} myc_buf;

typedef struct {
  myc_buf **batch;
  int32_t cursor;
  uint32_t batch_n;
} myc_svc_view;

typedef struct myc_service myc_service;
typedef struct {
  const char *name; int32_t worker; const char *state;
  uint64_t in, out, errors, dropped, dropped_oldest, dropped_newest, rejected;
  uint32_t queue_depth, queue_capacity; uint64_t memory_bytes;
  const char *restart; const char *group;
  uint64_t restarts, timeouts, reloads, reload_failures, rollbacks;
  uint64_t memory_limit, memory_peak; uint32_t version;
  char running[128]; double running_ms; double last_pause_ms;
} myc_service_stats;
typedef struct myc_engine myc_engine;
typedef struct myc_collector myc_collector;

int myc_svc_emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
                 const void *data, size_t len);
myc_buf *myc_svc_buf_new(myc_service *s, size_t size);
int myc_svc_emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                     uint16_t type);
int64_t myc_svc_topic(myc_service *s, const char *name, size_t len);
const char *myc_svc_topic_name(myc_service *s, uint32_t id);
const char *myc_topic_check(const char *name, size_t len, int pattern);
int myc_svc_subscribe(myc_service *s, const char *pattern, size_t len);
int myc_svc_unsubscribe(myc_service *s, const char *pattern, size_t len);
int64_t myc_svc_timer(myc_service *s, double delay_ms, double repeat_ms);
double myc_svc_now(myc_service *s);
void myc_svc_shutdown(myc_service *s, int code);
uint32_t myc_svc_queue_depth(myc_service *s);
uint32_t myc_svc_queue_capacity(myc_service *s);
int myc_svc_over_threshold(myc_service *s);
double myc_svc_pressure(myc_service *s, uint32_t topic_id);
int myc_svc_stats(myc_service *s, const char *name, size_t len,
                  myc_service_stats *out);
int myc_svc_log_level(myc_service *s);
int myc_svc_log_format(myc_service *s);
void myc_svc_log(myc_service *s, int level, const char *msg, size_t len,
                 const char *extra, size_t extra_len);
void myc_svc_trace(myc_service *s, uint8_t *out24);
void myc_svc_buf_ref(myc_buf *b);
void myc_svc_buf_release(myc_service *s, myc_buf *b);
const char *myc_svc_node(myc_service *s);
void myc_svc_exit(myc_service *s, int how);
void myc_svc_unhandled(myc_service *s);
void myc_hex(char *dst, const uint8_t *src, size_t n);
void myc_abi(uint32_t *out3);
uint32_t myc_abi_stats(void);
const char *myc_strerror(int err);
const char *myc_err_name(int err);
]]

local M = {
  HDR_OFFSET = ffi.offsetof("myc_buf", "hdr"),
  FRAME_SIZE = ffi.sizeof("myc_frame"),
  KIND_RAW = 1,
  KIND_TABLE = 2,
  KIND_TYPED = 3,
}

-- Refuses to run against an engine whose structs differ from these
-- declarations: reading frames with a stale layout would corrupt silently.
function M.check_abi(C)
  local abi = ffi.new("uint32_t[3]")
  C.myc_abi(abi)
  if abi[0] ~= ffi.sizeof("myc_buf") or abi[1] ~= M.HDR_OFFSET
      or abi[2] ~= ffi.sizeof("myc_svc_view")
      or C.myc_abi_stats() ~= ffi.sizeof("myc_service_stats") then
    error("mycelium: lua/mycelium/cdefs.lua does not match the engine's "
          .. "structs (rebuild, or point MYCELIUM_PATH at the matching lua/)")
  end
end

return M
