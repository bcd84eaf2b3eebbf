/* stream.h -- a byte stream to one peer on a libuv loop: name resolution,
 * TCP connect with a deadline (each resolved address in turn), optional
 * TLS (tls.h) and buffered writes.  The WebSocket and HTTP clients embed
 * one, and so does the replay server for each accepted connection.
 *
 * Invariant: callbacks run from the loop, never from inside a
 * myc__stream_* call; after myc__stream_close() or an error the only
 * callback left is on_closed, exactly once.  The owner keeps the stream's
 * memory alive until on_closed; then it may connect it again or destroy.
 */
#ifndef MYC_STREAM_H
#define MYC_STREAM_H

#include "base/alloc.h"
#include "base/tcp.h"
#include "net/tls.h"

#include <uv.h>

typedef struct myc__stream myc__stream;

typedef struct {
  /* Connected (and the TLS handshake done).  Not called for a plain
   * accepted stream, which is open when myc__stream_accept returns. */
  void (*on_open)(myc__stream *st);
  /* Bytes from the peer (plaintext).  Returns nonzero when the owner
   * closed or paused the stream, so that no more is delivered now. */
  int (*on_data)(myc__stream *st, const char *p, size_t n);
  /* Optional: everything queued has been handed to the kernel. */
  void (*on_drain)(myc__stream *st);
  /* The connection failed or ended ('err' is a libuv code, UV_EOF when the
   * peer closed, or MYC_ETLS); 'msg' says what happened, without the
   * peer's name.  The stream is closing. */
  void (*on_error)(myc__stream *st, int err, const char *msg);
  void (*on_closed)(myc__stream *st);
} myc__stream_cbs;

typedef struct {
  char *p;
  size_t len, cap;
} myc__bytes;

enum {
  MYC_STREAM_IDLE,
  MYC_STREAM_RESOLVING,
  MYC_STREAM_CONNECTING,
  MYC_STREAM_HANDSHAKE,
  MYC_STREAM_OPEN,
  MYC_STREAM_CLOSING
};

struct myc__stream {
  void *data; /* the owner's */
  uv_loop_t *loop;
  const myc__alloc *alloc;
  const myc__stream_cbs *cb;
  int state;
  int pending; /* open handles and requests in flight */
  int graceful, writing, paused, tcp_open, timer_open, resolving;
  uint64_t timeout_ms;
  char host[256];
  uint16_t port;
  SSL_CTX *ssl_ctx; /* borrowed from the owner; NULL: plain TCP */
  myc__tls tls;
  struct addrinfo *addrs, *next_addr;
  int last_err;
  uv_tcp_t tcp;
  uv_timer_t timer; /* connect deadline, then close linger */
  uv_getaddrinfo_t gai;
  uv_connect_t connect;
  uv_write_t write;
  myc__bytes out, flight; /* queued; being written */
  char rbuf[65536];
};

/* Prepares 'st'.  Cannot fail; allocates nothing. */
void myc__stream_init(myc__stream *st, uv_loop_t *loop, const myc__alloc *a,
                      const myc__stream_cbs *cb, void *data);

/* Connects to 'host':'port', with TLS when 'tls' is not NULL (the owner
 * keeps the context alive), giving up after 'timeout_ms' (resolution,
 * connect and handshake together).  Returns 0 (then exactly one of
 * on_open or on_error follows, and on_closed after any close), or a
 * negative code with no callback to come. */
int myc__stream_connect(myc__stream *st, const char *host, uint16_t port,
                        SSL_CTX *tls, uint64_t timeout_ms);

/* Accepts a connection waiting on 'server'; with 'tls' it is open once
 * on_open runs, else at once.  Returns 0, or a negative code: then the
 * stream is closing and on_closed (only) follows, as after a close. */
int myc__stream_accept(myc__stream *st, uv_stream_t *server, SSL_CTX *tls);

/* Queues 'n' bytes for the peer and starts writing if nothing is in
 * flight.  Returns 0, MYC_ESTATE when the stream is not open (or
 * closing), MYC_ENOMEM (nothing queued) or MYC_ETLS. */
int myc__stream_write(myc__stream *st, const void *p, size_t n);

/* Appends 'n' bytes to the queue without starting a write: a caller
 * producing a burst (frame headers, then payloads) queues it all, then
 * flushes once.  Same returns as myc__stream_write. */
int myc__stream_queue(myc__stream *st, const void *p, size_t n);

/* Starts writing what is queued, unless a write is in flight (then it
 * goes when that one completes).  Cannot fail: write errors come to
 * on_error. */
void myc__stream_flush(myc__stream *st);

/* Bytes queued or in flight. */
size_t myc__stream_queued(const myc__stream *st);

/* Closes the stream.  'graceful': write what is queued (and a TLS
 * close_notify) first, waiting at most 'linger_ms'; else drop it.
 * No-op on an idle or already closing stream. */
void myc__stream_close(myc__stream *st, int graceful, uint64_t linger_ms);

/* Stops and restarts reading (flow control for slow consumers). */
void myc__stream_pause(myc__stream *st);
void myc__stream_resume(myc__stream *st);

/* Frees the buffers.  Only on an idle stream (never connected, or after
 * on_closed). */
void myc__stream_destroy(myc__stream *st);


#endif
