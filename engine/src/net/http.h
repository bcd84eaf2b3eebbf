/* http.h -- the HTTP(S) client facility: one request (a JSON-RPC POST,
 * typically eth_call) on the worker loop of the service that made it,
 * its response delivered through myc__service_event().  One connection
 * per request ("Connection: close"): requests are rare next to the
 * WebSocket stream, and nothing is kept open between them.
 * Lua reaches them through ffi/ (myc_ffi_http_*), lua/mycelium/net/http.lua.
 */
#ifndef MYC_HTTP_H
#define MYC_HTTP_H

#include "runtime/service.h"

typedef struct myc_http myc_http;

typedef struct {
  const char *ca_file; /* PEM bundle to trust instead of the system's */
  int32_t insecure;    /* 1: accept any certificate (tests only) */
  double timeout_ms;   /* the whole request: connect to last byte */
  double max_body;     /* bytes of response body accepted */
} myc_http_options;

/* The event of a finished request ('code' MYC_HTTP_EV_DONE). */
enum { MYC_HTTP_EV_DONE = 1 };

typedef struct {
  int32_t status; /* HTTP status, 0 when no response came */
  int32_t err;    /* 0, or a negative code (then 'error' says why) */
  const char *body;
  size_t body_len;
  const char *error; /* names the URL; "" without error */
} myc_http_response;

void myc__http_options_init(myc_http_options *o);

/* Starts 'method' on 'url' (http:// or https://) with 'body' ('n' bytes,
 * copied) and extra 'headers' ("Name: value\r\n" lines, or NULL) for
 * service 's'; exactly one DONE event follows, to its Lua function
 * 'source'.  Returns the request, or NULL with the reason in 'err' (no
 * event then).  The caller owns one reference (myc__http_release). */
myc_http *myc__http_request(myc_service *s, uint64_t source,
                                      const char *method, const char *url,
                                      const char *headers, const void *body,
                                      size_t n, const myc_http_options *o,
                                      char *err, size_t errlen);

/* Drops the caller's reference; a request still running is abandoned
 * without its event. */
void myc__http_release(myc_http *h);

#endif
