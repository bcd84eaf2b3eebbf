/* evloop.h -- the event-loop adapter through which libnats reads and
 * writes the NATS connection (natsOptions_SetEventLoop): what libnats'
 * libuv adapter does (the socket polled on one loop: the NATS thread's,
 * or with nats.worker a worker's; a request from another thread applied
 * by that loop), plus direct runs: another thread (the "_nats" service's
 * worker, or the NATS thread when the loop is a worker's) publishes and
 * writes the socket itself, and leaves to the loop only what the socket
 * did not take.
 *
 * Threads: the loop thread owns the poll handle.  libnats calls the
 * callbacks from any thread, holding its connection lock.  The writer
 * lock ('io') is held around every natsConnection_ProcessWriteEvent made
 * here and by whoever publishes (a direct run, the loop's own publishing),
 * so that one write is under way at a time and the publishing caches of
 * the transport have one owner at a time.  Lock order: io, then libnats'
 * connection lock, then 'lock'.
 *
 * TLS: OpenSSL's state is not shared between a reader and a writer, and
 * its writes wait for the socket, so a TLS connection is written by the
 * loop alone.  One the configuration makes TLS never has direct runs; a
 * server may impose TLS on a nats:// URL, so a connection has them only
 * once the first bytes the server sent after the handshake were NATS
 * protocol in clear text (the transport asks for a PONG at connect;
 * libnats does after each reconnect).
 */
#ifndef MYC_NATS_EVLOOP_H
#define MYC_NATS_EVLOOP_H

#include "base/alloc.h"
#include "base/check.h"

#include <nats/nats.h>
#include <stdatomic.h>
#include <uv.h>

enum {
  EV_DOWN,    /* not polled: none yet, or libnats redials */
  EV_UNKNOWN, /* polled; the server has not sent anything since */
  EV_PLAIN,   /* the server's first bytes were NATS protocol in clear */
  EV_TLS      /* they were a TLS record */
};

typedef struct {
  const myc__alloc *a;
  uv_loop_t *loop;
  uv_thread_t loop_thread;
  /* A worker's loop (nats.worker): the thread that owns that worker runs
   * it, not 'loop_thread'.  NULL: the NATS thread's loop. */
  const myc__owner *owner;
  /* Called on the loop thread after each read libnats made: what it read
   * into the synchronous subscriptions is taken there.  NULL: none. */
  void (*after_read)(void *ud);
  void *after_read_ud;
  /* poll handles being closed; whether the wake-up is closed; what
   * myc__nats_ev_close calls once all are (loop thread) */
  int closing, wake_gone;
  void (*closed)(void *ud);
  uv_async_t wake;  /* applies what other threads asked for */
  int inited;
  int allowed;      /* direct runs may happen (no TLS configured) */
  uv_mutex_t io;    /* the writer lock (above) */
  /* the loop's */
  uv_poll_t *poll;  /* the socket's, NULL when detached */
  int has;          /* the events 'poll' is started with */
  int fd_loop;
  natsConnection *nc_loop;
  /* EV_*: what the socket attached is known to be, and whether libnats
   * polls it */
  atomic_int mode;
  uv_mutex_t lock;  /* the fields below */
  natsConnection *nc;
  int fd;           /* the socket attached last */
  int attach;       /* attached from another thread: a new poll handle */
  int detach;       /* detached from another thread */
  int want;         /* UV_READABLE | UV_WRITABLE, as libnats asked */
  int direct;       /* a direct run is on, on 'direct_thread' */
  uv_thread_t direct_thread;
  int asked;        /* libnats asked the run for a write */
} myc__nats_ev;

/* Sets 'v' up on 'loop' (before the loop runs; 'allowed': direct runs
 * may happen on a clear-text connection; poll handles from 'a').
 * Returns 0 or a libuv error (nothing to free). */
int myc__nats_ev_init(myc__nats_ev *v, uv_loop_t *loop, const myc__alloc *a,
                      int allowed);

/* The thread that runs the loop: called on it, before the first
 * connection. */
void myc__nats_ev_loop_thread(myc__nats_ev *v);

/* Closes the loop's handles (loop thread, connection closed); the mutexes
 * go with myc__nats_ev_free().  'closed' (or NULL) is called with
 * 'after_read_ud' on the loop thread once they are closed. */
void myc__nats_ev_close(myc__nats_ev *v, void (*closed)(void *ud));
void myc__nats_ev_free(myc__nats_ev *v);

/* libnats' callbacks (natsOptions_SetEventLoop with 'v' as the loop). */
natsStatus myc__nats_ev_attach(void **ud, void *v, natsConnection *nc,
                               natsSock fd);
natsStatus myc__nats_ev_read(void *ud, bool add);
natsStatus myc__nats_ev_write(void *ud, bool add);
natsStatus myc__nats_ev_detach(void *ud);

/* Has the loop call 'after_read' soon, without a read (any thread, until
 * myc__nats_ev_close). */
void myc__nats_ev_kick(myc__nats_ev *v);

/* Whether a direct run may write the connection now: one known to be in
 * clear text that libnats polls (it stops before it redials, holding its
 * connection lock through the dial, which a publish would wait for).  Any
 * thread; a hint: the connection may drop right after. */
int myc__nats_ev_direct_ok(myc__nats_ev *v);

/* A direct run on this thread (not the loop's), with 'io' held by the
 * caller: between begin and end, a write libnats asks for is not passed
 * to the loop; end writes what libnats buffered (one non-blocking send)
 * and passes to the loop what the socket did not take.  Returns 1 when it
 * wrote, 0 when nothing was asked for. */
void myc__nats_ev_direct_begin(myc__nats_ev *v);
int myc__nats_ev_direct_end(myc__nats_ev *v, natsConnection *nc);

/* Writes what libnats buffered, now (the loop thread, 'io' held). */
void myc__nats_ev_flush(myc__nats_ev *v, natsConnection *nc);

#endif
