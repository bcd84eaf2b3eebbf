/* lua_api.h -- functions the Lua side calls through the FFI
 * (lua/mycelium/cdefs.lua declares them again; keep both in sync).
 *
 * They are exported from libmycelium so that ffi.C finds them, but they
 * are not part of the embedding API: they trust their caller (the host
 * runtime) to pass a live service on its own worker thread.
 */
#ifndef MYC_LUA_API_H
#define MYC_LUA_API_H

#include "runtime/service.h"

MYC_EXTERN int myc_svc_emit(myc_service *s, uint32_t topic_id, int kind,
                            uint16_t type, const void *data, size_t len);
/* Zero-copy emission (ctx:new): see myc__emit_buf_new/myc__emit_buf. */
MYC_EXTERN myc_buf *myc_svc_buf_new(myc_service *s, size_t size);
MYC_EXTERN int myc_svc_emit_buf(myc_service *s, uint32_t topic_id,
                                myc_buf *b, int kind, uint16_t type);
MYC_EXTERN int64_t myc_svc_topic(myc_service *s, const char *name,
                                 size_t len);
MYC_EXTERN const char *myc_svc_topic_name(myc_service *s, uint32_t id);
MYC_EXTERN const char *myc_topic_check(const char *name, size_t len,
                                       int pattern);
MYC_EXTERN int myc_svc_subscribe(myc_service *s, const char *pattern,
                                 size_t len);
MYC_EXTERN int myc_svc_unsubscribe(myc_service *s, const char *pattern,
                                   size_t len);
MYC_EXTERN int64_t myc_svc_timer(myc_service *s, double delay_ms,
                                 double repeat_ms);
MYC_EXTERN double myc_svc_now(myc_service *s);
MYC_EXTERN void myc_svc_shutdown(myc_service *s, int code);
MYC_EXTERN uint32_t myc_svc_queue_depth(myc_service *s);
MYC_EXTERN uint32_t myc_svc_queue_capacity(myc_service *s);
MYC_EXTERN int myc_svc_over_threshold(myc_service *s);
MYC_EXTERN double myc_svc_pressure(myc_service *s, uint32_t topic_id);
/* Counters of the service named 'name' (any service of the engine).
 * Returns 0 or MYC_ENOENT. */
MYC_EXTERN int myc_svc_stats(myc_service *s, const char *name, size_t len,
                             myc_service_stats *out);
MYC_EXTERN int myc_svc_log_level(myc_service *s);
MYC_EXTERN int myc_svc_log_format(myc_service *s);
MYC_EXTERN void myc_svc_log(myc_service *s, int level, const char *msg,
                            size_t len, const char *extra, size_t extra_len);
MYC_EXTERN void myc_svc_trace(myc_service *s, uint8_t *out24);
MYC_EXTERN void myc_svc_buf_ref(myc_buf *b);
MYC_EXTERN void myc_svc_buf_release(myc_service *s, myc_buf *b);
MYC_EXTERN const char *myc_svc_node(myc_service *s);
/* ctx:exit(): the instance ends after the handler (1: normally, 2: with a
 * reason, which counts as a crash for the restart type). */
MYC_EXTERN void myc_svc_exit(myc_service *s, int how);
/* The message being handled has no handler any more (see service.h). */
MYC_EXTERN void myc_svc_unhandled(myc_service *s);
MYC_EXTERN void myc_hex(char *dst, const uint8_t *src, size_t n);

/* sizeof(myc_buf), offsetof(myc_buf, hdr), sizeof(myc_svc_view): the Lua
 * side checks its declarations against these at load. */
MYC_EXTERN void myc_abi(uint32_t *out3);

/* sizeof(myc_service_stats), which ctx:service_stats() and
 * mycelium.testing allocate on the Lua side. */
MYC_EXTERN uint32_t myc_abi_stats(void);

/* ---- mycelium.testing support (manual engines) ---- */

/* Captures log lines in memory instead of writing them. */
MYC_EXTERN void myc_test_capture_logs(myc_engine *e);

/* Copies the oldest captured line into 'dst' (NUL-terminated, truncated to
 * 'cap') and drops it.  Returns its length, or -1 when there is none. */
MYC_EXTERN int64_t myc_test_next_log(myc_engine *e, char *dst, size_t cap);

typedef struct myc_collector myc_collector;

/* A C service that keeps a reference to every message on 'pattern'. */
MYC_EXTERN int myc_test_collector(myc_engine *e, const char *name,
                                  const char *pattern, myc_collector **out);

/* Moves up to 'max' collected buffers to 'out'; the caller owns one
 * reference on each (release with myc_test_buf_release). */
MYC_EXTERN uint32_t myc_test_collected(myc_collector *c, myc_buf **out,
                                       uint32_t max);
MYC_EXTERN void myc_test_buf_release(myc_engine *e, myc_buf *b);

/* Service lookup by name for tests: NULL if absent. */
MYC_EXTERN myc_service *myc_test_service(myc_engine *e, const char *name);

/* Fault injection: the next 'n' batches of service 'name' fail at their
 * first message as if its handler had raised "injected fault".  Returns
 * 0 or MYC_ENOENT. */
MYC_EXTERN int myc_test_fault(myc_engine *e, const char *name, uint32_t n);

#endif
