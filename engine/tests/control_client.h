/* control_client.h -- the C tests' client of the control socket
 * (docs/CONTROL.md): one request, the whole reply. */
#ifndef MYC_CONTROL_CLIENT_H
#define MYC_CONTROL_CLIENT_H

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Sends 'req' to the socket at 'path' and reads the reply until the
 * engine closes.  Returns its length, or -1 when it cannot connect. */
static inline int control_request(const char *path, const char *req,
                                  char *reply, size_t cap) {
  struct sockaddr_un sa;
  size_t n = 0;
  ssize_t r;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
    close(fd);
    return -1;
  }
  shutdown(fd, SHUT_WR); /* a request without its newline ends here */
  while (n < cap - 1 && (r = read(fd, reply + n, cap - 1 - n)) > 0)
    n += (size_t)r;
  reply[n] = '\0';
  close(fd);
  return (int)n;
}

#endif
