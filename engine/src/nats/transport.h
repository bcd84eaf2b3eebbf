/* transport.h -- the NATS transport (docs/NATS.md).  An engine given nats://
 * URLs runs one more thread beside its workers: a libuv loop on which
 * one NATS connection is polled (evloop.h), or, with nats.worker, which
 * dials and follows the subscriptions while that worker's loop polls it.
 *
 * Out: a C service of the engine, "_nats", subscribed to the publish
 * patterns (nats.publish): its worker publishes each batch (the v2 frame
 * body as the payload, traceparent, schema digest and sequence headers)
 * and writes it in one go itself on a clear-text connection, or appends
 * it to a bounded queue that the NATS thread publishes each loop turn.
 * In: one synchronous NATS subscription per pattern the local services
 * subscribe, drained without waiting after every poll of the loop (on a
 * worker's, after every read); each message is checked and delivered as
 * a host thread's message, or that worker's, marked remote so that it is
 * not published again.
 * Requests: published with a reply subject naming the asker; one received
 * keeps its reply subject after its frame, where the engine's reply hook
 * (this transport's, in front of links') finds it.  Replies and NATS' "no
 * responders" come on one asynchronous subscription per engine.
 */
#ifndef MYC_NATS_TRANSPORT_H
#define MYC_NATS_TRANSPORT_H

#include "nats/subject.h"
#include "runtime/engine.h"

#include <stddef.h>
#include <stdint.h>

#define MYC_NATS_MAX_URLS 64
#define MYC_NATS_MAX_PUBLISH 64
#define MYC_NATS_PATH_MAX 1024

typedef struct {
  char prefix[MYC_NATS_PREFIX_MAX];
  char publish[MYC_NATS_MAX_PUBLISH][256]; /* patterns sent to NATS */
  uint32_t npublish;
  char name[128];          /* the connection's name (server monitoring) */
  char user[256], password[256], token[256];
  char creds[MYC_NATS_PATH_MAX];       /* a .creds file (JWT + nkey seed) */
  char nkey[MYC_NATS_PATH_MAX];        /* a user NKey seed file */
  char tls_ca[MYC_NATS_PATH_MAX], tls_cert[MYC_NATS_PATH_MAX],
      tls_key[MYC_NATS_PATH_MAX];
  int tls;                 /* require TLS (also implied by tls:// URLs) */
  int tls_verify;          /* check the server's name in its certificate */
  int schema_fail;         /* a schema digest that differs: 0 drop, 1 fail */
  int randomize;           /* try the seeds in random order */
  uint32_t queue_msgs;     /* waiting to be published, at most */
  uint64_t queue_bytes;
  int pending_msgs;        /* libnats' per-subscription pending limits */
  int64_t pending_bytes;
  double reconnect_wait_ms;
  int max_reconnect;       /* -1: without end */
  int reconnect_buf_bytes; /* what libnats keeps while reconnecting */
  double connect_timeout_ms;
  double sub_poll_ms;      /* how often subscriptions are compared */
  int32_t worker;          /* the "_nats" service's worker; -1: automatic */
} myc__nats_config;

/* Fills 'c' with the defaults (docs/NATS.md, Configuring). */
void myc__nats_config_init(myc__nats_config *c);

/* Checks 'c': returns NULL or what is wrong with it. */
const char *myc__nats_config_check(const myc__nats_config *c);

typedef struct myc__nats myc__nats;

/* Gives 'e' a NATS connection to the servers 'urls' (seeds): adds the
 * "_nats" service and starts the NATS thread with the engine.  Before the
 * start.  Returns 0, or MYC_EINVAL / MYC_ENOMEM with the reason in 'err'. */
int myc__nats_attach(myc_engine *e, const myc__nats_config *c,
                     const char *const *urls, size_t nurls, myc__nats **out,
                     char *err, size_t errlen);

/* The NATS connection of 'e', or NULL. */
myc__nats *myc__nats_of(myc_engine *e);

typedef struct {
  char url[256];      /* the server connected to, else the first seed */
  const char *state;  /* "connecting", "up", "reconnecting", "closed",
                         "failed" */
  uint32_t subjects;  /* NATS subscriptions held */
  uint64_t msgs_out, bytes_out, msgs_in, bytes_in;
  /* of msgs_out, those the worker of "_nats" published itself, and the
   * socket writes it made (docs/NATS.md, Threads) */
  uint64_t msgs_direct, writes_direct;
  uint64_t queued, queued_bytes;
  /* sending */
  uint64_t dropped_queue_full, dropped_disconnect, dropped_shutdown;
  /* receiving */
  uint64_t dropped_pending_limit, dropped_lost, dropped_schema,
      dropped_unknown_type, dropped_duplicate, frame_errors;
  uint64_t slow_consumer, reconnects;
  uint64_t no_responders; /* requests NATS said nobody subscribes */
} myc__nats_stats;

/* Any thread. */
void myc__nats_stats_get(myc__nats *N, myc__nats_stats *out);

/* Status of the NATS link (text: a section; json: ',"nats":{...}'), from
 * the engine's allocator ('*len' + 1 bytes), or NULL.  Any thread. */
char *myc__nats_status(void *nats, int json, size_t *len);

/* The NATS counters of myc__nats_status in the Prometheus text format
 * (docs/METRICS.md), from the engine's allocator ('*len' + 1 bytes), or
 * NULL.  Any thread. */
char *myc__nats_metrics(void *nats, size_t *len);

const myc__alloc *myc__nats_alloc(myc__nats *N);

/* The token (base/check.h) of the thread that took the last messages in
 * from the subscriptions: the worker of nats.worker, else the NATS
 * thread.  0: none yet.  Any thread (tests). */
uintptr_t myc__nats_reader(myc__nats *N);

#endif
