/* http_client.c -- the HTTP client of span export (a POST per batch) and
 * of `mycelium trace` (a GET of one trace): one request per connection,
 * blocking with a deadline per step, on a thread of its own or a command
 * line tool, never a worker.  Plain http: a collector or an agent on the
 * same host or network takes the spans; TLS stays out of observation.
 */
#include "observe/trace.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

typedef struct {
  char host[256];
  char port[8];
  const char *path; /* into the URL; "/" when it has none */
} url_parts;

static int parse(const char *url, url_parts *u) {
  const char *h, *end, *colon, *c;
  size_t hl;
  if (strncmp(url, "http://", 7) != 0)
    return 0;
  /* The path goes into the request line and the URL into status JSON:
   * no space, control character, quote or backslash. */
  for (c = url; *c != '\0'; c++)
    if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '"' || *c == '\\')
      return 0;
  h = url + 7;
  end = h + strcspn(h, "/?#");
  u->path = *end == '/' ? end : "/";
  if (*end != '\0' && *end != '/')
    return 0;
  if (*h == '[') { /* [v6]:port */
    const char *close = memchr(h, ']', (size_t)(end - h));
    if (close == NULL)
      return 0;
    hl = (size_t)(close - h - 1);
    if (hl == 0 || hl >= sizeof u->host)
      return 0;
    memcpy(u->host, h + 1, hl);
    colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
    if (close + 1 != end && colon == NULL)
      return 0;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    hl = (size_t)((colon ? colon : end) - h);
    if (hl == 0 || hl >= sizeof u->host)
      return 0;
    memcpy(u->host, h, hl);
  }
  u->host[hl] = '\0';
  if (colon == NULL) {
    strcpy(u->port, "80");
  } else {
    size_t pl = (size_t)(end - colon - 1);
    long port;
    char *stop;
    if (pl == 0 || pl >= sizeof u->port)
      return 0;
    memcpy(u->port, colon + 1, pl);
    u->port[pl] = '\0';
    port = strtol(u->port, &stop, 10);
    if (*stop != '\0' || port < 1 || port > 65535)
      return 0;
  }
  return 1;
}

int myc__trace_endpoint_ok(const char *url) {
  url_parts u;
  return url != NULL && parse(url, &u);
}

/* Waits until 'fd' is ready for 'events'; 0, or UV_ETIMEDOUT. */
static int wait_fd(int fd, short events, int timeout_ms) {
  struct pollfd p = {fd, events, 0};
  int n;
  do
    n = poll(&p, 1, timeout_ms);
  while (n < 0 && errno == EINTR);
  return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

static int connect_to(const url_parts *u, int timeout_ms, char *err,
                      size_t errlen) {
  struct addrinfo hints, *res = NULL, *ai;
  int fd = -1, rc = -ECONNREFUSED, g;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if ((g = getaddrinfo(u->host, u->port, &hints, &res)) != 0) {
    snprintf(err, errlen, "cannot resolve '%s': %s", u->host,
             gai_strerror(g));
    return -EHOSTUNREACH;
  }
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0)
      continue;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
        (errno == EINPROGRESS &&
         (rc = wait_fd(fd, POLLOUT, timeout_ms)) == 0 &&
         getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
         soerr == 0))
      break;
    rc = soerr ? -soerr : rc;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0)
    snprintf(err, errlen, "cannot connect to %s:%s: %s", u->host, u->port,
             strerror(-rc));
  return fd < 0 ? rc : fd;
}

static int send_all(int fd, const char *p, size_t len, int timeout_ms) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      int rc = wait_fd(fd, POLLOUT, timeout_ms);
      if (rc != 0)
        return rc;
      continue;
    }
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads the answer until the server closes (or 'resp' is full: 16 MiB);
 * returns the status or a negative code.  The body goes to 'resp' (may
 * be NULL: only the status line is read). */
static int read_answer(int fd, int timeout_ms, myc__text *resp) {
  char buf[4096];
  size_t len = 0;
  int status = -EPROTO, have_status = 0;
  myc__text all;
  memset(&all, 0, sizeof all);
  if (resp != NULL)
    myc__text_init(&all, resp->a);
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      int rc = wait_fd(fd, POLLIN, timeout_ms);
      if (rc != 0) {
        if (resp != NULL)
          myc__text_free(&all);
        return rc;
      }
      continue;
    }
    if (n <= 0)
      break;
    if (resp == NULL) { /* the status line is enough */
      buf[(size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1] = '\0';
      have_status = sscanf(buf, "HTTP/1.%*d %d", &status) == 1;
      break;
    }
    myc__text_printf(&all, "%.*s", (int)n, buf);
    len += (size_t)n;
    if (all.oom || len > (16u << 20))
      break;
  }
  if (resp != NULL && all.p != NULL && !all.oom) {
    const char *body = strstr(all.p, "\r\n\r\n");
    have_status = sscanf(all.p, "HTTP/1.%*d %d", &status) == 1;
    if (body != NULL)
      myc__text_printf(resp, "%s", body + 4);
  }
  if (resp != NULL)
    myc__text_free(&all);
  return have_status ? status : -EPROTO;
}

int myc__http_call(const char *method, const char *url,
                      const char *content_type, const char *body, size_t len,
                      int timeout_ms, myc__text *resp, char *err,
                      size_t errlen) {
  url_parts u;
  char head[1024];
  int fd, rc, n;
  if (!parse(url, &u)) {
    snprintf(err, errlen, "not an http://host:port/path URL: %s", url);
    return -EINVAL;
  }
  if ((fd = connect_to(&u, timeout_ms, err, errlen)) < 0)
    return fd;
  /* HTTP/1.0 without a body: the answer cannot come chunked. */
  n = body != NULL
          ? snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n"
                     "User-Agent: mycelium/" MYC_VERSION "\r\n\r\n",
                     method, u.path, u.host, u.port, content_type, len)
          : snprintf(head, sizeof head,
                     "%s %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: "
                     "application/json\r\nUser-Agent: mycelium/" MYC_VERSION
                     "\r\n\r\n",
                     method, u.path, u.host, u.port);
  rc = n > 0 && (size_t)n < sizeof head ? send_all(fd, head, (size_t)n,
                                                    timeout_ms)
                                         : -EINVAL;
  if (rc == 0 && body != NULL)
    rc = send_all(fd, body, len, timeout_ms);
  if (rc == 0)
    rc = read_answer(fd, timeout_ms, resp);
  if (rc < 0)
    snprintf(err, errlen, "%s: %s", url, strerror(-rc));
  close(fd);
  return rc;
}
