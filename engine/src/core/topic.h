/* topic.h -- the routing table: topic names to ids, and each topic's
 * subscriber list.
 *
 * Emitting threads read the lists without any lock.  A subscription
 * appends to the published list in place while it has room (the entry is
 * written before the count that shows it is stored with release), else
 * publishes a copy with twice the room, so N subscriptions to one topic
 * copy O(N) entries in all.  An unsubscription clears the service's
 * entry in place (a hole, which readers skip: a reader sees the service
 * or the hole, never another entry moved there, so nobody gets a message
 * twice or misses one) and publishes a copy without the holes only once
 * they outnumber the subscribers: O(1) amortised, order kept.  Replaced
 * lists are kept until the table is destroyed, or until a removal of a
 * service (runtime/spawn.c) takes them and frees them after its grace
 * period (see docs/ARCHITECTURE.md).
 */
#ifndef MYC_TOPIC_H
#define MYC_TOPIC_H

#include "base/alloc.h"
#include "core/buf.h"

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

/* Subscribers are opaque here: the runtime's services. */
struct myc_service;

typedef struct myc__sublist {
  struct myc__sublist *retired_next;
  _Atomic uint32_t n;    /* entries, holes included: grows up to 'cap' */
  _Atomic uint32_t live; /* entries that are not holes (0 only in a list
                            replaced by the empty one) */
  uint32_t cap;
  /* Read with myc__sublist_at(): an entry becomes NULL (a hole) when its
   * service leaves, and never changes again in this list. */
  _Atomic(struct myc_service *) svc[];
} myc__sublist;

/* Entry i (below a count read from l->n) of 'l': a subscriber, or NULL
 * for one that left since (skip it).  Lock-free. */
static inline struct myc_service *myc__sublist_at(const myc__sublist *l,
                                                  uint32_t i) {
  return atomic_load_explicit((_Atomic(struct myc_service *) *)&l->svc[i],
                              memory_order_relaxed);
}

typedef struct {
  uint32_t id;
  uint16_t len;
  /* Moves on after every change of the subscriber list (in place or a
   * new one), once the change is visible: an emitter that kept what it
   * derived from the list knows it still holds while this has not moved
   * (runtime/emit.c).  Written under the table's lock. */
  _Atomic uint32_t ver;
  _Atomic(myc__sublist *) subs;
  char name[]; /* NUL-terminated */
} myc__topic;

typedef struct {
  struct myc_service *svc; /* NULL: removed, a hole until compaction */
  uint16_t len;
  char pattern[256];
} myc__subscription;

/* An entry of myc__topics.counts (topic.c). */
struct myc__sub_count {
  const struct myc_service *svc; /* NULL: never used */
  uint32_t key;
  uint32_t n;
  /* Key 0: where the service's subscriptions are in myc__topics.subs,
   * ascending, 'n' of them (room for 'cap'): a service's own
   * subscriptions are found without reading the others'. */
  uint32_t *at;
  uint32_t cap;
};

/* An entry of myc__topics.members: service 'svc' is at svc[pos] of the
 * list of topic 'topic', so that it leaves a list of N without reading
 * it. */
struct myc__member {
  const struct myc_service *svc; /* NULL: a free slot */
  uint32_t topic;
  uint32_t pos;
};

/* An entry of myc__topics.buckets: the subscriptions whose pattern
 * hashes to 'hash' (several patterns may share one), so that a new topic
 * reads only those of the patterns that can match it. */
struct myc__bucket {
  uint32_t hash;
  uint32_t n, cap; /* 0 'cap': a free slot */
  uint32_t live;   /* of the 'n', those that are not holes in 'subs' */
  uint32_t *at;    /* indexes in myc__topics.subs, ascending */
};

#define MYC_TOPIC_CHUNK 1024
#define MYC_TOPIC_CHUNKS 1024 /* at most about a million topics */

typedef struct {
  const myc__alloc *alloc;
  uv_mutex_t lock;
  /* name -> topic: open addressing, guarded by 'lock' */
  myc__topic **slots;
  uint32_t nslots;
  /* id -> topic: chunks never move, so readers need no lock */
  _Atomic(myc__topic **) chunks[MYC_TOPIC_CHUNKS];
  _Atomic uint32_t count;
  myc__subscription *subs; /* in subscription order, with holes */
  uint32_t nsubs;           /* live subscriptions */
  uint32_t endsubs, capsubs; /* entries used (holes included), room */
  /* Subscription entries and list slots read, copied or moved by
   * subscription changes: tests bound it to prove changes scale. */
  uint64_t work;
  /* How many of 'subs' a service has, in all and per pattern hash: a new
   * service's subscriptions then check for a duplicate without reading
   * every other service's (a start of N services stays O(N)). */
  struct myc__sub_count *counts;
  uint32_t ncounts, usedcounts;
  /* (service, topic) -> place in that topic's list: open addressing, at
   * most half full, no tombstones. */
  struct myc__member *members;
  uint32_t nmembers, usedmembers;
  /* pattern hash -> its subscriptions (open addressing, at most half
   * full; an entry whose subscriptions all left stays until the table
   * grows). */
  struct myc__bucket *buckets;
  uint32_t nbuckets, usedbuckets;
  myc__sublist *retired;
  myc__sublist *empty; /* shared by every topic nobody listens to */
  _Atomic uint64_t no_subscriber; /* messages emitted to nobody */
  /* Called after every subscription change (links announce them). */
  void (*_Atomic on_change)(void *ud);
  void *on_change_ud;
} myc__topics;

int myc__topics_init(myc__topics *t, const myc__alloc *a);
void myc__topics_destroy(myc__topics *t);

/* Checks a topic name (or, with 'pattern' set, a subscription pattern).
 * Returns NULL when valid, else a static reason ("empty segment", ...). */
const char *myc__topic_check(const char *name, size_t len, int pattern);

/* Returns 1 if 'name' matches subscription 'pattern'. */
int myc__topic_match(const char *pattern, size_t plen, const char *name,
                     size_t nlen);

/* Looks up or creates the topic 'name'.  Returns its id (>= 1), MYC_ETOPIC
 * for an invalid name or MYC_ENOMEM.  Thread-safe. */
int64_t myc__topics_resolve(myc__topics *t, const char *name, size_t len);

/* Like myc__topics_resolve, for a creator with a quota (a service): a
 * topic it creates is counted in '*made', and once '*made' reaches 'max'
 * a new topic is refused with MYC_ELIMIT (existing ones still resolve).
 * Topics are never removed, so without it one service creating topics in
 * a loop would fill the table (MYC_TOPIC_CHUNKS * MYC_TOPIC_CHUNK) for
 * every other.  '*made' changes only under the table's lock. */
int64_t myc__topics_resolve_quota(myc__topics *t, const char *name,
                                  size_t len, _Atomic uint32_t *made,
                                  uint32_t max);

/* Whether the table holds as many topics as it can: a MYC_ELIMIT of
 * myc__topics_resolve_quota with '*made' below its 'max' is this. */
static inline int myc__topics_full(myc__topics *t) {
  return atomic_load_explicit(&t->count, memory_order_relaxed) >=
         (uint32_t)MYC_TOPIC_CHUNKS * MYC_TOPIC_CHUNK;
}

/* The topic with id 'id', or NULL.  Lock-free; thread-safe. */
static inline myc__topic *myc__topics_get(myc__topics *t, uint32_t id) {
  myc__topic **chunk;
  if (id == 0 || id > atomic_load_explicit(&t->count, memory_order_acquire))
    return NULL;
  chunk = atomic_load_explicit(&t->chunks[(id - 1) / MYC_TOPIC_CHUNK],
                               memory_order_acquire);
  return chunk[(id - 1) % MYC_TOPIC_CHUNK];
}

/* Current subscribers of 'topic' (with holes: see myc__sublist_at).
 * Valid until the table is destroyed, or a grace period after it is
 * replaced (myc__topics_take_retired). */
static inline myc__sublist *myc__topic_subs(myc__topic *topic) {
  return atomic_load_explicit(&topic->subs, memory_order_acquire);
}

/* The version of the subscriber list of 'topic' (see myc__topic.ver).
 * Lock-free. */
static inline uint32_t myc__topic_ver(const myc__topic *topic) {
  return atomic_load_explicit(&topic->ver, memory_order_acquire);
}

/* Adds (or removes) the subscription of 'svc' to 'pattern' and republishes
 * the lists of every matching topic.  Adding twice is a no-op, as is
 * removing what is absent.  Returns 0, MYC_ETOPIC or MYC_ENOMEM (then
 * nothing changed). */
int myc__topics_subscribe(myc__topics *t, struct myc_service *svc,
                          const char *pattern, size_t len);
/* The same, refused with MYC_ELIMIT when the pattern is new and 'svc'
 * already holds 'max' subscriptions. */
int myc__topics_subscribe_within(myc__topics *t, struct myc_service *svc,
                                 const char *pattern, size_t len,
                                 uint32_t max);
int myc__topics_unsubscribe(myc__topics *t, struct myc_service *svc,
                            const char *pattern, size_t len);

/* How many subscriptions 'svc' has.  With t->lock held. */
uint32_t myc__topics_count_locked(myc__topics *t, const struct myc_service *svc);

/* Copies at most 'max' of the subscriptions of 'svc' to 'out', in the
 * order they were made.  Returns how many.  With t->lock held. */
uint32_t myc__topics_copy_locked(myc__topics *t, const struct myc_service *svc,
                                 myc__subscription *out, uint32_t max);

/* Removes every subscription of 'svc'.  Returns 0 or MYC_ENOMEM. */
int myc__topics_unsubscribe_all(myc__topics *t, struct myc_service *svc);

/* Takes the lists replaced so far out of the table (a chain through
 * 'retired_next'), for the caller to free once no thread can still read
 * them (after a grace period: runtime/spawn.c). */
myc__sublist *myc__topics_take_retired(myc__topics *t);

/* Frees a chain from myc__topics_take_retired(). */
void myc__topics_free_retired(myc__topics *t, myc__sublist *l);

/* Has fn(ud) called, on the thread that changed them and outside the
 * table's lock, after every change of the subscriptions; NULL stops it.
 * Set it before other threads change subscriptions or after they stop. */
void myc__topics_watch(myc__topics *t, void (*fn)(void *ud), void *ud);

/* Calls fn(ud, pattern, len) for every subscription of a service other
 * than 'skip' (a pattern subscribed by two services comes twice), under
 * the table's lock: 'fn' must not call the table.  Stops at and returns
 * the first nonzero return of 'fn'; else 0. */
int myc__topics_patterns(myc__topics *t, const struct myc_service *skip,
                         int (*fn)(void *ud, const char *pattern, size_t len),
                         void *ud);

#endif
