/* lua/mycelium/cdefs/engine.h -- the "engine" section of mycelium.cdefs: declared
 * in a Lua state when a module first needs it (cdefs.need). */
/* engine/include/mycelium.h: the embedding API mycelium.testing drives */
typedef struct {
  uint32_t capacity; int policy; double threshold;
  uint64_t max_bytes, max_message_bytes;
} myc_mailbox_config;
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
  const char *metrics_listen;
  const char *trace_export;
  const char *trace_endpoint;
  double trace_sample;
  uint32_t trace_queue;
  uint32_t max_services;
  double log_rate, log_burst;
  uint32_t max_topics_per_service;
  uint32_t max_subscriptions_per_service;
} myc_engine_config;
typedef struct {
  const char *name; const char *module; const void *opts; size_t opts_len;
  int32_t worker; const myc_mailbox_config *mailbox;
  int restart; const char *group; double memory_limit_mb;
  double handler_timeout_ms; double reload_probation_s;
  double load_timeout_ms;
  double log_rate, log_burst;
} myc_service_config;
typedef struct {
  const char *topic;
  uint64_t dropped_oldest, dropped_newest, rejected, shutdown, too_large;
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
int myc_engine_spawn(myc_engine *e, const myc_service_config *sc, char *err,
                     size_t errlen);
int myc_engine_kill(myc_engine *e, const char *name, char *err, size_t errlen);
typedef struct {
  uint64_t spawned, removed, dropped; uint32_t services, pending_free;
} myc_lifecycle_stats;
void myc_engine_lifecycle_stats(myc_engine *e, myc_lifecycle_stats *out);
int myc_publish(myc_engine *e, const char *topic, int kind, uint16_t type,
                const void *data, size_t len);
uint32_t myc_engine_service_count(myc_engine *e);
int myc_engine_service_stats(myc_engine *e, uint32_t index, myc_service_stats *st);
int myc_engine_service_drops(myc_engine *e, uint32_t index, myc_drop_stats *out,
                             uint32_t max);
int64_t myc_engine_metrics(myc_engine *e, char *buf, size_t cap);
typedef struct myc_ffi_logs myc_ffi_logs;
typedef struct myc_ffi_collector myc_ffi_collector;
/* engine/src/ffi/table.h: this section of the table; ffi.h names the
   parameters (unnamed here, they cost every parse) */
struct myc_ffi_engine {
  myc_ffi_logs *(*myc_ffi_test_logs_new)(myc_alloc_fn, void *);
  void (*myc_ffi_test_logs_free)(myc_ffi_logs *);
  void (*myc_ffi_test_log_sink)(void *, int, const char *, size_t);
  int64_t (*myc_ffi_test_logs_next)(myc_ffi_logs *, char *, size_t);
  int (*myc_ffi_test_collector)(myc_engine *, const char *, const char *,
                                myc_ffi_collector **);
  uint32_t (*myc_ffi_test_collected)(myc_ffi_collector *, myc_buf **,
                                     uint32_t);
  void (*myc_ffi_test_buf_release)(myc_engine *, myc_buf *);
  int (*myc_ffi_test_fault)(myc_engine *, const char *, uint32_t);
};
