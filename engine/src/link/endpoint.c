/* endpoint.c -- link URLs (see endpoint.h). */
#include "link/endpoint.h"

#include "mycelium.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static int fail(char *err, size_t errlen, const char *url, const char *why) {
  snprintf(err, errlen, "link '%s': %s", url, why);
  return MYC_EINVAL;
}

int myc__endpoint_parse(myc__endpoint *ep, const char *url, char *err,
                        size_t errlen) {
  memset(ep, 0, sizeof *ep);
  if (strlen(url) >= sizeof ep->url)
    return fail(err, errlen, "(too long)", "a link URL is at most 191 bytes");
  strcpy(ep->url, url);
  if (strncmp(url, "unix://", 7) == 0) {
    const char *path = url + 7;
    ep->kind = MYC_EP_UNIX;
    if (path[0] != '/')
      return fail(err, errlen, url,
                  "a Unix socket path must be absolute (unix:///dir/x.sock)");
    if (strlen(path) >= sizeof ep->path)
      return fail(err, errlen, url,
                  "a Unix socket path is at most 107 bytes");
    strcpy(ep->path, path);
    return 0;
  }
  if (strncmp(url, "tcp://", 6) == 0 || strncmp(url, "tls+tcp://", 10) == 0) {
    const char *h = url + (url[1] == 'c' ? 6 : 10), *colon, *end;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    char *stop;
    long port;
    size_t hlen;
    ep->kind = MYC_EP_TCP;
    ep->tls = url[1] != 'c';
    if (h[0] == '[') {
      end = strchr(h, ']');
      if (end == NULL || end[1] != ':')
        return fail(err, errlen, url, "write an IPv6 address as [::1]:port");
      h++;
      hlen = (size_t)(end - h);
      colon = end + 1;
    } else {
      colon = strrchr(h, ':');
      if (colon == NULL)
        return fail(err, errlen, url,
                    "a TCP link needs a port (tcp://127.0.0.1:7400)");
      hlen = (size_t)(colon - h);
    }
    if (hlen == 0 || hlen >= sizeof ep->host)
      return fail(err, errlen, url, "the host is empty or too long");
    memcpy(ep->host, h, hlen);
    ep->host[hlen] = '\0';
    port = strtol(colon + 1, &stop, 10);
    if (colon[1] == '\0' || *stop != '\0' || port < 0 || port > 65535)
      return fail(err, errlen, url, "the port must be a number from 0 to "
                                    "65535");
    ep->port = (uint16_t)port;
    if (uv_ip4_addr(ep->host, ep->port, &a4) != 0 &&
        uv_ip6_addr(ep->host, ep->port, &a6) != 0)
      return fail(err, errlen, url,
                  "the host must be an IP address (127.0.0.1, [::1]); "
                  "names are not resolved");
    return 0;
  }
  return fail(err, errlen, url,
              "a link URL starts with unix://, tcp:// or tls+tcp://");
}
