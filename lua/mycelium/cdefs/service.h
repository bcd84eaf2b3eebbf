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
  uint64_t logs_suppressed;
} myc_service_stats;

/* engine/src/ffi/table.h: this section of the table; ffi.h names the
   parameters (unnamed here, they cost every parse) */
struct myc_ffi_service {
  int (*myc_ffi_request)(myc_service *, uint32_t, int, uint16_t, const void *,
                         size_t, double, int64_t, double *);
  int (*myc_ffi_reply_current)(myc_service *, double *);
  int (*myc_ffi_reply)(myc_service *, myc_buf *, int, uint16_t, const void *,
                       size_t);
  double (*myc_ffi_remaining_ms)(myc_service *, myc_buf *);
  void (*myc_ffi_reply_late)(myc_service *);
  int64_t (*myc_ffi_timer_at)(myc_service *, int64_t);
  uint32_t (*myc_ffi_queue_depth)(myc_service *);
  uint32_t (*myc_ffi_queue_capacity)(myc_service *);
  int (*myc_ffi_over_threshold)(myc_service *);
  double (*myc_ffi_pressure)(myc_service *, uint32_t);
  int (*myc_ffi_stats)(myc_service *, const char *, size_t,
                       myc_service_stats *);
  int (*myc_ffi_log_level)(myc_service *);
  int (*myc_ffi_log_format)(myc_service *);
  void (*myc_ffi_log)(myc_service *, int, const char *, size_t, const char *,
                      size_t);
  void (*myc_ffi_shutdown)(myc_service *, int);
  int (*myc_ffi_spawn)(myc_service *, const char *, const char *, const void *,
                       size_t, int32_t, int, double, double, double, char *,
                       size_t);
  int (*myc_ffi_kill)(myc_service *, const char *, char *, size_t);
  int (*myc_ffi_warm_capture)(myc_service *);
  myc_buf *(*myc_ffi_warm_frame)(myc_service *);
  void (*myc_ffi_warm_counts)(myc_service *, double *);
  void (*myc_ffi_topic_limit)(myc_service *, const char *, size_t, char *,
                              size_t);
};
