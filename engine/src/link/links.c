/* links.c -- the links' loop: listeners, peers, handshake, subscription
 * propagation, frames in and out (see link.h and docs/LINKS.md).
 *
 * Threads: the loop is the link thread's own, or, with link.worker, the
 * loop of the "_links" service's worker (then there is no link thread:
 * "the loop's thread" below is that worker).  The "_links" service's
 * callback runs on its worker, appends buffers to peers' queues under
 * 'lock' and, at the end of its batch, may write a plain link's queue to
 * its socket under 'lock' (write_direct); everything else (the sockets'
 * other uses, the pattern sets, the handshake) belongs to the loop's
 * thread.  Peers are freed only by the loop's thread, under 'lock'.
 */
#include "link/link.h"

#include "base/log.h"
#include "base/tcp.h"
#include "link/endpoint.h"
#include "link/secure.h"
#include "link/wire.h"
#include "runtime/emit.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#define RBUF_INITIAL (256u * 1024)
#define CIPHER_IN (128u * 1024) /* a TLS link's reads */
/* A TLS link's write buffer is given back after a batch larger than this
 * (a burst must not pin its size). */
#define CIPHER_KEEP (4u << 20)
/* A TLS link seals and writes at most this much of its queue at a time
 * (and one message, whatever its size): the peer decrypts one part while
 * the next is sealed, where sealing a whole queue of megabytes first
 * would leave both sides waiting in turn. */
#define TLS_BATCH (256u * 1024)
/* A worker's direct write (write_direct) sends at most this many frames
 * in its one system call; what is left goes to the link thread. */
#define DIRECT_IOV 256
/* A plain link's write takes at most this much of its queue: a peer
 * that reads slowly gets a long queue, and a write of all of it would
 * keep every buffer (and count every frame as queued) until the last
 * byte is out, while the peer has long taken the first ones. */
#define WRITE_FRAMES 4096
/* A turn of the loop reads on, buffer after full buffer, until its reads
 * brought this many frames (one read of small messages; several of
 * 1 KiB ones), then lets the handlers run (on_alloc). */
#define READ_TURN_FRAMES 1024
#define WRITE_BYTES (4u << 20)
/* Messages of one shape (same_shape) read off a link are handed to the
 * mailboxes this many at a time at most. */
#define RUN_MAX 256

/* The last message frame in that was decoded in full and published as a
 * plain message, on a worker's loop: its body length, the first 8 bytes
 * of its header (frame_len, type, kind, flags) and the last 8
 * (payload_len, topic_len, source_len, version), its tail (topic and
 * source) and its topic id.  myc__wire_msg_decode checks nothing else of
 * a frame without a request extension, so a frame that has the same
 * bytes in those places passes the same checks and goes to the same
 * topic: a stream of messages from one source on one topic is checked
 * once (same_shape). */
/* What a peer knows of a topic's subscribers for the pass over its
 * read buffer (room): not looked at yet, none has a "reject" mailbox
 * (its messages never wait), or some have (each message takes one of
 * the pass's pool). */
enum { ROOM_UNKNOWN, ROOM_ANY, ROOM_POOL };
typedef struct {
  uint32_t topic, state;
} credit;
/* Topics a peer keeps this for at once (by id, direct-mapped): a
 * stream interleaving a few topics does not look every message up. */
#define CREDITS 8
/* A link held for a full mailbox tries again this often, ms. */
#define HOLD_RETRY_MS 1

typedef struct {
  int ok;
  uint32_t len, topic;
  uint8_t head[8], lens[8];
  uint32_t tail_off, tail_len;
  uint8_t tail[MYC_TOPIC_MAX + MYC_SOURCE_MAX];
} shape;

enum { P_DOWN, P_CONNECTING, P_HANDSHAKE, P_UP, P_CLOSING };
static const char *const STATE_NAME[] = {"down", "connecting", "handshake",
                                         "up", "closing"};

typedef struct {
  char **v;
  uint32_t n, cap;
} strset; /* sorted, unique */

typedef struct peer peer;
struct peer {
  peer *next;
  myc__links *L;
  int outbound;
  const myc__endpoint *ep; /* connect: what to dial; accept: the listener */
  int state, version;
  int requests; /* its HELLO says it answers requests (under L->lock) */
  int handle_open, timer_open, want_free;
  union {
    uv_handle_t h;
    uv_stream_t s;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } io;
  uv_connect_t conn;
  uv_timer_t timer; /* handshake deadline, then reconnect delay */
  uint32_t attempts;
  int was_up;
  char name[256];
  /* The pre-shared key: whether this link proves it, our nonce and the
   * peer's, and whether its HELLO was accepted (then its AUTH is due). */
  int psk, hello_ok;
  uint8_t nonce[MYC_WIRE_NONCE], peer_nonce[MYC_WIRE_NONCE];
  /* TLS (tls+tcp://): the session of this connection, ciphertext read
   * ('cin') and to write ('cout'), the plaintext one read brought, and
   * whether the first bytes of the connection were looked at. */
  myc__secure *tls;
  uint8_t *cin, *cout;
  size_t cin_cap, cout_len, cout_cap, plain_n;
  int tls_seen;
  /* reading */
  uint8_t *rbuf;
  size_t rlen, rcap;
  uint64_t rx_frames, rx_bytes; /* this read's, added to the counters once */
  uint64_t partial_since; /* uv_now when the unfinished frame began */
  /* Frames this turn's reads brought, all of which filled their buffer;
   * enough of them, so this turn reads no more; the empty buffer that
   * says so was given (on_alloc). */
  uint32_t turn_frames;
  int filled, yielded;
  /* The topic of the last message in: a stream mostly repeats it, and
   * ids never change, so the table's lock is skipped. */
  uint32_t last_topic;
  uint16_t last_topic_len;
  char last_topic_name[MYC_TOPIC_MAX];
  /* A new topic of its was refused (max_topics_per_service of _links):
   * logged once, not once a frame. */
  int told_topic_limit;
  /* The shape of the last message in, and the messages of that shape
   * read since, not handed to the mailboxes yet (run_flush). */
  shape shape;
  myc_buf *run[RUN_MAX];
  uint32_t nrun;
  /* Backpressure (room), for this pass over the read buffer: the topics
   * looked at, and the pool: the least room (messages, payload bytes)
   * of the "reject" mailboxes of their subscribers, less what went to
   * them since.  One pool for all topics: two topics may share a
   * subscriber. */
  credit credits[CREDITS];
  uint32_t pool_n;
  uint64_t pool_bytes;
  /* Of the pool, what the messages of the kept shape took for the rest
   * of this pass: one check a message on the read loop's hot path. */
  uint32_t shape_credit;
  /* A message could not go: 'rbuf' begins with its frame, reading is
   * stopped (hold) until the hold timer delivers it.  'held_since'
   * (uv_hrtime) and the counters are under L->lock for status. */
  int held;
  uint64_t held_since, pauses, paused_ns;
  uint64_t d_held_disconnect, d_held_shutdown;
  /* what the peer subscribed (read by workers under L->lock) */
  strset remote;
  /* How many of them this node routes to the link: 'remote' counts a
   * pattern before "_links" is subscribed to it, and a status saying
   * "1 pattern" must mean a publish now goes to the peer. */
  uint32_t routed;
  /* what we announced to it */
  strset announced;
  /* outbound: 'q' under L->lock; the batch being written is the link
   * thread's.  The queue is q[qh..qn): a write takes from its head by
   * moving 'qh' (queue_take), not the rest of the queue. */
  myc_buf **q;
  uint32_t qh, qn, qcap;
  uint64_t qframes, qbytes; /* queued + being written */
  /* The direct path (write_direct), all under L->lock: the socket of a
   * plain v2 link that is up (else -1); bytes of q[0] already written;
   * a direct write left something behind, so the link thread writes
   * until its next write completes; "_links" queued for it this batch. */
  int fd;
  uint32_t qoff;
  int stalled, touched;
  int left; /* the "_links" worker's: its batch left frames queued */
  /* The last topic id "_links" matched against 'remote', and whether it
   * matched (wants_id; 0: none kept).  Under L->lock. */
  uint32_t want_topic;
  int want_hit;
  myc_buf **wb;
  uint32_t wn, wcap;
  uint8_t *ctl, *wctl; /* control frames waiting, and being written */
  size_t ctl_len, ctl_cap, wctl_len, wctl_cap;
  uint8_t (*v1hdr)[MYC_WIRE_TLV];
  uint32_t v1cap;
  uint32_t wskip; /* messages of the batch a v1 link cannot carry */
  uv_buf_t *iov;
  uint32_t iov_cap;
  uv_write_t wreq;
  int writing; /* a write is under way: changed under L->lock */
  uint32_t woff; /* bytes of wb[0] written before this batch */
  /* counters (stats read them under L->lock) */
  uint64_t frames_in, frames_out, bytes_in, bytes_out, frames_direct;
  uint64_t d_queue, d_disconnect, d_shutdown, d_v1;
  uint64_t unknown, errors, reconnects;
};

typedef struct {
  myc__links *L;
  const myc__endpoint *ep;
  union {
    uv_handle_t h;
    uv_stream_t s;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } io;
  int open, bound;
  int port;
} listener;

typedef struct {
  char *pattern; /* first: sorted_find reads it */
  uint32_t count;
} remote_ref;

struct myc__links {
  myc_engine *e;
  myc__link_config cfg;
  myc_service *svc;
  myc__endpoint *eps;
  uint32_t nlisten, nconnect;
  listener *listeners;
  myc__secure_ctx *tls; /* contexts of the tls+tcp:// links, or NULL */
  /* The loop every handle below is on: 'loop', run by 'thread', or,
   * with link.worker, the loop of worker 'w' (NULL: the own thread). */
  uv_loop_t *lp;
  myc__worker *w;
  uv_thread_t thread;
  uv_loop_t loop;
  /* Stopping on a worker's loop: 'stop' runs shut_down there; 'down'
   * (under lock, signalled on 'cond') once every handle is closed. */
  myc__job stop;
  uv_cond_t cond;
  int down, stop_cancelled;
  uint32_t nopen; /* wake, tick, hold and listeners not closed yet */
  /* The token (base/check.h) of the thread that read the last frames
   * in: what tests check to see who reads. */
  _Atomic uintptr_t reader;
  uv_async_t wake;
  uv_timer_t tick;
  /* Runs while a peer is held (hold): delivers what waits. */
  uv_timer_t hold;
  int started, joined;
  uv_mutex_t lock;
  int stopping;  /* under lock */
  int closing;   /* the link thread's copy: shutting down */
  _Atomic int subs_dirty;
  peer *peers;   /* under lock for the workers; changed by the link thread */
  remote_ref *refs; /* patterns "_links" is subscribed to, with users */
  uint32_t nrefs, caprefs;
  myc__wire_hello hello;
  uint8_t *hello_types;
  myc__rng rng;
  /* What accepted peers that are gone counted (under lock). */
  myc__link_stats gone;
  int any_gone;
  myc__chain *chains; /* per worker: buffers going back to its pool */
  int any_touched; /* the "_links" worker's: a peer has p->touched */
  /* The "_links" worker's: messages of its batch below this index are
   * queued already (on_message), 0 between batches. */
  uint32_t batch_done;
  /* The "_links" worker's, with link.worker: frames emits handed
   * straight to the links (on_direct), not queued yet. */
  myc_buf *staged[DIRECT_IOV];
  uint32_t nstaged, stage_cap; /* stage_cap: DIRECT_IOV, or half a queue */
  /* Messages in, held per worker and handed over once per read. */
  myc__host_stage hs;
  /* The link thread's buffers for what comes in: the workers hand the
   * small ones back (the scheduler's aux pool), so a stream in neither
   * mallocs here nor frees there.  Unused when 'pooled' is 0. */
  myc__pool pool;
  int pooled;
};

/* ---- small helpers ------------------------------------------------------ */

static const myc__alloc *A(myc__links *L) { return &L->e->alloc; }

static void logf_(myc__links *L, myc_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(myc__links *L, myc_log_level lvl, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  myc_engine_log(L->e, lvl, "_links", msg);
}

/* The arrays here start at 16 elements and double (myc__grow). */
static int grow(const myc__alloc *a, void **v, uint32_t *cap, size_t elem,
                uint32_t need) {
  return myc__grow(a, v, cap, elem, need, 16);
}

static int bytes_grow(const myc__alloc *a, uint8_t **v, size_t *cap,
                      size_t need) {
  size_t ncap = *cap ? *cap : 256;
  uint8_t *nv;
  if (need <= *cap)
    return 0;
  while (ncap < need)
    ncap *= 2;
  nv = myc__realloc(a, *v, *cap, ncap);
  if (nv == NULL)
    return MYC_ENOMEM;
  *v = nv;
  *cap = ncap;
  return 0;
}

/* Binary search of 'p' among 'n' entries 'stride' bytes apart, sorted,
 * each starting with its string's pointer: 1 and its place, or 0 and
 * where it would go. */
static int sorted_find(const void *base, size_t stride, uint32_t n,
                       const char *p, size_t len, uint32_t *at) {
  uint32_t lo = 0, hi = n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    const char *v = *(const char *const *)((const char *)base + mid * stride);
    int c = strncmp(v, p, len);
    if (c == 0 && v[len] != '\0')
      c = 1;
    if (c == 0) {
      *at = mid;
      return 1;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *at = lo;
  return 0;
}

static int set_find(const strset *s, const char *p, size_t len, uint32_t *at) {
  return sorted_find(s->v, sizeof *s->v, s->n, p, len, at);
}

/* Adds 'p'; returns 1 when added, 0 when present, MYC_ENOMEM. */
static int set_add(const myc__alloc *a, strset *s, const char *p, size_t len) {
  uint32_t at;
  char *copy;
  if (set_find(s, p, len, &at))
    return 0;
  if (grow(a, (void **)&s->v, &s->cap, sizeof *s->v, s->n + 1) != 0 ||
      (copy = myc__malloc(a, len + 1)) == NULL)
    return MYC_ENOMEM;
  memcpy(copy, p, len);
  copy[len] = '\0';
  memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof *s->v);
  s->v[at] = copy;
  s->n++;
  return 1;
}

static int set_del(const myc__alloc *a, strset *s, const char *p, size_t len) {
  uint32_t at;
  if (!set_find(s, p, len, &at))
    return 0;
  myc__free(a, s->v[at], strlen(s->v[at]) + 1);
  memmove(&s->v[at], &s->v[at + 1], (s->n - at - 1) * sizeof *s->v);
  s->n--;
  return 1;
}

static void set_clear(const myc__alloc *a, strset *s) {
  uint32_t i;
  for (i = 0; i < s->n; i++)
    myc__free(a, s->v[i], strlen(s->v[i]) + 1);
  myc__free(a, s->v, s->cap * sizeof *s->v);
  memset(s, 0, sizeof *s);
}

/* ---- the "_links" service's subscriptions: the union of the peers' ------ */

/* Where 'p' is in the sorted refs (1), or where it would go (0): a peer
 * may announce thousands of patterns, and each is looked up. */
static int ref_find(const myc__links *L, const char *p, uint32_t *at) {
  return sorted_find(L->refs, sizeof *L->refs, L->nrefs, p, strlen(p), at);
}

static void ref_pattern(myc__links *L, const char *p) {
  uint32_t at;
  char *copy;
  if (ref_find(L, p, &at)) {
    L->refs[at].count++;
    return;
  }
  if (grow(A(L), (void **)&L->refs, &L->caprefs, sizeof *L->refs,
           L->nrefs + 1) != 0 ||
      (copy = myc__strdup(A(L), p)) == NULL) {
    logf_(L, MYC_LOG_ERROR, "out of memory subscribing '%s' for a peer", p);
    return;
  }
  memmove(&L->refs[at + 1], &L->refs[at], (L->nrefs - at) * sizeof *L->refs);
  L->refs[at].pattern = copy;
  L->refs[at].count = 1;
  L->nrefs++;
  if (myc__topics_subscribe(&L->e->topics, L->svc, p, strlen(p)) != 0)
    logf_(L, MYC_LOG_ERROR, "cannot subscribe '%s' for a peer", p);
}

static void unref_pattern(myc__links *L, const char *p) {
  uint32_t at;
  if (!ref_find(L, p, &at) || --L->refs[at].count > 0)
    return;
  myc__topics_unsubscribe(&L->e->topics, L->svc, p, strlen(p));
  myc__strfree(A(L), L->refs[at].pattern);
  memmove(&L->refs[at], &L->refs[at + 1],
          (L->nrefs - at - 1) * sizeof *L->refs);
  L->nrefs--;
}

/* The peer's patterns changed: the kept answer is void.  Under L->lock. */
static void forget_topic(peer *p) {
  p->want_topic = 0;
}

/* Forgets every pattern the peer subscribed. */
static void drop_remote(myc__links *L, peer *p) {
  strset old;
  uint32_t i;
  uv_mutex_lock(&L->lock);
  old = p->remote;
  memset(&p->remote, 0, sizeof p->remote);
  p->routed = 0;
  forget_topic(p);
  uv_mutex_unlock(&L->lock);
  for (i = 0; i < old.n; i++)
    unref_pattern(L, old.v[i]);
  set_clear(A(L), &old);
}

/* ---- the worker side: "_links" hands messages to the peers ------------- */

static int wants(const peer *p, const char *topic, size_t len) {
  uint32_t i;
  for (i = 0; i < p->remote.n; i++)
    if (myc__topic_match(p->remote.v[i], strlen(p->remote.v[i]), topic, len))
      return 1;
  return 0;
}

/* The worker writes a plain link's queue itself when the link thread
 * has no write under way and none left behind: one non-blocking
 * sendmsg of up to DIRECT_IOV frames, which saves the link thread's
 * wake-up and turn.  Under L->lock, so the stream stays in order: the
 * link thread takes the queue and marks 'writing' in one hold of the
 * lock, and a frame written in part is finished (from 'qoff') before
 * anything else. */
static int direct_ok(const peer *p) {
  return p->state == P_UP && p->fd >= 0 && !p->writing && !p->stalled &&
         p->qn > p->qh;
}

/* The first 'k' queued messages have left the queue.  The array is
 * compacted only once its taken head is as long as what is left, so a
 * long queue taken a part at a time moves each pointer at most once
 * where moving the rest after each part moved it once per part.  Under
 * L->lock. */
static void queue_take(peer *p, uint32_t k) {
  p->qh += k;
  if (p->qh == p->qn) {
    p->qh = p->qn = 0;
  } else if (p->qh >= p->qn - p->qh) {
    memmove(p->q, p->q + p->qh, (p->qn - p->qh) * sizeof *p->q);
    p->qn -= p->qh;
    p->qh = 0;
  }
}

static void write_direct(myc__links *L, peer *p, myc__pool *pool) {
  struct iovec iov[DIRECT_IOV];
  struct msghdr mh;
  myc_buf **q = p->q + p->qh;
  uint32_t i, n = p->qn - p->qh, k = 0;
  uint64_t bytes = 0;
  ssize_t r;
  if (n > DIRECT_IOV)
    n = DIRECT_IOV;
  for (i = 0; i < n; i++) {
    myc_buf *b = q[i];
    uint32_t skip = i == 0 ? p->qoff : 0;
    iov[i].iov_base = (uint8_t *)myc__wire_msg_prefix(b) + skip;
    iov[i].iov_len = MYC_WIRE_TLV + (size_t)b->hdr.frame_len - skip;
  }
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = iov;
  mh.msg_iovlen = n;
  /* MSG_NOSIGNAL: a peer gone must not raise SIGPIPE on a worker. */
  r = sendmsg(p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (r < 0) {
    /* Full socket buffer (or an error the link thread's write will meet
     * and report): the link thread writes from here on. */
    p->stalled = 1;
    return;
  }
  for (i = 0; i < n && (size_t)r >= iov[i].iov_len; i++) {
    myc_buf *b = q[i];
    r -= (ssize_t)iov[i].iov_len;
    bytes += MYC_WIRE_TLV + (uint64_t)b->hdr.frame_len;
    myc__buf_release(pool, A(L), b);
    k++;
  }
  p->qoff = k == 0 ? p->qoff + (uint32_t)r : (uint32_t)r;
  queue_take(p, k);
  p->qframes -= k;
  p->qbytes -= bytes;
  p->frames_out += k;
  p->frames_direct += k;
  p->bytes_out += bytes;
  if (p->qn > p->qh)
    p->stalled = 1;
}

static void flush(peer *p);

/* The end of the "_links" batch: what it queued goes out, written here
 * or by the loop's thread.  When that is this worker (link.worker), what
 * the direct write left is handed to the loop's write here too, and no
 * thread is woken.  Called with L->lock held; releases it. */
static void batch_end(myc__links *L, myc__pool *pool) {
  int wake = 0;
  peer *p;
  L->any_touched = 0;
  for (p = L->peers; p != NULL; p = p->next) {
    if (!p->touched)
      continue;
    p->touched = 0;
    if (direct_ok(p))
      write_direct(L, p, pool);
    p->left = p->qn > p->qh;
    wake |= p->left;
  }
  uv_mutex_unlock(&L->lock);
  if (!wake)
    return;
  if (L->w == NULL) {
    uv_async_send(&L->wake);
    return;
  }
  /* The peer list changes only on this thread: no lock to walk it. */
  for (p = L->peers; p != NULL; p = p->next)
    if (p->left) {
      p->left = 0;
      flush(p);
    }
}

/* Whether 'p' subscribed a pattern the topic of 'b' matches.  A stream
 * mostly repeats its topic: the answer for the last topic id is kept
 * until the peer's patterns change (forget_topic).  Under L->lock. */
static int wants_id(peer *p, myc_buf *b) {
  uint32_t id = __atomic_load_n(&b->topic_id, __ATOMIC_RELAXED);
  int r;
  if (id != 0 && id == p->want_topic)
    return p->want_hit;
  r = wants(p, myc__buf_topic(b), b->hdr.topic_len);
  if (id != 0) {
    p->want_topic = id;
    p->want_hit = r;
  }
  return r;
}

/* Queues 'b' for every peer that wants it, each with a reference of its
 * own; with 'give', the caller's reference goes to the first of them.
 * Returns whether one took it.  Under L->lock. */
static int queue_msg(myc__links *L, myc_buf *b, int give) {
  uint64_t size = MYC_WIRE_TLV + (uint64_t)b->hdr.frame_len;
  int taken = 0;
  peer *p;
  /* Links are one hop: what came in over one is not sent on. */
  if (b->hdr.flags & MYC_FRAME_REMOTE)
    return 0;
  for (p = L->peers; p != NULL; p = p->next) {
    /* A closed accepted peer has no patterns left: only peers that are
     * up, or 'connect' peers that will be again, get messages. */
    if (p->remote.n == 0 || !wants_id(p, b))
      continue;
    /* A peer that does not say it answers requests would refuse the
     * frame and close the link. */
    if (b->hdr.flags & MYC_FRAME_REQUEST && !p->requests)
      continue;
    if (p->qframes >= L->cfg.queue_frames ||
        p->qbytes + size > L->cfg.queue_bytes ||
        (p->qn == p->qcap && grow(A(L), (void **)&p->q, &p->qcap,
                                  sizeof *p->q, p->qn + 1) != 0)) {
      p->d_queue++;
      continue;
    }
    /* Only this worker can hold a buffer that is not shared yet; once it
     * is, other threads read the flag, so it is written only then.  On a
     * worker's loop (link.worker) the queue is written and released by
     * this worker alone: its references stay plain. */
    if (L->w == NULL && !b->shared)
      b->shared = 1;
    if (!give || taken)
      myc__buf_ref(b, 1);
    taken = 1;
    p->q[p->qn++] = b;
    p->qframes++;
    p->qbytes += size;
    p->touched = 1;
    L->any_touched = 1;
  }
  return taken;
}

static void stage_queue(myc__links *L, myc__pool *pool);

/* dispatch_c calls this for every message of the batch in turn, the
 * last one included.  The first call queues the whole rest of the batch
 * in one hold of the lock and ends the batch (its writes go out at
 * once); the calls after it find their message done. */
static void on_message(void *ud, const myc_message *m) {
  myc__links *L = ud;
  myc_service *s = L->svc;
  uint32_t i = (uint32_t)s->view.cursor, n = s->view.batch_n;
  (void)m;
  if (i < L->batch_done) {
    if (i + 1 == n)
      L->batch_done = 0;
    return;
  }
  L->batch_done = i + 1 == n ? 0 : n;
  uv_mutex_lock(&L->lock);
  /* What emits staged came first. */
  if (L->nstaged > 0)
    stage_queue(L, &s->task.worker->pool);
  if (!L->stopping)
    for (; i < n; i++)
      queue_msg(L, s->view.batch[i], 0);
  if (L->any_touched)
    batch_end(L, &s->task.worker->pool);
  else
    uv_mutex_unlock(&L->lock);
}

/* Queues what emits staged (on_direct), in the order emitted, handing
 * each emit's reference to the queue of the first peer that takes the
 * frame (dropped when none does); "_links" counts them as handled.
 * Under L->lock, on the links' worker. */
static void stage_queue(myc__links *L, myc__pool *pool) {
  uint32_t i, n = L->nstaged;
  for (i = 0; i < n; i++)
    if (L->stopping || !queue_msg(L, L->staged[i], 1))
      myc__buf_release(pool, A(L), L->staged[i]);
  L->nstaged = 0;
  myc__counter_add(&L->svc->n_in, n);
}

/* Whether a peer this batch queued for holds half its bound or more.
 * Under L->lock. */
static int half_full(const myc__links *L) {
  const peer *p;
  for (p = L->peers; p != NULL; p = p->next)
    if (p->touched && (2 * p->qframes >= L->cfg.queue_frames ||
                       2 * p->qbytes >= L->cfg.queue_bytes))
      return 1;
  return 0;
}

/* Queues what is staged and writes it, as the end of a batch of
 * "_links" does; with 'when_half', only once a queue is half full (in
 * the middle of a turn).  Takes L->lock. */
static void stage_flush(myc__links *L, myc__pool *pool, int when_half) {
  uv_mutex_lock(&L->lock);
  stage_queue(L, pool);
  if (L->any_touched && (!when_half || half_full(L)))
    batch_end(L, pool);
  else
    uv_mutex_unlock(&L->lock);
}

/* The end of a turn in which emits staged frames. */
static void after_turn(void *ud) {
  myc__links *L = ud;
  if (L->nstaged > 0 || L->any_touched)
    stage_flush(L, &L->w->pool, 0);
}

/* An emit on the links' worker whose only subscriber here is "_links",
 * with nothing waiting in its mailbox (myc_service.direct): the frame is
 * staged, without a lock, and queued for the peers DIRECT_IOV (or half
 * a queue's frames) at a time in one hold of the lock, so that the
 * queue's bound and ctx:pressure see them within the turn.  What the
 * turn queued is written at its end (after_turn), as a batch of
 * "_links" was: writes in the middle of a burst would wake the peer for
 * a part of it, and its reads would take less at a time; only a queue
 * half full is written at once.  Declines (the mailbox takes the frame)
 * with tracing on, whose spans the mailbox's dispatch records. */
static int on_direct(void *ud, myc__worker *w, myc_buf *b) {
  myc__links *L = ud;
  myc_service *s = L->svc;
  if (s->eng->tracer != NULL ||
      atomic_load_explicit(&s->state, memory_order_relaxed) !=
          MYC_SVC_RUNNING)
    return 1;
  L->staged[L->nstaged++] = b;
  if (L->nstaged == 1)
    myc__worker_after(w);
  /* A turn that emits more than a peer's queue holds would see the
   * rest dropped as queue_full before its end wrote anything: once a
   * queue is half full, what is queued goes out now. */
  if (L->nstaged >= L->stage_cap)
    stage_flush(L, &w->pool, 1);
  return 0;
}

/* The fill of the fullest queue of a peer that wants 'topic', 0..1:
 * ctx:pressure sees remote subscribers through it as through mailboxes. */
static double peer_fill(const myc__links *L, const peer *p) {
  double n = (double)p->qframes / L->cfg.queue_frames;
  double b = (double)p->qbytes / (double)L->cfg.queue_bytes;
  double f = n > b ? n : b;
  return f < 1 ? f : 1;
}

static double links_pressure(void *ud, const myc__topic *t) {
  myc__links *L = ud;
  double worst = 0;
  peer *p;
  uv_mutex_lock(&L->lock);
  for (p = L->peers; p != NULL; p = p->next)
    if (p->remote.n > 0 && wants(p, t->name, t->len)) {
      double f = peer_fill(L, p);
      if (f > worst)
        worst = f;
    }
  uv_mutex_unlock(&L->lock);
  return worst;
}

/* ---- writing ------------------------------------------------------------ */

static void release(myc__links *L, myc_buf *b) {
  myc__buf_release(NULL, A(L), b);
}

/* Releases a written batch: small buffers whose last reference this was
 * go back to the pools of the workers they came from, one chain per
 * worker, as workers hand back each other's. */
static void release_batch(myc__links *L, myc_buf **v, uint32_t n) {
  myc__sched *sc = &L->e->sched;
  uint32_t i, w;
  if (L->w != NULL && myc__owner_held(&L->w->owner)) {
    /* On a worker's loop the batch goes back into that worker's pool,
     * larger classes too: the emits after it take them from there.  Freed
     * to the allocator instead, a stream of 1 KiB messages went through
     * malloc and free once each, and the allocator gave their pages back
     * to the kernel between bursts only to fault them in again (a page
     * fault per two messages). */
    for (i = 0; i < n; i++)
      myc__buf_release(&L->w->pool, A(L), v[i]);
    myc__worker_flush(L->w);
    return;
  }
  for (i = 0; i < n; i++) {
    myc_buf *b = v[i];
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
      continue;
    if (b->size_class == 0 && b->origin < sc->nworkers && L->chains != NULL)
      myc__chain_push(&L->chains[b->origin], b);
    else
      myc__buf_free(NULL, A(L), b);
  }
  if (L->chains != NULL)
    for (w = 0; w < sc->nworkers; w++)
      if (L->chains[w].head != NULL)
        myc__pool_give_chain(&sc->workers[w].pool, &L->chains[w]);
}

static void peer_fail(peer *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int ctl_append(peer *p, uint16_t type, const void *body, uint32_t len) {
  if (bytes_grow(A(p->L), &p->ctl, &p->ctl_cap,
                 p->ctl_len + MYC_WIRE_TLV + len) != 0)
    return MYC_ENOMEM;
  myc__wire_put_tlv(p->ctl + p->ctl_len, type, len);
  if (len > 0)
    memcpy(p->ctl + p->ctl_len + MYC_WIRE_TLV, body, len);
  p->ctl_len += MYC_WIRE_TLV + len;
  return 0;
}

static void on_written(uv_write_t *req, int status) {
  peer *p = req->data;
  myc__links *L = p->L;
  uint32_t i;
  uint64_t bytes = 0;
  p->cout_len = 0;
  if (p->cout_cap > CIPHER_KEEP) {
    myc__free(A(L), p->cout, p->cout_cap);
    p->cout = NULL;
    p->cout_cap = 0;
  }
  for (i = 0; i < p->wn; i++)
    bytes += MYC_WIRE_TLV + (uint64_t)p->wb[i]->hdr.frame_len;
  uv_mutex_lock(&L->lock);
  p->writing = 0;
  p->woff = 0;
  if (status == 0)
    p->stalled = 0; /* the socket took a write: workers may again */
  p->qframes -= p->wn;
  p->qbytes -= bytes;
  p->d_v1 += p->wskip;
  if (status == 0) {
    p->frames_out += p->wn - p->wskip;
    p->bytes_out += bytes + p->wctl_len;
  } else {
    /* Written in part or not at all: lost with the connection. */
    p->d_disconnect += p->wn - p->wskip;
  }
  p->wskip = 0;
  uv_mutex_unlock(&L->lock);
  release_batch(L, p->wb, p->wn);
  p->wn = 0;
  p->wctl_len = 0;
  if (status != 0) {
    if (status != UV_ECANCELED)
      peer_fail(p, "write failed: %s", uv_strerror(status));
    return;
  }
  flush(p);
}

/* Workers read 'writing' under the lock (direct_ok). */
static void set_writing(peer *p) {
  uv_mutex_lock(&p->L->lock);
  p->writing = 1;
  uv_mutex_unlock(&p->L->lock);
}

/* Starts the write of what a TLS session has waiting (its handshake),
 * if none is under way. */
static void send_cipher(peer *p) {
  uv_buf_t b;
  int rc;
  p->cout_len = 0;
  if (myc__secure_take(p->tls, A(p->L), &p->cout, &p->cout_len,
                       &p->cout_cap) != 0) {
    peer_fail(p, "out of memory writing");
    return;
  }
  if (p->cout_len == 0)
    return;
  b = uv_buf_init((char *)p->cout, (unsigned)p->cout_len);
  p->wreq.data = p;
  set_writing(p);
  if ((rc = uv_write(&p->wreq, &p->io.s, &b, 1, on_written)) != 0) {
    uv_mutex_lock(&p->L->lock);
    p->writing = 0;
    uv_mutex_unlock(&p->L->lock);
    peer_fail(p, "write failed: %s", uv_strerror(rc));
  }
}

static int tls_waiting(const peer *p) {
  return p->tls != NULL && myc__secure_pending(p->tls) > 0;
}

/* Starts one writev of the control frames and the messages waiting, if
 * none is under way.  On a TLS link the same buffers are sealed into one
 * and written in one call. */
static void flush(peer *p) {
  myc__links *L = p->L;
  uint32_t i, n = 0, take;
  myc_buf **tmp;
  uint32_t tmpcap;
  int rc;
  if (p->writing || p->state == P_CLOSING || !p->handle_open)
    return;
  if (p->tls != NULL && !myc__secure_done(p->tls)) {
    send_cipher(p);
    return;
  }
  if (p->state != P_UP && p->ctl_len == 0 && !tls_waiting(p))
    return;
  /* The control frames. */
  {
    uint8_t *t = p->wctl;
    size_t c = p->wctl_cap;
    p->wctl = p->ctl;
    p->wctl_cap = p->ctl_cap;
    p->wctl_len = p->ctl_len;
    p->ctl = t;
    p->ctl_cap = c;
    p->ctl_len = 0;
  }
  /* The messages, once the handshake is done: the whole queue at once
   * (swapped with the empty batch array), in order; on a TLS link, the
   * first TLS_BATCH bytes of it. */
  if (p->state == P_UP && p->tls != NULL) {
    uint64_t bytes = 0;
    uv_mutex_lock(&L->lock);
    for (take = 0; take < p->qn - p->qh; take++) {
      bytes += MYC_WIRE_TLV + (uint64_t)p->q[p->qh + take]->hdr.frame_len;
      if (take > 0 && bytes > TLS_BATCH)
        break;
    }
    if (take > 0 &&
        grow(A(L), (void **)&p->wb, &p->wcap, sizeof *p->wb, take) == 0) {
      memcpy(p->wb, p->q + p->qh, take * sizeof *p->q);
      queue_take(p, take);
    } else {
      take = 0;
    }
    p->wn = take;
    uv_mutex_unlock(&L->lock);
  } else if (p->state == P_UP) {
    uv_mutex_lock(&L->lock);
    take = p->qn - p->qh;
    if (p->qh == 0 && take <= WRITE_FRAMES && p->qbytes <= WRITE_BYTES) {
      tmp = p->wb;
      tmpcap = p->wcap;
      p->wb = p->q;
      p->wcap = p->qcap;
      p->q = tmp;
      p->qcap = tmpcap;
      p->qn = 0;
    } else {
      /* A long queue goes out a part at a time: what a write holds is
       * counted in the queue (and its buffers kept) until all of it is
       * written. */
      uint64_t bytes = 0;
      myc_buf **q = p->q + p->qh;
      uint32_t left = p->qn - p->qh;
      for (take = 0; take < left && take < WRITE_FRAMES; take++) {
        bytes += MYC_WIRE_TLV + (uint64_t)q[take]->hdr.frame_len;
        if (take > 0 && bytes > WRITE_BYTES)
          break;
      }
      if (take > 0 &&
          grow(A(L), (void **)&p->wb, &p->wcap, sizeof *p->wb, take) == 0) {
        memcpy(p->wb, q, take * sizeof *p->q);
        queue_take(p, take);
      } else {
        take = 0;
      }
    }
    p->wn = take;
    /* In the same hold of the lock: no worker writes from here until
     * on_written, and a frame a worker began is finished first. */
    p->woff = p->qoff;
    p->qoff = 0;
    if (take > 0 || p->wctl_len > 0)
      p->writing = 1;
    uv_mutex_unlock(&L->lock);
  }
  if (p->wn == 0 && p->wctl_len == 0 && !tls_waiting(p))
    return;
  /* v1 headers live beside the batch, one per message. */
  if (grow(A(L), (void **)&p->iov, &p->iov_cap, sizeof *p->iov,
           2 * p->wn + 1) != 0 ||
      (p->version == 1 && grow(A(L), (void **)&p->v1hdr, &p->v1cap,
                               MYC_WIRE_TLV, p->wn + 1) != 0)) {
    on_written(&p->wreq, UV_ECANCELED);
    peer_fail(p, "out of memory writing");
    return;
  }
  p->wskip = 0;
  if (p->wctl_len > 0)
    p->iov[n++] = uv_buf_init((char *)p->wctl, (unsigned)p->wctl_len);
  for (i = 0; i < p->wn; i++) {
    myc_buf *b = p->wb[i];
    if (p->version >= 2) {
      uint32_t skip = i == 0 ? p->woff : 0;
      p->iov[n++] = uv_buf_init((char *)myc__wire_msg_prefix(b) + skip,
                                MYC_WIRE_TLV + b->hdr.frame_len - skip);
    } else if (b->hdr.kind == MYC_KIND_TYPED) {
      myc__wire_put_tlv(p->v1hdr[i], b->hdr.type, b->hdr.payload_len);
      p->iov[n++] = uv_buf_init((char *)p->v1hdr[i], MYC_WIRE_TLV);
      p->iov[n++] = uv_buf_init((char *)myc__buf_payload(b),
                                b->hdr.payload_len);
    } else {
      /* A v1 frame has no room for a topic or a kind. */
      p->wskip++;
    }
  }
  if (p->tls != NULL) {
    p->cout_len = 0;
    rc = myc__secure_seal(p->tls, A(L), p->iov, n, &p->cout, &p->cout_len,
                          &p->cout_cap);
    if (rc != 0) {
      on_written(&p->wreq, UV_ECANCELED);
      peer_fail(p, "cannot encrypt: %s", myc_strerror(rc));
      return;
    }
    n = 0;
    if (p->cout_len > 0)
      p->iov[n++] = uv_buf_init((char *)p->cout, (unsigned)p->cout_len);
  }
  if (n == 0) {
    p->wreq.data = p;
    on_written(&p->wreq, 0);
    return;
  }
  p->wreq.data = p;
  if (!p->writing)
    set_writing(p);
  rc = uv_write(&p->wreq, &p->io.s, p->iov, n, on_written);
  if (rc != 0) {
    on_written(&p->wreq, UV_ECANCELED);
    peer_fail(p, "write failed: %s", uv_strerror(rc));
  }
}

/* ---- announcing our subscriptions --------------------------------------- */

static int collect(void *ud, const char *pattern, size_t len) {
  void **a = ud;
  myc__links *L = a[0];
  strset *s = a[1];
  if (pattern[0] == '$')
    return 0;
  return set_add(A(L), s, pattern, len) < 0 ? MYC_ENOMEM : 0;
}

/* Sends each peer that is up the SUB and UNSUB frames that bring what
 * it was told to what the services subscribe now. */
static void announce(myc__links *L) {
  strset now;
  void *a[2];
  peer *p;
  memset(&now, 0, sizeof now);
  a[0] = L;
  a[1] = &now;
  atomic_store(&L->subs_dirty, 0);
  if (myc__topics_patterns(&L->e->topics, L->svc, collect, a) != 0) {
    logf_(L, MYC_LOG_ERROR, "out of memory reading the subscriptions");
    set_clear(A(L), &now);
    return;
  }
  for (p = L->peers; p != NULL; p = p->next) {
    uint32_t i, j = 0;
    if (p->state != P_UP)
      continue;
    for (i = 0; i < p->announced.n; i++) {
      uint32_t at;
      if (!set_find(&now, p->announced.v[i], strlen(p->announced.v[i]), &at))
        ctl_append(p, MYC_WIRE_UNSUB, p->announced.v[i],
                   (uint32_t)strlen(p->announced.v[i]));
    }
    for (i = 0; i < now.n; i++) {
      uint32_t at;
      if (!set_find(&p->announced, now.v[i], strlen(now.v[i]), &at))
        ctl_append(p, MYC_WIRE_SUB, now.v[i], (uint32_t)strlen(now.v[i]));
    }
    set_clear(A(L), &p->announced);
    for (j = 0; j < now.n; j++)
      set_add(A(L), &p->announced, now.v[j], strlen(now.v[j]));
    flush(p);
  }
  set_clear(A(L), &now);
}

static void on_topics_changed(void *ud) {
  myc__links *L = ud;
  atomic_store(&L->subs_dirty, 1);
  uv_mutex_lock(&L->lock);
  if (L->started && !L->stopping)
    uv_async_send(&L->wake);
  uv_mutex_unlock(&L->lock);
}

/* ---- peers: life and death ---------------------------------------------- */

static void peer_free(peer *p) {
  myc__links *L = p->L;
  peer **pp;
  uint32_t i;
  uv_mutex_lock(&L->lock);
  for (pp = &L->peers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  L->any_gone = 1;
  L->gone.frames_in += p->frames_in;
  L->gone.frames_out += p->frames_out;
  L->gone.frames_direct += p->frames_direct;
  L->gone.bytes_in += p->bytes_in;
  L->gone.bytes_out += p->bytes_out;
  L->gone.dropped_queue_full += p->d_queue;
  L->gone.dropped_disconnect += p->d_disconnect;
  L->gone.dropped_shutdown += p->d_shutdown;
  L->gone.dropped_v1_untyped += p->d_v1;
  L->gone.unknown_types += p->unknown;
  L->gone.frame_errors += p->errors;
  L->gone.pauses += p->pauses;
  L->gone.paused_ms += p->paused_ns / 1000000;
  L->gone.dropped_held_disconnect += p->d_held_disconnect;
  L->gone.dropped_held_shutdown += p->d_held_shutdown;
  uv_mutex_unlock(&L->lock);
  for (i = p->qh; i < p->qn; i++)
    release(L, p->q[i]);
  set_clear(A(L), &p->remote);
  set_clear(A(L), &p->announced);
  myc__free(A(L), p->q, p->qcap * sizeof *p->q);
  myc__free(A(L), p->wb, p->wcap * sizeof *p->wb);
  myc__free(A(L), p->iov, p->iov_cap * sizeof *p->iov);
  myc__free(A(L), p->v1hdr, (size_t)p->v1cap * MYC_WIRE_TLV);
  myc__free(A(L), p->ctl, p->ctl_cap);
  myc__free(A(L), p->wctl, p->wctl_cap);
  myc__free(A(L), p->rbuf, p->rcap);
  myc__secure_free(p->tls);
  myc__free(A(L), p->cin, p->cin_cap);
  myc__free(A(L), p->cout, p->cout_cap);
  myc__free(A(L), p, sizeof *p);
}

static void check_down(myc__links *L);
static void hold_end(peer *p);
static uint64_t held_frames(const peer *p);

static void maybe_free(peer *p) {
  myc__links *L = p->L;
  if (p->want_free && !p->handle_open && !p->timer_open) {
    peer_free(p);
    check_down(L);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  peer *p = h->data;
  p->timer_open = 0;
  maybe_free(p);
}

/* State and name are read by status on other threads. */
static void set_state(peer *p, int state) {
  uv_mutex_lock(&p->L->lock);
  p->state = state;
  uv_mutex_unlock(&p->L->lock);
}

static void dial(peer *p);

static void on_retry(uv_timer_t *t) {
  dial(t->data);
}

static void on_handle_closed(uv_handle_t *h) {
  peer *p = h->data;
  myc__links *L = p->L;
  uint32_t i, lost = 0;
  p->handle_open = 0;
  if (p->held) {
    /* What was read and waited for a mailbox goes with the connection. */
    uint64_t n = held_frames(p);
    hold_end(p);
    uv_mutex_lock(&L->lock);
    if (L->closing)
      p->d_held_shutdown += n;
    else
      p->d_held_disconnect += n;
    uv_mutex_unlock(&L->lock);
  }
  p->rlen = 0;
  p->ctl_len = 0;
  myc__secure_free(p->tls);
  p->tls = NULL;
  set_clear(A(L), &p->announced);
  if (L->closing || !p->outbound) {
    /* Nobody will send what is queued for an accepted peer: it comes back
     * as a new one with new subscriptions. */
    drop_remote(L, p);
    uv_mutex_lock(&L->lock);
    for (i = p->qh; i < p->qn; i++)
      release(L, p->q[i]);
    lost = p->qn - p->qh;
    if (L->closing)
      p->d_shutdown += lost;
    else
      p->d_disconnect += lost;
    p->qh = p->qn = 0;
    p->qframes = p->qbytes = 0;
    uv_mutex_unlock(&L->lock);
    p->want_free = 1;
    if (p->timer_open) {
      uv_timer_stop(&p->timer);
      uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    } else {
      maybe_free(p);
    }
    return;
  }
  /* A connection we dial: what is queued waits (bounded) for the next
   * one; the peer's patterns are kept until it says them again. */
  uv_mutex_lock(&L->lock);
  p->state = P_DOWN;
  p->version = 0;
  /* A frame written in part on the old connection goes whole on the
   * next: the peer dropped the piece it had. */
  p->fd = -1;
  p->qoff = 0;
  p->stalled = 0;
  uv_mutex_unlock(&L->lock);
  uv_timer_start(&p->timer, on_retry,
                 (uint64_t)myc__backoff_ms(&L->cfg.reconnect, p->attempts,
                                           &L->rng),
                 0);
  p->attempts++;
}

static void peer_close(peer *p) {
  if (p->state == P_CLOSING || !p->handle_open)
    return;
  set_state(p, P_CLOSING);
  uv_timer_stop(&p->timer);
  uv_close(&p->io.h, on_handle_closed);
}

static void peer_fail(peer *p, const char *fmt, ...) {
  char why[512];
  va_list ap;
  if (p->state == P_CLOSING || !p->handle_open)
    return;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  uv_mutex_lock(&p->L->lock);
  p->errors++;
  uv_mutex_unlock(&p->L->lock);
  logf_(p->L, MYC_LOG_ERROR, "link %s (%s): %s; closing this link", p->name,
        p->ep->url, why);
  peer_close(p);
}

/* Refuses the peer: tells it why in a CLOSE frame, then closes. */
static void peer_refuse(peer *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void peer_refuse(peer *p, const char *fmt, ...) {
  char why[MYC_WIRE_CLOSE_MAX];
  va_list ap;
  uv_buf_t b;
  uint8_t *frame;
  size_t n;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  n = strlen(why);
  frame = myc__malloc(A(p->L), MYC_WIRE_TLV + n);
  if (frame != NULL) {
    /* Best effort and non-blocking: the link closes right after. */
    myc__wire_put_tlv(frame, MYC_WIRE_CLOSE, (uint32_t)n);
    memcpy(frame + MYC_WIRE_TLV, why, n);
    b = uv_buf_init((char *)frame, (unsigned)(MYC_WIRE_TLV + n));
    /* libuv refuses (UV_EAGAIN) while a write is queued: never
     * interleaved with one.  On a TLS link the frame is sealed; before
     * its handshake, the peer spoke plain text and reads it so. */
    if (p->tls != NULL && myc__secure_done(p->tls)) {
      /* 'cout' may still be being written: then the reason is only
       * logged here. */
      p->cout_len = 0;
      if (!p->writing &&
          myc__secure_seal(p->tls, A(p->L), &b, 1, &p->cout, &p->cout_len,
                           &p->cout_cap) == 0)
        b = uv_buf_init((char *)p->cout, (unsigned)p->cout_len);
      else
        b.len = 0;
    }
    if (b.len > 0) {
      /* Never between the pieces of a worker's direct write. */
      uv_mutex_lock(&p->L->lock);
      uv_try_write(&p->io.s, &b, 1);
      uv_mutex_unlock(&p->L->lock);
    }
    myc__free(A(p->L), frame, MYC_WIRE_TLV + n);
  }
  peer_fail(p, "refused: %s", why);
}

static void on_handshake_timeout(uv_timer_t *t) {
  peer *p = t->data;
  peer_fail(p, "handshake not finished within %.0f ms",
            p->L->cfg.handshake_timeout_ms);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  peer *p = h->data;
  (void)hint;
  if (p->filled) {
    /* The reads of this turn filled their buffer and brought
     * READ_TURN_FRAMES: libuv would read again at once (up to 32 times)
     * before the loop runs anything else, and a peer that writes fast
     * would pile megabytes of messages into the mailboxes before a
     * handler takes one.  No buffer now ends this turn's reading
     * (on_read); the socket is still readable, so the next turn of the
     * loop reads on, after the handlers ran. */
    p->filled = 0;
    p->yielded = 1;
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  if (p->tls != NULL) {
    *buf = uv_buf_init((char *)p->cin, (unsigned)p->cin_cap);
    return;
  }
  if (p->rcap - p->rlen == 0 &&
      bytes_grow(A(p->L), &p->rbuf, &p->rcap, p->rcap + RBUF_INITIAL) != 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init((char *)p->rbuf + p->rlen, (unsigned)(p->rcap - p->rlen));
}

/* The connection is there (dialled or accepted): say hello, read, and
 * give the peer the handshake budget. */
static void peer_connected(peer *p) {
  myc__links *L = p->L;
  myc__wire_hello me = L->hello;
  size_t n;
  int rc;
  set_state(p, P_HANDSHAKE);
  p->rlen = 0;
  p->filled = p->yielded = 0;
  p->turn_frames = 0;
  p->hello_ok = 0;
  p->tls_seen = 0;
  /* A frame is checked against a shape of this connection only (the
   * next may be a v1 link, where a message frame is refused). */
  p->shape.ok = 0;
  if (p->ep->tls) {
    /* The HELLO below waits in 'ctl' until the TLS handshake is done. */
    if (p->cin == NULL &&
        (p->cin = myc__malloc(A(L), CIPHER_IN)) != NULL)
      p->cin_cap = CIPHER_IN;
    if (p->cin == NULL ||
        (p->tls = myc__secure_new(L->tls, !p->outbound, p->ep->host)) ==
            NULL) {
      peer_fail(p, "out of memory starting TLS");
      return;
    }
  }
  p->psk = L->cfg.psk_len > 0 && p->ep->kind == MYC_EP_TCP;
  if (p->psk) {
    /* A fresh nonce per connection: a proof seen once proves nothing on
     * another. */
    if (RAND_bytes(p->nonce, MYC_WIRE_NONCE) != 1) {
      peer_fail(p, "cannot draw a random nonce for the pre-shared key");
      return;
    }
    me.flags |= MYC_WIRE_HELLO_PSK;
    memcpy(me.nonce, p->nonce, MYC_WIRE_NONCE);
  }
  n = MYC_WIRE_TLV + myc__wire_hello_size(&me);
  if (p->rbuf == NULL &&
      bytes_grow(A(L), &p->rbuf, &p->rcap, RBUF_INITIAL) != 0) {
    peer_fail(p, "out of memory");
    return;
  }
  if (bytes_grow(A(L), &p->ctl, &p->ctl_cap, p->ctl_len + n) != 0) {
    peer_fail(p, "out of memory");
    return;
  }
  myc__wire_hello_encode(&me, p->ctl + p->ctl_len, n);
  p->ctl_len += n;
  if ((rc = uv_read_start(&p->io.s, on_alloc, on_read)) != 0) {
    peer_fail(p, "cannot read: %s", uv_strerror(rc));
    return;
  }
  uv_timer_start(&p->timer, on_handshake_timeout,
                 (uint64_t)L->cfg.handshake_timeout_ms, 0);
  flush(p);
}

static void on_connect(uv_connect_t *req, int status) {
  peer *p = req->data;
  if (uv_is_closing(&p->io.h))
    return; /* closed while dialling (the engine stops) */
  if (status != 0) {
    if (p->attempts <= 1)
      logf_(p->L, MYC_LOG_WARN, "link %s: cannot connect: %s; retrying",
            p->ep->url, uv_strerror(status));
    set_state(p, P_CLOSING);
    uv_close(&p->io.h, on_handle_closed);
    return;
  }
  if (p->ep->kind != MYC_EP_UNIX && myc__tcp_connected_to_itself(&p->io.tcp)) {
    on_connect(req, UV_ECONNREFUSED);
    return;
  }
  peer_connected(p);
}

static void dial(peer *p) {
  myc__links *L = p->L;
  int rc;
  if (L->closing)
    return;
  set_state(p, P_CONNECTING);
  p->conn.data = p;
  if (p->ep->kind == MYC_EP_UNIX) {
    uv_pipe_init(L->lp, &p->io.pipe, 0);
    p->io.h.data = p;
    p->handle_open = 1;
    uv_pipe_connect(&p->conn, &p->io.pipe, p->ep->path, on_connect);
    return;
  }
  uv_tcp_init(L->lp, &p->io.tcp);
  p->io.h.data = p;
  p->handle_open = 1;
  {
    struct sockaddr_storage sa;
    if (uv_ip4_addr(p->ep->host, p->ep->port, (struct sockaddr_in *)&sa) != 0)
      uv_ip6_addr(p->ep->host, p->ep->port, (struct sockaddr_in6 *)&sa);
    uv_tcp_nodelay(&p->io.tcp, 1);
    rc = uv_tcp_connect(&p->conn, &p->io.tcp, (struct sockaddr *)&sa,
                        on_connect);
  }
  if (rc != 0)
    on_connect(&p->conn, rc);
}

static peer *peer_new(myc__links *L, const myc__endpoint *ep, int outbound) {
  peer *p = myc__calloc(A(L), sizeof *p);
  if (p == NULL)
    return NULL;
  p->L = L;
  p->ep = ep;
  p->outbound = outbound;
  p->fd = -1;
  snprintf(p->name, sizeof p->name, "%s", outbound ? ep->url : "(accepted)");
  uv_timer_init(L->lp, &p->timer);
  p->timer.data = p;
  p->timer_open = 1;
  uv_mutex_lock(&L->lock);
  p->next = L->peers;
  L->peers = p;
  uv_mutex_unlock(&L->lock);
  return p;
}

/* ---- reading ------------------------------------------------------------ */

/* A v2 frame is the buffer's layout already: a buffer for topic 'id'
 * with the 'len' bytes of 'body' copied in whole, or NULL. */
static myc_buf *frame_copy(peer *p, const void *body, uint32_t len,
                           uint32_t id) {
  myc__pool *pool = p->L->w != NULL ? &p->L->w->pool
                    : p->L->pooled  ? &p->L->pool
                                    : NULL;
  myc_buf *b = pool != NULL ? myc__buf_take(pool, len) : NULL;
  if (b == NULL)
    b = myc__buf_alloc(pool, &p->L->e->alloc, len);
  if (b != NULL) {
    memcpy(&b->hdr, body, len);
    myc__buf_set_topic(b, id);
  }
  return b;
}

/* 'm', decoded in full and published as a plain message to topic 'id',
 * is the shape the next frames are compared with. */
static void shape_keep(peer *p, const myc__wire_msg *m, uint32_t id) {
  shape *s = &p->shape;
  const uint8_t *body = (const uint8_t *)m->hdr;
  s->len = m->frame_len;
  s->topic = id;
  memcpy(s->head, body, 8);
  memcpy(s->lens, body + sizeof(myc_frame) - 8, 8);
  s->tail_off = (uint32_t)((const uint8_t *)m->topic - body);
  s->tail_len = (uint32_t)m->topic_len + m->source_len;
  memcpy(s->tail, m->topic, s->tail_len);
  s->ok = 1;
  /* What the last shape took of the pool is not this one's. */
  p->shape_credit = 0;
}

/* Whether frame 't' is a message of the kept shape. */
static inline int same_shape(const peer *p, const myc__wire_tlv *t) {
  const shape *s = &p->shape;
  uint64_t x, y, u, v;
  if (t->type != MYC_WIRE_MSG || t->len != s->len || !s->ok ||
      p->state != P_UP)
    return 0;
  memcpy(&x, t->body, 8);
  memcpy(&y, s->head, 8);
  memcpy(&u, t->body + sizeof(myc_frame) - 8, 8);
  memcpy(&v, s->lens, 8);
  return x == y && u == v &&
         memcmp(t->body + s->tail_off, s->tail, s->tail_len) == 0;
}

/* Hands the messages read since the last call to the mailboxes, in
 * order. */
static void run_flush(peer *p) {
  myc_engine *e = p->L->e;
  if (p->nrun == 0)
    return;
  myc__deliver_run(&e->topics, &e->sched, p->L->w, p->run, p->nrun);
  p->nrun = 0;
}

/* A message of the kept shape: copied out of the read buffer whole, as
 * publish copies a v2 frame, and added to the run.  On a worker's loop
 * only (the shape is kept there alone). */
static void run_add(peer *p, const myc__wire_tlv *t) {
  myc_buf *b;
  if (p->nrun == RUN_MAX)
    run_flush(p);
  b = frame_copy(p, t->body, t->len, p->shape.topic);
  if (b == NULL) {
    logf_(p->L, MYC_LOG_ERROR, "link %s: out of memory for a message on "
          "'%.*s'", p->name, (int)p->last_topic_len, p->last_topic_name);
    return;
  }
  /* A kept shape has no request bits: only ours are left. */
  b->hdr.flags = MYC_FRAME_REMOTE;
  p->run[p->nrun++] = b;
}

/* ---- backpressure: a full "reject" mailbox holds the link -------------- */

/* handle_frame, publish, deliver_reply: the message could not go now
 * (room), and nothing of it went. */
#define HELD 2

/* The messages and payload bytes the mailbox of 'tk' takes before it is
 * full, as the loop's thread can tell: what it holds and what is on its
 * way to it (myc__mailbox_held), and what this loop staged for it and
 * has not counted yet, against its capacity and max_bytes. */
static void task_room(myc__links *L, myc__task *tk, uint32_t *n,
                      uint64_t *bytes) {
  myc__mailbox *mb = &tk->mb;
  myc__stage *st = NULL;
  myc__stage_run *r;
  uint64_t b;
  uint32_t used;
  myc__mailbox_held(mb, &used, &b);
  if (L->w != NULL) {
    if (tk->worker != L->w)
      st = &L->w->stage[tk->worker->index];
  } else if (tk->worker->index < L->hs.nstage) {
    st = &L->hs.stage[tk->worker->index];
  }
  if (st != NULL && (r = myc__stage_run_of(st, tk)) != NULL) {
    used += r->n;
    b += r->bytes;
  }
  *n = used < mb->capacity ? mb->capacity - used : 0;
  *bytes = b < mb->max_bytes ? mb->max_bytes - b : 0;
}

/* Whether 'tk' is a mailbox a message of 'len' payload bytes waits for:
 * policy reject, and not a message it refuses whatever its fill. */
static int waits_for(const myc__task *tk, uint32_t len) {
  return tk->mb.policy == MYC_POLICY_REJECT && len <= tk->mb.max_message;
}

/* Forgets what the pass knew (room_look): the room is measured anew. */
static void room_reset(peer *p) {
  uint32_t i;
  for (i = 0; i < CREDITS; i++)
    p->credits[i].state = ROOM_UNKNOWN;
  p->pool_n = UINT32_MAX;
  p->pool_bytes = UINT64_MAX;
  p->shape_credit = 0;
}

/* Looks at the subscribers of topic 'id': the pool becomes at most the
 * room of each "reject" mailbox among them.  A pool that cannot take a
 * message of 'len' bytes is measured anew first, from the mailboxes'
 * counts (what went to them since is in those). */
static __attribute__((noinline)) void room_look(peer *p, uint32_t id,
                                                uint32_t len, credit *c) {
  myc__links *L = p->L;
  const myc__sublist *subs;
  uint32_t i, n, k;
  uint64_t b;
  int any = 0;
  /* The run waiting is on no mailbox's count yet. */
  run_flush(p);
  if (p->pool_n == 0 || p->pool_bytes < len)
    room_reset(p);
  if (L->w == NULL)
    myc__host_enter(&L->hs);
  subs = myc__topic_subs(myc__topics_get(&L->e->topics, id));
  for (i = 0, n = subs->n; i < n; i++) {
    myc_service *s = myc__sublist_at(subs, i);
    if (s == NULL || s->task.mb.policy != MYC_POLICY_REJECT)
      continue;
    task_room(L, &s->task, &k, &b);
    p->pool_n = k < p->pool_n ? k : p->pool_n;
    p->pool_bytes = b < p->pool_bytes ? b : p->pool_bytes;
    any = 1;
  }
  c->topic = id;
  c->state = any ? ROOM_POOL : ROOM_ANY;
}

/* Whether a message of 'len' payload bytes on topic 'id' may be handed
 * to its subscribers now: each whose mailbox is "reject" has room for it.
 * Then it is taken from the pool; the mailboxes are measured again when
 * the pool runs out (or at the next pass over the read buffer).  All or
 * none: a message that goes, goes to every subscriber once; one that
 * does not, to none.  Inline, the look apart: the common case is a few
 * instructions per message, not a call with the look's frame. */
static inline int room(peer *p, uint32_t id, uint32_t len) {
  credit *c = &p->credits[id & (CREDITS - 1)];
  if (c->topic != id || c->state == ROOM_UNKNOWN ||
      (c->state == ROOM_POOL && (p->pool_n == 0 || p->pool_bytes < len))) {
    room_look(p, id, len, c);
    if (c->state == ROOM_POOL && (p->pool_n == 0 || p->pool_bytes < len))
      return 0;
  }
  if (c->state == ROOM_POOL) {
    p->pool_n--;
    p->pool_bytes -= len;
  }
  return 1;
}

/* room for the messages of the kept shape (same_shape): what the pool
 * holds goes to 'shape_credit' whole, in messages of their length.
 * Returns 0 when not even one fits. */
static __attribute__((noinline)) int shape_room(peer *p) {
  uint32_t id = p->shape.topic, len;
  credit *c = &p->credits[id & (CREDITS - 1)];
  uint64_t k;
  memcpy(&len, p->shape.lens, 4); /* their payload_len */
  if (!room(p, id, len))
    return 0;
  if (c->state == ROOM_ANY) {
    p->shape_credit = UINT32_MAX;
    return 1;
  }
  /* One taken by room(), the rest of the pool now. */
  k = len > 0 ? p->pool_bytes / len : p->pool_n;
  k = k < p->pool_n ? k : p->pool_n;
  p->pool_n -= (uint32_t)k;
  p->pool_bytes -= k * len;
  p->shape_credit = (uint32_t)k + 1;
  return 1;
}

/* Publishes a message that came in over the link, keeping its trace
 * context (a v1 frame brings none: 'm->trace_id' is a new root).
 * Returns 0, or HELD. */
static int publish(peer *p, const myc__wire_msg *m) {
  myc_engine *e = p->L->e;
  int64_t id;
  myc__topic *t;
  myc_buf *b;
  if (p->last_topic != 0 &&
      (m->topic_known ||
       (m->topic_len == p->last_topic_len &&
        memcmp(m->topic, p->last_topic_name, m->topic_len) == 0))) {
    id = p->last_topic;
  } else {
    /* Counted against _links: a peer sending ever-new topic names fills
     * its quota, not the engine's table. */
    id = myc__engine_topic(e, p->L->svc, m->topic, m->topic_len);
    if (id == MYC_ELIMIT && !p->told_topic_limit) {
      char why[512];
      myc__engine_topic_limit(e, p->L->svc, m->topic, m->topic_len, why,
                              sizeof why);
      p->told_topic_limit = 1;
      logf_(p->L, MYC_LOG_ERROR, "link %s: messages on new topics dropped "
            "from now on: %s", p->name, why);
    }
    if (id < 0)
      return 0;
    p->last_topic = (uint32_t)id;
    p->last_topic_len = m->topic_len;
    memcpy(p->last_topic_name, m->topic, m->topic_len);
  }
  if (!room(p, (uint32_t)id, m->payload_len))
    return HELD;
  t = myc__topics_get(&e->topics, (uint32_t)id);
  if (m->payload_len >= MYC_ADMIT_BYTES &&
      myc__admit(&e->sched, p->L->w, t, m->payload_len) != 0)
    return 0; /* counted by the subscribers that refused it */
  if (m->req_flags & MYC_FRAME_REQUEST) {
    /* The asker's name with the peer's: the reply goes back over this
     * link to that service (reply_remote). */
    char src[MYC_SOURCE_MAX];
    size_t nl = strlen(p->name), sl = m->source_len;
    if (sl + 1 + nl > MYC_SOURCE_MAX) {
      logf_(p->L, MYC_LOG_ERROR, "link %s: request on '%.*s' dropped: "
            "'%.*s@%s' is longer than 255 bytes", p->name, (int)m->topic_len,
            m->topic, (int)sl, m->source, p->name);
      return 0;
    }
    memcpy(src, m->source, sl);
    src[sl++] = '@';
    memcpy(src + sl, p->name, nl);
    b = myc__frame_new_req(&e->alloc, t->id, t->name, t->len, src, sl + nl,
                           m->kind, m->type, m->payload, m->payload_len,
                           MYC_FRAME_REQUEST, m->corr, m->budget_ns, 0);
    if (b != NULL) {
      memcpy(b->hdr.trace_id, m->trace_id, 16);
      memcpy(b->hdr.span_id, m->span_id, 8);
      memcpy(b->hdr.parent_id, m->parent_id, 8);
      b->hdr.seq = m->seq;
      b->hdr.ts_ns = m->ts_ns;
    }
  } else if (m->hdr != NULL) {
    b = frame_copy(p, m->hdr, m->frame_len, (uint32_t)id);
    if (b != NULL && p->L->w != NULL && m->payload_len < MYC_ADMIT_BYTES)
      shape_keep(p, m, (uint32_t)id);
  } else {
    b = myc__frame_new(&e->alloc, NULL, t, m->source, m->source_len, m->kind,
                       m->type, m->payload, m->payload_len);
    if (b != NULL) {
      memcpy(b->hdr.trace_id, m->trace_id, 16);
      memcpy(b->hdr.span_id, m->span_id, 8);
      memcpy(b->hdr.parent_id, m->parent_id, 8);
      b->hdr.seq = m->seq;
      b->hdr.ts_ns = m->ts_ns;
    }
  }
  if (b == NULL) {
    logf_(p->L, MYC_LOG_ERROR, "link %s: out of memory for a message on '%.*s'",
          p->name, (int)m->topic_len, m->topic);
    return 0;
  }
  /* Only the request bit survives the sender's flags: the rest are ours. */
  b->hdr.flags = (uint8_t)((b->hdr.flags & MYC_FRAME_REQUEST) | MYC_FRAME_REMOTE);
  /* On a worker's loop, its own services' mailboxes take the message as
   * a local emit's (no thread crossed); other workers' get it when the
   * read ends (myc__worker_flush). */
  if (p->L->w != NULL)
    myc__deliver(&e->topics, &e->sched, p->L->w, b);
  else
    myc__deliver_staged(&e->topics, &e->sched, &p->L->hs, b);
  return 0;
}

static void grace_exit(myc__links *L, int g) {
  if (g >= 0)
    myc__grace_exit(&L->e->sched.hosts, g);
}

/* A reply to one of our services' requests: handed to that service alone
 * (its name is the frame's topic), on "$reply" as a local reply is.  An
 * asker that is gone waits for nothing. */
static int deliver_reply(peer *p, const myc__wire_msg *m) {
  myc_engine *e = p->L->e;
  /* 'to' stays valid until the hand-over (a killed service is freed only
   * after this section, or, on a worker, after a job on every worker). */
  int g = p->L->w == NULL ? myc__grace_enter(&e->sched.hosts) : -1;
  myc_service *to = myc__engine_find(e, m->topic, m->topic_len);
  myc_buf *b;
  if (to == NULL) {
    grace_exit(p->L, g);
    return 0;
  }
  if (waits_for(&to->task, m->payload_len)) {
    uint32_t k;
    uint64_t bytes;
    task_room(p->L, &to->task, &k, &bytes);
    if (k == 0 || bytes < m->payload_len) {
      grace_exit(p->L, g);
      return HELD;
    }
  }
  b = myc__frame_new_req(&e->alloc, e->reply_topic, "$reply", 6, m->source,
                         m->source_len, m->kind, m->type, m->payload,
                         m->payload_len,
                         (uint8_t)(MYC_FRAME_REMOTE | m->req_flags), m->corr,
                         0, 0);
  if (b == NULL) {
    logf_(p->L, MYC_LOG_ERROR, "link %s: out of memory for a reply to '%.*s'",
          p->name, (int)m->topic_len, m->topic);
    grace_exit(p->L, g);
    return 0;
  }
  memcpy(b->hdr.trace_id, m->trace_id, 16);
  memcpy(b->hdr.span_id, m->span_id, 8);
  memcpy(b->hdr.parent_id, m->parent_id, 8);
  b->hdr.seq = m->seq;
  b->hdr.ts_ns = m->ts_ns;
  (void)myc__deliver_one(&e->sched, p->L->w, to, b);
  grace_exit(p->L, g);
  /* It took room the pool may count on: measured anew. */
  room_reset(p);
  return 0;
}

/* ctx:reply to a request that came over a link (the engine's
 * reply_remote): the reply goes to the peer named after the last '@' of
 * the request's source, addressed to the service named before it.
 * Responder's worker thread. */
static int reply_remote(void *ud, myc_service *s, myc_buf *req, int kind,
                        uint16_t type, const void *data, size_t len,
                        int failed) {
  myc__links *L = ud;
  const char *src = myc__buf_source(req);
  size_t sl = req->hdr.source_len, alen = sl, size;
  uint64_t span = myc__rng_id(&s->task.worker->rng);
  myc_buf *b;
  peer *p;
  int rc = MYC_ENOENT;
  while (alen > 0 && src[alen - 1] != '@')
    alen--;
  if (alen < 2)
    return MYC_ENOENT;
  b = myc__frame_new_req(A(L), 0, src, alen - 1, s->name, s->name_len, kind,
                         type, data, len,
                         (uint8_t)(MYC_FRAME_REPLY |
                                   (failed ? MYC_FRAME_FAILED : 0)),
                         myc__buf_req(req)->corr, 0, 0);
  if (b == NULL)
    return len > MYC_PAYLOAD_MAX ? MYC_ETOOBIG : MYC_ENOMEM;
  memcpy(b->hdr.trace_id, req->hdr.trace_id, 16);
  memcpy(b->hdr.parent_id, req->hdr.span_id, 8);
  memcpy(b->hdr.span_id, &span, 8);
  b->hdr.seq = ++s->seq;
  b->hdr.ts_ns = (uint64_t)s->task.worker->now;
  b->shared = 1;
  size = MYC_WIRE_TLV + (size_t)b->hdr.frame_len;
  uv_mutex_lock(&L->lock);
  for (p = L->stopping ? NULL : L->peers; p != NULL; p = p->next) {
    if (p->state != P_UP || !p->requests || strlen(p->name) != sl - alen ||
        memcmp(p->name, src + alen, sl - alen) != 0)
      continue;
    if (p->qframes >= L->cfg.queue_frames ||
        p->qbytes + size > L->cfg.queue_bytes ||
        grow(A(L), (void **)&p->q, &p->qcap, sizeof *p->q, p->qn + 1) != 0) {
      p->d_queue++;
      rc = MYC_EFULL;
      break;
    }
    p->q[p->qn++] = b;
    p->qframes++;
    p->qbytes += size;
    rc = 0;
    break;
  }
  uv_mutex_unlock(&L->lock);
  if (rc == 0)
    uv_async_send(&L->wake);
  else
    release(L, b);
  return rc;
}

/* Returns 0, or HELD. */
static int handle_v1(peer *p, const myc__wire_tlv *t) {
  myc__links *L = p->L;
  const myc_contract_type *ct =
      L->e->contracts ? myc_contract_type_by_tag(L->e->contracts, t->type)
                      : NULL;
  myc__wire_msg m;
  uint64_t r[3];
  if (ct == NULL || myc_contract_type_size(ct) != t->len) {
    if (L->cfg.unknown_fail) {
      peer_refuse(p, "message type %u is not one of this node's contracts "
                     "(or not of its size) and unknown_type is \"fail\"",
                  t->type);
      return 0;
    }
    uv_mutex_lock(&L->lock);
    p->unknown++;
    uv_mutex_unlock(&L->lock);
    return 0;
  }
  memset(&m, 0, sizeof m);
  m.kind = MYC_KIND_TYPED;
  m.type = t->type;
  m.payload = t->body;
  m.payload_len = t->len;
  m.topic = myc_contract_type_name(ct);
  m.topic_len = (uint16_t)strlen(m.topic);
  m.source = p->name;
  m.source_len = (uint8_t)strlen(p->name);
  r[0] = myc__rng_id(&L->rng);
  r[1] = myc__rng_id(&L->rng);
  r[2] = myc__rng_id(&L->rng);
  memcpy(m.trace_id, r, 16);
  memcpy(m.span_id, &r[2], 8);
  return publish(p, &m);
}

static const char *type_name(void *ud, uint16_t tag) {
  myc__links *L = ud;
  const myc_contract_type *ct =
      L->e->contracts ? myc_contract_type_by_tag(L->e->contracts, tag) : NULL;
  return ct ? myc_contract_type_name(ct) : NULL;
}

/* The handshake is done (and the key proven, if one is required). */
static void go_up(peer *p) {
  myc__links *L = p->L;
  uv_timer_stop(&p->timer);
  /* Whatever it subscribed before this connection it says again now. */
  drop_remote(L, p);
  uv_mutex_lock(&L->lock);
  p->state = P_UP;
  p->fd = -1;
  p->qoff = 0;
  p->stalled = 0;
  if (p->tls == NULL && p->version >= 2) {
    uv_os_fd_t fd;
    if (uv_fileno(&p->io.h, &fd) == 0)
      p->fd = fd;
  }
  if (p->was_up)
    p->reconnects++;
  uv_mutex_unlock(&L->lock);
  p->was_up = 1;
  p->attempts = 0;
  logf_(L, MYC_LOG_INFO, "link up: %s (%s, %s, wire v%d%s%s%s)", p->name,
        p->ep->url, p->outbound ? "connected" : "accepted", p->version,
        p->psk ? ", pre-shared key" : "", p->tls ? ", " : "",
        p->tls ? myc__secure_version(p->tls) : "");
  atomic_store(&L->subs_dirty, 1);
  announce(L);
  flush(p);
}

static void handle_hello(peer *p, const myc__wire_tlv *t) {
  myc__links *L = p->L;
  myc__wire_hello h;
  const char *why = NULL;
  char reason[512];
  int v;
  if (myc__wire_hello_decode(t->body, t->len, &h, &why) != 0) {
    peer_refuse(p, "bad handshake: %s", why);
    return;
  }
  v = myc__wire_hello_check(&L->hello, &h, p->psk, type_name, L, reason,
                            sizeof reason);
  if (v == 0) {
    peer_refuse(p, "%s", reason);
    return;
  }
  uv_mutex_lock(&L->lock);
  snprintf(p->name, sizeof p->name, "%s", h.node);
  p->version = v;
  p->requests = v >= 2 && (h.flags & MYC_WIRE_HELLO_REQUESTS) != 0;
  uv_mutex_unlock(&L->lock);
  p->hello_ok = 1;
  if (p->psk) {
    /* Prove the key; the peer's proof is the next frame. */
    uint8_t proof[MYC_WIRE_PROOF];
    memcpy(p->peer_nonce, h.nonce, MYC_WIRE_NONCE);
    myc__wire_psk_proof(L->cfg.psk, L->cfg.psk_len, p->outbound, h.nonce,
                        p->nonce, proof);
    if (ctl_append(p, MYC_WIRE_AUTH, proof, sizeof proof) != 0) {
      peer_fail(p, "out of memory");
      return;
    }
    flush(p);
    return;
  }
  go_up(p);
}

static void handle_auth(peer *p, const myc__wire_tlv *t) {
  myc__links *L = p->L;
  uint8_t want[MYC_WIRE_PROOF];
  const char *why = NULL;
  myc__wire_psk_proof(L->cfg.psk, L->cfg.psk_len, !p->outbound, p->nonce,
                      p->peer_nonce, want);
  if (myc__wire_auth_check(t->body, t->len, want, &why) != 0) {
    peer_refuse(p, "%s", why);
    return;
  }
  go_up(p);
}

static void handle_sub(peer *p, const myc__wire_tlv *t, int add) {
  myc__links *L = p->L;
  const char *why = NULL;
  char pat[MYC_TOPIC_MAX + 1];
  uint32_t at;
  int changed;
  if (myc__wire_pattern_check(t->body, t->len, &why) != 0) {
    peer_fail(p, "%s", why);
    return;
  }
  memcpy(pat, t->body, t->len);
  pat[t->len] = '\0';
  uv_mutex_lock(&L->lock);
  /* Each pattern costs memory and a place in the topic table: a peer
   * that would pass the bound loses its link before it is stored. */
  if (add && p->remote.n >= L->cfg.max_subscriptions &&
      !set_find(&p->remote, pat, t->len, &at))
    changed = MYC_ELIMIT;
  else
    changed = add ? set_add(A(L), &p->remote, pat, t->len)
                  : set_del(A(L), &p->remote, pat, t->len);
  forget_topic(p);
  uv_mutex_unlock(&L->lock);
  if (changed == MYC_ELIMIT) {
    peer_refuse(p, "subscribed to more than %u patterns, the "
                "link.max_subscriptions of the node that closes this link "
                "(raise it there if more are needed)",
                L->cfg.max_subscriptions);
    return;
  }
  if (changed < 0) {
    peer_fail(p, "out of memory for its subscriptions");
    return;
  }
  if (changed > 0) {
    if (add)
      ref_pattern(L, pat);
    else
      unref_pattern(L, pat);
    uv_mutex_lock(&L->lock);
    p->routed = p->remote.n;
    uv_mutex_unlock(&L->lock);
  }
}

/* A message frame that could not go: it is not in yet. */
static int held_frame(peer *p, const myc__wire_tlv *t) {
  p->rx_frames--;
  p->rx_bytes -= MYC_WIRE_TLV + (uint64_t)t->len;
  return HELD;
}

/* One whole frame.  Returns 0, HELD (nothing of it done: it is to be
 * handled again), or another nonzero value when the link is closing. */
static int handle_frame(peer *p, const myc__wire_tlv *t) {
  myc__links *L = p->L;
  p->rx_frames++;
  p->rx_bytes += MYC_WIRE_TLV + (uint64_t)t->len;
  if (p->state == P_HANDSHAKE) {
    if (t->type == MYC_WIRE_CLOSE) {
      /* Refused: as much a failed link here as on the side that said
       * no. */
      uv_mutex_lock(&L->lock);
      p->errors++;
      uv_mutex_unlock(&L->lock);
      goto closed;
    }
    if (p->hello_ok) {
      /* Only a pre-shared key's proof comes between HELLO and up. */
      if (t->type != MYC_WIRE_AUTH) {
        peer_refuse(p, "a frame of type 0x%04x where the pre-shared key's "
                       "proof (AUTH) was due", t->type);
        return 1;
      }
      handle_auth(p, t);
      return p->state != P_UP;
    }
    if (t->type != MYC_WIRE_HELLO) {
      peer_fail(p, "the first frame is of type 0x%04x, not a handshake",
                t->type);
      return 1;
    }
    handle_hello(p, t);
    return p->state != P_UP && !p->hello_ok;
  }
  if (t->type <= MYC_WIRE_V1_MAX_TYPE) {
    if (handle_v1(p, t) == HELD)
      return held_frame(p, t);
    return p->state == P_CLOSING;
  }
  switch (t->type) {
  case MYC_WIRE_MSG: {
    myc__wire_msg m;
    const char *why = NULL;
    if (p->version < 2) {
      peer_fail(p, "a v2 message on a v1 link");
      return 1;
    }
    /* The last topic in was checked when it was resolved. */
    if (myc__wire_msg_decode_known(t->body, t->len, &m, &why,
                                   p->last_topic ? p->last_topic_name : NULL,
                                   p->last_topic_len) != 0) {
      peer_fail(p, "bad message frame: %s", why);
      return 1;
    }
    if ((m.req_flags & MYC_FRAME_REPLY ? deliver_reply(p, &m)
                                       : publish(p, &m)) == HELD)
      return held_frame(p, t);
    return 0;
  }
  case MYC_WIRE_SUB:
  case MYC_WIRE_UNSUB:
    handle_sub(p, t, t->type == MYC_WIRE_SUB);
    return p->state == P_CLOSING;
  case MYC_WIRE_CLOSE:
    goto closed;
  case MYC_WIRE_HELLO:
  case MYC_WIRE_AUTH:
    peer_fail(p, "a second handshake");
    return 1;
  default:
    peer_fail(p, "unknown frame type 0x%04x", t->type);
    return 1;
  }
closed:
  logf_(L, MYC_LOG_ERROR, "link %s (%s): the peer closed it: %.*s", p->name,
        p->ep->url, (int)(t->len > MYC_WIRE_CLOSE_MAX ? MYC_WIRE_CLOSE_MAX
                                                     : t->len),
        (const char *)t->body);
  peer_close(p);
  return 1;
}

static void read_frames(peer *p, ssize_t n);
static void read_tls(peer *p, ssize_t n);

/* What this pass over the read buffer brought in, on the counters once. */
static void count_in(peer *p) {
  if (p->rx_frames > 0) {
    uv_mutex_lock(&p->L->lock);
    p->frames_in += p->rx_frames;
    p->bytes_in += p->rx_bytes;
    uv_mutex_unlock(&p->L->lock);
    p->rx_frames = p->rx_bytes = 0;
  }
}

/* What one read brought: its frames parsed in place, the messages handed
 * to the workers in one go, the counters moved once. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  peer *p = s->data;
  myc__links *L = p->L;
  int full = n > 0 && (size_t)n == buf->len;
  if (n == UV_ENOBUFS && p->yielded) {
    p->yielded = 0;
    return;
  }
  if (p->tls != NULL)
    read_tls(p, n);
  else
    read_frames(p, n);
  if (L->w != NULL)
    myc__worker_flush(L->w);
  else
    myc__host_flush(&L->hs);
  if (atomic_load_explicit(&L->reader, memory_order_relaxed) !=
      myc__thread_token())
    atomic_store_explicit(&L->reader, myc__thread_token(),
                          memory_order_relaxed);
  /* A read that did not fill its buffer emptied the socket: libuv
   * stops there. */
  p->turn_frames = full && !p->held ? p->turn_frames + (uint32_t)p->rx_frames
                                    : 0;
  p->filled = full && !p->held && p->turn_frames >= READ_TURN_FRAMES;
  if (p->filled)
    p->turn_frames = 0;
  count_in(p);
}

static void on_hold(uv_timer_t *t);

/* A message of the read buffer's first frame cannot go (room): the link
 * reads no more until it has gone.  The socket's buffers fill, then the
 * peer's queue, whose fill its producers see in ctx:pressure. */
static void hold(peer *p) {
  myc__links *L = p->L;
  uv_read_stop(&p->io.s);
  p->filled = p->yielded = 0;
  p->turn_frames = 0;
  /* Its own pause is no stalled frame of the peer's. */
  p->partial_since = 0;
  uv_mutex_lock(&L->lock);
  p->held = 1;
  p->held_since = uv_hrtime();
  p->pauses++;
  uv_mutex_unlock(&L->lock);
  if (!uv_is_active((uv_handle_t *)&L->hold))
    uv_timer_start(&L->hold, on_hold, HOLD_RETRY_MS, HOLD_RETRY_MS);
}

static void hold_end(peer *p) {
  uv_mutex_lock(&p->L->lock);
  p->held = 0;
  p->paused_ns += uv_hrtime() - p->held_since;
  uv_mutex_unlock(&p->L->lock);
}

/* The message frames in what a held link had read, dropped with it. */
static uint64_t held_frames(const peer *p) {
  size_t off = 0;
  uint64_t n = 0;
  myc__wire_tlv t;
  int64_t k;
  while ((k = myc__wire_next(p->rbuf + off, p->rlen - off, UINT32_MAX, &t)) >
         0) {
    n += t.type == MYC_WIRE_MSG || t.type <= MYC_WIRE_V1_MAX_TYPE;
    off += (size_t)k;
  }
  return n;
}

/* Whether the peer of a held link hung up: its socket says so while
 * the bytes before it are still unread. */
static int hung_up(peer *p) {
  struct pollfd pf;
  uv_os_fd_t fd;
  if (uv_fileno(&p->io.h, &fd) != 0)
    return 0;
  pf.fd = fd;
  pf.events = POLLRDHUP;
  pf.revents = 0;
  return poll(&pf, 1, 0) == 1 &&
         (pf.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static int parse_frames(peer *p);

/* The hold timer: every held link tries its frames again; one whose
 * frames all went reads again.  Stops once no link is held. */
static void on_hold(uv_timer_t *t) {
  myc__links *L = t->data;
  peer *p;
  int any = 0, rc;
  for (p = L->peers; p != NULL; p = p->next) {
    if (!p->held || p->state == P_CLOSING || !p->handle_open)
      continue;
    if (hung_up(p)) {
      /* What it sent before is dropped, counted (on_handle_closed): a
       * connection it makes again must not see older messages of its
       * arrive after newer ones. */
      logf_(L, MYC_LOG_WARN, "link %s (%s): the peer hung up while its "
            "messages waited for a full mailbox: the %llu read are dropped",
            p->name, p->ep->url, (unsigned long long)held_frames(p));
      peer_close(p);
      continue;
    }
    rc = parse_frames(p);
    count_in(p);
    if (rc == HELD) {
      any = 1;
    } else if (p->held) {
      hold_end(p);
      if (rc == 0 && (rc = uv_read_start(&p->io.s, on_alloc, on_read)) != 0)
        peer_fail(p, "cannot read: %s", uv_strerror(rc));
    }
  }
  if (L->w != NULL)
    myc__worker_flush(L->w);
  else
    myc__host_flush(&L->hs);
  if (!any)
    uv_timer_stop(&L->hold);
}

static void read_frames(peer *p, ssize_t n) {
  myc__links *L = p->L;
  if (n < 0) {
    if (n == UV_EOF)
      logf_(L, p->state == P_UP ? MYC_LOG_WARN : MYC_LOG_ERROR,
            "link %s (%s): the peer hung up", p->name, p->ep->url);
    else
      logf_(L, MYC_LOG_ERROR, "link %s (%s): read failed: %s", p->name,
            p->ep->url, uv_strerror((int)n));
    peer_close(p);
    return;
  }
  if (n == 0)
    return;
  p->rlen += (size_t)n;
  if (!p->tls_seen && p->rlen >= 2) {
    /* A TLS ClientHello where a HELLO frame was due. */
    p->tls_seen = 1;
    if (p->rbuf[0] == 0x16 && p->rbuf[1] == 0x03) {
      peer_refuse(p, "the peer speaks TLS and this link (%s) is plain: use "
                  "tls+tcp:// on both sides", p->ep->url);
      return;
    }
  }
  if (parse_frames(p) == HELD)
    hold(p);
}

/* Handles the whole frames at the start of 'rbuf' and keeps the rest: a
 * frame begun or, when a message cannot go now, that message's frame and
 * what follows it (HELD).  Returns 0, HELD, or 1 when the link is
 * closing. */
static int parse_frames(peer *p) {
  myc__links *L = p->L;
  size_t off = 0;
  int rc = 0;
  /* Mailboxes drained since the last pass: their room is looked at
   * again. */
  room_reset(p);
  for (;;) {
    myc__wire_tlv t;
    int64_t k = myc__wire_next(p->rbuf + off, p->rlen - off,
                               L->cfg.max_frame, &t);
    if (k == MYC_ELIMIT) {
      uint32_t len;
      run_flush(p);
      memcpy(&len, p->rbuf + off + 2, 4);
      peer_fail(p, "a frame of %u bytes, over max_frame (%u)", len,
                L->cfg.max_frame);
      if (p->held)
        hold_end(p);
      return 1;
    }
    if (k == 0)
      break;
    if (same_shape(p, &t)) {
      if (p->shape_credit == 0 && !shape_room(p)) {
        rc = HELD;
        break;
      }
      p->shape_credit--;
      p->rx_frames++;
      p->rx_bytes += (uint64_t)k;
      run_add(p, &t);
      off += (size_t)k;
      continue;
    }
    /* What came before this frame goes first, whatever it is. */
    run_flush(p);
    if ((rc = handle_frame(p, &t)) == HELD)
      break;
    if (rc != 0) {
      /* What is left is never read (the link closes): nothing is held. */
      if (p->held)
        hold_end(p);
      return 1;
    }
    off += (size_t)k;
  }
  run_flush(p);
  if (off > 0) {
    memmove(p->rbuf, p->rbuf + off, p->rlen - off);
    p->rlen -= off;
  }
  if (rc == HELD) {
    /* Whatever frame is begun behind it is the peer's to finish after
     * the pause, not within frame_timeout_ms of its start. */
    p->partial_since = 0;
  } else if (p->rlen > 0) {
    /* Make room for the whole of the frame begun (its size is known and
     * within max_frame once the 6 bytes are in). */
    if (off > 0 || p->partial_since == 0)
      p->partial_since = uv_now(L->lp) + 1;
    if (p->rlen >= MYC_WIRE_TLV) {
      uint32_t len;
      memcpy(&len, p->rbuf + 2, 4);
      if (bytes_grow(A(L), &p->rbuf, &p->rcap, MYC_WIRE_TLV + (size_t)len) !=
          0)
        peer_fail(p, "out of memory for a frame of %u bytes", len);
    }
  } else {
    p->partial_since = 0;
  }
  return rc;
}

/* ---- reading TLS ------------------------------------------------------- */

/* Plaintext goes where read_frames expects what a read brought: after
 * the 'rlen' bytes kept. */
static int on_plain(void *ud, const char *b, size_t n) {
  peer *p = ud;
  if (p->state == P_CLOSING)
    return 1;
  if (bytes_grow(A(p->L), &p->rbuf, &p->rcap, p->rlen + p->plain_n + n) !=
      0) {
    peer_fail(p, "out of memory reading");
    return 1;
  }
  memcpy(p->rbuf + p->rlen + p->plain_n, b, n);
  p->plain_n += n;
  return 0;
}

/* The session failed: the alert saying why goes out if the socket takes
 * it now, then the link closes with the reason and what to check. */
static void tls_fail(peer *p, const char *why) {
  const char *hint = myc__secure_hint(why, !p->outbound);
  if (strncmp(why, "TLS handshake: ", 15) == 0 ||
      strncmp(why, "TLS record: ", 12) == 0)
    why = strchr(why, ':') + 2;
  if (!p->writing) {
    uv_buf_t b;
    p->cout_len = 0;
    if (myc__secure_take(p->tls, A(p->L), &p->cout, &p->cout_len,
                         &p->cout_cap) == 0 &&
        p->cout_len > 0) {
      b = uv_buf_init((char *)p->cout, (unsigned)p->cout_len);
      uv_try_write(&p->io.s, &b, 1);
    }
  }
  peer_fail(p, "TLS %s: %s%s%s%s",
            myc__secure_done(p->tls) ? "session failed" : "handshake refused",
            why, *hint ? " (" : "", hint, *hint ? ")" : "");
}

/* The first bytes of a TLS connection are a handshake record (0x16)
 * or, from a peer that failed it, an alert (0x15).  Anything else is a
 * peer speaking plain text: a plain client is told (in plain text) what
 * to dial; a plain listener's own CLOSE frame is read and shown. */
static int plain_peer(peer *p, const uint8_t *b, size_t n) {
  myc__wire_tlv t;
  if (p->tls_seen || n == 0)
    return 0;
  p->tls_seen = 1;
  if (b[0] == 0x16 || b[0] == 0x15)
    return 0;
  if (!p->outbound) {
    peer_refuse(p, "this listener (%s) speaks TLS: dial it with tls+tcp:// "
                "and link.tls", p->ep->url);
    return 1;
  }
  if (myc__wire_next(b, n, 65536, &t) > 0 && t.type == MYC_WIRE_CLOSE)
    peer_fail(p, "TLS handshake refused: the peer answered in plain text: "
              "%.*s", (int)(t.len > MYC_WIRE_CLOSE_MAX ? MYC_WIRE_CLOSE_MAX
                                                       : t.len),
              (const char *)t.body);
  else
    peer_fail(p, "TLS handshake refused: the peer answered in plain text, "
              "not TLS (it listens on tcp://, not tls+tcp://?)");
  return 1;
}

static void read_tls(peer *p, ssize_t n) {
  char why[512];
  int opened = 0, rc;
  if (n <= 0 || plain_peer(p, p->cin, (size_t)n)) {
    if (n < 0 && !myc__secure_done(p->tls)) {
      logf_(p->L, MYC_LOG_ERROR, "link %s (%s): the peer %s during the TLS "
            "handshake", p->name, p->ep->url,
            n == UV_EOF ? "hung up" : uv_strerror((int)n));
      peer_close(p);
    } else if (n < 0) {
      read_frames(p, n);
    }
    return;
  }
  p->plain_n = 0;
  rc = myc__secure_open(p->tls, p->cin, (size_t)n, on_plain, p, &opened, why,
                        sizeof why);
  if (rc == 0 && opened) {
    /* The HELLO waiting in 'ctl' can go now, sealed. */
    flush(p);
    rc = myc__secure_open(p->tls, NULL, 0, on_plain, p, &opened, why,
                          sizeof why);
  }
  if (rc == UV_EOF) {
    read_frames(p, UV_EOF);
    return;
  }
  if (rc != 0) {
    tls_fail(p, why);
    return;
  }
  if (p->plain_n > 0 && p->state != P_CLOSING)
    read_frames(p, (ssize_t)p->plain_n);
  flush(p);
}

/* Peers that began a frame and stall (slowloris) lose their link. */
static void on_tick(uv_timer_t *t) {
  myc__links *L = t->data;
  uint64_t now = uv_now(L->lp);
  peer *p;
  for (p = L->peers; p != NULL; p = p->next)
    if (p->partial_since != 0 && p->state != P_CLOSING &&
        (double)(now - (p->partial_since - 1)) > L->cfg.frame_timeout_ms) {
      p->partial_since = 0;
      peer_fail(p, "a frame begun %.0f ms ago is still not complete",
                L->cfg.frame_timeout_ms);
    }
}

/* ---- listening ---------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status) {
  listener *ls = server->data;
  myc__links *L = ls->L;
  peer *p;
  int rc;
  if (status != 0) {
    logf_(L, MYC_LOG_ERROR, "link %s: accept failed: %s", ls->ep->url,
          uv_strerror(status));
    return;
  }
  p = peer_new(L, ls->ep, 0);
  if (p == NULL) {
    logf_(L, MYC_LOG_ERROR, "link %s: out of memory accepting", ls->ep->url);
    return;
  }
  if (ls->ep->kind == MYC_EP_UNIX)
    uv_pipe_init(L->lp, &p->io.pipe, 0);
  else
    uv_tcp_init(L->lp, &p->io.tcp);
  p->io.h.data = p;
  p->handle_open = 1;
  if ((rc = uv_accept(server, &p->io.s)) != 0) {
    peer_fail(p, "accept failed: %s", uv_strerror(rc));
    return;
  }
  if (ls->ep->kind == MYC_EP_UNIX && L->cfg.nallow_uids > 0) {
    struct ucred cred;
    socklen_t clen = sizeof cred;
    uv_os_fd_t fd;
    uint32_t k;
    int ok = 0;
    if (uv_fileno(&p->io.h, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
      for (k = 0; k < L->cfg.nallow_uids; k++)
        ok |= L->cfg.allow_uids[k] == (uint32_t)cred.uid;
    if (!ok) {
      peer_refuse(p, "uid %d is not in link.allow_uids", (int)cred.uid);
      return;
    }
  }
  if (ls->ep->kind == MYC_EP_TCP) {
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[64] = "?";
    uv_tcp_nodelay(&p->io.tcp, 1);
    if (uv_tcp_getpeername(&p->io.tcp, (struct sockaddr *)&sa, &len) == 0) {
      if (sa.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
      else
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
    }
    uv_mutex_lock(&L->lock);
    snprintf(p->name, sizeof p->name, "%s", ip);
    uv_mutex_unlock(&L->lock);
  } else {
    uv_mutex_lock(&L->lock);
    snprintf(p->name, sizeof p->name, "(unix peer)");
    uv_mutex_unlock(&L->lock);
  }
  peer_connected(p);
}

static int listen_one(myc__links *L, listener *ls, char *err, size_t errlen) {
  int rc;
  ls->io.h.data = ls;
  if (ls->ep->kind == MYC_EP_UNIX) {
    struct stat st;
    uv_pipe_init(L->lp, &ls->io.pipe, 0);
    ls->open = 1;
    L->nopen++;
    /* A socket file left by an engine that died: nobody listens on it. */
    if (stat(ls->ep->path, &st) == 0 && S_ISSOCK(st.st_mode))
      unlink(ls->ep->path);
    rc = uv_pipe_bind(&ls->io.pipe, ls->ep->path);
    if (rc == 0 && chmod(ls->ep->path, (mode_t)L->cfg.unix_mode) != 0)
      rc = -errno;
  } else {
    struct sockaddr_storage sa;
    uv_tcp_init(L->lp, &ls->io.tcp);
    ls->open = 1;
    L->nopen++;
    if (uv_ip4_addr(ls->ep->host, ls->ep->port, (struct sockaddr_in *)&sa) !=
        0)
      uv_ip6_addr(ls->ep->host, ls->ep->port, (struct sockaddr_in6 *)&sa);
    rc = uv_tcp_bind(&ls->io.tcp, (struct sockaddr *)&sa, 0);
  }
  if (rc == 0)
    rc = uv_listen(&ls->io.s, 128, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "link %s: cannot listen: %s", ls->ep->url,
             uv_strerror(rc));
    return rc;
  }
  ls->bound = 1;
  if (ls->ep->kind == MYC_EP_TCP) {
    struct sockaddr_storage sa;
    int len = sizeof sa;
    if (uv_tcp_getsockname(&ls->io.tcp, (struct sockaddr *)&sa, &len) == 0)
      ls->port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    logf_(L, MYC_LOG_INFO, "link listening on %s://%s:%d",
          ls->ep->tls ? "tls+tcp" : "tcp", ls->ep->host, ls->port);
  } else {
    logf_(L, MYC_LOG_INFO, "link listening on %s", ls->ep->url);
  }
  return 0;
}

/* ---- the loop's life ---------------------------------------------------- */

/* Once shutting down: when no handle of the links is left open, says so
 * to links_quiesce (on a worker's loop, nothing else tells it). */
static void check_down(myc__links *L) {
  peer *p;
  if (!L->closing || L->nopen > 0)
    return;
  for (p = L->peers; p != NULL; p = p->next)
    if (p->handle_open || p->timer_open)
      return;
  uv_mutex_lock(&L->lock);
  L->down = 1;
  uv_cond_broadcast(&L->cond);
  uv_mutex_unlock(&L->lock);
}

static void on_own_closed(uv_handle_t *h) {
  myc__links *L = h->data;
  L->nopen--;
  check_down(L);
}

/* Closes every handle of the links; the close callbacks free the peers.
 * Once only (the stop job and a wake-up may both ask). */
static void shut_down(myc__links *L) {
  peer *p, *next;
  uint32_t i;
  if (L->closing)
    return;
  L->closing = 1;
  for (i = 0; i < L->nlisten; i++)
    if (L->listeners[i].open) {
      L->listeners[i].open = 0;
      L->listeners[i].io.h.data = L;
      uv_close(&L->listeners[i].io.h, on_own_closed);
      if (L->listeners[i].ep->kind == MYC_EP_UNIX && L->listeners[i].bound)
        unlink(L->listeners[i].ep->path);
    }
  for (p = L->peers; p != NULL; p = next) {
    next = p->next;
    if (p->handle_open) {
      if (p->state != P_CLOSING) {
        set_state(p, P_CLOSING);
        uv_close(&p->io.h, on_handle_closed);
      }
    } else if (!p->want_free) {
      /* Down, waiting to redial.  (A peer whose connection closed just
       * before is on its way out already: its timer is closing, and a
       * second uv_close of it aborts.) */
      p->want_free = 1;
      drop_remote(L, p);
      uv_mutex_lock(&L->lock);
      p->d_shutdown += p->qn - p->qh;
      uv_mutex_unlock(&L->lock);
      if (p->timer_open) {
        uv_timer_stop(&p->timer);
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
      }
    }
  }
  uv_close((uv_handle_t *)&L->tick, on_own_closed);
  uv_close((uv_handle_t *)&L->hold, on_own_closed);
  uv_close((uv_handle_t *)&L->wake, on_own_closed);
}

static void on_wake(uv_async_t *a) {
  myc__links *L = a->data;
  peer *p;
  int stopping;
  uv_mutex_lock(&L->lock);
  stopping = L->stopping;
  uv_mutex_unlock(&L->lock);
  if (stopping) {
    shut_down(L);
    return;
  }
  if (atomic_load(&L->subs_dirty))
    announce(L);
  for (p = L->peers; p != NULL; p = p->next)
    flush(p);
}

static void thread_main(void *arg) {
  myc__links *L = arg;
  uv_run(&L->loop, UV_RUN_DEFAULT);
}

/* Turns the worker's loop from the thread that owns it (the worker is
 * not running it) until the links' handles are closed: their close
 * callbacks run in its turns.  Bounded, as the worker's own teardown is. */
static void close_here(myc__links *L) {
  int turns;
  shut_down(L);
  for (turns = 0; turns < 5000 && !L->down; turns++)
    if (uv_run(L->lp, UV_RUN_NOWAIT) == 0 && !L->down)
      uv_sleep(1);
}

/* The stop job, on the worker's thread; cancelled (run 0) when the
 * worker stopped first: then links_quiesce closes from its thread. */
static void stop_run(myc__job *j, int run) {
  myc__links *L = (myc__links *)((char *)j - offsetof(myc__links, stop));
  if (run) {
    shut_down(L);
    return;
  }
  uv_mutex_lock(&L->lock);
  L->stop_cancelled = 1;
  uv_cond_broadcast(&L->cond);
  uv_mutex_unlock(&L->lock);
}

/* The handles of the links on the loop they run on: the wake-up, the
 * stall check, the listeners, and the dialled peers' first attempt.
 * Returns 0, or an error with the reason in 'err' (what was opened is
 * left for shut_down). */
static int open_handles(myc__links *L, char *err, size_t errlen) {
  uint32_t i;
  int rc = 0;
  uv_async_init(L->lp, &L->wake, on_wake);
  L->wake.data = L;
  uv_timer_init(L->lp, &L->tick);
  L->tick.data = L;
  uv_timer_init(L->lp, &L->hold);
  L->hold.data = L;
  L->nopen += 3;
  uv_timer_start(&L->tick, on_tick, 250, 250);
  for (i = 0; i < L->nlisten; i++) {
    L->listeners[i].L = L;
    L->listeners[i].ep = &L->eps[i];
    if ((rc = listen_one(L, &L->listeners[i], err, errlen)) != 0)
      return rc;
  }
  for (i = 0; i < L->nconnect; i++) {
    peer *p = peer_new(L, &L->eps[L->nlisten + i], 1);
    if (p == NULL) {
      snprintf(err, errlen, "links: out of memory");
      return MYC_ENOMEM;
    }
    dial(p);
  }
  return 0;
}

static int links_start(void *ud, char *err, size_t errlen) {
  myc__links *L = ud;
  int rc;
  const myc_contract_set *cs = L->e->contracts;
  /* The handshake: our node, wire versions and contracts. */
  memset(&L->hello, 0, sizeof L->hello);
  L->hello.vmin = MYC_WIRE_VERSION_MIN;
  L->hello.vmax = (uint8_t)L->cfg.wire_max;
  L->hello.flags = MYC_WIRE_HELLO_REQUESTS;
  snprintf(L->hello.node, sizeof L->hello.node, "%s", L->e->node);
  if (cs != NULL) {
    size_t n = myc_contract_type_count(cs), k;
    L->hello.schema_id = myc_contract_schema_id(cs);
    L->hello.schema_version = myc_contract_schema_version(cs);
    L->hello.min_compatible = myc_contract_min_compatible(cs);
    if (n > MYC_WIRE_MAX_TYPES)
      n = MYC_WIRE_MAX_TYPES;
    L->hello_types = myc__calloc(A(L), n * MYC_WIRE_TYPE_ENTRY + 1);
    if (L->hello_types == NULL)
      return MYC_ENOMEM;
    for (k = 0; k < n; k++) {
      const myc_contract_type *t = myc_contract_type_at(cs, k);
      const char *hex = myc_contract_type_digest(t);
      uint8_t *e = L->hello_types + k * MYC_WIRE_TYPE_ENTRY;
      uint16_t tag = myc_contract_type_tag(t);
      size_t j;
      e[0] = (uint8_t)tag;
      e[1] = (uint8_t)(tag >> 8);
      for (j = 0; j < MYC_WIRE_DIGEST && hex[2 * j] && hex[2 * j + 1]; j++) {
        unsigned v;
        sscanf(hex + 2 * j, "%2x", &v);
        e[2 + j] = (uint8_t)v;
      }
    }
    L->hello.ntypes = (uint16_t)n;
    L->hello.types = L->hello_types;
  }
  /* A peer that hangs up while we write must not kill the engine with
   * SIGPIPE; keep a disposition the host chose. */
  {
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
      signal(SIGPIPE, SIG_IGN);
  }
  L->chains = myc__calloc(A(L), L->e->sched.nworkers * sizeof *L->chains + 1);
  if (L->chains == NULL)
    return MYC_ENOMEM;
  if (myc__host_stage_init(&L->hs, &L->e->sched) != 0)
    return MYC_ENOMEM;
  if (L->cfg.worker >= 0) {
    /* The worker's loop: the workers do not run yet and this thread owns
     * them (myc_engine_start), so the handles are made here, where a
     * listener that cannot bind still fails the start; the worker's
     * thread, once created, runs them. */
    L->w = myc__service_worker(L->svc);
    MYC_ASSERT_OWNER(&L->w->owner);
    L->lp = &L->w->loop;
    rc = open_handles(L, err, errlen);
    if (rc == 0) {
      L->stage_cap = L->cfg.queue_frames / 2 < DIRECT_IOV
                         ? (L->cfg.queue_frames + 1) / 2
                         : DIRECT_IOV;
      L->w->after = after_turn;
      L->w->after_ud = L;
      L->svc->direct = on_direct;
    }
  } else {
    if ((rc = uv_loop_init(&L->loop)) != 0) {
      snprintf(err, errlen, "links: cannot make a loop: %s",
               uv_strerror(rc));
      return rc;
    }
    L->lp = &L->loop;
    rc = open_handles(L, err, errlen);
    if (rc == 0 && (rc = uv_thread_create(&L->thread, thread_main, L)) != 0)
      snprintf(err, errlen, "links: cannot start the link thread: %s",
               uv_strerror(rc));
  }
  if (rc != 0) {
    /* Nothing ran: close what was opened on this thread. */
    L->stopping = 1;
    if (L->w != NULL) {
      close_here(L);
    } else {
      shut_down(L);
      uv_run(&L->loop, UV_RUN_DEFAULT);
      uv_loop_close(&L->loop);
    }
    L->joined = 1;
    return MYC_ECONFIG;
  }
  myc__topics_watch(&L->e->topics, on_topics_changed, L);
  uv_mutex_lock(&L->lock);
  L->started = 1;
  uv_mutex_unlock(&L->lock);
  atomic_store(&L->subs_dirty, 1);
  uv_async_send(&L->wake);
  return 0;
}

static void links_quiesce(void *ud) {
  myc__links *L = ud;
  int down = 0;
  if (!L->started || L->joined)
    return;
  myc__topics_watch(&L->e->topics, NULL, NULL);
  uv_mutex_lock(&L->lock);
  L->stopping = 1;
  uv_mutex_unlock(&L->lock);
  if (L->w == NULL) {
    uv_async_send(&L->wake);
    uv_thread_join(&L->thread);
    uv_loop_close(&L->loop);
    L->joined = 1;
    return;
  }
  /* On a worker's loop: its thread closes the handles (the workers are
   * drained, not stopped: it still runs its loop and its jobs), and this
   * one waits for the last close callback.  A worker that is not running
   * (its thread never started, or this thread turns it: a host's loop)
   * is turned here instead. */
  if (L->w->started && !myc__owner_held(&L->w->owner)) {
    L->stop.fn = stop_run;
    myc__worker_post(L->w, &L->stop);
    uv_mutex_lock(&L->lock);
    while (!L->down && !L->stop_cancelled)
      uv_cond_wait(&L->cond, &L->lock);
    down = L->down;
    uv_mutex_unlock(&L->lock);
  }
  if (!down)
    close_here(L);
  L->joined = 1;
}

static void links_free(void *ud) {
  myc__links *L = ud;
  links_quiesce(L);
  while (L->nstaged > 0)
    myc__buf_release(NULL, A(L), L->staged[--L->nstaged]);
  while (L->peers != NULL) /* never started: nothing is open */
    peer_free(L->peers);
  while (L->nrefs > 0)
    myc__strfree(A(L), L->refs[--L->nrefs].pattern);
  myc__free(A(L), L->refs, L->caprefs * sizeof *L->refs);
  myc__free(A(L), L->chains, L->e->sched.nworkers * sizeof *L->chains + 1);
  myc__host_stage_free(&L->hs);
  if (L->pooled) {
    /* The workers no longer run: nothing hands buffers back now. */
    L->e->sched.aux_pool = NULL;
    myc__pool_destroy(&L->pool);
  }
  myc__secure_ctx_free(L->tls);
  myc__free(A(L), L->hello_types,
            (size_t)L->hello.ntypes * MYC_WIRE_TYPE_ENTRY + 1);
  myc__free(A(L), L->listeners, L->nlisten * sizeof *L->listeners + 1);
  myc__free(A(L), L->eps, (L->nlisten + L->nconnect) * sizeof *L->eps + 1);
  uv_cond_destroy(&L->cond);
  uv_mutex_destroy(&L->lock);
  myc__free(A(L), L, sizeof *L);
}

/* ---- configuration and attachment -------------------------------------- */

void myc__link_config_init(myc__link_config *c) {
  memset(c, 0, sizeof *c);
  c->max_frame = MYC_WIRE_MAX_FRAME_DEFAULT;
  c->queue_frames = 65536;
  c->queue_bytes = 64ull << 20;
  c->max_subscriptions = 10000;
  c->handshake_timeout_ms = 5000;
  c->frame_timeout_ms = 10000;
  c->reconnect.initial_ms = 100;
  c->reconnect.max_ms = 5000;
  c->reconnect.multiplier = 2;
  c->reconnect.jitter = 0.2;
  c->wire_max = 2;
  c->unknown_fail = 0;
  c->unix_mode = 0600;
  c->worker = -1;
}

int myc__link_psk_load(myc__link_config *c, const char *path, char *err,
                       size_t errlen) {
  struct stat st;
  uint8_t buf[MYC_LINK_PSK_MAX + 2];
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "link.psk_file '%s': cannot open: %s", path,
             strerror(errno));
    return MYC_EINVAL;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      (st.st_mode & 077) != 0) {
    close(fd);
    snprintf(err, errlen, "link.psk_file '%s': must be a regular file only "
             "its owner can read (chmod 600 '%s')", path, path);
    return MYC_EINVAL;
  }
  n = read(fd, buf, sizeof buf);
  close(fd);
  if (n > 0 && buf[n - 1] == '\n')
    n--;
  if (n < MYC_LINK_PSK_MIN || n > MYC_LINK_PSK_MAX) {
    snprintf(err, errlen, "link.psk_file '%s': the key must be %d to %d "
             "bytes (e.g. openssl rand -hex 32 > '%s')", path,
             MYC_LINK_PSK_MIN, MYC_LINK_PSK_MAX, path);
    return MYC_EINVAL;
  }
  memcpy(c->psk, buf, (size_t)n);
  c->psk_len = (uint32_t)n;
  return 0;
}

const char *myc__link_config_check(const myc__link_config *c) {
  if (c->max_frame < 1024)
    return "link.max_frame must be at least 1024 bytes";
  if (c->queue_frames == 0 || c->queue_bytes == 0)
    return "link.queue_frames and link.queue_bytes must be positive";
  if (c->max_subscriptions == 0)
    return "link.max_subscriptions must be at least 1";
  if (!(c->handshake_timeout_ms > 0) || !(c->frame_timeout_ms > 0))
    return "link timeouts must be positive";
  if (!myc__backoff_ok(&c->reconnect))
    return "link reconnect delays are out of range";
  if (c->wire_max != 1 && c->wire_max != 2)
    return "link.wire must be 1 or 2";
  return NULL;
}

int myc__links_attach(myc_engine *e, const myc__link_config *c,
                      const char *const *listen, size_t nlisten,
                      const char *const *connect, size_t nconnect,
                      myc__links **out, char *err, size_t errlen) {
  myc__links *L;
  const char *why = myc__link_config_check(c);
  size_t i, n = nlisten + nconnect;
  int rc, tls_listen = 0, tls_dial = 0;
  *out = NULL;
  if (why != NULL) {
    snprintf(err, errlen, "%s", why);
    return MYC_EINVAL;
  }
  if (e->manual) {
    snprintf(err, errlen, "links need a threaded engine");
    return MYC_EINVAL;
  }
  L = myc__calloc(&e->alloc, sizeof *L);
  if (L == NULL)
    return MYC_ENOMEM;
  L->e = e;
  L->cfg = *c;
  L->nlisten = (uint32_t)nlisten;
  L->nconnect = (uint32_t)nconnect;
  myc__rng_seed(&L->rng);
  if (uv_mutex_init(&L->lock) != 0) {
    myc__free(&e->alloc, L, sizeof *L);
    return MYC_ENOMEM;
  }
  if (uv_cond_init(&L->cond) != 0) {
    uv_mutex_destroy(&L->lock);
    myc__free(&e->alloc, L, sizeof *L);
    return MYC_ENOMEM;
  }
  L->eps = myc__calloc(&e->alloc, n * sizeof *L->eps + 1);
  L->listeners = myc__calloc(&e->alloc, nlisten * sizeof *L->listeners + 1);
  if (L->eps == NULL || L->listeners == NULL ||
      myc__engine_on_free(e, links_free, L) != 0) {
    myc__free(&e->alloc, L->eps, n * sizeof *L->eps + 1);
    myc__free(&e->alloc, L->listeners, nlisten * sizeof *L->listeners + 1);
    uv_cond_destroy(&L->cond);
    uv_mutex_destroy(&L->lock);
    myc__free(&e->alloc, L, sizeof *L);
    return MYC_ENOMEM;
  }
  /* From here 'L' is the engine's: freed with it. */
  for (i = 0; i < n; i++) {
    const char *url = i < nlisten ? listen[i] : connect[i - nlisten];
    if ((rc = myc__endpoint_parse(&L->eps[i], url, err, errlen)) != 0)
      return rc;
    if (i >= nlisten && L->eps[i].kind == MYC_EP_TCP && L->eps[i].port == 0) {
      snprintf(err, errlen, "link '%s': connect needs a port other than 0",
               url);
      return MYC_EINVAL;
    }
    if (L->eps[i].tls)
      tls_listen |= i < nlisten, tls_dial |= i >= nlisten;
  }
  if ((tls_listen || tls_dial) &&
      (rc = myc__secure_ctx_new(&L->tls, A(L), c, tls_listen, tls_dial, err,
                                errlen)) != 0)
    return rc;
  /* "_links" starts with a pattern nobody emits on and drops it: its
   * subscriptions are the peers'. */
  rc = myc__engine_add_transport(e, "_links", "_links.none", on_message, L,
                                 c->worker, "links", "link.worker", &L->svc,
                                 err, errlen);
  if (rc != 0)
    return rc;
  /* Buffers name their pool in a byte (MYC_BUF_NO_ORIGIN excluded); a
   * second thread with an aux pool (the NATS transport has none) would
   * have to share the index.  Links on a worker's loop take that
   * worker's pool and need none. */
  if (c->worker < 0 && e->sched.aux_pool == NULL &&
      e->sched.nworkers_max < MYC_BUF_NO_ORIGIN &&
      myc__pool_init(&L->pool, &e->alloc, 16384,
                     (uint8_t)e->sched.nworkers_max, 0) == 0) {
    L->pooled = 1;
    e->sched.aux_pool = &L->pool;
  }
  e->reply_remote = reply_remote;
  e->reply_remote_ud = L;
  L->svc->pressure = links_pressure;
  myc__topics_unsubscribe(&e->topics, L->svc, "_links.none", 11);
  if ((rc = myc__engine_beside(e, links_start, links_quiesce, myc__links_status, L)) != 0 ||
      (rc = myc__engine_beside_metrics(e, L, myc__links_metrics)) != 0)
    return rc;
  *out = L;
  return 0;
}

/* ---- introspection ------------------------------------------------------ */

myc__links *myc__links_of(myc_engine *e) {
  myc_service *s = myc__engine_find(e, "_links", 6);
  return s != NULL && s->cb == on_message ? s->cb_ud : NULL;
}

uint32_t myc__links_stats(myc__links *L, myc__link_stats *out, uint32_t max) {
  uint32_t n = 0;
  peer *p;
  uv_mutex_lock(&L->lock);
  for (p = L->peers; p != NULL; p = p->next, n++) {
    myc__link_stats *s;
    if (n >= max)
      continue;
    s = &out[n];
    memset(s, 0, sizeof *s);
    snprintf(s->peer, sizeof s->peer, "%s", p->name);
    snprintf(s->url, sizeof s->url, "%s", p->ep->url);
    s->dir = p->outbound ? "connect" : "accept";
    s->state = STATE_NAME[p->state];
    s->version = p->version;
    s->frames_in = p->frames_in;
    s->frames_out = p->frames_out;
    s->frames_direct = p->frames_direct;
    s->bytes_in = p->bytes_in;
    s->bytes_out = p->bytes_out;
    s->queued = p->qframes;
    s->queued_bytes = p->qbytes;
    s->dropped_queue_full = p->d_queue;
    s->dropped_disconnect = p->d_disconnect;
    s->dropped_shutdown = p->d_shutdown;
    s->dropped_v1_untyped = p->d_v1;
    s->unknown_types = p->unknown;
    s->frame_errors = p->errors;
    s->reconnects = p->reconnects;
    s->patterns = p->routed;
    s->pressure = peer_fill(L, p);
    s->paused = p->held;
    s->pauses = p->pauses;
    s->paused_ms =
        (p->paused_ns + (p->held ? uv_hrtime() - p->held_since : 0)) / 1000000;
    s->dropped_held_disconnect = p->d_held_disconnect;
    s->dropped_held_shutdown = p->d_held_shutdown;
  }
  if (L->any_gone) {
    if (n < max) {
      out[n] = L->gone;
      snprintf(out[n].peer, sizeof out[n].peer, "(closed links)");
      out[n].dir = "accept";
      out[n].state = "closed";
    }
    n++;
  }
  uv_mutex_unlock(&L->lock);
  return n;
}

const myc__alloc *myc__links_alloc(myc__links *L) { return A(L); }

int myc__links_port(myc__links *L, uint32_t i) {
  return i < L->nlisten ? L->listeners[i].port : 0;
}

uintptr_t myc__links_reader(myc__links *L) {
  return atomic_load_explicit(&L->reader, memory_order_relaxed);
}
