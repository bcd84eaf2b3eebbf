/* lua/mycelium/cdefs/net.h -- the "net" section of mycelium.cdefs: declared
 * in a Lua state when a module first needs it (cdefs.need). */
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
/* engine/src/net/ws_recv.h */
typedef struct { const char *p; size_t len; int32_t binary; } myc_ws_part;
typedef struct {
  uint64_t arrival_ns; uint32_t count; const myc_ws_part *parts;
} myc_ws_batch;

/* engine/src/net/http.h */
typedef struct myc_http myc_http;
typedef struct {
  const char *ca_file; int32_t insecure; double timeout_ms; double max_body;
} myc_http_options;
typedef struct {
  int32_t status; int32_t err; const char *body; size_t body_len;
  const char *error;
} myc_http_response;

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

/* engine/src/net/pg_client.h */
typedef struct myc_pg myc_pg;
typedef struct {
  uint64_t id; int32_t status; int32_t retry_ms; const void *result;
  const char *error; const char *sqlstate;
} myc_pg_event;
typedef struct {
  uint32_t connect_timeout_ms; uint32_t query_timeout_ms;
  uint32_t reconnect_min_ms; uint32_t reconnect_max_ms; uint32_t max_pending;
} myc_pg_options;
typedef struct { int32_t rows, cols; int64_t affected; } myc_pg_result_info;
/* engine/src/ffi/table.h: this section of the table; ffi.h names the
   parameters (unnamed here, they cost every parse) */
struct myc_ffi_net {
  void (*myc_ffi_ws_options_init)(myc_ws_options *);
  myc_ws *(*myc_ffi_ws_open)(myc_service *, uint64_t, const char *,
                             const myc_ws_options *, char *, size_t);
  int (*myc_ffi_ws_send)(myc_ws *, int, const void *, size_t);
  int (*myc_ffi_ws_ping)(myc_ws *, const void *, size_t);
  int (*myc_ffi_ws_close)(myc_ws *, int, const char *, size_t);
  void (*myc_ffi_ws_pause)(myc_ws *);
  void (*myc_ffi_ws_resume)(myc_ws *);
  int (*myc_ffi_ws_state)(const myc_ws *);
  int (*myc_ffi_ws_taking)(const myc_ws *);
  double (*myc_ffi_ws_buffered)(const myc_ws *);
  void (*myc_ffi_ws_release)(myc_ws *);
  void (*myc_ffi_http_options_init)(myc_http_options *);
  myc_http *(*myc_ffi_http_request)(myc_service *, uint64_t, const char *,
                                    const char *, const char *, const void *,
                                    size_t, const myc_http_options *, char *,
                                    size_t);
  void (*myc_ffi_http_release)(myc_http *);
  int (*myc_ffi_redis_open)(myc_service *, uint64_t, const char *,
                            const myc_redis_options *, myc_redis **, char *,
                            size_t);
  int64_t (*myc_ffi_redis_command)(myc_redis *, int, const char *const *,
                                   const size_t *);
  void (*myc_ffi_redis_close)(myc_redis *);
  void (*myc_ffi_redis_free)(myc_redis *);
  const char *(*myc_ffi_redis_state)(const myc_redis *);
  const char *(*myc_ffi_redis_server)(const myc_redis *);
  const char *(*myc_ffi_redis_error)(const myc_redis *);
  uint32_t (*myc_ffi_redis_pending)(const myc_redis *);
  void (*myc_ffi_redis_reply_view)(const void *, myc_redis_value *);
  const void *(*myc_ffi_redis_reply_element)(const void *, size_t);
  int (*myc_ffi_pg_open)(myc_service *, uint64_t, const char *,
                         const myc_pg_options *, myc_pg **, char *, size_t);
  int64_t (*myc_ffi_pg_query)(myc_pg *, const char *, int, const char *const *,
                              const size_t *);
  void (*myc_ffi_pg_close)(myc_pg *);
  void (*myc_ffi_pg_free)(myc_pg *);
  const char *(*myc_ffi_pg_state)(const myc_pg *);
  const char *(*myc_ffi_pg_server)(const myc_pg *);
  const char *(*myc_ffi_pg_error)(const myc_pg *);
  uint32_t (*myc_ffi_pg_pending)(const myc_pg *);
  void (*myc_ffi_pg_result_info)(const void *, myc_pg_result_info *);
  const char *(*myc_ffi_pg_result_name)(const void *, int);
  uint32_t (*myc_ffi_pg_result_type)(const void *, int);
  const char *(*myc_ffi_pg_result_value)(const void *, int, int, size_t *);
};
