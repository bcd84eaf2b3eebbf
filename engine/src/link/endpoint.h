/* endpoint.h -- where a link listens or connects: "unix:///abs/path.sock",
 * "tcp://host:port" (an IPv4 or IPv6 literal; "[::1]:7400") or
 * "tls+tcp://host:port" (TCP with TLS; "tls://" names a NATS server). */
#ifndef MYC_ENDPOINT_H
#define MYC_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { MYC_EP_UNIX = 1, MYC_EP_TCP = 2 } myc__ep_kind;

typedef struct {
  myc__ep_kind kind;
  char path[108]; /* unix: the socket file (sun_path's size) */
  char host[64];  /* tcp: the address literal */
  uint16_t port;
  int tls;        /* tcp: with TLS (tls+tcp://) */
  char url[192];  /* as given, for logs and status */
} myc__endpoint;

/* Parses 'url'.  Returns 0, or MYC_EINVAL with the reason in 'err'
 * (naming the URL and what to write instead).  'listen' refuses port 0
 * nowhere: port 0 is only useful to listen (the kernel picks). */
int myc__endpoint_parse(myc__endpoint *ep, const char *url, char *err,
                        size_t errlen);

#endif
