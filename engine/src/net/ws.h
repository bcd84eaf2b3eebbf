/* ws.h -- the WebSocket client facility: one connection (re-established
 * with backoff) on the worker loop of the service that opened it, whose
 * events reach that service through myc__service_event().  Received
 * frames are parsed in place by ws_recv.c, sent ones framed by wslay; the
 * socket, TLS and upgrade are stream.c, tls.c and ws_handshake.c.  Lua
 * reaches them through ffi/ (myc_ffi_ws_*) and lua/mycelium/net/ws.lua.
 *
 * Everything here runs on the owning service's worker thread.
 */
#ifndef MYC_WS_H
#define MYC_WS_H

#include "net/ws_recv.h"
#include "runtime/service.h"

typedef struct myc_ws myc_ws;

/* Options of a connection; myc__ws_options_init() gives the defaults. */
typedef struct {
  const char *ca_file; /* PEM bundle to trust instead of the system's */
  int32_t insecure;    /* 1: accept any certificate (tests only) */
  int32_t reconnect;   /* 1: reconnect after a failure or a close */
  double backoff_initial_ms, backoff_max_ms, backoff_multiplier;
  double backoff_jitter;   /* 0..1: share of the delay drawn at random */
  int32_t max_attempts;    /* consecutive failures; 0: no limit */
  double open_timeout_ms;  /* connect, TLS and upgrade, each attempt */
  double ping_interval_ms; /* 0: never ping */
  double pong_timeout_ms;  /* no frame at all this long after a ping:
                              the peer is dead */
  double close_timeout_ms; /* wait for the peer's close frame */
  double max_message;      /* bytes, whole reassembled message */
  double max_buffered;     /* bytes queued for sending */
  const char *protocol;    /* Sec-WebSocket-Protocol, or NULL */
  const char *headers;     /* extra "Name: value\r\n" lines, or NULL */
} myc_ws_options;

/* Events delivered to the service ('code' of myc__service_event). */
enum {
  MYC_WS_EV_OPEN = 1,    /* upgrade done; data NULL */
  MYC_WS_EV_PONG = 4,    /* a pong, with its payload */
  MYC_WS_EV_CLOSE = 5,   /* data: a myc_ws_close_info */
  MYC_WS_EV_MESSAGES = 6 /* data: a myc_ws_batch (ws_recv.h) */
};

/* What ended a connection or an attempt.  Valid during the event. */
typedef struct {
  int32_t code;        /* close code received (1006: none) */
  int32_t err;         /* 0 for a clean close, else a negative code */
  int32_t attempt;     /* consecutive failed attempts so far */
  double reconnect_ms; /* delay before the next attempt; -1: final */
  const char *reason;  /* close reason received */
  size_t reason_len;
  const char *error; /* what went wrong, naming the URL; "" if clean */
} myc_ws_close_info;

enum {
  MYC_WS_CONNECTING = 0,
  MYC_WS_OPEN = 1,
  MYC_WS_CLOSING = 2,
  MYC_WS_WAITING = 3, /* between attempts */
  MYC_WS_CLOSED = 4   /* for good: no more events */
};

void myc__ws_options_init(myc_ws_options *o);

/* Opens a connection to 'url' (ws:// or wss://) for service 's', whose
 * events go to its Lua function 'source'.  The first attempt starts from
 * the loop.  Returns the connection, or NULL with the reason in 'err' (a
 * bad URL or option, a CA file that cannot be loaded, no memory).  The
 * caller owns one reference, dropped with myc__ws_release(). */
myc_ws *myc__ws_open(myc_service *s, uint64_t source, const char *url,
                               const myc_ws_options *o, char *err,
                               size_t errlen);

/* Queues a message.  Returns 0, MYC_ESTATE when not open, MYC_ELIMIT when
 * more than max_buffered bytes wait, or MYC_ENOMEM. */
int myc__ws_send(myc_ws *ws, int binary, const void *p, size_t n);

/* Sends a ping (at most 125 bytes of payload).  Same returns. */
int myc__ws_ping(myc_ws *ws, const void *p, size_t n);

/* Starts the close handshake with 'code' and 'reason' (at most 123
 * bytes), or stops reconnecting when not open.  A final CLOSE event
 * follows.  Returns 0, or MYC_ESTATE when already closing or closed. */
int myc__ws_close(myc_ws *ws, int code, const char *reason, size_t n);

/* Stops and restarts reading from the peer (flow control). */
void myc__ws_pause(myc_ws *ws);
void myc__ws_resume(myc_ws *ws);

int myc__ws_state(const myc_ws *ws);

/* 1 while the service still takes the messages of the batch being
 * delivered: the connection is open and neither released nor stopped. */
int myc__ws_taking(const myc_ws *ws);

/* Bytes queued for sending. */
double myc__ws_buffered(const myc_ws *ws);

/* Drops the caller's reference.  No event is delivered afterwards; an
 * open connection is dropped.  The memory goes once libuv has released
 * the handles. */
void myc__ws_release(myc_ws *ws);

#endif
