/* tcp.h -- what every TCP dialer of the engine checks on a connection:
 * the WebSocket and HTTP clients (net/stream.c) and the links (which are
 * built without net/ too).
 */
#ifndef MYC_TCP_H
#define MYC_TCP_H

#include <uv.h>

/* Nonzero when a connected TCP socket's two ends are the same address and
 * port.  Dialling a local port nobody listens on can pick that very port
 * as the source and connect to itself (TCP simultaneous open); such a
 * socket then holds the port, so the server it waits for cannot start.
 * Dialers treat it as a refused connection. */
int myc__tcp_connected_to_itself(const uv_tcp_t *tcp);

#endif
