/* ffi.h -- the C<->Lua boundary: every C function the Lua runtime
 * (the modules of lua/mycelium/) calls through the FFI, and nothing else.
 *
 * These are not the embedding API (mycelium.h is): they trust their
 * caller, the host runtime of a service, to pass a live service on its
 * own worker thread, and they change with the runtime they serve.  So the
 * library does not export them: the runtime reaches them through the
 * table of pointers of ffi/table.h, which the engine hands to each of its
 * Lua states.  mycelium.cdefs (lua/mycelium/cdefs.lua and cdefs/NAME.h)
 * declares that table's fields once, and scripts/check-ffi.lua compares
 * them with the prototypes below.  The structs they share with Lua, the
 * table's included, are checked field by field (myc_ffi_layouts) once per
 * engine.
 *
 * Conventions: 0 or a count on success, a negative MYC_E* code on
 * failure; 's' is the service of the calling Lua state ("worker thread
 * of 's'" below means the thread running that state).
 */
#ifndef MYC_FFI_H
#define MYC_FFI_H

#include "mycelium.h"
#include "core/buf.h"
#include "runtime/service.h"

#include <stdint.h>

/* ===================================================================== */
/* Layout checks                                                          */
/* ===================================================================== */

/* One fact of a struct the Lua side declares too: its size (field
 * NULL) or the offset of one of its fields. */
typedef struct {
  const char *type;
  const char *field; /* NULL: 'value' is sizeof(type) */
  uint32_t value;
} myc_ffi_layout;

/* The layout facts of every shared struct, '*n' of them.  Static;
 * cannot fail. */
const myc_ffi_layout *myc_ffi_layouts(uint32_t *n);

/* The name and code of engine error number 'i' (0-based, in the order of
 * MYC_ERRNO_MAP), or NULL past the last: the Lua side builds its table of
 * codes from these instead of copying numbers. */
const char *myc_ffi_errno(uint32_t i, int *code);

/* Which sections of lua/mycelium/cdefs.lua a state of the engine of 's'
 * has checked (a bit each): returns the record before OR-ing 'add' in.
 * Every state of one engine reads the same lua/ against the same library,
 * so one check per engine suffices.  Any thread. */
unsigned myc_ffi_abi_checked(myc_service *s, unsigned add);

/* ===================================================================== */
/* Contracts (any thread; the set is immutable)                           */
/* ===================================================================== */

/* The 'i'-th field myc_contract_validate() checks on 't': its offset,
 * size, kind, capacity, rule flags and length bounds in out[0..6] (room
 * for 7), its min and max as canonical text (NULL: none).  0, or -1
 * past the last.  mycelium.contract compiles a type's check from these
 * once, instead of calling C on every emit (contract/contract.h,
 * myc__contract_check, has the details). */
int myc_ffi_contract_check(const myc_contract_type *t, uint32_t i,
                           uint32_t *out, const char **min, const char **max);

/* ===================================================================== */
/* A service's own calls (worker thread of 's')                           */
/* ===================================================================== */

/* Frames 'len' bytes of 'data' as a message of 'kind'/'type' on topic
 * 'topic_id' and delivers it.  Returns 0 (taken, or no subscriber),
 * MYC_EFULL (every subscriber refused it), MYC_ENOMEM, MYC_ETOOBIG,
 * MYC_EINVAL (unknown topic id).  'data' is copied. */
int myc_ffi_emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
                 const void *data, size_t len);

/* Sends a request (ctx:request): as myc_ffi_emit, with a correlation id
 * and a deadline 'timeout_ms' from now carried in the frame.  Writes the
 * id to out[0] and the deadline to out[1], in ns of the engine clock
 * after 'base': doubles, which Lua reads without allocating (exact up to
 * 2^53: 104 days after 'base').  Returns 0 (taken by at least one
 * subscriber), MYC_ENOENT (no subscriber: nobody would answer),
 * MYC_EFULL, MYC_ETOOBIG, MYC_ENOMEM, MYC_EINVAL. */
int myc_ffi_request(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
                    const void *data, size_t len, double timeout_ms,
                    int64_t base, double *out);

/* The reply 's' is handling now (at view.cursor): writes its
 * correlation id to '*corr' and returns its frame flags.  Read in C, it
 * costs the Lua interpreter no boxed pointer or integer. */
int myc_ffi_reply_current(myc_service *s, double *corr);

/* Answers request 'req' (a message 's' received; ctx:reply).  Returns
 * 0, MYC_EINVAL (not a request), MYC_ENOENT (its asker is gone or in
 * another engine), MYC_EFULL (the asker's mailbox refused it),
 * MYC_ETOOBIG, MYC_ENOMEM.  'data' is copied. */
int myc_ffi_reply(myc_service *s, myc_buf *req, int kind, uint16_t type,
                  const void *data, size_t len);

/* Milliseconds left until the deadline of request 'req' (negative once
 * past), or NaN when 'req' is not a request. */
double myc_ffi_remaining_ms(myc_service *s, myc_buf *req);

/* Counts a reply that reached 's' when none of its requests waited for
 * it (replies_late of myc_service_stats). */
void myc_ffi_reply_late(myc_service *s);

/* A one-shot timer of 's' at 'deadline' (engine clock, ns), fired as
 * those of myc_ffi_timer.  Returns its id (>= 1) or MYC_ENOMEM. */
int64_t myc_ffi_timer_at(myc_service *s, int64_t deadline);

/* The engine clock, ns (request deadlines, a traced batch's handler end
 * times). */
int64_t myc_ffi_clock_ns(myc_service *s);

/* A buffer with a zeroed typed payload of 'size' bytes, filled in place
 * (ctx:new); one reference, the caller's.  NULL when out of memory. */
myc_buf *myc_ffi_buf_new(myc_service *s, size_t size);

/* Emits a buffer from myc_ffi_buf_new() without copying its payload.
 * The caller's reference is handed over whatever the result.  Returns as
 * myc_ffi_emit. */
int myc_ffi_emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                     uint16_t type);

/* Takes one more reference on 'b' (msg:copy keeps a message). */
void myc_ffi_buf_ref(myc_buf *b);

/* Drops one reference on 'b' into the pool of the worker of 's'. */
void myc_ffi_buf_release(myc_service *s, myc_buf *b);

/* The id (>= 1) of topic 'name', created if new; MYC_ETOPIC for an
 * invalid name, MYC_ENOMEM, MYC_ELIMIT (the service made
 * max_topics_per_service topics, or the table is full:
 * myc_ffi_topic_limit).  Any thread. */
int64_t myc_ffi_topic(myc_service *s, const char *name, size_t len);

/* The name of topic 'id', or NULL.  Owned by the engine. */
const char *myc_ffi_topic_name(myc_service *s, uint32_t id);

/* NULL when 'name' is a valid topic (with 'pattern', a valid pattern),
 * else a static reason.  No engine needed. */
const char *myc_ffi_topic_check(const char *name, size_t len, int pattern);

/* Subscribes 's' to 'pattern' now (or leaves it).  Returns 0, MYC_ETOPIC
 * or MYC_ENOMEM (then nothing changed). */
int myc_ffi_subscribe(myc_service *s, const char *pattern, size_t len);
int myc_ffi_unsubscribe(myc_service *s, const char *pattern, size_t len);

/* Starts a timer of the current instance firing after 'delay_ms', then
 * every 'repeat_ms' (0: once).  Returns its id (> 0), MYC_EINVAL for a
 * time that is negative, NaN or over MYC_MAX_MS (10^12 ms), or
 * MYC_ENOMEM. */
int64_t myc_ffi_timer(myc_service *s, double delay_ms, double repeat_ms);

/* The engine clock, seconds since the Unix epoch. */
double myc_ffi_now(myc_service *s);

/* Asks the engine to stop with exit code 'code' (ctx:shutdown).  Returns
 * at once. */
void myc_ffi_shutdown(myc_service *s, int code);

/* Messages waiting for 's': queued, plus the rest of the batch after the
 * one being handled. */
uint32_t myc_ffi_queue_depth(myc_service *s);
uint32_t myc_ffi_queue_capacity(myc_service *s);

/* Nonzero when the queue depth is above the mailbox's threshold. */
int myc_ffi_over_threshold(myc_service *s);

/* The highest fill ratio among the subscribers of 'topic_id' (0 without
 * one), counting what is in transit to them. */
double myc_ffi_pressure(myc_service *s, uint32_t topic_id);

/* Counters of the service named 'name' (any service of the engine) into
 * 'out'.  Returns 0 or MYC_ENOENT. */
int myc_ffi_stats(myc_service *s, const char *name, size_t len,
                  myc_service_stats *out);

/* The engine's log level and format (myc_log_level, myc_log_format), so
 * that the Lua side formats only lines that will be written. */
int myc_ffi_log_level(myc_service *s);
int myc_ffi_log_format(myc_service *s);

/* Writes a log line for 's' in the trace of what it handles; 'extra' is
 * a fragment in the log's format (JSON members, or key=value pairs). */
void myc_ffi_log(myc_service *s, int level, const char *msg, size_t len,
                 const char *extra, size_t extra_len);

/* The current trace id (16 bytes) and span id (8 bytes) into 'out24'. */
void myc_ffi_trace(myc_service *s, uint8_t *out24);

/* The engine's node name.  Owned by the engine. */
const char *myc_ffi_node(myc_service *s);

/* ctx:exit(): the instance ends after the running handler (1: normally,
 * 2: with a reason, which counts as a crash for its restart type). */
void myc_ffi_exit(myc_service *s, int how);

/* ctx:spawn: myc_engine_spawn() of Lua service 'name' running 'module'
 * (a path; a relative one is taken from the directory of the spawner's
 * own module), spawned by 's'.  'opts' is the MessagePack of its init's
 * opts (or NULL); 'worker' -1 places it round robin; 'restart' is a
 * myc_restart; the budgets as myc_service_config's.  Returns as
 * myc_engine_spawn(), the reason in 'err'. */
int myc_ffi_spawn(myc_service *s, const char *name, const char *module,
                  const void *opts, size_t opts_len, int32_t worker,
                  int restart, double memory_limit_mb,
                  double handler_timeout_ms, double load_timeout_ms, char *err,
                  size_t errlen);

/* ctx:kill: myc_engine_kill() of 'name' by 's'.  Returns as
 * myc_engine_kill(), the reason in 'err'. */
int myc_ffi_kill(myc_service *s, const char *name, char *err, size_t errlen);

/* The message for a MYC_ELIMIT of myc_ffi_topic on 'name': the table,
 * the service and the key to raise.  Always NUL-terminated. */
void myc_ffi_topic_limit(myc_service *s, const char *name, size_t len,
                         char *err, size_t errlen);

/* The message at the cursor has no handler any more (a reload dropped
 * it): it goes to "$dead", logged, without ending the instance. */
void myc_ffi_unhandled(myc_service *s);

/* Warm-up (runtime/warm.h), while the module's warmup runs: the next
 * message 's' emits is kept for it instead of dropped (0; MYC_ETIMEDOUT
 * once its budget is spent; MYC_ESTATE outside a warm-up); myc_ffi_warm_frame()
 * hands it over (the caller releases it; NULL when none was kept);
 * myc_ffi_warm_counts() gives the emits and log records dropped so far. */
int myc_ffi_warm_capture(myc_service *s);
myc_buf *myc_ffi_warm_frame(myc_service *s);
void myc_ffi_warm_counts(myc_service *s, double *out2);

/* Records that the service's code loaded the file 'path' ('len' bytes,
 * a module it required): SIGHUP and the file watcher reload the service
 * when it changes.  Returns 0 (also for a file that cannot be read: there
 * is nothing to compare), MYC_EINVAL for a path of 4096 bytes or more, or
 * MYC_ENOMEM.  Any thread. */
int myc_ffi_depend(myc_service *s, const char *path, size_t len);

/* Lowercase hex of 'n' bytes of 'src' into 'dst' (2n chars, no NUL). */
void myc_ffi_hex(char *dst, const uint8_t *src, size_t n);

/* ctx.metrics (lua/mycelium/metrics.lua, docs/METRICS.md): declares the
 * metric 'name' of 'kind' (1 counter, 2 gauge, 3 histogram) with
 * 'nlabels' label names in 'labels' (each NUL-ended, 'labels_len' bytes),
 * the 'nbuckets' bounds of a histogram and at most 'max_series' series.
 * The Lua side checks names and bounds first.  Returns the metric's id,
 * or a negative code with the reason in 'err'. */
int myc_ffi_metric(myc_service *s, int kind, const char *name, const char *help,
                   const char *labels, size_t labels_len, uint32_t nlabels,
                   const double *buckets, uint32_t nbuckets,
                   uint32_t max_series, char *err, size_t errlen);

/* The cell of the series of metric 'id' with label values 'values' (each
 * NUL-ended, 'len' bytes) for 's' (custom.h has its layout); past the
 * metric's bound the overflow series', with '*overflow' set.  NULL when
 * out of memory.  The cell lives as long as the engine. */
double *myc_ffi_metric_cell(myc_service *s, int id, const char *values,
                            size_t len, int *overflow);

/* ===================================================================== */
/* mycelium.testing (manual engines, the driving thread)                   */
/* ===================================================================== */

/* Captured log lines: a sink given to myc_engine_config.log_fn with the
 * capture as its log_ud. */
typedef struct myc_ffi_logs myc_ffi_logs;

/* A capture using 'alloc' (NULL: realloc/free), or NULL when out of
 * memory.  Free it after the engine that writes to it. */
myc_ffi_logs *myc_ffi_test_logs_new(myc_alloc_fn alloc, void *ud);
void myc_ffi_test_logs_free(myc_ffi_logs *l);

/* The myc_log_fn that appends a line to the capture 'ud'.  Any thread. */
void myc_ffi_test_log_sink(void *ud, int level, const char *line, size_t len);

/* Moves the oldest captured line into 'dst' (NUL-terminated, cut to
 * 'cap'); returns its full length, or -1 when there is none. */
int64_t myc_ffi_test_logs_next(myc_ffi_logs *l, char *dst, size_t cap);

typedef struct myc_ffi_collector myc_ffi_collector;

/* A C service 'name' that keeps a reference to every message on
 * 'pattern'; the engine frees it.  Returns 0, or an error of
 * myc_engine_add_c_service (then nothing was added). */
int myc_ffi_test_collector(myc_engine *e, const char *name, const char *pattern,
                           myc_ffi_collector **out);

/* Moves up to 'max' collected buffers to 'out'; the caller owns one
 * reference on each (myc_ffi_test_buf_release). */
uint32_t myc_ffi_test_collected(myc_ffi_collector *c, myc_buf **out,
                                uint32_t max);
void myc_ffi_test_buf_release(myc_engine *e, myc_buf *b);

/* Fault injection: the next 'n' batches of service 'name' fail at their
 * first message as if its handler had raised "injected fault".  Returns
 * 0 or MYC_ENOENT (no such Lua service). */
int myc_ffi_test_fault(myc_engine *e, const char *name, uint32_t n);

#if defined(MYC_WITH_NET)
#include "net/http.h"
#include "net/pg_client.h"
#include "net/redis_client.h"
#include "net/ws.h"

/* ===================================================================== */
/* Network clients (net/; only in builds with MYC_WITH_NET)                */
/* ===================================================================== */

/* Each wraps the net/ function of the same name (myc__ws_open for
 * myc_ffi_ws_open, ...), whose header states its contract; events reach
 * the Lua function registered for 'source' (lua/mycelium/events.lua). */
void myc_ffi_ws_options_init(myc_ws_options *o);
myc_ws *myc_ffi_ws_open(myc_service *s, uint64_t source, const char *url,
                        const myc_ws_options *o, char *err, size_t errlen);
int myc_ffi_ws_send(myc_ws *ws, int binary, const void *p, size_t n);
int myc_ffi_ws_ping(myc_ws *ws, const void *p, size_t n);
int myc_ffi_ws_close(myc_ws *ws, int code, const char *reason, size_t n);
void myc_ffi_ws_pause(myc_ws *ws);
void myc_ffi_ws_resume(myc_ws *ws);
int myc_ffi_ws_state(const myc_ws *ws);
int myc_ffi_ws_taking(const myc_ws *ws);
double myc_ffi_ws_buffered(const myc_ws *ws);
void myc_ffi_ws_release(myc_ws *ws);

void myc_ffi_http_options_init(myc_http_options *o);
myc_http *myc_ffi_http_request(myc_service *s, uint64_t source,
                               const char *method, const char *url,
                               const char *headers, const void *body, size_t n,
                               const myc_http_options *o, char *err,
                               size_t errlen);
void myc_ffi_http_release(myc_http *h);

int myc_ffi_redis_open(myc_service *s, uint64_t source, const char *url,
                       const myc_redis_options *opt, myc_redis **out, char *err,
                       size_t errlen);
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

int myc_ffi_pg_open(myc_service *s, uint64_t source, const char *url,
                    const myc_pg_options *opt, myc_pg **out, char *err,
                    size_t errlen);
int64_t myc_ffi_pg_query(myc_pg *c, const char *sql, int nparams,
                         const char *const *values, const size_t *lens);
void myc_ffi_pg_close(myc_pg *c);
void myc_ffi_pg_free(myc_pg *c);
const char *myc_ffi_pg_state(const myc_pg *c);
const char *myc_ffi_pg_server(const myc_pg *c);
const char *myc_ffi_pg_error(const myc_pg *c);
uint32_t myc_ffi_pg_pending(const myc_pg *c);
void myc_ffi_pg_result_info(const void *r, myc_pg_result_info *out);
const char *myc_ffi_pg_result_name(const void *r, int col);
uint32_t myc_ffi_pg_result_type(const void *r, int col);
const char *myc_ffi_pg_result_value(const void *r, int row, int col,
                                    size_t *len);
#endif

#endif
