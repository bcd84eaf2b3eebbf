/* test_net.h -- loopback ports for the C tests.  A port found free and
 * closed again can be taken by a test running beside this one before it is
 * used, so a connection that must be refused goes to a port this process
 * keeps bound but never listens on (the kernel refuses it, always). */
#ifndef MYC_TEST_NET_H
#define MYC_TEST_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Binds a TCP socket to 127.0.0.1 on a port the kernel picks; returns the
 * port and leaves the socket in *fd, or -1. */
static inline int test_bind_loopback(int *fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    if (s >= 0)
      close(s);
    return -1;
  }
  *fd = s;
  return ntohs(a.sin_port);
}

/* A port for a server this test is about to start. */
static inline int test_free_port(void) {
  int fd, port = test_bind_loopback(&fd);
  if (port > 0)
    close(fd);
  return port;
}

/* A port that refuses connections until close(*fd). */
static inline int test_refusing_port(int *fd) { return test_bind_loopback(fd); }

#endif
