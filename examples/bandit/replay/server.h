/* server.h -- the replay server: a WebSocket (and HTTP) JSON-RPC
 * endpoint on 127.0.0.1 that plays a capture to its subscribers as a
 * Polygon node would.  One libuv loop; every connection is a stream.c
 * stream (plain or TLS) with wslay framing once upgraded.
 *
 * The server has one chain position, like a node: each notification is
 * streamed once, and a subscriber that comes (back) later continues from
 * where the previous one stopped.
 */
#ifndef REPLAY_SERVER_H
#define REPLAY_SERVER_H

#include "capture.h"
#include "chain.h"

#include <stdint.h>

enum { PACE_FAST, PACE_BLOCK, PACE_RATE };

typedef struct {
  int port;            /* 0: a free port */
  int pace;            /* PACE_* */
  double block_ms;     /* PACE_BLOCK: delay per block number step */
  double rate;         /* PACE_RATE: notifications per second */
  uint64_t loops;      /* plays of the capture; 0: forever */
  uint64_t drop_after; /* drop a connection after this many; 0: never */
  uint64_t drops;      /* how many connections to drop that way */
  int restart;         /* each subscription starts at line 2 */
  int once;            /* exit when played and every client is gone */
  int hold;            /* notifications wait for SIGUSR1 (replies do not) */
  int quiet;
  double ttl;             /* seconds before exiting anyway; 0: never */
  const char *cert, *key; /* TLS (wss://) when both are set */
} server_options;

/* Serves 'cap' and 'ch' until a signal, or (with 'once') the end.
 * Prints "listening on ws://127.0.0.1:PORT/ ..." on stdout when ready and
 * a summary with the notification rate on stderr at the end.  Returns
 * the process exit code. */
int server_run(const server_options *o, capture *cap, chain *ch);

#endif
