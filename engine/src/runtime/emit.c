/* emit.c -- framing and delivery (see emit.h). */
#include "runtime/emit.h"

#include <string.h>

myc_buf *myc__frame_new(const myc__alloc *a, myc__pool *pool,
                        const myc__topic *t, const char *source,
                        size_t source_len, int kind, uint16_t type,
                        const void *data, size_t len) {
  myc_buf *b;
  if (len > MYC_PAYLOAD_MAX)
    return NULL;
  b = myc__buf_alloc(pool, a, myc__frame_len(len, t->len, source_len));
  if (b == NULL)
    return NULL;
  /* Every header field is written by the caller or frame_finish, except
   * these (no memset on the hot path). */
  b->hdr.flags = 0;
  memset(b->hdr.parent_id, 0, sizeof b->hdr.parent_id);
  b->hdr.payload_len = (uint32_t)len;
  if (len > 0)
    memcpy(myc__buf_payload(b), data, len);
  myc__frame_finish(b, t, source, source_len, kind, type);
  return b;
}

void myc__frame_finish(myc_buf *b, const myc__topic *t, const char *source,
                       size_t source_len, int kind, uint16_t type) {
  size_t len = b->hdr.payload_len;
  uint8_t *pad = myc__buf_payload(b) + len;
  char *p;
  myc__buf_set_topic(b, t->id);
  b->hdr.frame_len = (uint32_t)myc__frame_len(len, t->len, source_len);
  b->hdr.type = type;
  b->hdr.kind = (uint8_t)kind;
  b->hdr.topic_len = t->len;
  b->hdr.source_len = (uint8_t)source_len;
  b->hdr.version = MYC_FRAME_VERSION;
  /* Zero the padding so frames on the wire never leak old bytes. */
  memset(pad, 0, myc__frame_topic_offset(len) - sizeof(myc_frame) - len);
  p = myc__buf_topic(b);
  memcpy(p, t->name, t->len);
  memcpy(p + t->len, source, source_len);
}

static inline __attribute__((always_inline)) int
push_local(const myc__alloc *a, myc__task *t, myc_buf *b) {
  myc__worker *w = t->worker;
  int rc = myc__mailbox_push(&t->mb, b, b->hdr.payload_len, &w->pool, a);
  if (rc == 0 && !t->queued)
    myc__worker_schedule(w, t);
  return rc;
}

static inline __attribute__((always_inline)) int
deliver_to(myc__topics *topics, myc__sched *sched, myc__worker *from,
           myc__sublist *subs, myc_buf *b) {
  const myc__alloc *a = sched->alloc;
  myc__pool *pool = from ? &from->pool : NULL;
  uint32_t i, n = subs->n, accepted = 0, holes = 0;
  int remote = 0, manual = sched->manual, why = MYC_ETOOBIG;
  myc_service *one = n == 1 ? myc__sublist_at(subs, 0) : NULL;

  /* No subscriber, or only one that left since this list was read. */
  if (n == 0 || (n == 1 && one == NULL)) {
    atomic_fetch_add_explicit(&topics->no_subscriber, 1,
                              memory_order_relaxed);
    myc__buf_release(pool, a, b);
    return 0;
  }
  /* The common case, one subscriber on this worker: the buffer keeps the
   * reference it was born with. */
  if (one != NULL && (manual || one->task.worker == from)) {
    int rc;
    if (one->direct != NULL && one->batch_pos == one->view.batch_n &&
        atomic_load_explicit(&one->task.mb.len, memory_order_relaxed) == 0 &&
        one->direct(one->cb_ud, from, b) == 0)
      return 0;
    rc = push_local(a, &one->task, b);
    if (rc != 0)
      myc__buf_release(pool, a, b);
    return rc;
  }
  /* An entry may turn into a hole between the two passes, never back. */
  if (!manual)
    for (i = 0; i < n; i++) {
      myc_service *s = myc__sublist_at(subs, i);
      remote |= s != NULL && s->task.worker != from;
    }
  /* Both must be settled before the first subscriber can see 'b'. */
  b->shared = (uint8_t)remote;
  atomic_store_explicit(&b->refs, n, memory_order_relaxed);
  for (i = 0; i < n; i++) {
    myc_service *s = myc__sublist_at(subs, i);
    myc__task *t;
    int rc;
    if (s == NULL) {
      /* A hole holds no reference. */
      holes++;
      myc__buf_release(pool, a, b);
      continue;
    }
    t = &s->task;
    rc = manual || t->worker == from
                 ? push_local(a, t, b)
                 : from != NULL ? myc__worker_stage(from, t, b)
                                : myc__worker_handoff(t->worker, t, b);
    if (rc == 0)
      accepted++;
    else
      myc__buf_release(pool, a, b);
    if (rc != MYC_ETOOBIG)
      why = MYC_EFULL;
  }
  if (holes == n) {
    atomic_fetch_add_explicit(&topics->no_subscriber, 1,
                              memory_order_relaxed);
    return 0;
  }
  return accepted > 0 ? 0 : why;
}

/* Whether the mailbox of 't' would take 'len' bytes from 'from': -1, or
 * the reason it would lose them (see deliver_to for who is local). */
static int refusal(const myc__task *t, const myc__worker *from, int manual,
                   size_t len) {
  if (manual || t->worker == from)
    return myc__mailbox_refusal(&t->mb, len);
  return myc__mailbox_transit_refusal(
      &t->mb, len, atomic_load_explicit(&t->mb.incoming, memory_order_relaxed),
      from != NULL);
}

static int admit(const myc__sched *sched, const myc__worker *from,
                 myc__topic *topic, size_t len) {
  const myc__sublist *subs = myc__topic_subs(topic);
  /* Read once: a subscription may append to the list meanwhile. */
  uint32_t i, n = subs->n, live = 0;
  int all_too_large = 1;
  for (i = 0; i < n; i++) {
    myc_service *s = myc__sublist_at(subs, i);
    if (s != NULL && refusal(&s->task, from, sched->manual, len) < 0)
      return 0;
  }
  for (i = 0; i < n; i++) {
    myc_service *s = myc__sublist_at(subs, i);
    myc__task *t;
    int why;
    if (s == NULL)
      continue;
    live++;
    t = &s->task;
    why = refusal(t, from, sched->manual, len);
    /* Taken since the first look (a consumer elsewhere made room): it
     * counts as refused all the same, nothing was sent. */
    if (why < 0)
      why = t->mb.policy == MYC_POLICY_REJECT ? MYC_DROP_REJECTED
                                              : MYC_DROP_NEWEST;
    all_too_large &= why == MYC_DROP_TOO_LARGE;
    myc__mailbox_count(&t->mb, why, topic->id, 1);
  }
  return live == 0 ? 0 : all_too_large ? MYC_ETOOBIG : MYC_EFULL;
}

int myc__admit(myc__sched *sched, const myc__worker *from, myc__topic *topic,
               size_t len) {
  int g, rc;
  if (from != NULL)
    return admit(sched, from, topic, len);
  g = myc__grace_enter(&sched->hosts);
  rc = admit(sched, from, topic, len);
  myc__grace_exit(&sched->hosts, g);
  return rc;
}

int myc__deliver(myc__topics *t, myc__sched *sched, myc__worker *from,
                 myc_buf *b) {
  int g, rc;
  if (from != NULL)
    return deliver_to(t, sched, from,
                      myc__topic_subs(myc__topics_get(t, b->topic_id)), b);
  /* Not a worker: the subscribers read here are freed only after this
   * section (see worker.h, sched->hosts). */
  g = myc__grace_enter(&sched->hosts);
  rc = deliver_to(t, sched, from,
                  myc__topic_subs(myc__topics_get(t, b->topic_id)), b);
  myc__grace_exit(&sched->hosts, g);
  return rc;
}

void myc__deliver_run(myc__topics *t, myc__sched *sched, myc__worker *from,
                      myc_buf **v, uint32_t n) {
  myc__sublist *subs;
  myc_service *one;
  uint64_t bytes = 0;
  uint32_t i, longest = 0;
  MYC_ASSERT_OWNER(&from->owner);
  if (n == 0)
    return;
  subs = myc__topic_subs(myc__topics_get(t, v[0]->topic_id));
  one = subs->n == 1 ? myc__sublist_at(subs, 0) : NULL;
  if (one != NULL && (sched->manual || one->task.worker == from)) {
    myc__mailbox *mb = &one->task.mb;
    for (i = 0; i < n; i++) {
      uint32_t len = v[i]->hdr.payload_len;
      bytes += len;
      longest = len > longest ? len : longest;
    }
    if (myc__mailbox_fits_n(mb, n, bytes, longest)) {
      uint32_t at = myc__mailbox_tail(mb);
      for (i = 0; i < n; i++)
        myc__mailbox_put(mb, at + i, v[i], v[i]->hdr.payload_len);
      myc__mailbox_commit(mb, n, bytes);
      if (!one->task.queued)
        myc__worker_schedule(one->task.worker, &one->task);
      return;
    }
  }
  /* Anything else (several subscribers, another worker's, a mailbox
   * that must evict or drop) message by message, as an emit decides. */
  for (i = 0; i < n; i++)
    deliver_to(t, sched, from,
               myc__topic_subs(myc__topics_get(t, v[i]->topic_id)), v[i]);
}

int myc__deliver_staged(myc__topics *t, myc__sched *sched,
                        myc__host_stage *h, myc_buf *b) {
  myc__sublist *subs;
  uint32_t i, n, accepted = 0, holes = 0;
  int why = MYC_ETOOBIG;
  myc__host_enter(h);
  subs = myc__topic_subs(myc__topics_get(t, b->topic_id));
  n = subs->n;
  if (n == 0) {
    atomic_fetch_add_explicit(&t->no_subscriber, 1, memory_order_relaxed);
    myc__buf_release(NULL, sched->alloc, b);
    return 0;
  }
  b->shared = 1;
  atomic_store_explicit(&b->refs, n, memory_order_relaxed);
  for (i = 0; i < n; i++) {
    myc_service *s = myc__sublist_at(subs, i);
    int rc = s != NULL ? myc__host_stage_put(h, &s->task, b) : MYC_ENOENT;
    if (rc == 0)
      accepted++;
    else
      myc__buf_release(NULL, sched->alloc, b);
    holes += s == NULL;
    if (rc != MYC_ETOOBIG && s != NULL)
      why = MYC_EFULL;
  }
  if (holes == n) {
    atomic_fetch_add_explicit(&t->no_subscriber, 1, memory_order_relaxed);
    return 0;
  }
  return accepted > 0 ? 0 : why;
}

/* Child span of whatever 's' is doing: the message being handled, or the
 * current activation (init, timer, stop). */
static inline void set_trace(myc_service *s, myc_buf *b) {
  uint64_t span = myc__rng_id(&s->task.worker->rng);
  const uint8_t *trace, *parent;
  if (s->view.cursor >= 0) {
    const myc_frame *f = &s->view.batch[s->view.cursor]->hdr;
    trace = f->trace_id;
    parent = f->span_id;
  } else {
    trace = s->act_trace;
    parent = s->act_span;
  }
  memcpy(b->hdr.trace_id, trace, 16);
  memcpy(b->hdr.parent_id, parent, 8);
  memcpy(b->hdr.span_id, &span, 8);
}

static const myc__alloc *alloc_of(const myc_service *s) {
  return s->task.worker->sched->alloc;
}

/* ---- fan-out plans ------------------------------------------------------ */

/* A fan-out that a service's route delivers from a plan: its subscribers
 * grouped by worker (those of the emitting worker first, then each other
 * worker's in a row, with that worker's stage at hand), made once per
 * version of the topic's list.  Testing every entry of the list at every
 * emit (a hole? this worker's? then again to know whether any is
 * another's before the count is set) cost about as much as the
 * deliveries themselves. */

/* Subscribers a plan holds at most; a larger fan-out goes the way of
 * deliver_to, entry by entry. */
#define PLAN_TASKS 64

typedef struct {
  myc__stage *stage; /* of the emitting worker, for the group's worker */
  uint32_t n;        /* its tasks, in a row in myc__plan.tasks */
} plan_group;

struct myc__plan {
  uint32_t ver;     /* of the topic's list it was made from */
  int wide;         /* over PLAN_TASKS: deliver_to */
  uint32_t ntasks;
  uint32_t nlocal;  /* tasks[0 .. nlocal): on the emitting worker */
  uint32_t ngroups; /* of other workers, their tasks after those; none
                       empty */
  plan_group *groups; /* after the tasks, in the same block */
  myc__task *tasks[];
};

static size_t plan_size(uint32_t ntasks, uint32_t ngroups) {
  return sizeof(struct myc__plan) + ntasks * sizeof(myc__task *) +
         ngroups * sizeof(plan_group);
}

static void plan_free(const myc__alloc *a, struct myc__plan *p) {
  if (p != NULL)
    myc__free(a, p, plan_size(p->ntasks, p->ngroups));
}

/* Whether 't' is reached from 'w' by a push rather than a hand-over. */
static int plan_local(const myc__sched *sc, const myc__worker *w,
                      const myc__task *t) {
  return sc->manual || t->worker == w;
}

/* The plan of route 'r' of 's' for the current list of its topic, made
 * anew (the old one freed), or NULL when out of memory.  The version is
 * read before the list: a plan is never older than the version it
 * carries, at worst newer (then remade at the next emit). */
static __attribute__((noinline)) struct myc__plan *
plan_make(myc_service *s, myc__route *r) {
  myc__worker *w = s->task.worker;
  const myc__alloc *a = alloc_of(s);
  uint32_t ver = myc__topic_ver(r->topic);
  myc__sublist *subs = myc__topic_subs(r->topic);
  uint32_t n = atomic_load_explicit(&subs->n, memory_order_acquire);
  myc__task *seen[PLAN_TASKS], *order[PLAN_TASKS];
  plan_group groups[PLAN_TASKS];
  uint8_t taken[PLAN_TASKS] = {0};
  uint32_t i, j, live = 0, nlocal, ngroups = 0, k = 0, first;
  int wide = 0;
  struct myc__plan *p;
  for (i = 0; i < n && !wide; i++) {
    myc_service *svc = myc__sublist_at(subs, i);
    if (svc == NULL)
      continue;
    if (live == PLAN_TASKS)
      wide = 1;
    else
      seen[live++] = &svc->task;
  }
  if (wide)
    live = 0;
  /* This worker's tasks first, then each other worker's in a row. */
  for (i = 0; i < live; i++)
    if (plan_local(w->sched, w, seen[i])) {
      taken[i] = 1;
      order[k++] = seen[i];
    }
  nlocal = k;
  for (i = 0; i < live; i++) {
    if (taken[i])
      continue;
    first = k;
    for (j = i; j < live; j++)
      if (!taken[j] && seen[j]->worker == seen[i]->worker) {
        taken[j] = 1;
        order[k++] = seen[j];
      }
    groups[ngroups].stage = &w->stage[seen[i]->worker->index];
    groups[ngroups].n = k - first;
    ngroups++;
  }
  p = myc__malloc(a, plan_size(live, ngroups));
  plan_free(a, r->plan);
  r->plan = p;
  if (p == NULL)
    return NULL;
  p->ver = ver;
  p->wide = wide;
  p->ntasks = live;
  p->nlocal = nlocal;
  p->ngroups = ngroups;
  p->groups = (plan_group *)(p->tasks + live);
  memcpy(p->tasks, order, live * sizeof *order);
  memcpy(p->groups, groups, ngroups * sizeof *groups);
  return p;
}

/* The outcome of one delivery of 'b' from deliver_plan: counted in
 * '*accepted' or '*why', the refused reference released. */
static inline __attribute__((always_inline)) void
plan_result(myc__worker *w, const myc__alloc *a, myc_buf *b, int rc,
            uint32_t *accepted, int *why) {
  if (rc == 0) {
    (*accepted)++;
    return;
  }
  myc__buf_release(&w->pool, a, b);
  if (rc != MYC_ETOOBIG)
    *why = MYC_EFULL;
}

/* Delivers 'b', framed by a service on 'from' (one reference, the
 * caller's until this returns), as plan 'p' says.  Returns as
 * deliver_to. */
static inline __attribute__((always_inline)) int
deliver_plan(myc__topics *topics, myc__sched *sched, myc__worker *from,
             const struct myc__plan *p, myc_buf *b) {
  const myc__alloc *a = sched->alloc;
  myc__task *const *t = p->tasks;
  const plan_group *gr = p->groups, *end = gr + p->ngroups;
  uint32_t nlocal = p->nlocal, i, accepted = 0;
  int why = MYC_ETOOBIG;
  if (p->ntasks == 0) {
    atomic_fetch_add_explicit(&topics->no_subscriber, 1,
                              memory_order_relaxed);
    myc__buf_release(&from->pool, a, b);
    return 0;
  }
  /* Held on one worker (by its tasks, the emitter's or another's), the
   * count stays plain; on several, it is atomic. */
  atomic_store_explicit(&b->refs, p->ntasks, memory_order_relaxed);
  b->shared = p->ngroups + (nlocal > 0) > 1;
  for (i = 0; i < nlocal; i++)
    plan_result(from, a, b, push_local(a, t[i], b), &accepted, &why);
  t += nlocal;
  for (; gr < end; gr++) {
    myc__stage *st = gr->stage;
    myc__task *const *last = t + gr->n;
    for (; t < last; t++)
      plan_result(from, a, b, myc__worker_stage_at(from, st, *t, b),
                  &accepted, &why);
  }
  return accepted > 0 ? 0 : why;
}

/* Delivers 'b', framed by 's' on route 'r' whose topic's list was
 * 'subs': from a plan when it goes to two or more, else as deliver_to. */
static inline __attribute__((always_inline)) int
deliver_route(myc_service *s, myc__worker *w, myc__route *r,
              myc__sublist *subs, myc_buf *b) {
  if (atomic_load_explicit(&subs->n, memory_order_relaxed) > 1) {
    struct myc__plan *p = r->plan;
    if (p == NULL || p->ver != myc__topic_ver(r->topic))
      p = plan_make(s, r);
    if (p != NULL && !p->wide)
      return deliver_plan(s->topics, w->sched, w, p, b);
  }
  return deliver_to(s->topics, w->sched, w, subs, b);
}

void myc__routes_free(myc_service *s) {
  uint32_t i;
  for (i = 0; i < s->nroutes; i++)
    if (s->routes[i] != NULL) {
      plan_free(alloc_of(s), s->routes[i]->plan);
      myc__free(alloc_of(s), s->routes[i],
                sizeof(myc__route) + s->routes[i]->tail_len);
    }
  myc__free(alloc_of(s), s->routes, s->nroutes * sizeof *s->routes);
  s->routes = NULL;
  s->nroutes = 0;
}

/* The route of 's' on 'topic_id', made on its first emit there; NULL
 * with the reason in '*rc'.  A service gets none to a '$' topic: those
 * are the engine's, which publishes on them in a service's name
 * (myc__emit_engine) but never lets one forge them. */
static myc__route *route_new(myc_service *s, uint32_t topic_id, int *rc) {
  myc__topic *t = myc__topics_get(s->topics, topic_id);
  myc__route *r;
  *rc = t == NULL ? MYC_EINVAL : t->name[0] == '$' ? MYC_ETOPIC : MYC_ENOMEM;
  if (t == NULL || t->name[0] == '$')
    return NULL;
  if (topic_id >= s->nroutes) {
    uint32_t n = topic_id + 16;
    myc__route **p = myc__realloc(alloc_of(s), s->routes,
                                  s->nroutes * sizeof *p, n * sizeof *p);
    if (p == NULL)
      return NULL;
    memset(p + s->nroutes, 0, (n - s->nroutes) * sizeof *p);
    s->routes = p;
    s->nroutes = n;
  }
  r = myc__malloc(alloc_of(s), sizeof *r + t->len + s->name_len);
  if (r == NULL)
    return NULL;
  r->topic = t;
  r->plan = NULL;
  r->tail_len = (uint16_t)(t->len + s->name_len);
  memcpy(r->tail, t->name, t->len);
  memcpy(r->tail + t->len, s->name, s->name_len);
  s->routes[topic_id] = r;
  return r;
}

/* myc__emit of a warming service: through myc__emit_buf, which hands
 * the frame to the warm-up. */
static __attribute__((noinline)) int warm_copy(myc_service *s,
                                               uint32_t topic_id, int kind,
                                               uint16_t type, const void *data,
                                               size_t len) {
  myc_buf *b = myc__emit_buf_new(s, len);
  if (b == NULL)
    return len > MYC_PAYLOAD_MAX ? MYC_ETOOBIG : MYC_ENOMEM;
  if (len > 0)
    memcpy(myc__buf_payload(b), data, len);
  return myc__emit_buf(s, topic_id, b, kind, type);
}

/* The hot path, written out in one function so that nothing on it is a
 * call but the two copies. */
int myc__emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
              const void *data, size_t len) {
  myc__worker *w = s->task.worker;
  myc__route *r = topic_id < s->nroutes ? s->routes[topic_id] : NULL;
  myc__topic *t;
  myc__sublist *subs;
  size_t flen;
  myc_buf *b;
  uint8_t *payload;
  int rc;

  MYC_ASSERT_OWNER(&w->owner);
  if (r == NULL && (r = route_new(s, topic_id, &rc)) == NULL)
    return rc;
  t = r->topic;
  if (s->warm != NULL)
    return warm_copy(s, topic_id, kind, type, data, len);
  s->seq++;
  myc__counter_add(&s->n_out, 1);
  subs = myc__topic_subs(t);
  if (subs->n == 0) {
    atomic_fetch_add_explicit(&s->topics->no_subscriber, 1,
                              memory_order_relaxed);
    myc__counter_add(&s->n_unrouted, 1);
    return 0;
  }
  if (len > MYC_PAYLOAD_MAX)
    return MYC_ETOOBIG;
  if (len >= MYC_ADMIT_BYTES && (rc = myc__admit(w->sched, w, t, len)) != 0)
    return rc;
  flen = myc__frame_topic_offset(len) + r->tail_len;
  b = myc__buf_take(&w->pool, flen);
  if (b == NULL &&
      (b = myc__buf_alloc(&w->pool, w->sched->alloc, flen)) == NULL)
    return MYC_ENOMEM;
  myc__buf_set_topic(b, t->id);
  b->hdr.frame_len = (uint32_t)flen;
  b->hdr.type = type;
  b->hdr.kind = (uint8_t)kind;
  b->hdr.flags = 0;
  b->hdr.seq = s->seq;
  b->hdr.ts_ns = (uint64_t)w->now;
  b->hdr.payload_len = (uint32_t)len;
  b->hdr.topic_len = t->len;
  b->hdr.source_len = s->name_len;
  b->hdr.version = MYC_FRAME_VERSION;
  set_trace(s, b);
  payload = myc__buf_payload(b);
  if (len > 0) {
    /* Zero the last word first: the padding after the payload must not
     * leak old bytes onto the wire; the copy then overwrites its start. */
    memset(payload + ((len - 1) & ~(size_t)7), 0, 8);
    memcpy(payload, data, len);
  }
  memcpy((char *)payload + ((len + 7) & ~(size_t)7), r->tail, r->tail_len);
  return deliver_route(s, w, r, subs, b);
}

/* Room kept for the topic of a buffer from myc__emit_buf_new() before
 * the service has emitted one.  Sizing for the longest topic would put a
 * 96-byte message in a 1 KiB class and quadruple the memory a stream of
 * them cycles through; a longer topic costs one copy, once: the buffers
 * after it are sized by the tails seen (myc_service.typed_tail). */
#define TOPIC_RESERVE 64

/* Publishes to the service's view which payloads fit a first-class
 * buffer with room for 'tail' (the test of myc__buf_take, solved for the
 * payload); where those buffers are, it has held since the service was
 * made.  A payload that fits no longer (a longer topic emitted since)
 * is still correct: myc__emit_buf moves it to a larger buffer. */
static void set_small_room(myc_service *s, size_t tail) {
  size_t room = MYC_BUF_SMALL - offsetof(myc_buf, hdr) - sizeof(myc_frame);
  s->view.small_room = room > tail ? (int32_t)((room - tail) & ~(size_t)7) : 0;
}

/* First-class buffers put on an empty free list at a time by the C path
 * of ctx:new, so that the next ones take the inline path: the JIT
 * compiles whichever path a loop takes while it is recorded, and the
 * other one then costs a side exit per message. */
#define SMALL_REFILL 64

static void refill_small(myc__worker *w, const myc__alloc *a,
                         size_t frame_len) {
  myc__pool *p = &w->pool;
  myc_buf *made[SMALL_REFILL];
  int i, n = 0;
  /* All made before any is given: myc__buf_alloc takes from the list. */
  while (n < SMALL_REFILL - 1 && p->nfree[0] + n < p->max_free &&
         (made[n] = myc__buf_alloc(p, a, frame_len)) != NULL)
    n++;
  for (i = 0; i < n; i++)
    myc__buf_give(p, a, made[i]);
}

/* The hot path of ctx:new, as myc__emit's: a recycled buffer of the
 * first class when the frame fits, and only the payload and its padding
 * zeroed (myc__emit_buf writes every header field but these two).
 * mycelium.contract does the same inline while the view's small_room
 * allows it: keep the two in step. */
myc_buf *myc__emit_buf_new(myc_service *s, size_t size) {
  myc__worker *w = s->task.worker;
  size_t off, tail;
  myc_buf *b;
  if (size > MYC_PAYLOAD_MAX)
    return NULL;
  off = myc__frame_topic_offset(size);
  tail = s->typed_tail ? s->typed_tail : TOPIC_RESERVE + s->name_len;
  set_small_room(s, tail);
  b = myc__buf_take(&w->pool, off + tail);
  if (b == NULL && (b = myc__buf_alloc(&w->pool, alloc_of(s), off + tail)) ==
                       NULL)
    return NULL;
  if (b->size_class == 0 && w->pool.free[0] == NULL)
    refill_small(w, alloc_of(s), off + tail);
  b->hdr.flags = 0;
  b->hdr.payload_len = (uint32_t)size;
  /* The padding too: nothing written later covers it. */
  memset(myc__buf_payload(b), 0, off - sizeof(myc_frame));
  return b;
}

/* 'b' moved to a buffer with room for 'frame_len' bytes, or NULL (then
 * 'b' is released). */
static myc_buf *regrow(myc__worker *w, myc_buf *b, size_t frame_len) {
  myc_buf *nb = myc__buf_alloc(&w->pool, w->sched->alloc, frame_len);
  if (nb != NULL)
    memcpy(&nb->hdr, &b->hdr, myc__frame_topic_offset(b->hdr.payload_len));
  myc__buf_release(&w->pool, w->sched->alloc, b);
  return nb;
}

/* The header and tail of frame 'b' emitted by 's' on route 'r': 'b' or
 * the larger buffer it moved to, or NULL (then 'b' is released). */
static inline __attribute__((always_inline)) myc_buf *
finish_frame(myc_service *s, myc__worker *w, const myc__route *r, myc_buf *b,
             int kind, uint16_t type) {
  size_t off = myc__frame_topic_offset(b->hdr.payload_len);
  size_t flen = off + r->tail_len;
  if (r->tail_len > s->typed_tail) {
    s->typed_tail = r->tail_len;
    set_small_room(s, r->tail_len);
  }
  if (flen > b->cap && (b = regrow(w, b, flen)) == NULL)
    return NULL;
  myc__buf_set_topic(b, r->topic->id);
  b->hdr.frame_len = (uint32_t)flen;
  b->hdr.type = type;
  b->hdr.kind = (uint8_t)kind;
  b->hdr.seq = s->seq;
  b->hdr.ts_ns = (uint64_t)w->now;
  b->hdr.topic_len = r->topic->len;
  b->hdr.source_len = s->name_len;
  b->hdr.version = MYC_FRAME_VERSION;
  set_trace(s, b);
  memcpy((char *)&b->hdr + off, r->tail, r->tail_len);
  return b;
}

/* Frame 'b' that warming service 's' emitted: kept for the warm-up when
 * it asked for it, else released and counted.  Takes 'b'. */
static int warm_take(myc_service *s, myc_buf *b) {
  myc__warm *w = s->warm;
  myc__worker *wk = s->task.worker;
  if (w->capture && w->frame == NULL) {
    w->capture = 0;
    w->frame = b;
    return 0;
  }
  w->emits++;
  myc__buf_release(&wk->pool, wk->sched->alloc, b);
  return 0;
}

/* A warming service's emit (warm.c): the frame is made as for its
 * subscribers, counted apart and handed to the warm-up, never routed:
 * no sequence number, no counter of the service, nothing on a link. */
static __attribute__((noinline)) int warm_emit(myc_service *s,
                                               const myc__route *r, myc_buf *b,
                                               int kind, uint16_t type) {
  myc__worker *w = s->task.worker;
  b = finish_frame(s, w, r, b, kind, type);
  if (b == NULL)
    return MYC_ENOMEM;
  return warm_take(s, b);
}

/* As myc__emit, with the header and payload already in 'b'. */
int myc__emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                  uint16_t type) {
  myc__worker *w = s->task.worker;
  myc__route *r = topic_id < s->nroutes ? s->routes[topic_id] : NULL;
  myc__sublist *subs;
  int rc;

  MYC_ASSERT_OWNER(&w->owner);
  if (r == NULL && (r = route_new(s, topic_id, &rc)) == NULL) {
    myc__buf_release(&w->pool, w->sched->alloc, b);
    return rc;
  }
  if (s->warm != NULL)
    return warm_emit(s, r, b, kind, type);
  s->seq++;
  myc__counter_add(&s->n_out, 1);
  subs = myc__topic_subs(r->topic);
  if (subs->n == 0) {
    atomic_fetch_add_explicit(&s->topics->no_subscriber, 1,
                              memory_order_relaxed);
    myc__counter_add(&s->n_unrouted, 1);
    myc__buf_release(&w->pool, w->sched->alloc, b);
    return 0;
  }
  if ((b = finish_frame(s, w, r, b, kind, type)) == NULL)
    return MYC_ENOMEM;
  return deliver_route(s, w, r, subs, b);
}

int myc__emit_engine(myc_service *s, uint32_t topic_id, int kind,
                     const void *data, size_t len) {
  myc__worker *w = s->task.worker;
  myc__topic *t = myc__topics_get(s->topics, topic_id);
  myc_buf *b;
  MYC_ASSERT_OWNER(&w->owner);
  if (t == NULL)
    return MYC_EINVAL;
  if (len >= MYC_ADMIT_BYTES) {
    int rc = myc__admit(w->sched, w, t, len);
    if (rc != 0)
      return rc;
  }
  b = myc__frame_new(w->sched->alloc, &w->pool, t, s->name, s->name_len, kind,
                     0, data, len);
  if (b == NULL)
    return len > MYC_PAYLOAD_MAX ? MYC_ETOOBIG : MYC_ENOMEM;
  s->seq++;
  myc__counter_add(&s->n_out, 1);
  b->hdr.seq = s->seq;
  b->hdr.ts_ns = (uint64_t)w->now;
  set_trace(s, b);
  return deliver_to(s->topics, w->sched, w, myc__topic_subs(t), b);
}

/* ---- requests and replies ------------------------------------------------ */

/* Writes the extension after the tail of 'b' (frame_len already counts
 * it), zeroing the padding before it. */
static void put_req(myc_buf *b, size_t tail_end, uint64_t corr,
                    uint64_t budget_ns) {
  myc_frame_req *x = myc__buf_req(b);
  memset((char *)&b->hdr + tail_end, 0,
         (size_t)((char *)x - ((char *)&b->hdr + tail_end)));
  x->corr = corr;
  x->budget_ns = budget_ns;
}

/* A frame from 's' on 't' with 'tail' (topic and source) and the
 * extension, header filled but for the trace; NULL when out of memory. */
static myc_buf *frame_req(myc_service *s, const myc__topic *t,
                          const char *tail, size_t tail_len, int kind,
                          uint16_t type, const void *data, size_t len,
                          uint8_t flags) {
  myc__worker *w = s->task.worker;
  size_t off = myc__frame_topic_offset(len);
  size_t flen = myc__frame_req_len(len, t->len, tail_len - t->len);
  myc_buf *b = myc__buf_take(&w->pool, flen);
  if (b == NULL && (b = myc__buf_alloc(&w->pool, alloc_of(s), flen)) == NULL)
    return NULL;
  myc__buf_set_topic(b, t->id);
  b->hdr.frame_len = (uint32_t)flen;
  b->hdr.type = type;
  b->hdr.kind = (uint8_t)kind;
  b->hdr.flags = flags;
  b->hdr.seq = ++s->seq;
  b->hdr.ts_ns = (uint64_t)w->now;
  b->hdr.payload_len = (uint32_t)len;
  b->hdr.topic_len = t->len;
  b->hdr.source_len = (uint8_t)(tail_len - t->len);
  b->hdr.version = MYC_FRAME_VERSION;
  memset(myc__buf_payload(b), 0, off - sizeof(myc_frame));
  if (len > 0)
    memcpy(myc__buf_payload(b), data, len);
  memcpy((char *)&b->hdr + off, tail, tail_len);
  myc__counter_add(&s->n_out, 1);
  return b;
}

int myc__emit_request(myc_service *s, uint32_t topic_id, int kind,
                      uint16_t type, const void *data, size_t len,
                      int64_t deadline, uint64_t corr) {
  myc__worker *w = s->task.worker;
  myc__route *r = topic_id < s->nroutes ? s->routes[topic_id] : NULL;
  myc__sublist *subs;
  myc_buf *b;
  int rc;

  MYC_ASSERT_OWNER(&w->owner);
  if (r == NULL && (r = route_new(s, topic_id, &rc)) == NULL)
    return rc;
  subs = myc__topic_subs(r->topic);
  /* Nobody would answer: say so now rather than at the deadline. */
  if (subs->n == 0)
    return MYC_ENOENT;
  if (len > MYC_PAYLOAD_MAX)
    return MYC_ETOOBIG;
  if (len >= MYC_ADMIT_BYTES &&
      (rc = myc__admit(w->sched, w, r->topic, len)) != 0)
    return rc;
  b = frame_req(s, r->topic, r->tail, r->tail_len, kind, type, data, len,
                MYC_FRAME_REQUEST);
  if (b == NULL)
    return MYC_ENOMEM;
  set_trace(s, b);
  put_req(b, myc__frame_topic_offset(len) + r->tail_len, corr,
          deadline > w->now ? (uint64_t)(deadline - w->now) : 0);
  rc = deliver_to(s->topics, w->sched, w, subs, b);
  /* The requester waits: a responder's worker that sleeps gets it now. */
  myc__worker_hurry(w);
  return rc;
}

int myc__emit_reply(myc_service *s, myc_service *to, uint32_t topic_id,
                    const myc_buf *req, int kind, uint16_t type,
                    const void *data, size_t len, int failed) {
  myc__worker *w = s->task.worker;
  myc__topic *t = myc__topics_get(s->topics, topic_id);
  uint64_t span = myc__rng_id(&w->rng);
  char tail[MYC_TOPIC_MAX + MYC_SOURCE_MAX];
  myc_buf *b;
  int rc;

  MYC_ASSERT_OWNER(&w->owner);
  if (t == NULL)
    return MYC_EINVAL;
  if (len > MYC_PAYLOAD_MAX)
    return MYC_ETOOBIG;
  memcpy(tail, t->name, t->len);
  memcpy(tail + t->len, s->name, s->name_len);
  b = frame_req(s, t, tail, (size_t)t->len + s->name_len, kind, type, data,
                len, (uint8_t)(MYC_FRAME_REPLY | (failed ? MYC_FRAME_FAILED
                                                         : 0)));
  if (b == NULL)
    return MYC_ENOMEM;
  /* A child of the request, whatever 's' is handling now (a reply can
   * come from a later handler than the request's). */
  memcpy(b->hdr.trace_id, req->hdr.trace_id, 16);
  memcpy(b->hdr.parent_id, req->hdr.span_id, 8);
  memcpy(b->hdr.span_id, &span, 8);
  put_req(b, myc__frame_topic_offset(len) + t->len + s->name_len,
          myc__buf_req((myc_buf *)req)->corr, 0);
  rc = myc__deliver_one(w->sched, w, to, b);
  /* The requester waits: its worker, asleep, gets the reply now rather
   * than after the rest of this turn. */
  myc__worker_hurry(w);
  return rc;
}

int myc__deliver_one(myc__sched *sched, myc__worker *from, myc_service *to,
                     myc_buf *b) {
  myc__task *t = &to->task;
  int rc;
  if (sched->manual || t->worker == from) {
    rc = push_local(sched->alloc, t, b);
  } else {
    b->shared = 1;
    rc = from != NULL ? myc__worker_stage(from, t, b)
                      : myc__worker_handoff(t->worker, t, b);
  }
  if (rc != 0)
    myc__buf_release(from ? &from->pool : NULL, sched->alloc, b);
  return rc;
}

myc_buf *myc__frame_new_req(const myc__alloc *a, uint32_t topic_id,
                            const char *topic, size_t topic_len,
                            const char *source, size_t source_len, int kind,
                            uint16_t type, const void *data, size_t len,
                            uint8_t flags, uint64_t corr,
                            uint64_t budget_ns, size_t extra) {
  size_t off = myc__frame_topic_offset(len);
  myc_buf *b;
  char *p;
  if (len > MYC_PAYLOAD_MAX || topic_len > MYC_TOPIC_MAX ||
      source_len > MYC_SOURCE_MAX)
    return NULL;
  b = myc__buf_alloc(NULL, a,
                     myc__frame_req_len(len, topic_len, source_len) + extra);
  if (b == NULL)
    return NULL;
  myc__buf_set_topic(b, topic_id);
  b->hdr.frame_len = (uint32_t)myc__frame_req_len(len, topic_len, source_len);
  b->hdr.type = type;
  b->hdr.kind = (uint8_t)kind;
  b->hdr.flags = flags;
  memset(b->hdr.parent_id, 0, sizeof b->hdr.parent_id);
  b->hdr.payload_len = (uint32_t)len;
  b->hdr.topic_len = (uint16_t)topic_len;
  b->hdr.source_len = (uint8_t)source_len;
  b->hdr.version = MYC_FRAME_VERSION;
  memset(myc__buf_payload(b), 0, off - sizeof(myc_frame));
  if (len > 0)
    memcpy(myc__buf_payload(b), data, len);
  p = (char *)&b->hdr + off;
  memcpy(p, topic, topic_len);
  memcpy(p + topic_len, source, source_len);
  put_req(b, off + topic_len + source_len, corr, budget_ns);
  return b;
}
