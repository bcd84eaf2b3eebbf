/* ws_recv.h -- the receiving half of a WebSocket client connection: the
 * server's frames parsed where the socket read put them.  A whole
 * unfragmented data message inside one read is referenced in place (no
 * allocation, no copy); only a message split across reads or sent in
 * fragments is assembled, in the batch buffer.  Control frames go to
 * callbacks; every protocol rule a client checks (reserved bits and
 * opcodes, unmasked frames, control frame sizes, fragment order,
 * max_message, UTF-8 of text) ends the read with the close code to send.
 *
 * Invariant: a batch only points into the read being fed, so the owner
 * takes it (myc__ws_recv_batch, then _clear) before the read's buffer is
 * reused -- ws.c does so at the end of each read and before each pong.
 */
#ifndef MYC_WS_RECV_H
#define MYC_WS_RECV_H

#include "base/alloc.h"

#include <stddef.h>
#include <stdint.h>

/* One message of a batch. */
typedef struct {
  const char *p; /* its bytes: in the read's buffer, or assembled */
  size_t len;
  int32_t binary;
} myc_ws_part;

/* The whole messages one socket read completed, in order, in one event:
 * a service pays one call into Lua per read, not per message.  The
 * service stops taking them when the connection stops being open (it
 * closed it, or was stopped) part way through.  Valid during the event. */
typedef struct {
  uint64_t arrival_ns; /* uv_hrtime() when the read returned: the bytes'
                          arrival, before any framing or decoding */
  uint32_t count;
  const myc_ws_part *parts; /* 'count' of them */
} myc_ws_batch;

/* Failures of myc__ws_recv_feed() besides the close codes 1002 (protocol
 * error), 1007 (text that is not UTF-8) and 1009 (larger than
 * max_message): a frame header that cannot be parsed, answered by a close
 * frame without a code, as 1005 says. */
enum { MYC_WS_MALFORMED = 1005 };

/* The control frames, each payload complete (at most 125 bytes).  Each
 * returns 0, or a negative code that ends the read with it. */
typedef struct {
  int (*on_ping)(void *ud, const char *p, size_t n);
  int (*on_pong)(void *ud, const char *p, size_t n);
  /* The peer's close; 'code' 1005 when it gave none.  No frame is read
   * after it. */
  int (*on_close)(void *ud, int code, const char *reason, size_t n);
} myc__ws_recv_cbs;

typedef struct {
  const myc__alloc *alloc;
  const myc__ws_recv_cbs *cb;
  void *ud;
  uint64_t max_message;
  int closed; /* the peer's close frame came */
  int done;   /* closed or failed: the rest of the stream is ignored */
  /* The frame being read. */
  uint8_t hdr[14]; /* its header, when a read ended inside it */
  uint8_t hdr_len;
  uint8_t opcode, fin;
  int in_payload;
  uint64_t left; /* payload bytes still to come */
  char ctl[125]; /* a control frame's payload */
  size_t ctl_len;
  /* The data message being read: 0, 1 (text) or 2 (binary). */
  int msg_op;
  uint64_t msg_len; /* its bytes so far */
  uint32_t utf8;    /* validator state after them */
  /* The batch.  Assembled messages lie one after the other in 'bytes'
   * (their parts' 'p' stays NULL until myc__ws_recv_batch, so that
   * 'bytes' may move as it grows), followed by the message in progress. */
  char *bytes;
  size_t len, cap;
  myc_ws_part *parts;
  uint32_t n, pcap, assembled;
} myc__ws_recv;

/* Prepares 'r' (allocates nothing). */
void myc__ws_recv_init(myc__ws_recv *r, const myc__alloc *a,
                       const myc__ws_recv_cbs *cb, void *ud);

/* Starts a new connection: forgets any frame, message or batch of the
 * previous one (keeping the buffers). */
void myc__ws_recv_reset(myc__ws_recv *r, uint64_t max_message);

/* Parses 'n' bytes from the server, appending the messages they complete
 * to the batch and calling the control callbacks as frames complete.
 * Returns 0 (everything read, or the rest ignored after a close frame),
 * 1002, 1007, 1009 or MYC_WS_MALFORMED for a peer that broke the protocol
 * (the messages before the faulty frame are in the batch), MYC_ENOMEM, or
 * a callback's negative code.  After a failure or a close, later calls
 * return 0 and read nothing. */
int myc__ws_recv_feed(myc__ws_recv *r, const char *p, size_t n);

/* Fills 'b' (but for arrival_ns) with the batch's messages.  Valid until
 * the next feed or clear. */
void myc__ws_recv_batch(myc__ws_recv *r, myc_ws_batch *b);

/* Forgets the batch's messages; keeps a message in progress. */
void myc__ws_recv_clear(myc__ws_recv *r);

void myc__ws_recv_free(myc__ws_recv *r);

#endif
