/* observe.h -- what an engine shows of itself to monitoring: the metrics
 * exposition (metrics.c) and the listener that serves it (server.c).  It
 * reads the runtime's counters from any thread and never waits for a
 * worker, so it answers while a handler is stuck.
 */
#ifndef MYC_OBSERVE_H
#define MYC_OBSERVE_H

#include "observe/custom.h"
#include "base/text.h"
#include "runtime/engine.h"

typedef struct myc__server myc__server;

typedef struct myc__observe {
  myc_engine *e;
  double start_time_s; /* the process's start, s since the Unix epoch */
  char *listen;        /* "host:port", or NULL: no listener */
  myc__server *server; /* while started */
  int port;            /* the port bound (listen may ask for 0) */
  myc__custom custom; /* what services declare with ctx.metrics */
} myc__observe;

/* Attaches observation to 'e' (e->observe) with the metrics settings of
 * 'cfg'.  Returns 0, MYC_EINVAL for a listen address that is no
 * "host:port", or MYC_ENOMEM; on error 'e' is unchanged. */
int myc__observe_attach(myc_engine *e, const myc_engine_config *cfg);

/* Appends the Prometheus text exposition (format 0.0.4) of the engine to
 * 't'.  Any thread; waits for no worker. */
void myc__metrics_render(myc__observe *o, myc__text *t);

/* Starts the listener on o->listen: bound (o->port set) before this
 * returns, served from a thread of its own.  Returns 0 or a negative
 * code with the reason in 'err'. */
int myc__server_start(myc__observe *o, char *err, size_t errlen);

/* Nonzero when 'listen' is a "host:port" (or "[v6]:port") the listener
 * can bind: a numeric address and a port from 0 to 65535. */
int myc__server_listen_ok(const char *listen);

/* Stops and joins the listener.  Idempotent. */
void myc__server_stop(myc__observe *o);

#endif
