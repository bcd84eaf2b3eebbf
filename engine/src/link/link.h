/* link.h -- links between engines over Unix and TCP sockets
 * (docs/LINKS.md).  An engine with links runs one more thread, beside its
 * workers, with its own libuv loop, or with link.worker runs them on that
 * worker's loop: it listens, connects, reconnects, handshakes and moves
 * frames (link/wire.h).
 *
 * What a peer subscribed reaches it through one C service of the engine,
 * "_links", subscribed to the union of every peer's patterns: its
 * mailbox is the first bound (the engine's mailbox rules), each peer's
 * outbound queue the second (frames and bytes).  What a peer sends is
 * published into the engine as a host thread publishes, with the
 * sender's trace context, and marked so that no link sends it on: links
 * are one hop.  A message for a full mailbox of policy reject is not
 * dropped: the link stops reading until it has room (the sender's queue
 * then fills, and its producers see the pressure).
 */
#ifndef MYC_LINK_H
#define MYC_LINK_H

#include "base/backoff.h"
#include "runtime/engine.h"

#include <stddef.h>
#include <stdint.h>

#define MYC_LINK_MAX_UIDS 64
#define MYC_LINK_PSK_MIN 16
#define MYC_LINK_PSK_MAX 1024
#define MYC_LINK_PATH_MAX 1024

typedef struct {
  uint32_t max_frame;         /* bytes a frame may announce; 16 MiB */
  uint32_t queue_frames;      /* per peer, waiting or being written */
  uint64_t queue_bytes;       /* per peer, the same messages' bytes */
  uint32_t max_subscriptions; /* distinct patterns one peer may hold */
  double handshake_timeout_ms; /* connected to handshake done */
  double frame_timeout_ms;    /* a frame begun and not finished */
  myc__backoff reconnect;
  int wire_max;               /* the highest wire version spoken: 1 or 2 */
  int unknown_fail;           /* a v1 type we have no contract for: close */
  int unix_mode;              /* permissions of listening socket files */
  /* Unix listeners accept only these uids (SO_PEERCRED); none: any uid
   * the socket file's mode lets in. */
  uint32_t allow_uids[MYC_LINK_MAX_UIDS];
  uint32_t nallow_uids;
  /* TCP links prove this key to each other in the handshake (AUTH);
   * psk_len 0: none required. */
  uint8_t psk[MYC_LINK_PSK_MAX];
  uint32_t psk_len;
  /* tls+tcp:// links (link.tls): this node's certificate and key (PEM
   * files), the CA bundle its peers' certificates must chain to (empty:
   * the system store), and whether listeners require client
   * certificates. */
  char tls_cert[MYC_LINK_PATH_MAX], tls_key[MYC_LINK_PATH_MAX],
      tls_ca[MYC_LINK_PATH_MAX];
  int tls_verify_client;
  int32_t worker; /* the "_links" service's worker; -1: automatic */
} myc__link_config;

/* Fills 'c' with the defaults (docs/LINKS.md). */
void myc__link_config_init(myc__link_config *c);

/* Reads the pre-shared key of 'c' from the file 'path': its bytes, a
 * final newline left out, 16 to 1024 of them, in a file only its owner
 * may read.  Returns 0, or MYC_EINVAL with the reason in 'err'. */
int myc__link_psk_load(myc__link_config *c, const char *path, char *err,
                       size_t errlen);

/* Checks 'c': returns NULL or what is wrong with it. */
const char *myc__link_config_check(const myc__link_config *c);

typedef struct myc__links myc__links;

/* Gives 'e' links listening on and connecting to the URLs given: adds
 * the "_links" service and starts the link thread with the engine.
 * Before the start.  Returns 0, or MYC_EINVAL / MYC_ENOMEM with the
 * reason in 'err'. */
int myc__links_attach(myc_engine *e, const myc__link_config *c,
                      const char *const *listen, size_t nlisten,
                      const char *const *connect, size_t nconnect,
                      myc__links **out, char *err, size_t errlen);

/* The links of 'e', or NULL when it has none. */
myc__links *myc__links_of(myc_engine *e);

/* One peer, as status shows it. */
typedef struct {
  char peer[256];  /* node name once known, else the address */
  char url[192];   /* what was configured (connect) or listened on */
  const char *dir; /* "connect" or "accept" */
  const char *state; /* "down", "connecting", "handshake", "up", "closing" */
  int version;     /* wire version agreed, 0 before */
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
  uint64_t frames_direct; /* of frames_out, written by the emitting side */
  uint64_t queued, queued_bytes;
  uint64_t dropped_queue_full, dropped_disconnect, dropped_shutdown,
      dropped_v1_untyped;
  uint64_t unknown_types, frame_errors, reconnects;
  uint32_t patterns; /* patterns the peer subscribed */
  double pressure;   /* fill of its queue, 0..1, as ctx:pressure sees it */
  /* Reading paused for a full "reject" mailbox: now, how often, how long
   * in all (ms); messages read and waiting that were dropped when the
   * peer hung up or the engine stopped meanwhile. */
  int paused;
  uint64_t pauses, paused_ms;
  uint64_t dropped_held_disconnect, dropped_held_shutdown;
} myc__link_stats;

/* Fills up to 'max' entries of 'out'; returns the number of peers.  Any
 * thread. */
uint32_t myc__links_stats(myc__links *L, myc__link_stats *out, uint32_t max);

/* Status of the links (text: a table; json: ',"links":[...]'), from
 * the engine's allocator ('*len' + 1 bytes), or NULL.  Any thread. */
char *myc__links_status(void *links, int json, size_t *len);

/* The links' families of /metrics (Prometheus text format 0.0.4): frames,
 * bytes, drops, reconnects, frame errors and state per peer (labels
 * 'link', the peer, and 'dir').  Allocated as myc__links_status's.  Any
 * thread. */
char *myc__links_metrics(void *links, size_t *len);

/* The engine's allocator. */
const myc__alloc *myc__links_alloc(myc__links *L);

/* The token (base/check.h) of the thread that read the links' last
 * frames in, 0 before any: the link thread, or with link.worker that
 * worker's thread.  Any thread. */
uintptr_t myc__links_reader(myc__links *L);

/* The TCP port listener 'i' is bound to (a port 0 in its URL: the one
 * the kernel chose), or 0. */
int myc__links_port(myc__links *L, uint32_t i);

#endif
