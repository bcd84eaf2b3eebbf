/* transport.c -- the NATS thread: one libnats connection on a libuv loop of
 * its own, polled through evloop.h (see transport.h, docs/NATS.md).
 *
 * Threads: the "_nats" service's callback runs on its worker, which at
 * the end of each batch of its mailbox publishes the batch itself and
 * writes it to the socket (a direct run, evloop.h) when the
 * connection is known to be in clear text and nothing waits in the queue,
 * else appends it to the queue under 'lock' for the NATS thread.  What
 * publishes holds the writer lock (ev.io): the publishing caches ('pc',
 * 'out_seq', 'pubbuf') are its holder's, and 'nc' changes only under it.
 * The subscriptions and the receiving tables belong to the NATS thread.
 * libnats adds its own threads for what is not on the message path: the
 * reconnect loop (blocking dials), its timers (PINGs) and connection
 * events (disconnected, reconnected, errors), whose callbacks here only
 * count under 'lock'.  Reading the socket, and handing received messages
 * to the engine, happen on the thread of the loop the connection is
 * polled on: the NATS thread's, or with nats.worker that worker's ('wk'),
 * which then takes the subscriptions' messages right after each read and
 * delivers to its own services with no thread crossed.  The first dial,
 * the subscriptions' changes, the queue and the close stay on the NATS
 * thread either way (they can block).
 */
#include "nats/transport.h"

#include "base/log.h"
#include "base/rng.h"
#include "link/wire.h"
#include "nats/evloop.h"
#include "nats/nkey.h"
#include "nats/seqmap.h"
#include "runtime/emit.h"
#include "runtime/service.h"

#include <nats/nats.h>

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_TRACE "traceparent"
#define HDR_SCHEMA "Myc-Schema"
#define HDR_SEQ "Myc-Seq"
#define SEQ_KEYS_MAX 65536   /* (publisher, subject) pairs tracked */
#define STOP_FLUSH_MS 2000   /* what a stop waits for libnats to write */
#define ERRLOG_EVERY 1000    /* a repeated error is logged 1st, 1001st, ... */
#define INBOX "_INBOX."      /* replies: _INBOX.<publisher id>.... */
#define VIA "@nats"          /* a request's source, received: "svc@nats" */
#define CLOSED_WAIT_NS 5000000000ull /* for libnats' closed callback */

enum { S_CONNECTING, S_UP, S_RECONNECTING, S_CLOSED, S_FAILED };
static const char *const STATE_NAME[] = {"connecting", "up", "reconnecting",
                                         "closed", "failed"};

typedef struct {
  char *pattern;
  natsSubscription *sub;
} nsub;

/* What check_seq() kept of the last (publisher, subject) it saw. */
typedef struct {
  char key[17 + MYC_NATS_SUBJECT_MAX];
  size_t len;
  uint64_t *last;    /* the pair's last number (in_seq) */
  const void *slots; /* in_seq's table when 'last' was found */
} seqcache;

/* What deliver() kept of the last topic it delivered on. */
typedef struct {
  char name[256];
  size_t len;
  int64_t id;
} topiccache;

/* What publish_one() kept of the last topic it published on. */
typedef struct {
  char topic[256];
  size_t topic_len;
  char subject[MYC_NATS_SUBJECT_MAX];
  uint64_t *next;     /* the topic's sequence counter (out_seq) */
  const void *slots;  /* out_seq's table when 'next' was found */
} pubcache;

struct myc__nats {
  myc_engine *e;
  myc__nats_config cfg;
  myc_service *svc;
  char **urls;
  uint32_t nurls;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_check_t drain; /* after every poll: take what libnats read */
  uv_timer_t tick;  /* subscriptions compared, libnats' drops read */
  uv_timer_t stop_timer;
  uv_timer_t retry; /* dialling until a first server answers */
  uint32_t connect_attempts;
  int connect_status; /* the last failure logged (natsStatus) */
  uint64_t stop_deadline;
  int started, joined, stopped_loop;
  natsOptions *opts;
  myc__nats_ev ev;    /* libnats' event loop adapter, direct runs */
  /* nats.worker: the worker whose loop polls the connection and takes
   * what it reads (NULL: the NATS thread's loop).  Its handles are
   * closed there by a job ('ev_stop'); 'ev_down' (under lock, signalled
   * on 'ev_cond') once they are.  A connection closed meanwhile waits in
   * 'dead_nc' until then: the worker may still poll it. */
  myc__worker *wk;
  myc__job ev_stop;
  uv_cond_t ev_cond;
  int ev_down, ev_cancelled;
  natsConnection *dead_nc;
  _Atomic int fail_close; /* the drain asks the thread to close */
  /* The token (base/check.h) of the thread that took the last messages
   * in: what tests check to see who reads. */
  _Atomic uintptr_t reader;
  natsConnection *nc; /* the NATS thread's; changed under ev.io */
  natsSubscription *inbox; /* the replies to this engine's requests */
  myc__rng inbox_rng;      /* trace ids of "no responders", its thread's */
  char inbox_prefix[sizeof INBOX + 17]; /* "_INBOX.<publisher id>." */
  /* The reply hook this transport was put in front of (links'), for the
   * requests that did not come over NATS. */
  int (*next_reply)(void *ud, myc_service *s, myc_buf *req, int kind,
                    uint16_t type, const void *data, size_t len, int failed);
  void *next_reply_ud;
  uint64_t pubid; /* this engine's id in the sequence headers */
  char nkey_pub[MYC_NATS_NKEY_PUB]; /* nats.nkey's public key */
  /* subscriptions: changed by the NATS thread under 'subs_lock', which
   * the drain holds while it takes their messages (with nats.worker, on
   * that worker) */
  uv_mutex_t subs_lock;
  nsub *subs;
  uint32_t nsubs, capsubs;
  int64_t retired_drops; /* libnats' drops of unsubscribed subscriptions */
  /* nats.worker: subscriptions unsubscribed by the NATS thread, freed by
   * the worker once no read of its can still hold them (see retire);
   * under 'subs_lock' */
  natsSubscription **retired;
  uint32_t nretired, capretired;
  _Atomic int has_retired;
  struct taken_s *taken; /* a drain's messages */
  uint32_t ntaken_cap;
  myc__seqmap out_seq, in_seq;
  pubcache pc; /* 'pc', 'out_seq', 'pubbuf': under ev.io */
  seqcache rc;
  topiccache tc;
  char *pubbuf; /* a message's header block and payload, being published */
  size_t pubcap;
  char pubid_hex[17];
  /* the queue: appended by the worker of "_nats", taken by the thread */
  uv_mutex_t lock;
  int stopping;
  myc_buf **q;
  uint32_t qn, qcap;
  myc_buf **w; /* the batch the thread publishes */
  uint32_t wcap;
  myc__chain *chains; /* per worker: buffers going back to its pool */
  /* the worker of "_nats": its batch's messages, until the batch's last */
  myc_buf *pend[MYC_BATCH];
  uint32_t npend;
  /* the thread: what a drain delivers, handed to the workers at its end */
  myc__host_stage hs;
  /* under lock */
  int state;
  /* libnats calls on_closed from its own callback thread, after
   * natsConnection_Close returned: the connection is not over for us
   * (nor N free to go) until it did. */
  uv_cond_t closed_cond;
  int closed_pending;
  int closed_leaked; /* it never came: N stays allocated */
  char url[256];
  myc__nats_stats st;
  uint64_t errlog[8];
};

/* libnats' constructor of a message from received bytes (its src/msg.h,
 * the same from 2.2 to 3.x and exported by the library): with 'hdrLen'
 * the first bytes of 'buf' are a header block that publishing sends as it
 * is.  natsMsg_Create and natsMsgHeader_Set would build a hash table of
 * the headers for every message, and encode it again. */
natsStatus natsMsg_create(natsMsg **newMsg, const char *subject, int subjLen,
                          const char *reply, int replyLen, const char *buf,
                          int bufLen, int hdrLen);
#if NATS_VERSION_MAJOR != 3 && NATS_VERSION_MAJOR != 2
#error "nats/transport.c relies on libnats 2.x/3.x's natsMsg (see msg_free)"
#endif

/* The first member of libnats' natsMsg (its src/gc.h natsGCItem, what
 * natsMsg_Destroy casts a message to). */
typedef struct {
  void *next;
  void (*free_cb)(void *);
} gc_item;

/* Frees 'msg' on this thread.  natsMsg_Destroy hands every message that
 * has a collection callback to libnats' garbage-collector thread: a
 * lock, a wake-up and a free from another thread's arena per message,
 * the most frequent system call of a busy NATS thread.  Without the
 * callback it frees the message at once. */
static void msg_free(natsMsg *msg) {
  if (msg != NULL)
    ((gc_item *)(void *)msg)->free_cb = NULL;
  natsMsg_Destroy(msg);
}

/* ---- small helpers ------------------------------------------------------ */

static const myc__alloc *A(myc__nats *N) { return &N->e->alloc; }

static void logf_(myc__nats *N, myc_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(myc__nats *N, myc_log_level lvl, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  myc_engine_log(N->e, lvl, "_nats", msg);
}

/* Whether the error of kind 'k' is worth a log line now: the first and
 * then one in ERRLOG_EVERY, so a flood of bad messages cannot flood the
 * log. */
static int errlog_due(myc__nats *N, int k) {
  return N->errlog[k]++ % ERRLOG_EVERY == 0;
}

static void set_state(myc__nats *N, int s) {
  uv_mutex_lock(&N->lock);
  N->state = s;
  uv_mutex_unlock(&N->lock);
}

/* The arrays here start at 64 elements and double (myc__grow). */
static int grow(const myc__alloc *a, void **v, uint32_t *cap, size_t elem,
                uint32_t need) {
  return myc__grow(a, v, cap, elem, need, 64);
}

static void hex(const uint8_t *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- the worker side: "_nats" hands messages to the thread -------------- */

/* Queues the messages the worker of "_nats" set aside in this batch from
 * the 'from'th: one lock and at most one wake of the NATS thread per
 * batch. */
static void hand_over(myc__nats *N, uint32_t from) {
  uint32_t i, full = 0, shut = 0;
  int wake = 0;
  uv_mutex_lock(&N->lock);
  if (N->stopping) {
    shut = N->npend - from;
  } else {
    for (i = from; i < N->npend; i++) {
      myc_buf *b = N->pend[i];
      if (N->st.queued >= N->cfg.queue_msgs ||
          N->st.queued_bytes + b->hdr.frame_len > N->cfg.queue_bytes ||
          grow(A(N), (void **)&N->q, &N->qcap, sizeof *N->q, N->qn + 1) !=
              0) {
        full++;
        continue;
      }
      if (!b->shared)
        b->shared = 1;
      myc__buf_ref(b, 1);
      wake |= N->qn == 0;
      N->q[N->qn++] = b;
      N->st.queued++;
      N->st.queued_bytes += b->hdr.frame_len;
    }
  }
  N->st.dropped_queue_full += full;
  N->st.dropped_shutdown += shut;
  uv_mutex_unlock(&N->lock);
  /* One wake per batch the thread has not taken yet. */
  if (wake)
    uv_async_send(&N->wake);
}

static natsStatus publish_one(myc__nats *N, myc_buf *b);
static void publish_counted(myc__nats *N, myc_buf *b, uint32_t *ok,
                            uint64_t *okbytes, uint32_t *lost);

/* A direct run: the worker of "_nats" publishes its batch itself and
 * writes it to the socket, as raw libnats publishes from the thread that
 * has the message, instead of waking the NATS thread to do it.  Only when
 * nothing waits in the queue (what it holds goes first: order per
 * producer) and the NATS thread is not publishing (a try: the worker does
 * not wait for it), on a clear-text connection that libnats polls.
 * Returns how many of the batch's messages it took (from the first). */
static uint32_t publish_direct(myc__nats *N) {
  uint32_t i, ok = 0, lost = 0;
  uint64_t okbytes = 0;
  int can, wrote;
  if (!myc__nats_ev_direct_ok(&N->ev) || uv_mutex_trylock(&N->ev.io) != 0)
    return 0;
  uv_mutex_lock(&N->lock);
  can = N->nc != NULL && N->qn == 0 && !N->stopping &&
        myc__nats_ev_direct_ok(&N->ev);
  uv_mutex_unlock(&N->lock);
  if (!can) {
    uv_mutex_unlock(&N->ev.io);
    return 0;
  }
  myc__nats_ev_direct_begin(&N->ev);
  /* Checked again for each message: libnats holds its connection lock
   * through a redial, which a publish would wait for. */
  for (i = 0; i < N->npend && myc__nats_ev_direct_ok(&N->ev); i++)
    publish_counted(N, N->pend[i], &ok, &okbytes, &lost);
  wrote = myc__nats_ev_direct_end(&N->ev, N->nc);
  uv_mutex_unlock(&N->ev.io);
  uv_mutex_lock(&N->lock);
  N->st.msgs_out += ok;
  N->st.bytes_out += okbytes;
  N->st.msgs_direct += ok;
  N->st.writes_direct += (uint64_t)wrote;
  N->st.dropped_disconnect += lost;
  uv_mutex_unlock(&N->lock);
  return i;
}

/* The batch set aside goes out: directly, or what a direct run could not
 * take through the queue. */
static void send_pending(myc__nats *N) {
  uint32_t done = publish_direct(N);
  if (done < N->npend)
    hand_over(N, done);
  N->npend = 0;
}

/* The callback of "_nats", on its worker, once per message of a batch
 * (dispatch runs a C service's batch to its end): the message is set
 * aside, and the batch's last one hands them all over. */
static void on_message(void *ud, const myc_message *m) {
  myc__nats *N = ud;
  myc_service *s = N->svc;
  myc_buf *b = s->view.batch[s->view.cursor];
  (void)m;
  if (N->npend == MYC_BATCH)
    send_pending(N);
  /* One hop: what came in from NATS (or a link) is not published again. */
  if (!(b->hdr.flags & MYC_FRAME_REMOTE))
    N->pend[N->npend++] = b;
  if ((uint32_t)s->view.cursor + 1 >= s->view.batch_n && N->npend > 0)
    send_pending(N);
}

/* ---- publishing --------------------------------------------------------- */

/* Releases a published batch: small buffers whose last reference this
 * was go back to the pools of their workers, one chain per worker. */
static void release_batch(myc__nats *N, myc_buf **v, uint32_t n) {
  myc__sched *sc = &N->e->sched;
  uint32_t i, w;
  for (i = 0; i < n; i++) {
    myc_buf *b = v[i];
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
      continue;
    if (b->size_class == 0 && b->origin < sc->nworkers)
      myc__chain_push(&N->chains[b->origin], b);
    else
      myc__buf_free(NULL, A(N), b);
  }
  for (w = 0; w < sc->nworkers; w++)
    if (N->chains[w].head != NULL)
      myc__pool_give_chain(&sc->workers[w].pool, &N->chains[w]);
}

/* The reply subject of request 'b' of this engine:
 * "_INBOX.<publisher id>.<slot>.<serial>.<corr>.<1 or 0>" (the asker's
 * place and number in the registry: myc__engine_at), whose last
 * token says whether "_nats" was the only subscriber of the request's
 * topic here: only then does NATS' "no responders" mean that nobody
 * will answer.  Returns 0, or -1 when the asker is not found. */
static int reply_subject(myc__nats *N, myc_buf *b, const myc__wire_msg *m,
                         char *out, size_t outlen) {
  myc_service *asker =
      myc__engine_find(N->e, (const char *)m->source, m->source_len);
  myc__topic *t = myc__topics_get(&N->e->topics, b->topic_id);
  int sole = t != NULL && myc__topic_subs(t)->live == 1;
  if (asker == NULL)
    return -1;
  snprintf(out, outlen, "%s%u.%" PRIu64 ".%" PRIu64 ".%d", N->inbox_prefix,
           asker->slot, asker->serial, m->corr, sole);
  return 0;
}

/* The header block of a message as NATS sends it ("NATS/1.0", one
 * "key: value" line per header, an empty line), written here rather than
 * through natsMsgHeader_Set, which builds a hash table per message.
 * Returns its length, or 0 when it does not fit in 'cap'. */
static size_t header_block(myc__nats *N, const myc__wire_msg *m, uint64_t seq,
                           char *out, size_t cap) {
  /* W3C trace context: version 00, sampled. */
  static const char head[] = "NATS/1.0\r\n" HDR_TRACE ": 00-";
  size_t n;
  int k;
  if (cap < 160)
    return 0;
  memcpy(out, head, sizeof head - 1);
  n = sizeof head - 1;
  hex(m->trace_id, 16, out + n);
  n += 32;
  out[n++] = '-';
  hex(m->span_id, 8, out + n);
  n += 16;
  memcpy(out + n, "-01\r\n", 5);
  n += 5;
  if (seq != 0) {
    /* "Myc-Seq: <publisher id>-<n>", without printf's per-call cost */
    static const char key[] = HDR_SEQ ": ";
    char digits[20];
    int nd = 0;
    memcpy(out + n, key, sizeof key - 1);
    n += sizeof key - 1;
    memcpy(out + n, N->pubid_hex, 16);
    n += 16;
    out[n++] = '-';
    do
      digits[nd++] = (char)('0' + seq % 10);
    while ((seq /= 10) != 0);
    while (nd > 0)
      out[n++] = digits[--nd];
    out[n++] = '\r';
    out[n++] = '\n';
  }
  if (m->kind == MYC_KIND_TYPED && N->e->contracts != NULL) {
    const myc_contract_type *t =
        myc_contract_type_by_tag(N->e->contracts, m->type);
    if (t != NULL) {
      k = snprintf(out + n, cap - n, HDR_SCHEMA ": %s\r\n",
                   myc_contract_type_digest(t));
      if (k < 0 || (size_t)k >= cap - n)
        return 0;
      n += (size_t)k;
    }
  }
  if (n + 2 > cap)
    return 0;
  memcpy(out + n, "\r\n", 2);
  return n + 2;
}

/* The subject and the sequence counter of a topic, as the last message
 * on it found them: a run of messages on one topic maps it once. */
static int topic_of(myc__nats *N, const myc__wire_msg *m, const char **subject,
                    uint64_t **next) {
  pubcache *c = &N->pc;
  if (c->slots != N->out_seq.slots || c->topic_len != m->topic_len ||
      memcmp(c->topic, m->topic, m->topic_len) != 0) {
    if (myc__nats_subject(N->cfg.prefix, (const char *)m->topic, m->topic_len,
                          0, c->subject, sizeof c->subject) < 0)
      return -1;
    c->next = myc__seqmap_at(&N->out_seq, m->topic, m->topic_len);
    memcpy(c->topic, m->topic, m->topic_len);
    c->topic_len = m->topic_len;
    c->slots = N->out_seq.slots;
  }
  *subject = c->subject;
  *next = c->next;
  return 0;
}

/* Publishes one local message: the v2 frame body as the payload, with
 * its trace context, its sequence number on its subject and, typed, the
 * digest of its contract type.  A request names a reply subject; a reply
 * goes to its request's, without a sequence number (each goes to a
 * subject of its own).  Returns 0 or a libnats status. */
static natsStatus publish_one(myc__nats *N, myc_buf *b) {
  const uint8_t *body = (const uint8_t *)&b->hdr;
  char reply[MYC_NATS_SUBJECT_MAX];
  const char *subject, *why;
  myc__wire_msg m;
  natsMsg *msg = NULL;
  natsStatus s;
  uint64_t *next = NULL;
  size_t hl, need;
  if (myc__wire_msg_decode(body, b->hdr.frame_len, &m, &why) != 0)
    return NATS_INVALID_ARG; /* our own frames: cannot happen */
  reply[0] = '\0';
  if (m.req_flags & MYC_FRAME_REPLY) {
    subject = (const char *)body + b->hdr.frame_len;
  } else if (topic_of(N, &m, &subject, &next) != 0 ||
             ((m.req_flags & MYC_FRAME_REQUEST) &&
              reply_subject(N, b, &m, reply, sizeof reply) != 0)) {
    return NATS_INVALID_ARG;
  }
  need = 512 + b->hdr.frame_len;
  if (need > N->pubcap) {
    char *p = myc__realloc(A(N), N->pubbuf, N->pubcap, need * 2);
    if (p == NULL)
      return NATS_NO_MEMORY;
    N->pubbuf = p;
    N->pubcap = need * 2;
  }
  hl = header_block(N, &m, next != NULL ? *next + 1 : 0, N->pubbuf, 512);
  if (hl == 0)
    return NATS_INVALID_ARG;
  memcpy(N->pubbuf + hl, body, b->hdr.frame_len);
  /* The block goes out as it is: libnats sends a message it made from
   * received bytes without lifting its headers. */
  s = natsMsg_create(&msg, subject, (int)strlen(subject),
                     reply[0] ? reply : NULL, (int)strlen(reply), N->pubbuf,
                     (int)(hl + b->hdr.frame_len), (int)hl);
  if (s != NATS_OK)
    return s;
  s = natsConnection_PublishMsg(N->nc, msg);
  /* Not sent: no number taken, so receivers see no gap for what the
   * sender already counts as dropped. */
  if (s == NATS_OK && next != NULL)
    ++*next;
  msg_free(msg);
  return s;
}

/* Publishes 'b' (nothing goes while there is no connection) and counts
 * it: in 'ok' and 'okbytes' when it went, else in 'lost', logged (the
 * queue's and a direct run's count alike as dropped at a disconnect). */
static void publish_counted(myc__nats *N, myc_buf *b, uint32_t *ok,
                            uint64_t *okbytes, uint32_t *lost) {
  natsStatus s = N->nc != NULL ? publish_one(N, b) : NATS_CONNECTION_CLOSED;
  if (s == NATS_OK) {
    (*ok)++;
    *okbytes += b->hdr.frame_len;
    return;
  }
  (*lost)++;
  if (errlog_due(N, 0))
    logf_(N, MYC_LOG_WARN,
          "nats: a message could not be published (%s); counted as "
          "dropped (disconnect)",
          natsStatus_GetText(s));
}

/* Publishes the whole queue.  libnats appends each message to its write
 * buffer (or to its reconnect buffer while the connection is being
 * re-established), then the buffer is written in one go. */
static void publish_queue(myc__nats *N) {
  uint32_t n, i, ok = 0, lost = 0;
  int direct;
  uint64_t bytes = 0, okbytes = 0;
  myc_buf **batch;
  /* Before the swap: a direct run that finds the queue empty finds it
   * published, not on its way. */
  uv_mutex_lock(&N->ev.io);
  uv_mutex_lock(&N->lock);
  if (N->nc == NULL && (N->state == S_CONNECTING || N->stopping)) {
    /* Not connected yet: the queue waits (up to its bounds); at a stop
     * what it holds is counted as shutdown. */
    uv_mutex_unlock(&N->lock);
    uv_mutex_unlock(&N->ev.io);
    return;
  }
  n = N->qn;
  batch = N->q;
  N->q = N->w;
  N->w = batch;
  i = N->qcap;
  N->qcap = N->wcap;
  N->wcap = i;
  N->qn = 0;
  uv_mutex_unlock(&N->lock);
  if (n == 0) {
    uv_mutex_unlock(&N->ev.io);
    return;
  }
  /* On a worker's loop (nats.worker), this thread writes as a direct run
   * does: a clear-text connection only; else libnats' request for a
   * write goes to that loop. */
  direct = N->wk != NULL && myc__nats_ev_direct_ok(&N->ev);
  if (direct)
    myc__nats_ev_direct_begin(&N->ev);
  for (i = 0; i < n; i++) {
    bytes += batch[i]->hdr.frame_len;
    publish_counted(N, batch[i], &ok, &okbytes, &lost);
  }
  /* The turn's messages leave now, in one write, rather than when the
   * loop next polls the socket writable; what the socket does not take
   * stays with the adapter's write event. */
  if (direct)
    myc__nats_ev_direct_end(&N->ev, N->nc);
  else if (ok > 0 && N->wk == NULL)
    myc__nats_ev_flush(&N->ev, N->nc);
  uv_mutex_unlock(&N->ev.io);
  uv_mutex_lock(&N->lock);
  N->st.queued -= n;
  N->st.queued_bytes -= bytes;
  N->st.msgs_out += ok;
  N->st.bytes_out += okbytes;
  N->st.dropped_disconnect += lost;
  uv_mutex_unlock(&N->lock);
  release_batch(N, batch, n);
}

/* ctx:reply to a request that came over NATS (the engine's reply_remote,
 * in front of links'): the reply frame, addressed to the asker by name,
 * goes to the reply subject the request named, through the queue as
 * what "_nats" publishes.  Responder's worker thread. */
static int nats_reply(void *ud, myc_service *s, myc_buf *req, int kind,
                      uint16_t type, const void *data, size_t len,
                      int failed) {
  myc__nats *N = ud;
  const char *reply = (const char *)&req->hdr + req->hdr.frame_len;
  size_t alen = req->hdr.source_len - (sizeof VIA - 1), rl;
  uint64_t span;
  myc_buf *b;
  int rc = 0, wake = 0;
  if (!(req->hdr.flags & MYC_FRAME_NATS))
    return N->next_reply == NULL
               ? MYC_ENOENT
               : N->next_reply(N->next_reply_ud, s, req, kind, type, data,
                               len, failed);
  rl = strlen(reply);
  b = myc__frame_new_req(A(N), 0, myc__buf_source(req), alen, s->name,
                         s->name_len, kind, type, data, len,
                         (uint8_t)(MYC_FRAME_REPLY |
                                   (failed ? MYC_FRAME_FAILED : 0)),
                         myc__buf_req(req)->corr, 0, rl + 1);
  if (b == NULL)
    return len > MYC_PAYLOAD_MAX ? MYC_ETOOBIG : MYC_ENOMEM;
  memcpy((char *)&b->hdr + b->hdr.frame_len, reply, rl + 1);
  span = myc__rng_id(&s->task.worker->rng);
  memcpy(b->hdr.trace_id, req->hdr.trace_id, 16);
  memcpy(b->hdr.parent_id, req->hdr.span_id, 8);
  memcpy(b->hdr.span_id, &span, 8);
  b->hdr.seq = ++s->seq;
  b->hdr.ts_ns = (uint64_t)s->task.worker->now;
  b->shared = 1;
  uv_mutex_lock(&N->lock);
  if (N->stopping) {
    N->st.dropped_shutdown++;
    rc = MYC_ENOENT;
  } else if (N->st.queued >= N->cfg.queue_msgs ||
             N->st.queued_bytes + b->hdr.frame_len > N->cfg.queue_bytes ||
             grow(A(N), (void **)&N->q, &N->qcap, sizeof *N->q, N->qn + 1) !=
                 0) {
    N->st.dropped_queue_full++;
    rc = MYC_EFULL;
  } else {
    wake = N->qn == 0;
    N->q[N->qn++] = b;
    N->st.queued++;
    N->st.queued_bytes += b->hdr.frame_len;
  }
  uv_mutex_unlock(&N->lock);
  if (rc != 0)
    myc__buf_free(NULL, A(N), b);
  else if (wake)
    uv_async_send(&N->wake);
  return rc;
}

/* ---- receiving ---------------------------------------------------------- */

/* Receipt counters of one drain, added to the stats once. */
typedef struct {
  uint64_t in, bytes, lost, dup, schema, unknown, errors, no_responders;
} rx;

/* The value of header 'key' of received message 'msg' ('*len' bytes, not
 * NUL-terminated), or NULL.  libnats (2.2 to 3.x) keeps a received
 * message's subject, reply, header block and payload in one allocation,
 * in that order, each followed by a NUL, and leaves the block as it came
 * until a header is first asked for, when it builds a hash table of them
 * all: the block is read in place instead.  One that is not found there,
 * whole ("NATS/1.0" ... an empty line, then the payload), is asked of
 * natsMsgHeader_Get. */
static const char *header(natsMsg *msg, const char *key, size_t *len) {
  const char *data = natsMsg_GetData(msg), *reply = natsMsg_GetReply(msg);
  const char *subject = natsMsg_GetSubject(msg), *p, *end, *v = NULL;
  size_t klen = strlen(key);
  uintptr_t from, to;
  p = reply != NULL ? reply + strlen(reply) + 1 : subject + strlen(subject) + 1;
  from = (uintptr_t)p;
  to = (uintptr_t)data;
  if (data == NULL || to < from + 13 || to - from > 65536 || data[-1] != '\0' ||
      memcmp(p, "NATS/1.0", 8) != 0 || memcmp(data - 5, "\r\n\r\n", 4) != 0) {
    if (natsMsgHeader_Get(msg, key, &v) != NATS_OK || v == NULL)
      return NULL;
    *len = strlen(v);
    return v;
  }
  end = data - 3; /* the last line's CR LF */
  for (p = memchr(p, '\n', (size_t)(end - p)); p != NULL && p < end;
       p = memchr(p, '\n', (size_t)(end - p))) {
    const char *e;
    p++;
    if ((size_t)(end - p) <= klen || memcmp(p, key, klen) != 0 ||
        p[klen] != ':')
      continue;
    p += klen + 1;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    e = memchr(p, '\r', (size_t)(end - p));
    if (e == NULL)
      return NULL;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    *len = (size_t)(e - p);
    return p;
  }
  return NULL;
}

/* Checks the sequence header against the last number seen from the same
 * publisher on the same subject: returns 0 to deliver, -1 for a repeat.
 * A jump counts what was skipped as lost (minus, at read time, what
 * libnats dropped itself: see myc__nats_stats_get). */
static int check_seq(myc__nats *N, natsMsg *msg, rx *r) {
  const char *v, *subject = natsMsg_GetSubject(msg);
  size_t vlen = 0, slen = strlen(subject), i;
  seqcache *c = &N->rc;
  uint64_t n = 0, *last;
  v = header(msg, HDR_SEQ, &vlen);
  if (v == NULL || vlen < 18 || vlen > 16 + 1 + 20 || v[16] != '-' ||
      slen >= MYC_NATS_SUBJECT_MAX)
    return 0; /* no sequence: nothing to compare */
  for (i = 17; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
    n = n * 10 + (uint64_t)(v[i] - '0');
  /* A run of messages from one publisher on one subject finds its
   * counter once. */
  if (c->slots != N->in_seq.slots || c->len != 17 + slen ||
      memcmp(c->key, v, 16) != 0 || memcmp(c->key + 17, subject, slen) != 0) {
    memcpy(c->key, v, 16);
    c->key[16] = '/';
    memcpy(c->key + 17, subject, slen);
    c->len = 17 + slen;
    c->last = myc__seqmap_at(&N->in_seq, c->key, c->len);
    c->slots = N->in_seq.slots;
  }
  last = c->last;
  if (last == NULL)
    return 0;
  if (*last != 0 && n <= *last) {
    r->dup++;
    return -1;
  }
  /* The first message seen from a publisher starts its count: what it
   * sent before this engine subscribed was never ours to receive. */
  if (*last != 0)
    r->lost += n - *last - 1;
  *last = n;
  return 0;
}

/* Compares the schema digest header of a typed message with this node's
 * contract type of the same tag.  Returns 0 to deliver, -1 to drop. */
static int check_schema(myc__nats *N, natsMsg *msg, const myc__wire_msg *m,
                        rx *r) {
  const myc_contract_type *t;
  const char *theirs, *ours;
  size_t tlen = 0;
  if (m->kind != MYC_KIND_TYPED)
    return 0;
  t = N->e->contracts ? myc_contract_type_by_tag(N->e->contracts, m->type)
                      : NULL;
  if (t == NULL) {
    r->unknown++;
    if (errlog_due(N, 1))
      logf_(N, MYC_LOG_WARN,
            "nats: a typed message on '%s' has tag %u, which this node's "
            "contracts lack; dropped (unknown_type)",
            natsMsg_GetSubject(msg), (unsigned)m->type);
    return -1;
  }
  ours = myc_contract_type_digest(t);
  theirs = header(msg, HDR_SCHEMA, &tlen);
  if (theirs != NULL && tlen == strlen(ours) && memcmp(theirs, ours, tlen) == 0)
    return 0;
  r->schema++;
  if (N->cfg.schema_fail || errlog_due(N, 2))
    logf_(N, N->cfg.schema_fail ? MYC_LOG_ERROR : MYC_LOG_WARN,
          "nats: type %s (tag %u) on '%s' differs: digest %.16s... here, "
          "%.*s... at the sender; %s",
          myc_contract_type_name(t), (unsigned)m->type,
          natsMsg_GetSubject(msg), ours, theirs ? (int)(tlen < 16 ? tlen : 16) : 6,
          theirs ? theirs : "(none)",
          N->cfg.schema_fail ? "closing the NATS connection "
                               "(nats.schema_mismatch = \"fail\")"
                             : "dropped (schema_mismatch)");
  return -1;
}

/* The id of topic 'name', as the last message on it found it: a run of
 * messages on one topic looks it up once (topics are never removed). */
static int64_t resolve(myc__nats *N, const char *name, size_t len) {
  topiccache *c = &N->tc;
  int64_t id;
  if (c->len > 0 && c->len == len && memcmp(c->name, name, len) == 0)
    return c->id;
  /* Counted against _nats: a sender of ever-new subjects fills its
   * quota, not the engine's table. */
  id = myc__engine_topic(N->e, N->svc, name, len);
  if (id > 0 && len <= sizeof c->name) {
    memcpy(c->name, name, len);
    c->len = len;
    c->id = id;
  }
  return id;
}

/* Hands 'b' to its topic's subscribers.  On a worker's loop
 * (nats.worker), its own services' mailboxes take it as a local emit's,
 * with no thread crossed and nobody woken; other workers' get it at the
 * end of the drain (myc__worker_flush), as from any worker.  Else it is
 * held until the end of the drain (myc__host_flush). */
static void hand_in(myc__nats *N, myc_buf *b) {
  myc_engine *e = N->e;
  if (N->wk != NULL)
    myc__deliver(&e->topics, &e->sched, N->wk, b);
  else
    myc__deliver_staged(&e->topics, &e->sched, &N->hs, b);
}

/* Delivers a checked message into the engine with the sender's trace
 * context, marked remote. */
static void deliver(myc__nats *N, const myc__wire_msg *m) {
  myc_engine *e = N->e;
  int64_t id = resolve(N, m->topic, m->topic_len);
  myc__topic *t;
  myc_buf *b;
  if (id < 0)
    return;
  t = myc__topics_get(&e->topics, (uint32_t)id);
  if (m->payload_len >= MYC_ADMIT_BYTES &&
      myc__admit(&e->sched, N->wk, t, m->payload_len) != 0)
    return; /* counted by the subscribers that refused it */
  b = myc__frame_new(&e->alloc, N->wk != NULL ? &N->wk->pool : NULL, t,
                     m->source, m->source_len, m->kind, m->type, m->payload,
                     m->payload_len);
  if (b == NULL) {
    logf_(N, MYC_LOG_ERROR, "nats: out of memory for a message on '%.*s'",
          (int)m->topic_len, m->topic);
    return;
  }
  memcpy(b->hdr.trace_id, m->trace_id, 16);
  memcpy(b->hdr.span_id, m->span_id, 8);
  memcpy(b->hdr.parent_id, m->parent_id, 8);
  b->hdr.seq = m->seq;
  b->hdr.ts_ns = m->ts_ns;
  b->hdr.flags = MYC_FRAME_REMOTE;
  hand_in(N, b);
}

/* Delivers a request from another engine: its source becomes
 * "SOURCE@nats" and its reply subject is kept after the frame, where
 * nats_reply() finds it.  Returns 0, or -1 when it cannot be delivered
 * as a request (counted as a frame error). */
static int deliver_request(myc__nats *N, const myc__wire_msg *m,
                           const char *reply) {
  myc_engine *e = N->e;
  int64_t id = myc__engine_topic(e, N->svc, m->topic, m->topic_len);
  char src[MYC_SOURCE_MAX];
  size_t sl = m->source_len, rl = strlen(reply);
  myc__topic *t;
  myc_buf *b;
  /* The reply is published to 'reply' as it came: a longer one would
   * not fit where publish_one() builds subjects. */
  if (id < 0 || sl + sizeof VIA - 1 > MYC_SOURCE_MAX ||
      rl >= MYC_NATS_SUBJECT_MAX)
    return -1;
  t = myc__topics_get(&e->topics, (uint32_t)id);
  memcpy(src, m->source, sl);
  memcpy(src + sl, VIA, sizeof VIA - 1);
  b = myc__frame_new_req(&e->alloc, t->id, t->name, t->len, src,
                         sl + sizeof VIA - 1, m->kind, m->type, m->payload,
                         m->payload_len, 0, m->corr, m->budget_ns, rl + 1);
  if (b == NULL) {
    logf_(N, MYC_LOG_ERROR, "nats: out of memory for a request on '%.*s'",
          (int)m->topic_len, m->topic);
    return 0;
  }
  memcpy((char *)&b->hdr + b->hdr.frame_len, reply, rl + 1);
  memcpy(b->hdr.trace_id, m->trace_id, 16);
  memcpy(b->hdr.span_id, m->span_id, 8);
  memcpy(b->hdr.parent_id, m->parent_id, 8);
  b->hdr.seq = m->seq;
  b->hdr.ts_ns = m->ts_ns;
  b->hdr.flags = MYC_FRAME_REQUEST | MYC_FRAME_NATS | MYC_FRAME_REMOTE;
  hand_in(N, b);
  return 0;
}

/* Hands service 'to' a reply on "$reply", as a local reply is: 'm' the
 * reply's frame, or NULL for NATS' "no responders" to request 'corr'. */
static void deliver_reply(myc__nats *N, myc_service *to,
                          const myc__wire_msg *m, uint64_t corr) {
  myc_engine *e = N->e;
  myc_buf *b;
  if (m != NULL)
    b = myc__frame_new_req(&e->alloc, e->reply_topic, "$reply", 6, m->source,
                           m->source_len, m->kind, m->type, m->payload,
                           m->payload_len,
                           (uint8_t)(MYC_FRAME_REMOTE | m->req_flags), m->corr,
                           0, 0);
  else
    b = myc__frame_new_req(&e->alloc, e->reply_topic, "$reply", 6, "_nats", 5,
                           MYC_KIND_RAW, 0, NULL, 0,
                           MYC_FRAME_REMOTE | MYC_FRAME_REPLY |
                               MYC_FRAME_NO_RESPONDER,
                           corr, 0, 0);
  if (b == NULL) {
    logf_(N, MYC_LOG_ERROR, "nats: out of memory for a reply to '%s'",
          to->name);
    return;
  }
  if (m != NULL) {
    memcpy(b->hdr.trace_id, m->trace_id, 16);
    memcpy(b->hdr.span_id, m->span_id, 8);
    memcpy(b->hdr.parent_id, m->parent_id, 8);
    b->hdr.seq = m->seq;
    b->hdr.ts_ns = m->ts_ns;
  } else {
    /* The request's trace is not in NATS' status message: a new root. */
    uint64_t id[3];
    id[0] = myc__rng_id(&N->inbox_rng);
    id[1] = myc__rng_id(&N->inbox_rng);
    id[2] = myc__rng_id(&N->inbox_rng);
    memcpy(b->hdr.trace_id, id, 16);
    memcpy(b->hdr.span_id, id + 2, 8);
    b->hdr.seq = 0;
    b->hdr.ts_ns = 0;
  }
  (void)myc__deliver_one(&e->sched, NULL, to, b);
}

/* A message on this engine's inbox: a reply to one of its requests, or
 * NATS' "no responders" for one (reply_subject() names the asker and the
 * request; ignored when another local subscriber had the request too). */
static void receive_reply(myc__nats *N, natsMsg *msg, rx *r) {
  const char *subject = natsMsg_GetSubject(msg), *why = NULL;
  const uint8_t *data = (const uint8_t *)natsMsg_GetData(msg);
  int len = natsMsg_GetDataLength(msg);
  myc__wire_msg m;
  myc_service *to;
  r->in++;
  r->bytes += (uint64_t)(len > 0 ? len : 0);
  if (natsMsg_IsNoResponders(msg)) {
    unsigned long slot;
    unsigned long long serial, corr;
    char sole = 0;
    /* Gone, or moved when the registry closed its holes: no answer, and
     * the asker's deadline fails the request. */
    if (sscanf(subject + strlen(N->inbox_prefix), "%lu.%llu.%llu.%c", &slot,
               &serial, &corr, &sole) == 4 &&
        sole == '1' && slot <= UINT32_MAX &&
        (to = myc__engine_at(N->e, (uint32_t)slot, serial)) != NULL) {
      r->no_responders++;
      deliver_reply(N, to, NULL, corr);
    }
    return;
  }
  if (len < 0 || myc__wire_msg_decode(data, (uint32_t)len, &m, &why) != 0 ||
      !(m.req_flags & MYC_FRAME_REPLY) ||
      (to = myc__engine_find(N->e, m.topic, m.topic_len)) == NULL) {
    r->errors++;
    if (errlog_due(N, 4))
      logf_(N, MYC_LOG_WARN,
            "nats: a message on '%s' is not a reply to one of this engine's "
            "services (%s); dropped (frame_errors)",
            subject, why ? why : "no reply frame, or its service is unknown");
    return;
  }
  deliver_reply(N, to, &m, 0);
}

/* The inbox's callback, on libnats' delivery thread of that subscription:
 * a synchronous subscription would not do, as libnats turns a "no
 * responders" message into a status there and drops its subject, which
 * says what request it answers.  What it delivers is handed over as a
 * host thread's messages are. */
static void on_inbox(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                     void *closure) {
  myc__nats *N = closure;
  rx r;
  int stopping;
  (void)nc;
  (void)sub;
  memset(&r, 0, sizeof r);
  uv_mutex_lock(&N->lock);
  stopping = N->stopping;
  uv_mutex_unlock(&N->lock);
  if (!stopping)
    receive_reply(N, msg, &r);
  natsMsg_Destroy(msg);
  uv_mutex_lock(&N->lock);
  N->st.msgs_in += r.in;
  N->st.bytes_in += r.bytes;
  N->st.frame_errors += r.errors;
  N->st.no_responders += r.no_responders;
  uv_mutex_unlock(&N->lock);
}

static void close_conn(myc__nats *N, int state);

/* One message from NATS.  Returns -1 when the connection must close. */
static int receive(myc__nats *N, natsMsg *msg, rx *r) {
  const uint8_t *data = (const uint8_t *)natsMsg_GetData(msg);
  int len = natsMsg_GetDataLength(msg);
  const char *subject = natsMsg_GetSubject(msg), *topic, *why = NULL;
  size_t tlen;
  myc__wire_msg m;
  /* With an empty prefix a '>' subscription also sees the replies other
   * engines' requests wait for: not topics. */
  if (strncmp(subject, INBOX, sizeof INBOX - 1) == 0)
    return 0;
  r->in++;
  r->bytes += (uint64_t)len;
  if (check_seq(N, msg, r) != 0)
    return 0;
  if (len < 0 || myc__wire_msg_decode(data, (uint32_t)len, &m, &why) != 0 ||
      myc__nats_topic_of(N->cfg.prefix, subject, strlen(subject), &topic,
                         &tlen) != 0 ||
      tlen != m.topic_len || memcmp(topic, m.topic, tlen) != 0 ||
      (m.req_flags & MYC_FRAME_REPLY) ||
      ((m.req_flags & MYC_FRAME_REQUEST) && natsMsg_GetReply(msg) == NULL)) {
    r->errors++;
    if (errlog_due(N, 3))
      logf_(N, MYC_LOG_WARN,
            "nats: a message on '%s' is not a mycelium v2 frame for that "
            "subject (%s); dropped (frame_errors)",
            subject, why ? why : "its topic is not the subject's, or a "
                                 "reply, or a request without a reply "
                                 "subject");
    return 0;
  }
  if (check_schema(N, msg, &m, r) != 0)
    return N->cfg.schema_fail ? -1 : 0;
  if (!(m.req_flags & MYC_FRAME_REQUEST))
    deliver(N, &m);
  else if (deliver_request(N, &m, natsMsg_GetReply(msg)) != 0)
    r->errors++;
  return 0;
}

/* One message taken in a drain, with what orders it. */
struct taken_s {
  natsMsg *msg;
  const char *pub;  /* the publisher's id: the sequence header's first 16 */
  const uint8_t *source;
  uint8_t source_len;
  uint64_t seq;     /* the frame's: the source service's emit counter */
  uint32_t at;      /* arrival order within its subscription's queue */
};
typedef struct taken_s taken;

static int by_producer(const void *x, const void *y) {
  const taken *a = x, *b = y;
  int c;
  if (a->pub == NULL || b->pub == NULL)
    return a->at < b->at ? -1 : a->at > b->at;
  if ((c = memcmp(a->pub, b->pub, 16)) != 0)
    return c;
  if (a->source_len != b->source_len)
    return a->source_len < b->source_len ? -1 : 1;
  if ((c = memcmp(a->source, b->source, a->source_len)) != 0)
    return c;
  if (a->seq != b->seq)
    return a->seq < b->seq ? -1 : 1;
  return a->at < b->at ? -1 : a->at > b->at;
}

/* The ordering key of 'msg': left without one (kept where it came) when
 * it has no sequence header or is no frame; receive() judges it. */
static void key_of(taken *t) {
  const char *v;
  size_t vlen = 0;
  const uint8_t *d = (const uint8_t *)natsMsg_GetData(t->msg);
  int len = natsMsg_GetDataLength(t->msg);
  uint32_t plen, tlen;
  t->pub = NULL;
  v = header(t->msg, HDR_SEQ, &vlen);
  if (v == NULL || vlen < 17 || len < 64)
    return;
  memcpy(&t->seq, d + 40, 8);
  memcpy(&plen, d + 56, 4);
  tlen = (uint32_t)(d[60] | d[61] << 8);
  t->source_len = d[62];
  plen = (plen + 7u) & ~7u;
  if ((uint64_t)64 + plen + tlen + t->source_len != (uint64_t)len)
    return;
  t->source = d + 64 + plen + tlen;
  t->pub = v;
}

/* Takes, without waiting, everything libnats read into the
 * subscriptions (it reads only on the loop's thread, in the poll before),
 * and hands it to the engine in each producer's order: the queues are per
 * subscription, so a producer's messages on two subjects that two
 * subscriptions take would otherwise come out of order.  The loop's
 * thread: the NATS thread, or the worker of nats.worker. */
static void drain(myc__nats *N) {
  rx r;
  uint32_t i, n = 0, nsubs_seen = 0;
  int fail = 0;
  memset(&r, 0, sizeof r);
  uv_mutex_lock(&N->subs_lock);
  for (i = 0; i < N->nsubs; i++) {
    uint32_t before = n;
    for (;;) {
      natsMsg *msg = NULL;
      natsStatus s = natsSubscription_NextMsg(&msg, N->subs[i].sub, 0);
      if (s == NATS_SLOW_CONSUMER)
        continue; /* counted by the error handler; the queue goes on */
      if (s != NATS_OK)
        break;
      if (grow(A(N), (void **)&N->taken, &N->ntaken_cap, sizeof *N->taken,
               n + 1) != 0) {
        msg_free(msg);
        logf_(N, MYC_LOG_ERROR, "nats: out of memory taking messages");
        break;
      }
      N->taken[n].msg = msg;
      N->taken[n].at = n;
      n++;
    }
    nsubs_seen += n > before;
  }
  uv_mutex_unlock(&N->subs_lock);
  if (n == 0)
    return;
  if (atomic_load_explicit(&N->reader, memory_order_relaxed) !=
      myc__thread_token())
    atomic_store_explicit(&N->reader, myc__thread_token(),
                          memory_order_relaxed);
  if (nsubs_seen > 1) {
    for (i = 0; i < n; i++)
      key_of(&N->taken[i]);
    qsort(N->taken, n, sizeof *N->taken, by_producer);
  }
  for (i = 0; i < n; i++) {
    if (!fail)
      fail = receive(N, N->taken[i].msg, &r) != 0;
    msg_free(N->taken[i].msg);
  }
  /* The drain's messages go to the workers now: one lock and at most one
   * wake per worker. */
  if (N->wk != NULL)
    myc__worker_flush(N->wk);
  else
    myc__host_flush(&N->hs);
  uv_mutex_lock(&N->lock);
  N->st.msgs_in += r.in;
  N->st.bytes_in += r.bytes;
  N->st.dropped_lost += r.lost;
  N->st.dropped_duplicate += r.dup;
  N->st.dropped_schema += r.schema;
  N->st.dropped_unknown_type += r.unknown;
  N->st.frame_errors += r.errors;
  if (fail && N->wk != NULL) {
    /* Closing waits for libnats' threads: the NATS thread does it.  Its
     * wake-up is closed only once it stops (under lock, after
     * 'stopping'). */
    atomic_store(&N->fail_close, 1);
    if (!N->stopping)
      uv_async_send(&N->wake);
    fail = 0;
  }
  uv_mutex_unlock(&N->lock);
  if (fail)
    close_conn(N, S_FAILED);
}

static void on_drain(uv_check_t *h) {
  drain(h->data);
}

static void free_retired(myc__nats *N);

/* After each read on the worker's loop: no read of it is under way. */
static void on_read(void *ud) {
  myc__nats *N = ud;
  if (atomic_load_explicit(&N->has_retired, memory_order_relaxed) &&
      atomic_exchange(&N->has_retired, 0))
    free_retired(N);
  drain(N);
}

/* ---- subscriptions follow the local services' --------------------------- */

typedef struct {
  char **v;
  uint32_t n, cap;
  const myc__alloc *a;
  int failed;
} plist;

static int collect(void *ud, const char *pattern, size_t len) {
  plist *l = ud;
  uint32_t i;
  if (pattern[0] == '$')
    return 0;
  for (i = 0; i < l->n; i++)
    if (strlen(l->v[i]) == len && memcmp(l->v[i], pattern, len) == 0)
      return 0;
  if (grow(l->a, (void **)&l->v, &l->cap, sizeof *l->v, l->n + 1) != 0 ||
      (l->v[l->n] = myc__malloc(l->a, len + 1)) == NULL) {
    l->failed = 1;
    return MYC_ENOMEM;
  }
  memcpy(l->v[l->n], pattern, len);
  l->v[l->n++][len] = '\0';
  return 0;
}

/* Whether another pattern of 'l' covers 'p' (the same messages would
 * come twice, once per NATS subscription). */
static int covered(const plist *l, const char *p) {
  uint32_t i;
  for (i = 0; i < l->n; i++)
    if (l->v[i] != NULL && strcmp(l->v[i], p) != 0 &&
        myc__topic_match(l->v[i], strlen(l->v[i]), p, strlen(p)))
      return 1;
  return 0;
}

/* Frees the subscriptions 'retire' kept (the loop's thread, between two
 * reads; or once the loop's handles are closed). */
static void free_retired(myc__nats *N) {
  natsSubscription **v;
  uint32_t i, n, cap;
  uv_mutex_lock(&N->subs_lock);
  v = N->retired;
  n = N->nretired;
  cap = N->capretired;
  N->retired = NULL;
  N->nretired = N->capretired = 0;
  uv_mutex_unlock(&N->subs_lock);
  for (i = 0; i < n; i++)
    natsSubscription_Destroy(v[i]);
  myc__free(A(N), v, (size_t)cap * sizeof *v);
}

/* Frees 'sub', unsubscribed.  On a worker's loop (nats.worker) a read
 * under way there (natsConnection_ProcessReadEvent) may still lock it
 * after the unsubscribe took it out of libnats' table: freed at once by
 * this thread, that lock found a destroyed mutex (libnats 3.4, under
 * ThreadSanitizer).  The worker frees it after that read (on_read), or
 * nats_quiesce once the worker's handles are closed. */
static void retire(myc__nats *N, natsSubscription *sub) {
  int rc;
  if (N->wk == NULL) {
    natsSubscription_Destroy(sub); /* this thread is the only reader */
    return;
  }
  uv_mutex_lock(&N->subs_lock);
  rc = grow(A(N), (void **)&N->retired, &N->capretired, sizeof *N->retired,
            N->nretired + 1);
  if (rc == 0)
    N->retired[N->nretired++] = sub;
  uv_mutex_unlock(&N->subs_lock);
  if (rc != 0)
    return; /* out of memory: leaked rather than freed under a read */
  atomic_store(&N->has_retired, 1);
  myc__nats_ev_kick(&N->ev);
}

/* Out of the table first: the drain (which may run on a worker) does not
 * see it any more when it goes. */
static void unsubscribe_at(myc__nats *N, uint32_t i) {
  int64_t dropped = 0;
  nsub gone = N->subs[i];
  uv_mutex_lock(&N->subs_lock);
  N->subs[i] = N->subs[--N->nsubs];
  uv_mutex_unlock(&N->subs_lock);
  if (natsSubscription_GetDropped(gone.sub, &dropped) == NATS_OK)
    N->retired_drops += dropped;
  natsSubscription_Unsubscribe(gone.sub);
  retire(N, gone.sub);
  myc__strfree(A(N), gone.pattern);
}

/* Returns 1 when it subscribed. */
static int subscribe(myc__nats *N, const char *p) {
  char subject[MYC_NATS_SUBJECT_MAX];
  natsSubscription *sub = NULL;
  natsStatus s;
  int rc;
  if (myc__nats_subject(N->cfg.prefix, p, strlen(p), 1, subject,
                        sizeof subject) < 0)
    return 0;
  uv_mutex_lock(&N->subs_lock); /* the table may move */
  rc =
      grow(A(N), (void **)&N->subs, &N->capsubs, sizeof *N->subs, N->nsubs + 1);
  uv_mutex_unlock(&N->subs_lock);
  if (rc != 0)
    return 0;
  s = natsConnection_SubscribeSync(&sub, N->nc, subject);
  if (s == NATS_OK)
    s = natsSubscription_SetPendingLimits(sub, N->cfg.pending_msgs,
                                          (int)N->cfg.pending_bytes);
  if (s != NATS_OK) {
    logf_(N, MYC_LOG_ERROR, "nats: cannot subscribe '%s' for pattern '%s': %s",
          subject, p, natsStatus_GetText(s));
    natsSubscription_Destroy(sub);
    return 0;
  }
  uv_mutex_lock(&N->subs_lock);
  N->subs[N->nsubs].pattern = myc__strdup(A(N), p);
  N->subs[N->nsubs++].sub = sub;
  uv_mutex_unlock(&N->subs_lock);
  logf_(N, MYC_LOG_DEBUG, "nats: subscribed '%s'", subject);
  return 1;
}

/* Brings the NATS subscriptions to the local services' patterns, each
 * NATS subscription a pattern no other covers. */
static void follow_subscriptions(myc__nats *N) {
  plist now;
  uint32_t i, j, added = 0;
  memset(&now, 0, sizeof now);
  now.a = A(N);
  if (N->nc == NULL)
    return;
  if (myc__topics_patterns(&N->e->topics, N->svc, collect, &now) != 0 ||
      now.failed) {
    logf_(N, MYC_LOG_ERROR, "nats: out of memory reading the subscriptions");
  } else {
    for (i = 0; i < now.n; i++)
      if (covered(&now, now.v[i])) {
        myc__strfree(A(N), now.v[i]);
        now.v[i] = NULL;
      }
    for (i = 0; i < N->nsubs;) {
      for (j = 0; j < now.n; j++)
        if (now.v[j] != NULL && strcmp(now.v[j], N->subs[i].pattern) == 0)
          break;
      if (j == now.n)
        unsubscribe_at(N, i);
      else
        i++;
    }
    for (j = 0; j < now.n; j++) {
      if (now.v[j] == NULL)
        continue;
      for (i = 0; i < N->nsubs; i++)
        if (strcmp(now.v[j], N->subs[i].pattern) == 0)
          break;
      if (i == N->nsubs)
        added += (uint32_t)subscribe(N, now.v[j]);
    }
  }
  /* On a worker's loop the drain follows reads: what a read brought into
   * a subscription before it was in the table waits for the next one
   * (the NATS thread's loop drains after every turn). */
  if (added > 0 && N->wk != NULL)
    myc__nats_ev_kick(&N->ev);
  for (i = 0; i < now.n; i++)
    if (now.v[i] != NULL)
      myc__strfree(A(N), now.v[i]);
  myc__free(A(N), now.v, (size_t)now.cap * sizeof *now.v);
}

/* libnats' own drops (pending limits), read on the thread. */
static void read_drops(myc__nats *N) {
  int64_t total = N->retired_drops, d;
  uint32_t i;
  /* The thread's own table: nothing else changes it. */
  for (i = 0; i < N->nsubs; i++)
    if (natsSubscription_GetDropped(N->subs[i].sub, &d) == NATS_OK)
      total += d;
  uv_mutex_lock(&N->lock);
  N->st.dropped_pending_limit = (uint64_t)total;
  N->st.subjects = N->nsubs;
  uv_mutex_unlock(&N->lock);
}

static void on_tick(uv_timer_t *t) {
  myc__nats *N = t->data;
  follow_subscriptions(N);
  read_drops(N);
}

/* ---- connection events (libnats' event thread) -------------------------- */

static void note_url(myc__nats *N, natsConnection *nc) {
  char url[256];
  if (natsConnection_GetConnectedUrl(nc, url, sizeof url) == NATS_OK &&
      url[0] != '\0') {
    uv_mutex_lock(&N->lock);
    snprintf(N->url, sizeof N->url, "%s", url);
    uv_mutex_unlock(&N->lock);
  }
}

static void on_connected(natsConnection *nc, void *closure) {
  myc__nats *N = closure;
  note_url(N, nc);
  set_state(N, S_UP);
  logf_(N, MYC_LOG_INFO, "nats: connected to %s", N->url);
}

static void on_disconnected(natsConnection *nc, void *closure) {
  myc__nats *N = closure;
  int stopping;
  (void)nc;
  uv_mutex_lock(&N->lock);
  stopping = N->stopping;
  if (N->state == S_UP && !stopping)
    N->state = S_RECONNECTING;
  uv_mutex_unlock(&N->lock);
  if (!stopping)
    logf_(N, MYC_LOG_WARN, "nats: disconnected from %s; reconnecting",
          N->url);
}

static void on_reconnected(natsConnection *nc, void *closure) {
  myc__nats *N = closure;
  note_url(N, nc);
  uv_mutex_lock(&N->lock);
  N->state = S_UP;
  N->st.reconnects++;
  uv_mutex_unlock(&N->lock);
  logf_(N, MYC_LOG_INFO,
        "nats: reconnected to %s (subscriptions sent again)", N->url);
}

static void on_closed(natsConnection *nc, void *closure) {
  myc__nats *N = closure;
  (void)nc;
  uv_mutex_lock(&N->lock);
  if (N->state != S_FAILED)
    N->state = S_CLOSED;
  N->closed_pending = 0;
  uv_cond_signal(&N->closed_cond);
  uv_mutex_unlock(&N->lock);
}

/* Waits for on_closed of the connection just closed: callbacks libnats
 * queued for it (the closed one last) must not run once N is freed.
 * Bounded, so that a libnats that never calls it cannot wedge a stop. */
static void wait_closed(myc__nats *N) {
  uint64_t until = uv_hrtime() + CLOSED_WAIT_NS;
  uv_mutex_lock(&N->lock);
  while (N->closed_pending) {
    uint64_t now = uv_hrtime();
    if (now >= until ||
        uv_cond_timedwait(&N->closed_cond, &N->lock, until - now) != 0)
      break;
  }
  if (N->closed_pending)
    N->closed_leaked = 1;
  uv_mutex_unlock(&N->lock);
}

static void on_error(natsConnection *nc, natsSubscription *sub,
                     natsStatus err, void *closure) {
  myc__nats *N = closure;
  (void)nc;
  (void)sub;
  if (err == NATS_SLOW_CONSUMER) {
    uint64_t n;
    uv_mutex_lock(&N->lock);
    n = ++N->st.slow_consumer;
    uv_mutex_unlock(&N->lock);
    /* libnats reports a subscription once each time it goes over. */
    if (n == 1 || n % 100 == 0)
      logf_(N, MYC_LOG_WARN,
            "nats: slow consumer: a subscription went over its pending "
            "limits (nats.pending_msgs, nats.pending_bytes); messages are "
            "dropped (pending_limit), %" PRIu64 " time(s) so far",
            n);
    return;
  }
  logf_(N, MYC_LOG_WARN, "nats: %s", natsStatus_GetText(err));
}

/* ---- the thread --------------------------------------------------------- */

static void close_conn(myc__nats *N, int state) {
  natsConnection *nc = N->nc;
  uint32_t i;
  if (nc == NULL)
    return;
  set_state(N, state);
  for (i = 0; i < N->nsubs;)
    unsubscribe_at(N, i);
  if (N->inbox != NULL) {
    natsSubscription_Unsubscribe(N->inbox);
    retire(N, N->inbox);
    N->inbox = NULL;
  }
  /* No direct run is under way, nor starts: it finds no connection. */
  uv_mutex_lock(&N->ev.io);
  N->nc = NULL;
  uv_mutex_unlock(&N->ev.io);
  /* Detaches from the loop on this thread (the adapter closes its
   * handle) and joins libnats' threads for this connection. */
  natsConnection_Close(nc);
  wait_closed(N);
  /* On a worker's loop the poll handle may still be there, on 'nc': it
   * goes once that loop's handles are closed (nats_quiesce). */
  if (N->wk != NULL)
    N->dead_nc = nc;
  else
    natsConnection_Destroy(nc);
  uv_mutex_lock(&N->lock);
  N->state = state;
  uv_mutex_unlock(&N->lock);
}

static void shut_down(myc__nats *N) {
  uint32_t n;
  read_drops(N);
  close_conn(N, S_CLOSED);
  uv_mutex_lock(&N->lock);
  n = N->qn;
  N->st.dropped_shutdown += n;
  N->st.queued -= n;
  N->qn = 0;
  N->st.queued_bytes = 0;
  uv_mutex_unlock(&N->lock);
  release_batch(N, N->q, n);
  if (N->wk == NULL)
    myc__nats_ev_close(&N->ev, NULL);
  uv_close((uv_handle_t *)&N->wake, NULL);
  uv_close((uv_handle_t *)&N->drain, NULL);
  uv_close((uv_handle_t *)&N->tick, NULL);
  uv_close((uv_handle_t *)&N->stop_timer, NULL);
  uv_close((uv_handle_t *)&N->retry, NULL);
}

/* A stop publishes what the queue holds, then waits (a bounded time) for
 * libnats to write it before the connection closes. */
static void on_stop_timer(uv_timer_t *t) {
  myc__nats *N = t->data;
  if (N->nc != NULL && natsConnection_Buffered(N->nc) > 0 &&
      uv_now(&N->loop) < N->stop_deadline &&
      natsConnection_Status(N->nc) == NATS_CONN_STATUS_CONNECTED)
    return;
  uv_timer_stop(t);
  shut_down(N);
}

static void on_wake(uv_async_t *a) {
  myc__nats *N = a->data;
  int stopping;
  uv_mutex_lock(&N->lock);
  stopping = N->stopping;
  uv_mutex_unlock(&N->lock);
  if (atomic_exchange(&N->fail_close, 0))
    close_conn(N, S_FAILED);
  publish_queue(N);
  if (stopping && !N->stopped_loop) {
    N->stopped_loop = 1;
    N->stop_deadline = uv_now(&N->loop) + STOP_FLUSH_MS;
    uv_timer_start(&N->stop_timer, on_stop_timer, 0, 1);
  }
}

/* Dials the seeds on this thread (each attempt blocks this thread only,
 * for at most nats.connect_timeout_ms a server), again every
 * reconnect_wait_ms until one answers.  libnats' own retry of a first
 * connect would attach the connection to this loop from its reconnect
 * thread, which the libuv adapter does not support (the server sees the
 * connection close at once). */
/* Logs why the seeds refused, and what to fix, when the reason is new:
 * a refusal of TLS or credentials is not "no server". */
static void connect_failed(myc__nats *N, natsStatus s) {
  const char *url = N->urls[0];
  const char *more = N->nurls > 1 ? " (the first seed)" : "";
  const char *detail = nats_GetLastError(NULL);
  double wait = N->cfg.reconnect_wait_ms;
  if (detail == NULL || *detail == '\0')
    detail = natsStatus_GetText(s);
  else if (detail[0] == '(' && strstr(detail, "): ") != NULL)
    detail = strstr(detail, "): ") + 3; /* libnats' "(conn.c:123): " */
  if ((int)s == N->connect_status)
    return;
  N->connect_status = (int)s;
  if (s == NATS_SSL_ERROR)
    logf_(N, MYC_LOG_ERROR, "nats: %s%s: TLS failed (%s): check nats.tls.ca "
          "(the CA that signed the server's certificate) and that the "
          "certificate names the URL's host; retrying every %.0f ms",
          url, more, detail, wait);
  else if ((s == NATS_NOT_PERMITTED || strstr(detail, "Violation") != NULL) &&
           N->cfg.nkey[0])
    logf_(N, MYC_LOG_ERROR, "nats: %s%s: the server refused the credentials "
          "(%s): check nats.nkey: the seed in %s is of user %s, which the "
          "server does not list; retrying every %.0f ms",
          url, more, detail, N->cfg.nkey, N->nkey_pub, wait);
  else if (s == NATS_NOT_PERMITTED || strstr(detail, "Violation") != NULL)
    logf_(N, MYC_LOG_ERROR, "nats: %s%s: the server refused the credentials "
          "(%s): check nats.user and nats.password, nats.token or nats.creds "
          "(or user:password@ in the URL); retrying every %.0f ms",
          url, more, detail, wait);
  else if ((N->cfg.tls || N->cfg.tls_ca[0]) && strstr(detail, "PONG") != NULL)
    /* TLS 1.3: a server that wanted a client certificate says so by
     * closing the connection after the handshake. */
    logf_(N, MYC_LOG_ERROR, "nats: %s%s: the server closed the connection "
          "after the TLS handshake (%s): if it requires client "
          "certificates, give nats.tls.cert and nats.tls.key; retrying "
          "every %.0f ms", url, more, detail, wait);
  else if (s == NATS_SECURE_CONNECTION_REQUIRED)
    logf_(N, MYC_LOG_ERROR, "nats: %s%s: the server requires TLS: use "
          "tls:// or nats.tls; retrying every %.0f ms", url, more, wait);
  else if (s == NATS_SECURE_CONNECTION_WANTED)
    logf_(N, MYC_LOG_ERROR, "nats: %s%s: the server does not speak TLS: use "
          "nats:// and no nats.tls; retrying every %.0f ms", url, more, wait);
  else
    logf_(N, MYC_LOG_WARN, "nats: no server answered yet (%s: %s); retrying "
          "every %.0f ms", url, detail, wait);
}

static void try_connect(myc__nats *N) {
  natsConnection *nc = NULL;
  natsStatus s = natsConnection_Connect(&nc, N->opts);
  char inbox[sizeof N->inbox_prefix + 1];
  if (s == NATS_OK) {
    uv_mutex_lock(&N->ev.io);
    N->nc = nc;
    uv_mutex_unlock(&N->ev.io);
    uv_mutex_lock(&N->lock);
    N->closed_pending = 1;
    uv_mutex_unlock(&N->lock);
    uv_timer_stop(&N->retry);
    /* libnats subscribes it again after a reconnect, as the others. */
    snprintf(inbox, sizeof inbox, "%s>", N->inbox_prefix);
    s = natsConnection_Subscribe(&N->inbox, N->nc, inbox, on_inbox, N);
    if (s == NATS_OK)
      s = natsSubscription_SetPendingLimits(N->inbox, N->cfg.pending_msgs,
                                            (int)N->cfg.pending_bytes);
    if (s != NATS_OK)
      logf_(N, MYC_LOG_ERROR,
            "nats: cannot subscribe '%s': %s; requests sent over NATS will "
            "time out",
            inbox, natsStatus_GetText(s));
    /* The server's PONG shows whether it imposed TLS (evloop.h), before
     * which the worker of "_nats" does not write; the wait itself is
     * bound to fail (this thread reads the PONG), libnats drops it. */
    (void)natsConnection_FlushTimeout(nc, 1);
    on_connected(N->nc, N);
    follow_subscriptions(N);
    read_drops(N);
    uv_async_send(&N->wake); /* what waited in the queue */
    return;
  }
  N->connect_attempts++;
  connect_failed(N, s);
  if (N->cfg.max_reconnect >= 0 &&
      N->connect_attempts > (uint32_t)N->cfg.max_reconnect) {
    logf_(N, MYC_LOG_ERROR,
          "nats: cannot connect to %s after %u attempts (nats.max_reconnect)",
          N->urls[0], N->connect_attempts);
    uv_timer_stop(&N->retry);
    set_state(N, S_FAILED);
    /* Nothing will send what waits: dropped now (disconnect), not left
     * looking queued until the next emit happens to wake this thread. */
    publish_queue(N);
  }
}

static void on_retry(uv_timer_t *t) { try_connect(t->data); }

static void thread_main(void *arg) {
  myc__nats *N = arg;
  uint64_t wait = (uint64_t)N->cfg.reconnect_wait_ms;
  myc__nats_ev_loop_thread(&N->ev);
  try_connect(N);
  if (N->nc == NULL && N->state != S_FAILED)
    uv_timer_start(&N->retry, on_retry, wait ? wait : 1, wait ? wait : 1);
  uv_run(&N->loop, UV_RUN_DEFAULT);
}

static natsStatus make_options(myc__nats *N) {
  const myc__nats_config *c = &N->cfg;
  natsOptions *o = NULL;
  natsStatus s = natsOptions_Create(&o);
  if (s == NATS_OK)
    s = natsOptions_SetServers(o, (const char **)N->urls, (int)N->nurls);
  if (s == NATS_OK)
    s = natsOptions_SetNoRandomize(o, !c->randomize);
  if (s == NATS_OK && c->name[0])
    s = natsOptions_SetName(o, c->name);
  if (s == NATS_OK && c->user[0])
    s = natsOptions_SetUserInfo(o, c->user, c->password);
  if (s == NATS_OK && c->token[0])
    s = natsOptions_SetToken(o, c->token);
  if (s == NATS_OK && c->creds[0])
    s = natsOptions_SetUserCredentialsFromFiles(o, c->creds, NULL);
  /* libnats reads the seed from the file again at each connect. */
  if (s == NATS_OK && c->nkey[0])
    s = natsOptions_SetNKeyFromSeed(o, N->nkey_pub, c->nkey);
  if (s == NATS_OK && (c->tls || c->tls_ca[0] || c->tls_cert[0]))
    s = natsOptions_SetSecure(o, true);
  if (s == NATS_OK && c->tls_ca[0])
    s = natsOptions_LoadCATrustedCertificates(o, c->tls_ca);
  if (s == NATS_OK && c->tls_cert[0])
    s = natsOptions_LoadCertificatesChain(o, c->tls_cert, c->tls_key);
  if (s == NATS_OK && (c->tls || c->tls_ca[0] || c->tls_cert[0]))
    s = natsOptions_SkipServerVerification(o, !c->tls_verify);
  if (s == NATS_OK)
    s = natsOptions_SetTimeout(o, (int64_t)c->connect_timeout_ms);
  if (s == NATS_OK)
    s = natsOptions_SetMaxReconnect(o, c->max_reconnect);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait(o, (int64_t)c->reconnect_wait_ms);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectBufSize(o, c->reconnect_buf_bytes);
  /* Local subscribers already had our messages. */
  if (s == NATS_OK)
    s = natsOptions_SetNoEcho(o, true);
  /* No flusher thread: a publish asks the adapter for a write, which
   * happens once per run or loop turn for everything it published. */
  if (s == NATS_OK)
    s = natsOptions_SetSendAsap(o, true);
  if (s == NATS_OK)
    s = natsOptions_SetEventLoop(o, &N->ev, myc__nats_ev_attach,
                                 myc__nats_ev_read, myc__nats_ev_write,
                                 myc__nats_ev_detach);
  if (s == NATS_OK)
    s = natsOptions_SetDisconnectedCB(o, on_disconnected, N);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectedCB(o, on_reconnected, N);
  if (s == NATS_OK)
    s = natsOptions_SetClosedCB(o, on_closed, N);
  if (s == NATS_OK)
    s = natsOptions_SetErrorHandler(o, on_error, N);
  if (s != NATS_OK) {
    natsOptions_Destroy(o);
    return s;
  }
  N->opts = o;
  return NATS_OK;
}

/* Whether the connection is to be TLS by the configuration (a server may
 * still impose it: evloop.c finds that out). */
static int uses_tls(const myc__nats *N) {
  uint32_t i;
  if (N->cfg.tls || N->cfg.tls_ca[0] || N->cfg.tls_cert[0])
    return 1;
  for (i = 0; i < N->nurls; i++)
    if (strncmp(N->urls[i], "tls://", 6) == 0)
      return 1;
  return 0;
}

/* The loop's handles of the adapter are closed (its thread). */
static void ev_closed(void *ud) {
  myc__nats *N = ud;
  uv_mutex_lock(&N->lock);
  N->ev_down = 1;
  uv_cond_broadcast(&N->ev_cond);
  uv_mutex_unlock(&N->lock);
}

static int ev_is_down(myc__nats *N) {
  int down;
  uv_mutex_lock(&N->lock);
  down = N->ev_down;
  uv_mutex_unlock(&N->lock);
  return down;
}

/* Closes the adapter's handles on the loop they are on, from the thread
 * that owns it now (it is not being run): turns it until they are
 * closed.  Bounded, as a worker's own teardown is. */
static void ev_close_here(myc__nats *N, uv_loop_t *loop) {
  int turns;
  myc__nats_ev_close(&N->ev, ev_closed);
  for (turns = 0; turns < 5000 && !ev_is_down(N); turns++)
    if (uv_run(loop, UV_RUN_NOWAIT) == 0 && !ev_is_down(N))
      uv_sleep(1);
}

/* The stop job of the adapter's handles, on the worker of nats.worker;
 * cancelled (run 0) when the worker stopped first: then nats_quiesce
 * closes them from its thread. */
static void ev_stop_run(myc__job *j, int run) {
  myc__nats *N = (myc__nats *)((char *)j - offsetof(myc__nats, ev_stop));
  if (run) {
    myc__nats_ev_close(&N->ev, ev_closed);
    return;
  }
  uv_mutex_lock(&N->lock);
  N->ev_cancelled = 1;
  uv_cond_broadcast(&N->ev_cond);
  uv_mutex_unlock(&N->lock);
}

/* nats.worker: the adapter's handles close on the worker's thread (the
 * workers are drained, not stopped: it still runs its loop and jobs),
 * and this one waits for them; a worker that is not running (never
 * started, or this thread turns it) is turned here instead. */
static void ev_stop_on_worker(myc__nats *N) {
  int down = 0;
  if (N->wk->started && !myc__owner_held(&N->wk->owner)) {
    N->ev_stop.fn = ev_stop_run;
    myc__worker_post(N->wk, &N->ev_stop);
    uv_mutex_lock(&N->lock);
    while (!N->ev_down && !N->ev_cancelled)
      uv_cond_wait(&N->ev_cond, &N->lock);
    down = N->ev_down;
    uv_mutex_unlock(&N->lock);
  }
  if (!down)
    ev_close_here(N, &N->wk->loop);
}

static int nats_start(void *ud, char *err, size_t errlen) {
  myc__nats *N = ud;
  uv_loop_t *evloop = &N->loop;
  natsStatus s;
  int rc;
  {
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
      signal(SIGPIPE, SIG_IGN);
  }
  if ((s = nats_Open(-1)) != NATS_OK) {
    snprintf(err, errlen, "nats: cannot start libnats: %s",
             natsStatus_GetText(s));
    return MYC_ECONFIG;
  }
  N->chains = myc__calloc(A(N), N->e->sched.nworkers * sizeof *N->chains + 1);
  if (N->chains == NULL || myc__host_stage_init(&N->hs, &N->e->sched) != 0)
    return MYC_ENOMEM;
  if ((rc = uv_loop_init(&N->loop)) != 0) {
    snprintf(err, errlen, "nats: cannot make a loop: %s", uv_strerror(rc));
    return MYC_ECONFIG;
  }
  if (N->cfg.worker >= 0) {
    /* The worker's loop polls the connection: the workers do not run yet
     * and this thread owns them (myc_engine_start), so the adapter's
     * handles are made here; the worker's thread, once created, runs
     * them. */
    N->wk = myc__service_worker(N->svc);
    MYC_ASSERT_OWNER(&N->wk->owner);
    evloop = &N->wk->loop;
  }
  if ((rc = myc__nats_ev_init(&N->ev, evloop, A(N), !uses_tls(N))) != 0) {
    snprintf(err, errlen, "nats: cannot make a loop: %s", uv_strerror(rc));
    uv_loop_close(&N->loop);
    return MYC_ECONFIG;
  }
  N->ev.after_read_ud = N;
  if (N->wk != NULL) {
    N->ev.owner = &N->wk->owner;
    N->ev.after_read = on_read;
  }
  if ((s = make_options(N)) != NATS_OK) {
    snprintf(err, errlen, "nats: bad options: %s (%s)", natsStatus_GetText(s),
             nats_GetLastError(NULL));
    ev_close_here(N, evloop);
    uv_loop_close(&N->loop);
    return MYC_ECONFIG;
  }
  uv_async_init(&N->loop, &N->wake, on_wake);
  N->wake.data = N;
  uv_check_init(&N->loop, &N->drain);
  N->drain.data = N;
  /* On a worker's loop, the drain follows the reads there instead. */
  if (N->wk == NULL)
    uv_check_start(&N->drain, on_drain);
  uv_timer_init(&N->loop, &N->tick);
  N->tick.data = N;
  uv_timer_start(&N->tick, on_tick, (uint64_t)N->cfg.sub_poll_ms,
                 (uint64_t)N->cfg.sub_poll_ms);
  uv_timer_init(&N->loop, &N->stop_timer);
  N->stop_timer.data = N;
  uv_timer_init(&N->loop, &N->retry);
  N->retry.data = N;
  if ((rc = uv_thread_create(&N->thread, thread_main, N)) != 0) {
    snprintf(err, errlen, "nats: cannot start the NATS thread: %s",
             uv_strerror(rc));
    ev_close_here(N, evloop);
    uv_close((uv_handle_t *)&N->wake, NULL);
    uv_close((uv_handle_t *)&N->drain, NULL);
    uv_close((uv_handle_t *)&N->tick, NULL);
    uv_close((uv_handle_t *)&N->stop_timer, NULL);
    uv_close((uv_handle_t *)&N->retry, NULL);
    uv_run(&N->loop, UV_RUN_DEFAULT);
    uv_loop_close(&N->loop);
    N->joined = 1;
    return MYC_ECONFIG;
  }
  uv_mutex_lock(&N->lock);
  N->started = 1;
  uv_mutex_unlock(&N->lock);
  return 0;
}

static void nats_quiesce(void *ud) {
  myc__nats *N = ud;
  if (!N->started || N->joined)
    return;
  uv_mutex_lock(&N->lock);
  N->stopping = 1;
  uv_mutex_unlock(&N->lock);
  uv_async_send(&N->wake);
  uv_thread_join(&N->thread);
  uv_loop_close(&N->loop);
  /* The NATS thread closed the connection; a worker's loop may still poll
   * it until its handles are closed. */
  if (N->wk != NULL)
    ev_stop_on_worker(N);
  free_retired(N);
  if (N->dead_nc != NULL) {
    natsConnection_Destroy(N->dead_nc);
    N->dead_nc = NULL;
  }
  N->joined = 1;
}

static void nats_free(void *ud) {
  myc__nats *N = ud;
  uint32_t i;
  nats_quiesce(N);
  if (N->opts != NULL)
    natsOptions_Destroy(N->opts);
  myc__nats_ev_free(&N->ev);
  myc__host_stage_free(&N->hs);
  myc__seqmap_free(&N->out_seq);
  myc__seqmap_free(&N->in_seq);
  myc__free(A(N), N->subs, (size_t)N->capsubs * sizeof *N->subs);
  myc__free(A(N), N->taken, (size_t)N->ntaken_cap * sizeof *N->taken);
  myc__free(A(N), N->q, (size_t)N->qcap * sizeof *N->q);
  myc__free(A(N), N->w, (size_t)N->wcap * sizeof *N->w);
  myc__free(A(N), N->pubbuf, N->pubcap);
  if (N->chains != NULL)
    myc__free(A(N), N->chains,
              N->e->sched.nworkers * sizeof *N->chains + 1);
  for (i = 0; i < N->nurls; i++)
    myc__strfree(A(N), N->urls[i]);
  myc__free(A(N), N->urls, N->nurls * sizeof *N->urls + 1);
  if (N->closed_leaked)
    return; /* libnats may still call on_closed with it */
  uv_cond_destroy(&N->ev_cond);
  uv_cond_destroy(&N->closed_cond);
  uv_mutex_destroy(&N->subs_lock);
  uv_mutex_destroy(&N->lock);
  myc__free(A(N), N, sizeof *N);
}

/* ---- configuration and attachment -------------------------------------- */

void myc__nats_config_init(myc__nats_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->prefix, sizeof c->prefix, "mycelium");
  snprintf(c->publish[0], sizeof c->publish[0], "*");
  c->npublish = 1;
  c->tls_verify = 1;
  c->randomize = 1;
  c->queue_msgs = 65536;
  c->queue_bytes = 64ull << 20;
  c->pending_msgs = 65536;
  c->pending_bytes = 64ll << 20;
  c->reconnect_wait_ms = 100;
  c->max_reconnect = -1;
  c->reconnect_buf_bytes = 8 << 20;
  c->connect_timeout_ms = 2000;
  c->sub_poll_ms = 20;
  c->worker = -1;
}

const char *myc__nats_config_check(const myc__nats_config *c) {
  uint32_t i;
  if (myc__nats_prefix_check(c->prefix) != NULL)
    return "nats.prefix must be empty or dot-separated tokens of letters, "
           "digits, '_', '-', ':', '/'";
  for (i = 0; i < c->npublish; i++)
    if (myc__topic_check(c->publish[i], strlen(c->publish[i]), 1) != NULL)
      return "nats.publish lists a pattern that is not a subscription "
             "pattern (\"swaps.v2\", \"swaps.*\", \"*\")";
  if (c->queue_msgs == 0 || c->queue_bytes == 0)
    return "nats.queue_msgs and nats.queue_bytes must be positive";
  if (c->pending_msgs <= 0 || c->pending_bytes <= 0 ||
      c->pending_bytes > 0x7fffffff)
    return "nats.pending_msgs and nats.pending_bytes must be positive "
           "(pending_bytes below 2 GiB)";
  if (!(c->reconnect_wait_ms >= 0) || !(c->connect_timeout_ms > 0) ||
      !(c->sub_poll_ms >= 1))
    return "nats timeouts must be positive (sub_poll_ms at least 1)";
  if (c->reconnect_buf_bytes < 0)
    return "nats.reconnect_buffer_bytes must not be negative";
  if (c->tls_key[0] && !c->tls_cert[0])
    return "nats.tls.key needs nats.tls.cert";
  if (c->creds[0] && c->nkey[0])
    return "nats.creds and nats.nkey are exclusive";
  return NULL;
}

int myc__nats_attach(myc_engine *e, const myc__nats_config *c,
                     const char *const *urls, size_t nurls, myc__nats **out,
                     char *err, size_t errlen) {
  myc__nats *N;
  const char *why = myc__nats_config_check(c);
  size_t i;
  uint8_t id[8];
  myc__rng rng;
  uint64_t r;
  int rc;
  *out = NULL;
  if (why != NULL) {
    snprintf(err, errlen, "%s", why);
    return MYC_EINVAL;
  }
  if (e->manual) {
    snprintf(err, errlen, "NATS needs a threaded engine");
    return MYC_EINVAL;
  }
  if (nurls == 0 || nurls > MYC_NATS_MAX_URLS) {
    snprintf(err, errlen, "nats: between 1 and %d server URLs",
             MYC_NATS_MAX_URLS);
    return MYC_EINVAL;
  }
  N = myc__calloc(&e->alloc, sizeof *N);
  if (N == NULL)
    return MYC_ENOMEM;
  if (c->nkey[0] && (rc = myc__nats_nkey_public(&e->alloc, c->nkey,
                                                N->nkey_pub, err, errlen)) != 0) {
    myc__free(&e->alloc, N, sizeof *N);
    return rc;
  }
  N->e = e;
  N->cfg = *c;
  if (uv_mutex_init(&N->lock) != 0) {
    myc__free(&e->alloc, N, sizeof *N);
    return MYC_ENOMEM;
  }
  if (uv_cond_init(&N->closed_cond) != 0) {
    uv_mutex_destroy(&N->lock);
    myc__free(&e->alloc, N, sizeof *N);
    return MYC_ENOMEM;
  }
  if (uv_cond_init(&N->ev_cond) != 0) {
    uv_cond_destroy(&N->closed_cond);
    uv_mutex_destroy(&N->lock);
    myc__free(&e->alloc, N, sizeof *N);
    return MYC_ENOMEM;
  }
  if (uv_mutex_init(&N->subs_lock) != 0) {
    uv_cond_destroy(&N->ev_cond);
    uv_cond_destroy(&N->closed_cond);
    uv_mutex_destroy(&N->lock);
    myc__free(&e->alloc, N, sizeof *N);
    return MYC_ENOMEM;
  }
  N->urls = myc__calloc(&e->alloc, nurls * sizeof *N->urls + 1);
  if (N->urls == NULL || myc__engine_on_free(e, nats_free, N) != 0) {
    myc__free(&e->alloc, N->urls, nurls * sizeof *N->urls + 1);
    uv_mutex_destroy(&N->subs_lock);
    uv_cond_destroy(&N->ev_cond);
    uv_cond_destroy(&N->closed_cond);
    uv_mutex_destroy(&N->lock);
    myc__free(&e->alloc, N, sizeof *N);
    return MYC_ENOMEM;
  }
  /* From here 'N' is the engine's: freed with it. */
  N->nurls = (uint32_t)nurls;
  for (i = 0; i < nurls; i++)
    if ((N->urls[i] = myc__strdup(&e->alloc, urls[i])) == NULL)
      return MYC_ENOMEM;
  snprintf(N->url, sizeof N->url, "%s", urls[0]);
  myc__seqmap_init(&N->out_seq, &e->alloc, SEQ_KEYS_MAX);
  myc__seqmap_init(&N->in_seq, &e->alloc, SEQ_KEYS_MAX);
  myc__rng_seed(&rng);
  myc__rng_seed(&N->inbox_rng);
  do
    r = myc__rng_next(&rng);
  while (r == 0);
  for (i = 0; i < 8; i++)
    id[i] = (uint8_t)(r >> (8 * i));
  hex(id, 8, N->pubid_hex);
  snprintf(N->inbox_prefix, sizeof N->inbox_prefix, "%s%s.", INBOX,
           N->pubid_hex);
  N->pubid = r;
  N->state = S_CONNECTING;
  /* "_nats" is subscribed to what goes out: nats.publish. */
  rc = myc__engine_add_transport(e, "_nats", c->publish[0], on_message, N,
                                 c->worker, "nats", "nats.worker", &N->svc, err,
                                 errlen);
  if (rc != 0)
    return rc;
  for (i = 1; i < c->npublish; i++)
    if ((rc = myc__topics_subscribe(&e->topics, N->svc, c->publish[i],
                                    strlen(c->publish[i]))) != 0) {
      snprintf(err, errlen, "nats.publish[%zu] '%s': %s", i + 1,
               c->publish[i], myc_strerror(rc));
      return rc;
    }
  N->next_reply = e->reply_remote;
  N->next_reply_ud = e->reply_remote_ud;
  e->reply_remote = nats_reply;
  e->reply_remote_ud = N;
  if ((rc = myc__engine_beside(e, nats_start, nats_quiesce, myc__nats_status,
                               N)) != 0 ||
      (rc = myc__engine_beside_metrics(e, N, myc__nats_metrics)) != 0)
    return rc;
  *out = N;
  return 0;
}

/* ---- introspection ------------------------------------------------------ */

myc__nats *myc__nats_of(myc_engine *e) {
  myc_service *s = myc__engine_find(e, "_nats", 5);
  return s != NULL && s->cb == on_message ? s->cb_ud : NULL;
}

void myc__nats_stats_get(myc__nats *N, myc__nats_stats *out) {
  uv_mutex_lock(&N->lock);
  *out = N->st;
  snprintf(out->url, sizeof out->url, "%s", N->url);
  out->state = STATE_NAME[N->state];
  uv_mutex_unlock(&N->lock);
  /* A message libnats dropped over its pending limits leaves a gap in
   * the sequence too: the gaps it explains are not counted twice. */
  out->dropped_lost = out->dropped_lost > out->dropped_pending_limit
                          ? out->dropped_lost - out->dropped_pending_limit
                          : 0;
}

const myc__alloc *myc__nats_alloc(myc__nats *N) { return A(N); }

uintptr_t myc__nats_reader(myc__nats *N) {
  return atomic_load_explicit(&N->reader, memory_order_relaxed);
}
