/* table.h -- how the Lua runtime reaches the functions of ffi.h: one
 * table of pointers to them, a struct per section of mycelium.cdefs
 * (lua/mycelium/cdefs.lua: "core", cdefs/NAME.h: the others), whose
 * fields carry the functions' own names.  The library exports none of
 * them; the engine hands the table to each Lua state it makes
 * (package.loaded["mycelium.ffi"], a light userdata), and a LuaJIT
 * outside the engine gets it from luaopen_mycelium_core ("ffi_table").
 *
 * A section is a struct of its own so that a state parses only the
 * declarations of the sections it uses, as before.  The field order is
 * the Lua declarations' order; myc_ffi_layouts lists every field's
 * offset, so a difference is an error when a state loads, and
 * scripts/check-ffi.lua compares the lists below with the Lua structs.
 */
#ifndef MYC_FFI_TABLE_H
#define MYC_FFI_TABLE_H

#include "base/visibility.h"
#include "ffi/ffi.h"

#include <lua.h>

/* The sections' functions, in field order. */
#define MYC_FFI_CORE(X)                                                       \
  X(myc_ffi_layouts) X(myc_ffi_errno) X(myc_ffi_abi_checked) X(myc_ffi_emit) \
  X(myc_ffi_buf_new) X(myc_ffi_emit_buf) X(myc_ffi_buf_ref)                  \
  X(myc_ffi_buf_release) X(myc_ffi_topic) X(myc_ffi_topic_name)              \
  X(myc_ffi_topic_check) X(myc_ffi_subscribe) X(myc_ffi_unsubscribe)         \
  X(myc_ffi_timer) X(myc_ffi_now) X(myc_ffi_clock_ns) X(myc_ffi_trace)       \
  X(myc_ffi_metric) X(myc_ffi_metric_cell) X(myc_ffi_node) X(myc_ffi_exit)   \
  X(myc_ffi_unhandled) X(myc_ffi_hex) X(myc_ffi_depend)

#define MYC_FFI_SERVICE(X)                                                 \
  X(myc_ffi_request) X(myc_ffi_reply_current) X(myc_ffi_reply)             \
  X(myc_ffi_remaining_ms) X(myc_ffi_reply_late) X(myc_ffi_timer_at)        \
  X(myc_ffi_queue_depth) X(myc_ffi_queue_capacity)                         \
  X(myc_ffi_over_threshold) X(myc_ffi_pressure) X(myc_ffi_stats)           \
  X(myc_ffi_log_level) X(myc_ffi_log_format) X(myc_ffi_log)                \
  X(myc_ffi_shutdown) X(myc_ffi_spawn) X(myc_ffi_kill)                    \
  X(myc_ffi_warm_capture) X(myc_ffi_warm_frame) X(myc_ffi_warm_counts)     \
  X(myc_ffi_topic_limit)

#define MYC_FFI_CONTRACT(X) X(myc_ffi_contract_check)

#define MYC_FFI_ENGINE(X)                                                   \
  X(myc_ffi_test_logs_new) X(myc_ffi_test_logs_free)                        \
  X(myc_ffi_test_log_sink) X(myc_ffi_test_logs_next)                        \
  X(myc_ffi_test_collector) X(myc_ffi_test_collected)                       \
  X(myc_ffi_test_buf_release) X(myc_ffi_test_fault)

#define MYC_FFI_NET(X)                                                       \
  X(myc_ffi_ws_options_init) X(myc_ffi_ws_open) X(myc_ffi_ws_send)          \
  X(myc_ffi_ws_ping) X(myc_ffi_ws_close) X(myc_ffi_ws_pause)                \
  X(myc_ffi_ws_resume) X(myc_ffi_ws_state) X(myc_ffi_ws_taking)             \
  X(myc_ffi_ws_buffered) X(myc_ffi_ws_release) X(myc_ffi_http_options_init) \
  X(myc_ffi_http_request) X(myc_ffi_http_release) X(myc_ffi_redis_open)     \
  X(myc_ffi_redis_command) X(myc_ffi_redis_close) X(myc_ffi_redis_free)     \
  X(myc_ffi_redis_state) X(myc_ffi_redis_server) X(myc_ffi_redis_error)     \
  X(myc_ffi_redis_pending) X(myc_ffi_redis_reply_view)                      \
  X(myc_ffi_redis_reply_element) X(myc_ffi_pg_open) X(myc_ffi_pg_query)     \
  X(myc_ffi_pg_close) X(myc_ffi_pg_free) X(myc_ffi_pg_state)                \
  X(myc_ffi_pg_server) X(myc_ffi_pg_error) X(myc_ffi_pg_pending)            \
  X(myc_ffi_pg_result_info) X(myc_ffi_pg_result_name)                       \
  X(myc_ffi_pg_result_type) X(myc_ffi_pg_result_value)

/* A field of the type of a pointer to function 'f', named 'f'. */
#define MYC_FFI_SLOT(f) __typeof__(f) *f;

struct myc_ffi_core {
  MYC_FFI_CORE(MYC_FFI_SLOT)
};
struct myc_ffi_service {
  MYC_FFI_SERVICE(MYC_FFI_SLOT)
};
struct myc_ffi_contract {
  MYC_FFI_CONTRACT(MYC_FFI_SLOT)
};
struct myc_ffi_engine {
  MYC_FFI_ENGINE(MYC_FFI_SLOT)
};
#if defined(MYC_WITH_NET)
struct myc_ffi_net {
  MYC_FFI_NET(MYC_FFI_SLOT)
};
#endif

/* The table: one pointer per section, named as the section; 'net' is
 * NULL in a build without MYC_WITH_NET. */
struct myc_ffi_table {
  const struct myc_ffi_core *core;
  const struct myc_ffi_service *service;
  const struct myc_ffi_contract *contract;
  const struct myc_ffi_engine *engine;
  const struct myc_ffi_net *net;
};

/* The library's one table (static, immutable). */
const struct myc_ffi_table *myc__ffi_table(void);

/* The "mycelium.core" module (lua/msgpack.h) plus its field "ffi_table",
 * a light userdata of myc__ffi_table(): how a LuaJIT that loaded the
 * library itself, outside any engine, binds to it.  Exported. */
MYC_FFI int luaopen_mycelium_core(lua_State *L);

#endif
