/* abi.c -- what the Lua side checks its declarations against when it
 * loads (see ffi.h): the size and every field offset of each struct it
 * shares with C, and the engine's error codes by name.  A stale
 * declaration would read frames or counters at the wrong place and
 * corrupt silently; this turns it into an error at load. */
#include "ffi/ffi.h"
#include "ffi/table.h"

#include "runtime/engine.h"

#include <stddef.h>

#define SIZE(T) {#T, NULL, (uint32_t)sizeof(T)}
#define FIELD(T, f) {#T, #f, (uint32_t)offsetof(T, f)}
#define CORE(f) FIELD(struct myc_ffi_core, f),
#define SERVICE(f) FIELD(struct myc_ffi_service, f),
#define CONTRACT(f) FIELD(struct myc_ffi_contract, f),
#define ENGINE(f) FIELD(struct myc_ffi_engine, f),
#define NET(f) FIELD(struct myc_ffi_net, f),

static const myc_ffi_layout layouts[] = {
    SIZE(myc_frame),
    FIELD(myc_frame, frame_len), FIELD(myc_frame, type),
    FIELD(myc_frame, kind), FIELD(myc_frame, flags),
    FIELD(myc_frame, trace_id), FIELD(myc_frame, span_id),
    FIELD(myc_frame, parent_id), FIELD(myc_frame, seq),
    FIELD(myc_frame, ts_ns), FIELD(myc_frame, payload_len),
    FIELD(myc_frame, topic_len), FIELD(myc_frame, source_len),
    FIELD(myc_frame, version),

    SIZE(myc_buf),
    FIELD(myc_buf, next), FIELD(myc_buf, refs), FIELD(myc_buf, cap),
    FIELD(myc_buf, topic_id), FIELD(myc_buf, shared), FIELD(myc_buf, hdr),

    SIZE(myc_svc_view),
    FIELD(myc_svc_view, batch), FIELD(myc_svc_view, cursor),
    FIELD(myc_svc_view, batch_n), FIELD(myc_svc_view, faults),
    FIELD(myc_svc_view, requests),
    FIELD(myc_svc_view, marks), FIELD(myc_svc_view, small_free),
    FIELD(myc_svc_view, small_nfree), FIELD(myc_svc_view, small_room),

    SIZE(myc_service_stats),
    FIELD(myc_service_stats, name), FIELD(myc_service_stats, worker),
    FIELD(myc_service_stats, state), FIELD(myc_service_stats, in),
    FIELD(myc_service_stats, out), FIELD(myc_service_stats, unrouted),
    FIELD(myc_service_stats, errors),
    FIELD(myc_service_stats, dropped),
    FIELD(myc_service_stats, dropped_oldest),
    FIELD(myc_service_stats, dropped_newest),
    FIELD(myc_service_stats, rejected), FIELD(myc_service_stats, too_large),
    FIELD(myc_service_stats, queue_depth),
    FIELD(myc_service_stats, queue_capacity),
    FIELD(myc_service_stats, queue_bytes),
    FIELD(myc_service_stats, queue_max_bytes),
    FIELD(myc_service_stats, memory_bytes),
    FIELD(myc_service_stats, restart), FIELD(myc_service_stats, group),
    FIELD(myc_service_stats, restarts), FIELD(myc_service_stats, timeouts),
    FIELD(myc_service_stats, reloads),
    FIELD(myc_service_stats, reload_failures),
    FIELD(myc_service_stats, rollbacks),
    FIELD(myc_service_stats, memory_limit),
    FIELD(myc_service_stats, memory_peak), FIELD(myc_service_stats, version),
    FIELD(myc_service_stats, running), FIELD(myc_service_stats, running_ms),
    FIELD(myc_service_stats, last_pause_ms),
    FIELD(myc_service_stats, requests_dropped),
    FIELD(myc_service_stats, replies_late),

    SIZE(myc_drop_stats),
    FIELD(myc_drop_stats, topic), FIELD(myc_drop_stats, dropped_oldest),
    FIELD(myc_drop_stats, dropped_newest), FIELD(myc_drop_stats, rejected),
    FIELD(myc_drop_stats, shutdown), FIELD(myc_drop_stats, too_large),

    SIZE(myc_lifecycle_stats),
    FIELD(myc_lifecycle_stats, spawned), FIELD(myc_lifecycle_stats, removed),
    FIELD(myc_lifecycle_stats, dropped), FIELD(myc_lifecycle_stats, services),
    FIELD(myc_lifecycle_stats, pending_free),

    SIZE(myc_mailbox_config),
    FIELD(myc_mailbox_config, capacity), FIELD(myc_mailbox_config, policy),
    FIELD(myc_mailbox_config, threshold),
    FIELD(myc_mailbox_config, max_bytes),
    FIELD(myc_mailbox_config, max_message_bytes),

    SIZE(myc_supervisor_config),
    FIELD(myc_supervisor_config, backoff_initial_ms),
    FIELD(myc_supervisor_config, backoff_max_ms),
    FIELD(myc_supervisor_config, multiplier),
    FIELD(myc_supervisor_config, jitter),
    FIELD(myc_supervisor_config, max_restarts),
    FIELD(myc_supervisor_config, window_s),
    FIELD(myc_supervisor_config, reset_s),
    FIELD(myc_supervisor_config, reload_probation_s),

    SIZE(myc_engine_config),
    FIELD(myc_engine_config, node), FIELD(myc_engine_config, workers),
    FIELD(myc_engine_config, mailbox), FIELD(myc_engine_config, log_level),
    FIELD(myc_engine_config, log_format), FIELD(myc_engine_config, log_fn),
    FIELD(myc_engine_config, log_ud), FIELD(myc_engine_config, lua_path),
    FIELD(myc_engine_config, manual), FIELD(myc_engine_config, alloc),
    FIELD(myc_engine_config, alloc_ud), FIELD(myc_engine_config, lua_alloc),
    FIELD(myc_engine_config, lua_alloc_ud),
    FIELD(myc_engine_config, supervisor), FIELD(myc_engine_config, control),
    FIELD(myc_engine_config, reload),
    FIELD(myc_engine_config, metrics_listen),

    SIZE(myc_service_config),
    FIELD(myc_service_config, name), FIELD(myc_service_config, module),
    FIELD(myc_service_config, opts), FIELD(myc_service_config, opts_len),
    FIELD(myc_service_config, worker), FIELD(myc_service_config, mailbox),
    FIELD(myc_service_config, restart), FIELD(myc_service_config, group),
    FIELD(myc_service_config, memory_limit_mb),
    FIELD(myc_service_config, handler_timeout_ms),
    FIELD(myc_service_config, reload_probation_s),
    FIELD(myc_service_config, load_timeout_ms),

    SIZE(myc_contract_field),
    FIELD(myc_contract_field, name), FIELD(myc_contract_field, type),
    FIELD(myc_contract_field, kind), FIELD(myc_contract_field, elem_kind),
    FIELD(myc_contract_field, elem_size), FIELD(myc_contract_field, count),
    FIELD(myc_contract_field, offset), FIELD(myc_contract_field, size),
    FIELD(myc_contract_field, optional), FIELD(myc_contract_field, line),

    SIZE(myc_ffi_layout),
    FIELD(myc_ffi_layout, type), FIELD(myc_ffi_layout, field),
    FIELD(myc_ffi_layout, value),

    /* The table the runtime binds through: a field in the wrong place
     * would call another function. */
    SIZE(struct myc_ffi_table),
    FIELD(struct myc_ffi_table, core), FIELD(struct myc_ffi_table, service),
    FIELD(struct myc_ffi_table, contract),
    FIELD(struct myc_ffi_table, engine), FIELD(struct myc_ffi_table, net),
    SIZE(struct myc_ffi_core), MYC_FFI_CORE(CORE)
    SIZE(struct myc_ffi_service), MYC_FFI_SERVICE(SERVICE)
    SIZE(struct myc_ffi_contract), MYC_FFI_CONTRACT(CONTRACT)
    SIZE(struct myc_ffi_engine), MYC_FFI_ENGINE(ENGINE)

#if defined(MYC_WITH_NET)
    SIZE(myc_ws_options),
    FIELD(myc_ws_options, ca_file), FIELD(myc_ws_options, insecure),
    FIELD(myc_ws_options, reconnect),
    FIELD(myc_ws_options, backoff_initial_ms),
    FIELD(myc_ws_options, backoff_max_ms),
    FIELD(myc_ws_options, backoff_multiplier),
    FIELD(myc_ws_options, backoff_jitter),
    FIELD(myc_ws_options, max_attempts),
    FIELD(myc_ws_options, open_timeout_ms),
    FIELD(myc_ws_options, ping_interval_ms),
    FIELD(myc_ws_options, pong_timeout_ms),
    FIELD(myc_ws_options, close_timeout_ms),
    FIELD(myc_ws_options, max_message), FIELD(myc_ws_options, max_buffered),
    FIELD(myc_ws_options, protocol), FIELD(myc_ws_options, headers),

    SIZE(myc_ws_part), FIELD(myc_ws_part, p), FIELD(myc_ws_part, len),
    FIELD(myc_ws_part, binary),
    SIZE(myc_ws_batch), FIELD(myc_ws_batch, arrival_ns),
    FIELD(myc_ws_batch, count), FIELD(myc_ws_batch, parts),
    SIZE(myc_ws_close_info),
    FIELD(myc_ws_close_info, code), FIELD(myc_ws_close_info, err),
    FIELD(myc_ws_close_info, attempt), FIELD(myc_ws_close_info, reconnect_ms),
    FIELD(myc_ws_close_info, reason), FIELD(myc_ws_close_info, reason_len),
    FIELD(myc_ws_close_info, error),

    SIZE(myc_http_options),
    FIELD(myc_http_options, ca_file), FIELD(myc_http_options, insecure),
    FIELD(myc_http_options, timeout_ms), FIELD(myc_http_options, max_body),

    SIZE(myc_http_response),
    FIELD(myc_http_response, status), FIELD(myc_http_response, err),
    FIELD(myc_http_response, body), FIELD(myc_http_response, body_len),
    FIELD(myc_http_response, error),

    SIZE(myc_redis_event),
    FIELD(myc_redis_event, id), FIELD(myc_redis_event, status),
    FIELD(myc_redis_event, retry_ms), FIELD(myc_redis_event, reply),
    FIELD(myc_redis_event, error),

    SIZE(myc_redis_value),
    FIELD(myc_redis_value, type), FIELD(myc_redis_value, integer),
    FIELD(myc_redis_value, str), FIELD(myc_redis_value, len),
    FIELD(myc_redis_value, elements),

    SIZE(myc_redis_options),
    FIELD(myc_redis_options, password),
    FIELD(myc_redis_options, connect_timeout_ms),
    FIELD(myc_redis_options, command_timeout_ms),
    FIELD(myc_redis_options, reconnect_min_ms),
    FIELD(myc_redis_options, reconnect_max_ms),
    FIELD(myc_redis_options, max_pending),

    SIZE(struct myc_ffi_net), MYC_FFI_NET(NET)
#endif
};

const myc_ffi_layout *myc_ffi_layouts(uint32_t *n) {
  *n = (uint32_t)(sizeof layouts / sizeof layouts[0]);
  return layouts;
}

static const struct {
  const char *name;
  int code;
} errnos[] = {
#define XX(name, value, text) {#name, MYC_##name},
    MYC_ERRNO_MAP(XX)
#undef XX
};

const char *myc_ffi_errno(uint32_t i, int *code) {
  if (i >= sizeof errnos / sizeof errnos[0])
    return NULL;
  *code = errnos[i].code;
  return errnos[i].name;
}

unsigned myc_ffi_abi_checked(myc_service *s, unsigned add) {
  return atomic_fetch_or(&s->eng->ffi_checked, add);
}
