/* tcp.c -- see tcp.h. */
#include "base/tcp.h"

#include <string.h>

int myc__tcp_connected_to_itself(const uv_tcp_t *tcp) {
  struct sockaddr_storage me, peer;
  int me_len = sizeof me, peer_len = sizeof peer;
  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&me, &me_len) != 0 ||
      uv_tcp_getpeername(tcp, (struct sockaddr *)&peer, &peer_len) != 0)
    return 0;
  return me_len == peer_len && memcmp(&me, &peer, (size_t)me_len) == 0;
}
