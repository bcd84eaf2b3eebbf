/* emit.h -- the hot path: frame a message in a pooled buffer and hand one
 * reference to each subscriber's mailbox (same worker) or worker inbox
 * (another thread).  No lock, no system call, no copy after the frame.
 * It knows the emitting service's routes and the topic table; it never
 * calls into the engine or a service.
 */
#ifndef MYC_EMIT_H
#define MYC_EMIT_H

#include "core/topic.h"
#include "runtime/service.h"
#include "runtime/worker.h"

struct myc__plan;

/* What a service needs to emit on one topic, built once per topic. */
typedef struct myc__route {
  myc__topic *topic;
  /* The topic's subscribers grouped by worker as this service reaches
   * them, made from one version of the list and remade when it moves
   * on (emit.c).  NULL until a message went to two or more. */
  struct myc__plan *plan;
  uint16_t tail_len;
  char tail[]; /* topic name, then the service's name */
} myc__route;

/* Frees the routes of 's'. */
void myc__routes_free(myc_service *s);

/* Frames and delivers a message from service 's' (on its worker thread).
 * Returns 0 when at least one subscriber took it or there is none,
 * MYC_EFULL when every subscriber refused it, MYC_ETOOBIG when it is over
 * what every subscriber takes (or any frame), MYC_ENOMEM, MYC_EINVAL for
 * an unknown topic id, MYC_ETOPIC for an engine topic ('$dead'). */
int myc__emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
              const void *data, size_t len);

/* As myc__emit, for what the engine itself publishes in the name of 's'
 * (a dead letter on '$dead'): engine topics are allowed, the source is
 * the service, the trace a child of what it was doing.  Worker thread of
 * 's'. */
int myc__emit_engine(myc_service *s, uint32_t topic_id, int kind,
                     const void *data, size_t len);

/* A buffer whose payload of 'size' bytes (zeroed, with its padding) the
 * caller fills in place before myc__emit_buf(); the header is left for
 * myc__emit_buf() to write.  It has room for the name of 's' and the
 * longest topic 's' has emitted such a buffer on (64 bytes before the
 * first; myc__emit_buf() moves the frame to a larger buffer for a longer
 * one).  One reference, the caller's.  NULL when out of memory.  Worker
 * thread of 's'. */
myc_buf *myc__emit_buf_new(myc_service *s, size_t size);

/* Emits a buffer from myc__emit_buf_new() as myc__emit() would, without
 * copying the payload.  The caller's reference is handed over whatever
 * the result. */
int myc__emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                  uint16_t type);

/* Frames request 'corr' of 's' (its correlation id) with its 'deadline'
 * (engine clock, ns) and delivers it as myc__emit does.  Returns as
 * myc__emit, except MYC_ENOENT when the topic has no subscriber (nobody
 * would answer).  Worker thread of 's'. */
int myc__emit_request(myc_service *s, uint32_t topic_id, int kind,
                      uint16_t type, const void *data, size_t len,
                      int64_t deadline, uint64_t corr);

/* Frames the reply of 's' to request 'req' on topic 'topic_id' ("$reply")
 * and delivers it to service 'to' alone, the one that asked; 'failed':
 * the payload says why the request failed.  Returns 0, MYC_EFULL (or the
 * mailbox's other refusals), MYC_ETOOBIG, MYC_ENOMEM.  Worker thread of
 * 's'. */
int myc__emit_reply(myc_service *s, myc_service *to, uint32_t topic_id,
                    const myc_buf *req, int kind, uint16_t type,
                    const void *data, size_t len, int failed);

/* Hands 'b' (one reference, the caller's, handed over whatever the
 * result) to service 'to' alone.  'from' is the worker running the
 * caller, or NULL for another thread, which must have found 'to' within
 * the read section it still holds (sched->hosts, worker.h).  Returns 0 or
 * the mailbox's refusal. */
int myc__deliver_one(myc__sched *sched, myc__worker *from, myc_service *to,
                     myc_buf *b);

/* As myc__frame_new (no pool: any thread), for a request or a reply:
 * 'flags' (MYC_FRAME_REQUEST or MYC_FRAME_REPLY...) and the extension
 * written after the tail.  The topic is given by name (a reply sent over
 * a link is addressed to a service name, not a topic). */
myc_buf *myc__frame_new_req(const myc__alloc *a, uint32_t topic_id,
                            const char *topic, size_t topic_len,
                            const char *source, size_t source_len, int kind,
                            uint16_t type, const void *data, size_t len,
                            uint8_t flags, uint64_t corr, uint64_t budget_ns,
                            size_t extra);

/* Payloads from this size up are checked against their subscribers
 * before they are copied (myc__admit): a 100 MB message nobody takes must
 * not cost a 100 MB copy first.  Smaller ones cost less to copy than to
 * ask about. */
#define MYC_ADMIT_BYTES 65536

/* Whether a message of 'len' payload bytes on 'topic', sent from 'from'
 * (NULL: a host thread), would be taken by one of its subscribers.
 * Returns 0 when one may take it (or there is none); otherwise nothing is
 * to be sent: the loss is counted at every subscriber, by its reason, and
 * the result is MYC_ETOOBIG when they all refused it as too large, else
 * MYC_EFULL.  Thread of 'from'. */
int myc__admit(myc__sched *sched, const myc__worker *from, myc__topic *topic,
               size_t len);

/* Delivers an already framed 'b' (one reference, owned by the caller until
 * this returns) to the subscribers of its topic in 't'.  'from' is the
 * worker running the caller, or NULL for a host thread.  Returns as
 * myc__emit. */
int myc__deliver(myc__topics *t, myc__sched *sched, myc__worker *from,
                 myc_buf *b);

/* As myc__deliver for each of the 'n' buffers 'v' in turn, all on one
 * topic, from worker 'from' (not NULL): a run read off a link.  When the
 * topic has one subscriber, on 'from', whose mailbox takes the whole run
 * as it is, the run goes in with one check and one commit; otherwise
 * each buffer goes as myc__deliver would send it.  Takes every buffer's
 * reference whatever happens.  Thread of 'from'. */
void myc__deliver_run(myc__topics *t, myc__sched *sched, myc__worker *from,
                      myc_buf **v, uint32_t n);

/* As myc__deliver from a thread without a worker, holding what goes to
 * workers in 'h' until myc__host_flush(h).  Threaded engines. */
int myc__deliver_staged(myc__topics *t, myc__sched *sched,
                        myc__host_stage *h, myc_buf *b);

/* Writes the header and copies payload, topic and source into a new
 * buffer from 'pool' (which may be NULL).  parent_id is zeroed; trace_id,
 * span_id, seq and ts_ns are left for the caller to fill.  Returns NULL on
 * allocation failure or a payload too large for a frame. */
myc_buf *myc__frame_new(const myc__alloc *a, myc__pool *pool,
                        const myc__topic *t, const char *source,
                        size_t source_len, int kind, uint16_t type,
                        const void *data, size_t len);

/* Fills the header fields other than trace, seq and ts, and writes the
 * topic and source after the payload already in 'b' (hdr.payload_len
 * set).  The buffer must have room for them. */
void myc__frame_finish(myc_buf *b, const myc__topic *t, const char *source,
                       size_t source_len, int kind, uint16_t type);

static inline void myc__counter_add(_Atomic uint64_t *c, uint64_t n) {
  /* Single writer (the owning worker): a plain store is enough, the
   * atomic type only keeps readers on other threads from tearing. */
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

#endif
