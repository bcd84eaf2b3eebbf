/* net.c -- the FFI entry points of the network clients (see ffi.h and
 * net/): each is the net/ function of the same name, exported for the
 * Lua modules mycelium.net.ws, mycelium.net.http, mycelium.net.redis and
 * mycelium.net.postgres. */
#include "ffi/ffi.h"

void myc_ffi_ws_options_init(myc_ws_options *o) { myc__ws_options_init(o); }

myc_ws *myc_ffi_ws_open(myc_service *s, uint64_t source, const char *url,
                        const myc_ws_options *o, char *err, size_t errlen) {
  return myc__ws_open(s, source, url, o, err, errlen);
}

int myc_ffi_ws_send(myc_ws *ws, int binary, const void *p, size_t n) {
  return myc__ws_send(ws, binary, p, n);
}

int myc_ffi_ws_ping(myc_ws *ws, const void *p, size_t n) {
  return myc__ws_ping(ws, p, n);
}

int myc_ffi_ws_close(myc_ws *ws, int code, const char *reason, size_t n) {
  return myc__ws_close(ws, code, reason, n);
}

void myc_ffi_ws_pause(myc_ws *ws) { myc__ws_pause(ws); }
void myc_ffi_ws_resume(myc_ws *ws) { myc__ws_resume(ws); }
int myc_ffi_ws_state(const myc_ws *ws) { return myc__ws_state(ws); }
int myc_ffi_ws_taking(const myc_ws *ws) { return myc__ws_taking(ws); }
double myc_ffi_ws_buffered(const myc_ws *ws) { return myc__ws_buffered(ws); }
void myc_ffi_ws_release(myc_ws *ws) { myc__ws_release(ws); }

void myc_ffi_http_options_init(myc_http_options *o) {
  myc__http_options_init(o);
}

myc_http *myc_ffi_http_request(myc_service *s, uint64_t source,
                               const char *method, const char *url,
                               const char *headers, const void *body,
                               size_t n, const myc_http_options *o, char *err,
                               size_t errlen) {
  return myc__http_request(s, source, method, url, headers, body, n, o, err,
                           errlen);
}

void myc_ffi_http_release(myc_http *h) { myc__http_release(h); }

int myc_ffi_redis_open(myc_service *s, uint64_t source, const char *url,
                       const myc_redis_options *opt, myc_redis **out,
                       char *err, size_t errlen) {
  return myc__redis_open(s, source, url, opt, out, err, errlen);
}

int64_t myc_ffi_redis_command(myc_redis *c, int argc, const char *const *argv,
                              const size_t *lens) {
  return myc__redis_command(c, argc, argv, lens);
}

void myc_ffi_redis_close(myc_redis *c) { myc__redis_close(c); }
void myc_ffi_redis_free(myc_redis *c) { myc__redis_free(c); }
const char *myc_ffi_redis_state(const myc_redis *c) {
  return myc__redis_state(c);
}
const char *myc_ffi_redis_server(const myc_redis *c) {
  return myc__redis_server(c);
}
const char *myc_ffi_redis_error(const myc_redis *c) {
  return myc__redis_error(c);
}
uint32_t myc_ffi_redis_pending(const myc_redis *c) {
  return myc__redis_pending(c);
}
void myc_ffi_redis_reply_view(const void *r, myc_redis_value *out) {
  myc__redis_reply_view(r, out);
}
const void *myc_ffi_redis_reply_element(const void *r, size_t i) {
  return myc__redis_reply_element(r, i);
}

int myc_ffi_pg_open(myc_service *s, uint64_t source, const char *url,
                    const myc_pg_options *opt, myc_pg **out, char *err,
                    size_t errlen) {
  return myc__pg_open(s, source, url, opt, out, err, errlen);
}

int64_t myc_ffi_pg_query(myc_pg *c, const char *sql, int nparams,
                         const char *const *values, const size_t *lens) {
  return myc__pg_query(c, sql, nparams, values, lens);
}

void myc_ffi_pg_close(myc_pg *c) { myc__pg_close(c); }
void myc_ffi_pg_free(myc_pg *c) { myc__pg_free(c); }
const char *myc_ffi_pg_state(const myc_pg *c) { return myc__pg_state(c); }
const char *myc_ffi_pg_server(const myc_pg *c) { return myc__pg_server(c); }
const char *myc_ffi_pg_error(const myc_pg *c) { return myc__pg_error(c); }
uint32_t myc_ffi_pg_pending(const myc_pg *c) { return myc__pg_pending(c); }
void myc_ffi_pg_result_info(const void *r, myc_pg_result_info *out) {
  myc__pg_result_info(r, out);
}
const char *myc_ffi_pg_result_name(const void *r, int col) {
  return myc__pg_result_name(r, col);
}
uint32_t myc_ffi_pg_result_type(const void *r, int col) {
  return myc__pg_result_type(r, col);
}
const char *myc_ffi_pg_result_value(const void *r, int row, int col,
                                    size_t *len) {
  return myc__pg_result_value(r, row, col, len);
}
