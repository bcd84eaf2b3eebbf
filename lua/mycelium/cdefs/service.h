/* lua/mycelium/cdefs/service.h -- the "service" section of mycelium.cdefs:
 * what ctx and ctx.log call now and then, declared in a service's state
 * when first used (cdefs.need) rather than by every state. */
/* engine/include/mycelium.h */
typedef struct {
  const char *name; int32_t worker; const char *state;
  uint64_t in, out, unrouted, errors, dropped, dropped_oldest, dropped_newest;
  uint64_t rejected;
  uint64_t too_large; uint32_t queue_depth, queue_capacity;
  uint64_t queue_bytes, queue_max_bytes; uint64_t memory_bytes;
  const char *restart; const char *group;
  uint64_t restarts, timeouts, reloads, reload_failures, rollbacks;
  uint64_t memory_limit, memory_peak; uint32_t version;
  char running[128]; double running_ms; double last_pause_ms;
  uint64_t requests_dropped, replies_late;
} myc_service_stats;

/* engine/src/ffi/ffi.h */
int myc_ffi_request(myc_service *s, uint32_t topic_id, int kind,
                    uint16_t type, const void *data, size_t len,
                    double timeout_ms, int64_t base, double *out);
int myc_ffi_reply_current(myc_service *s, double *corr);
int myc_ffi_reply(myc_service *s, myc_buf *req, int kind,
                  uint16_t type, const void *data, size_t len);
double myc_ffi_remaining_ms(myc_service *s, myc_buf *req);
void myc_ffi_reply_late(myc_service *s);
int64_t myc_ffi_timer_at(myc_service *s, int64_t deadline);
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
void myc_ffi_shutdown(myc_service *s, int code);
int myc_ffi_spawn(myc_service *s, const char *name, const char *module,
                  const void *opts, size_t opts_len, int32_t worker,
                  int restart, double memory_limit_mb,
                  double handler_timeout_ms, double load_timeout_ms,
                  char *err, size_t errlen);
int myc_ffi_kill(myc_service *s, const char *name, char *err, size_t errlen);
int myc_ffi_warm_capture(myc_service *s);
myc_buf *myc_ffi_warm_frame(myc_service *s);
void myc_ffi_warm_counts(myc_service *s, double *out2);
