/* topic.c -- routing table (see topic.h).  Names are validated here and
 * nowhere else; patterns are an exact name, "prefix.*" (everything below
 * prefix, any depth) or "*" (every topic not starting with '$'). */
#include "core/topic.h"

#include <stdlib.h>
#include <string.h>

static int name_char_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == ':' ||
         c == '/';
}

const char *myc__topic_check(const char *name, size_t len, int pattern) {
  size_t i, seg = 0;
  if (len == 0)
    return "empty name";
  if (len > MYC_TOPIC_MAX)
    return "longer than 255 bytes";
  if (pattern && len == 1 && name[0] == '*')
    return NULL;
  if (pattern && len >= 2 && name[len - 1] == '*') {
    if (name[len - 2] != '.')
      return "'*' must be a whole last segment (\"prefix.*\")";
    len -= 2;
    if (len == 0)
      return "empty segment";
  }
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == '.') {
      if (seg == 0)
        return "empty segment";
      seg = 0;
      continue;
    }
    if (c == '*')
      return pattern ? "'*' must be a whole last segment (\"prefix.*\")"
                     : "'*' is only valid in subscriptions";
    if (c == '$' && i == 0) {
      seg++;
      continue;
    }
    if (!name_char_ok(c))
      return "invalid character (use letters, digits, '_', '-', ':', '/')";
    seg++;
  }
  if (seg == 0)
    return "empty segment";
  return NULL;
}

int myc__topic_match(const char *pattern, size_t plen, const char *name,
                     size_t nlen) {
  if (plen == 1 && pattern[0] == '*')
    return nlen > 0 && name[0] != '$';
  if (plen >= 2 && pattern[plen - 1] == '*')
    return nlen > plen - 1 && memcmp(pattern, name, plen - 1) == 0;
  return plen == nlen && memcmp(pattern, name, plen) == 0;
}

static uint32_t hash_name(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

int myc__topics_init(myc__topics *t, const myc__alloc *a) {
  memset(t, 0, sizeof *t);
  t->alloc = a;
  t->nslots = 256;
  t->slots = myc__calloc(a, t->nslots * sizeof *t->slots);
  if (t->slots == NULL)
    return MYC_ENOMEM;
  t->empty = myc__calloc(a, sizeof *t->empty);
  if (t->empty == NULL || uv_mutex_init(&t->lock) != 0) {
    myc__free(a, t->empty, sizeof *t->empty);
    myc__free(a, t->slots, t->nslots * sizeof *t->slots);
    t->slots = NULL; /* marks the table as not initialised */
    return MYC_ENOMEM;
  }
  return 0;
}

static size_t sublist_size(uint32_t cap) {
  return sizeof(myc__sublist) + cap * sizeof(struct myc_service *);
}

static myc__sublist *sublist_new(myc__topics *t, uint32_t cap) {
  myc__sublist *l = myc__malloc(t->alloc, sublist_size(cap));
  if (l != NULL) {
    l->retired_next = NULL;
    atomic_init(&l->n, 0);
    atomic_init(&l->live, 0);
    l->cap = cap;
  }
  return l;
}

/* Writes entry i of a list; a list readers may see takes it relaxed:
 * what makes a new entry visible is the release store of 'n' after. */
static void sublist_set(myc__sublist *l, uint32_t i, struct myc_service *svc) {
  atomic_store_explicit(&l->svc[i], svc, memory_order_relaxed);
}

/* ---- memberships: (service, topic) -> place in the topic's list ------ */

static uint32_t count_hash(const struct myc_service *svc, uint32_t key);

static struct myc__member *member_slot(myc__topics *t,
                                       const struct myc_service *svc,
                                       uint32_t topic) {
  uint32_t mask = t->nmembers - 1, i;
  for (i = count_hash(svc, topic) & mask;; i = (i + 1) & mask) {
    struct myc__member *m = &t->members[i];
    if (m->svc == NULL || (m->svc == svc && m->topic == topic))
      return m;
  }
}

/* The membership of 'svc' in the list of 'topic', or NULL. */
static struct myc__member *member_get(myc__topics *t,
                                      const struct myc_service *svc,
                                      uint32_t topic) {
  struct myc__member *m;
  if (t->nmembers == 0)
    return NULL;
  m = member_slot(t, svc, topic);
  return m->svc != NULL ? m : NULL;
}

/* Room for 'more' memberships, so that member_put cannot fail.  Returns
 * 0 or MYC_ENOMEM (then unchanged). */
static int members_reserve(myc__topics *t, uint32_t more) {
  struct myc__member *old = t->members;
  uint32_t i, nold = t->nmembers, n = nold ? nold : 64;
  uint64_t need = 2 * ((uint64_t)t->usedmembers + more);
  if (need <= nold)
    return 0;
  while (n < need)
    n *= 2;
  t->members = myc__calloc(t->alloc, (size_t)n * sizeof *t->members);
  if (t->members == NULL) {
    t->members = old;
    return MYC_ENOMEM;
  }
  t->nmembers = n;
  for (i = 0; i < nold; i++)
    if (old[i].svc != NULL)
      *member_slot(t, old[i].svc, old[i].topic) = old[i];
  myc__free(t->alloc, old, nold * sizeof *old);
  return 0;
}

/* Records that 'svc' is at 'pos' of the list of 'topic'.  Room reserved. */
static void member_put(myc__topics *t, const struct myc_service *svc,
                       uint32_t topic, uint32_t pos) {
  struct myc__member *m = member_slot(t, svc, topic);
  if (m->svc == NULL) {
    m->svc = svc;
    m->topic = topic;
    t->usedmembers++;
  }
  m->pos = pos;
}

/* Deletes 'm', shifting back the entries after it in its run. */
static void member_delete(myc__topics *t, struct myc__member *m) {
  uint32_t mask = t->nmembers - 1, i = (uint32_t)(m - t->members), j;
  t->members[i].svc = NULL;
  t->usedmembers--;
  for (j = (i + 1) & mask; t->members[j].svc != NULL; j = (j + 1) & mask) {
    struct myc__member *x = &t->members[j];
    uint32_t home = count_hash(x->svc, x->topic) & mask;
    /* 'x' may fill the hole unless its home lies cyclically in (i, j]. */
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      t->members[i] = *x;
      x->svc = NULL;
      i = j;
    }
  }
}

/* Records the place of every entry of 'l', just made for 'topic'. */
static void members_reindex(myc__topics *t, uint32_t topic,
                            const myc__sublist *l) {
  uint32_t k, n = atomic_load_explicit(&l->n, memory_order_relaxed);
  t->work += n;
  for (k = 0; k < n; k++)
    member_put(t, myc__sublist_at(l, k), topic, k);
}

/* ---- buckets: pattern hash -> subscriptions --------------------------- */

static struct myc__bucket *bucket_slot(myc__topics *t, uint32_t hash) {
  uint32_t mask = t->nbuckets - 1, i;
  for (i = (hash * 2654435761u) & mask;; i = (i + 1) & mask) {
    struct myc__bucket *b = &t->buckets[i];
    if (b->cap == 0 || b->hash == hash)
      return b;
  }
}

static struct myc__bucket *bucket_get(myc__topics *t, uint32_t hash) {
  struct myc__bucket *b;
  if (t->nbuckets == 0)
    return NULL;
  b = bucket_slot(t, hash);
  return b->cap != 0 ? b : NULL;
}

/* Rebuilds the buckets at four times the live ones (at least 64),
 * dropping those left with no subscription.  Returns 0 or MYC_ENOMEM
 * (then unchanged). */
static int buckets_rebuild(myc__topics *t) {
  struct myc__bucket *old = t->buckets;
  uint32_t i, live = 0, n = 64, nold = t->nbuckets;
  for (i = 0; i < nold; i++)
    live += old[i].cap != 0 && old[i].live > 0;
  while (n < 4 * (live + 1))
    n *= 2;
  t->buckets = myc__calloc(t->alloc, n * sizeof *t->buckets);
  if (t->buckets == NULL) {
    t->buckets = old;
    return MYC_ENOMEM;
  }
  t->nbuckets = n;
  t->usedbuckets = 0;
  for (i = 0; i < nold; i++) {
    if (old[i].cap == 0)
      continue;
    if (old[i].live == 0) {
      myc__free(t->alloc, old[i].at, old[i].cap * sizeof *old[i].at);
      continue;
    }
    *bucket_slot(t, old[i].hash) = old[i];
    t->usedbuckets++;
  }
  myc__free(t->alloc, old, nold * sizeof *old);
  return 0;
}

/* Room for one more subscription in the bucket of 'hash', made if
 * missing.  Returns 0 or MYC_ENOMEM (an empty bucket may stay). */
static int bucket_reserve(myc__topics *t, uint32_t hash) {
  struct myc__bucket *b = bucket_get(t, hash);
  int fresh;
  if (b == NULL) {
    if ((t->usedbuckets + 1) * 2 > t->nbuckets && buckets_rebuild(t) != 0)
      return MYC_ENOMEM;
    b = bucket_slot(t, hash);
  }
  fresh = b->cap == 0;
  if (myc__grow(t->alloc, (void **)&b->at, &b->cap, sizeof *b->at, b->n + 1,
                2) != 0)
    return MYC_ENOMEM;
  if (fresh) {
    b->hash = hash;
    t->usedbuckets++;
  }
  return 0;
}

/* Subscription subs[i] left (a hole now): its bucket drops the stale
 * indexes once they outnumber the live ones, amortised O(1). */
static void bucket_leave(myc__topics *t, uint32_t hash) {
  struct myc__bucket *b = bucket_get(t, hash);
  uint32_t k, j = 0;
  b->live--;
  if (b->n - b->live < 8 || b->n - b->live <= b->live)
    return;
  t->work += b->n;
  for (k = 0; k < b->n; k++)
    if (t->subs[b->at[k]].svc != NULL)
      b->at[j++] = b->at[k];
  b->n = j;
}

static void sublist_free(myc__topics *t, myc__sublist *l) {
  if (l != t->empty)
    myc__free(t->alloc, l, sublist_size(l->cap));
}

void myc__topics_destroy(myc__topics *t) {
  uint32_t i, count = atomic_load(&t->count);
  for (i = 1; i <= count; i++) {
    myc__topic *topic = myc__topics_get(t, i);
    sublist_free(t, myc__topic_subs(topic));
    myc__free(t->alloc, topic, sizeof *topic + topic->len + 1);
  }
  for (i = 0; i < MYC_TOPIC_CHUNKS; i++) {
    myc__topic **c = atomic_load(&t->chunks[i]);
    if (c != NULL)
      myc__free(t->alloc, c, MYC_TOPIC_CHUNK * sizeof *c);
  }
  while (t->retired != NULL) {
    myc__sublist *l = t->retired;
    t->retired = l->retired_next;
    sublist_free(t, l);
  }
  for (i = 0; i < t->ncounts; i++)
    if (t->counts[i].at != NULL)
      myc__free(t->alloc, t->counts[i].at,
                t->counts[i].cap * sizeof *t->counts[i].at);
  for (i = 0; i < t->nbuckets; i++)
    if (t->buckets[i].cap != 0)
      myc__free(t->alloc, t->buckets[i].at,
                t->buckets[i].cap * sizeof *t->buckets[i].at);
  myc__free(t->alloc, t->buckets, t->nbuckets * sizeof *t->buckets);
  myc__free(t->alloc, t->members, t->nmembers * sizeof *t->members);
  myc__free(t->alloc, t->slots, t->nslots * sizeof *t->slots);
  myc__free(t->alloc, t->subs, t->capsubs * sizeof *t->subs);
  myc__free(t->alloc, t->counts, t->ncounts * sizeof *t->counts);
  myc__free(t->alloc, t->empty, sizeof *t->empty);
  uv_mutex_destroy(&t->lock);
}

static myc__topic **find_slot(myc__topics *t, const char *name, size_t len) {
  uint32_t mask = t->nslots - 1, i = hash_name(name, len) & mask;
  for (;; i = (i + 1) & mask) {
    myc__topic *topic = t->slots[i];
    if (topic == NULL ||
        (topic->len == len && memcmp(topic->name, name, len) == 0))
      return &t->slots[i];
  }
}

static int grow_slots(myc__topics *t) {
  myc__topic **old = t->slots;
  uint32_t i, n = t->nslots;
  myc__topic **slots = myc__calloc(t->alloc, 2 * n * sizeof *slots);
  if (slots == NULL)
    return MYC_ENOMEM;
  t->slots = slots;
  t->nslots = 2 * n;
  for (i = 0; i < n; i++)
    if (old[i] != NULL)
      *find_slot(t, old[i]->name, old[i]->len) = old[i];
  myc__free(t->alloc, old, n * sizeof *old);
  return 0;
}

#define FNV_PRIME 16777619u

/* The hashes of the patterns that can match topic 'name': the name
 * itself, "p.*" for every prefix p ending before a '.', and "*" unless
 * the name starts with '$'.  'out' has room for MYC_TOPIC_MAX / 2 + 2.
 * Returns how many. */
static uint32_t pattern_hashes(const char *name, size_t len, uint32_t *out) {
  uint32_t h = 2166136261u, k = 0;
  size_t i;
  for (i = 0; i < len; i++) {
    h = (h ^ (unsigned char)name[i]) * FNV_PRIME;
    if (name[i] == '.')
      out[k++] = (h ^ (unsigned char)'*') * FNV_PRIME;
  }
  out[k++] = h;
  if (name[0] != '$')
    out[k++] = hash_name("*", 1);
  return k;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The indexes of the subscriptions matching 'topic', ascending, in
 * '*out' (from the allocator, room for '*cap'; NULL when none).  Only
 * the buckets of the patterns that can match are read.  Returns how
 * many, or -1 (out of memory). */
static int64_t matching_subs(myc__topics *t, const myc__topic *topic,
                             uint32_t **out, uint32_t *cap) {
  uint32_t h[MYC_TOPIC_MAX / 2 + 2], nh, i, k, total = 0, m = 0, *idx;
  nh = pattern_hashes(topic->name, topic->len, h);
  /* Two of them may share a bucket: read it once. */
  qsort(h, nh, sizeof *h, cmp_u32);
  for (i = 0; i < nh; i++) {
    struct myc__bucket *b = bucket_get(t, h[i]);
    if (b != NULL && (i == 0 || h[i] != h[i - 1]))
      total += b->n;
  }
  *out = NULL;
  *cap = total;
  if (total == 0)
    return 0;
  idx = myc__malloc(t->alloc, total * sizeof *idx);
  if (idx == NULL)
    return -1;
  t->work += total;
  for (i = 0; i < nh; i++) {
    struct myc__bucket *b = bucket_get(t, h[i]);
    for (k = 0; b != NULL && (i == 0 || h[i] != h[i - 1]) && k < b->n; k++) {
      const myc__subscription *s = &t->subs[b->at[k]];
      if (s->svc != NULL &&
          myc__topic_match(s->pattern, s->len, topic->name, topic->len))
        idx[m++] = b->at[k];
    }
  }
  /* In subscription order, as a list built by subscribing would be. */
  qsort(idx, m, sizeof *idx, cmp_u32);
  *out = idx;
  return m;
}

/* Builds the subscriber list of 'topic' (not yet published) and records
 * its memberships.  A service matched by several patterns appears once,
 * where its first matching subscription puts it.  NULL when out of
 * memory (then nothing changed). */
static myc__sublist *build_sublist(myc__topics *t, const myc__topic *topic) {
  uint32_t *idx, cap, i, k = 0;
  int64_t m = matching_subs(t, topic, &idx, &cap);
  myc__sublist *l = NULL;
  if (m <= 0) {
    myc__free(t->alloc, idx, cap * sizeof *idx);
    return m == 0 ? t->empty : NULL;
  }
  if (members_reserve(t, (uint32_t)m) == 0)
    l = sublist_new(t, (uint32_t)m);
  for (i = 0; l != NULL && i < (uint32_t)m; i++) {
    struct myc_service *svc = t->subs[idx[i]].svc;
    if (member_get(t, svc, topic->id) != NULL)
      continue;
    member_put(t, svc, topic->id, k);
    sublist_set(l, k++, svc);
  }
  if (l != NULL) {
    atomic_init(&l->n, k);
    atomic_init(&l->live, k);
  }
  myc__free(t->alloc, idx, cap * sizeof *idx);
  return l;
}

/* After a change of the list of 'topic' (under the table's lock). */
static void bump_ver(myc__topic *topic) {
  atomic_store_explicit(
      &topic->ver, atomic_load_explicit(&topic->ver, memory_order_relaxed) + 1,
      memory_order_release);
}

static void publish_sublist(myc__topics *t, myc__topic *topic,
                            myc__sublist *l) {
  myc__sublist *old = myc__topic_subs(topic);
  atomic_store_explicit(&topic->subs, l, memory_order_release);
  bump_ver(topic);
  if (old != t->empty) {
    old->retired_next = t->retired;
    t->retired = old;
  }
}

myc__sublist *myc__topics_take_retired(myc__topics *t) {
  myc__sublist *l;
  uv_mutex_lock(&t->lock);
  l = t->retired;
  t->retired = NULL;
  uv_mutex_unlock(&t->lock);
  return l;
}

void myc__topics_free_retired(myc__topics *t, myc__sublist *l) {
  while (l != NULL) {
    myc__sublist *next = l->retired_next;
    sublist_free(t, l);
    l = next;
  }
}

static int64_t create_topic(myc__topics *t, const char *name, size_t len) {
  uint32_t id = atomic_load_explicit(&t->count, memory_order_relaxed) + 1;
  uint32_t chunk = (id - 1) / MYC_TOPIC_CHUNK;
  myc__topic **c, *topic;
  myc__sublist *l;

  if (chunk >= MYC_TOPIC_CHUNKS)
    return MYC_ELIMIT;
  if ((atomic_load(&t->count) + 1) * 2 > t->nslots && grow_slots(t) != 0)
    return MYC_ENOMEM;
  c = atomic_load(&t->chunks[chunk]);
  if (c == NULL) {
    c = myc__calloc(t->alloc, MYC_TOPIC_CHUNK * sizeof *c);
    if (c == NULL)
      return MYC_ENOMEM;
    atomic_store_explicit(&t->chunks[chunk], c, memory_order_release);
  }
  topic = myc__malloc(t->alloc, sizeof *topic + len + 1);
  if (topic == NULL)
    return MYC_ENOMEM;
  topic->id = id;
  topic->len = (uint16_t)len;
  atomic_init(&topic->ver, 0);
  memcpy(topic->name, name, len);
  topic->name[len] = '\0';
  atomic_init(&topic->subs, t->empty);
  l = build_sublist(t, topic);
  if (l == NULL) {
    myc__free(t->alloc, topic, sizeof *topic + len + 1);
    return MYC_ENOMEM;
  }
  atomic_init(&topic->subs, l);
  c[(id - 1) % MYC_TOPIC_CHUNK] = topic;
  *find_slot(t, name, len) = topic;
  atomic_store_explicit(&t->count, id, memory_order_release);
  return id;
}

int64_t myc__topics_resolve_quota(myc__topics *t, const char *name,
                                  size_t len, _Atomic uint32_t *made,
                                  uint32_t max) {
  myc__topic *topic;
  int64_t id;
  if (myc__topic_check(name, len, 0) != NULL)
    return MYC_ETOPIC;
  uv_mutex_lock(&t->lock);
  topic = *find_slot(t, name, len);
  if (topic != NULL) {
    id = (int64_t)topic->id;
  } else if (made != NULL &&
             atomic_load_explicit(made, memory_order_relaxed) >= max) {
    id = MYC_ELIMIT;
  } else {
    id = create_topic(t, name, len);
    if (id > 0 && made != NULL)
      atomic_store_explicit(
          made, atomic_load_explicit(made, memory_order_relaxed) + 1,
          memory_order_relaxed);
  }
  uv_mutex_unlock(&t->lock);
  return id;
}

int64_t myc__topics_resolve(myc__topics *t, const char *name, size_t len) {
  return myc__topics_resolve_quota(t, name, len, NULL, 0);
}

/* ---- subscription counts -------------------------------------------------
 * Open addressing on (service, key): key 0 counts a service's
 * subscriptions, key hash|1 those of one pattern hash.  An entry stays
 * when its count drops to 0 (a later subscription reuses it) until the
 * table is rebuilt. */

static uint32_t count_hash(const struct myc_service *svc, uint32_t key) {
  uint64_t x = (uint64_t)(uintptr_t)svc ^ ((uint64_t)key << 32);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (uint32_t)x;
}

static uint32_t pattern_key(const char *pattern, size_t len) {
  return hash_name(pattern, len) | 1u;
}

static struct myc__sub_count *count_find(myc__topics *t,
                                         const struct myc_service *svc,
                                         uint32_t key) {
  uint32_t mask, i;
  if (t->ncounts == 0)
    return NULL;
  mask = t->ncounts - 1;
  for (i = count_hash(svc, key) & mask;; i = (i + 1) & mask) {
    struct myc__sub_count *c = &t->counts[i];
    if (c->svc == NULL || (c->svc == svc && c->key == key))
      return c;
  }
}

/* Rebuilds the table at twice the live entries (at least 64), dropping
 * those at 0.  Returns 0 or MYC_ENOMEM (then unchanged). */
static int counts_rebuild(myc__topics *t) {
  struct myc__sub_count *old = t->counts;
  uint32_t i, live = 0, n = 64, nold = t->ncounts;
  for (i = 0; i < nold; i++)
    live += old[i].svc != NULL && old[i].n > 0;
  while (n < 4 * (live + 2))
    n *= 2;
  t->counts = myc__calloc(t->alloc, n * sizeof *t->counts);
  if (t->counts == NULL) {
    t->counts = old;
    return MYC_ENOMEM;
  }
  t->ncounts = n;
  t->usedcounts = 0;
  for (i = 0; i < nold; i++)
    if (old[i].svc != NULL && old[i].n == 0 && old[i].at != NULL)
      myc__free(t->alloc, old[i].at, old[i].cap * sizeof *old[i].at);
  for (i = 0; i < nold; i++)
    if (old[i].svc != NULL && old[i].n > 0) {
      *count_find(t, old[i].svc, old[i].key) = old[i];
      t->usedcounts++;
    }
  myc__free(t->alloc, old, nold * sizeof *old);
  return 0;
}

/* The entry of (svc, key), made with a count of 0 if missing.  NULL when
 * out of memory. */
static struct myc__sub_count *count_make(myc__topics *t,
                                         const struct myc_service *svc,
                                         uint32_t key) {
  struct myc__sub_count *c = count_find(t, svc, key);
  if (c != NULL && c->svc != NULL)
    return c;
  if ((t->usedcounts + 1) * 2 > t->ncounts) {
    if (counts_rebuild(t) != 0)
      return NULL;
  }
  c = count_find(t, svc, key);
  if (c == NULL) /* cannot happen after a rebuild; tells the compiler so */
    return NULL;
  memset(c, 0, sizeof *c);
  c->svc = svc;
  c->key = key;
  t->usedcounts++;
  return c;
}

static uint32_t count_of(myc__topics *t, const struct myc_service *svc,
                         uint32_t key) {
  struct myc__sub_count *c = count_find(t, svc, key);
  return c != NULL && c->svc != NULL ? c->n : 0;
}

uint32_t myc__topics_count_locked(myc__topics *t,
                                  const struct myc_service *svc) {
  return count_of(t, svc, 0);
}

static struct myc__sub_count *own_entry(myc__topics *t,
                                        const struct myc_service *svc) {
  struct myc__sub_count *c = count_find(t, svc, 0);
  return c != NULL && c->svc != NULL ? c : NULL;
}

uint32_t myc__topics_copy_locked(myc__topics *t, const struct myc_service *svc,
                                 myc__subscription *out, uint32_t max) {
  struct myc__sub_count *c = own_entry(t, svc);
  uint32_t k;
  for (k = 0; c != NULL && k < c->n && k < max; k++)
    out[k] = t->subs[c->at[k]];
  return k;
}

/* Adds 'd' (+1 or -1) to the counts of subscription 's', whose entries
 * exist (count_make before a subscription is added). */
static void count_add(myc__topics *t, const myc__subscription *s, int d) {
  count_find(t, s->svc, 0)->n += (uint32_t)d;
  count_find(t, s->svc, pattern_key(s->pattern, s->len))->n += (uint32_t)d;
}

static int find_sub(myc__topics *t, struct myc_service *svc,
                    const char *pattern, size_t len) {
  struct myc__sub_count *c;
  uint32_t k;
  if (count_of(t, svc, pattern_key(pattern, len)) == 0)
    return -1;
  c = own_entry(t, svc);
  for (k = 0; c != NULL && k < c->n; k++) {
    const myc__subscription *s = &t->subs[c->at[k]];
    t->work++;
    if (s->len == len && memcmp(s->pattern, pattern, len) == 0)
      return (int)c->at[k];
  }
  return -1;
}

/* Whether a live subscription of 'svc' other than subs[skip] matches
 * 'topic' (then the service is on its list for that one). */
static int matched_elsewhere(myc__topics *t, const struct myc_service *svc,
                             uint32_t skip, const myc__topic *topic) {
  struct myc__sub_count *c = own_entry(t, svc);
  uint32_t k;
  for (k = 0; c != NULL && k < c->n; k++) {
    const myc__subscription *s = &t->subs[c->at[k]];
    t->work++;
    if (c->at[k] != skip &&
        myc__topic_match(s->pattern, s->len, topic->name, topic->len))
      return 1;
  }
  return 0;
}

/* The topics a pattern can match: an exact name is looked up, a pattern
 * with '*' reads every topic. */
static int is_exact(const char *pattern, size_t len) {
  return pattern[len - 1] != '*';
}

/* Markers in relist's plan: append in place; leave a hole in place. */
static myc__sublist in_place, hole;

/* The copy of 'old' without its holes and without 'skip' (NULL: none),
 * with room for 'cap', or NULL (out of memory). */
static myc__sublist *compacted(myc__topics *t, const myc__sublist *old,
                               const struct myc_service *skip, uint32_t cap) {
  uint32_t n = atomic_load_explicit(&old->n, memory_order_relaxed), i, k = 0;
  myc__sublist *l = sublist_new(t, cap);
  if (l == NULL)
    return NULL;
  t->work += n;
  for (i = 0; i < n; i++) {
    struct myc_service *svc = myc__sublist_at(old, i);
    if (svc != NULL && svc != skip)
      sublist_set(l, k++, svc);
  }
  atomic_init(&l->n, k);
  atomic_init(&l->live, k);
  return l;
}

/* What becomes of the list of 'topic' when 'svc' joins it ('add') or
 * leaves it: &in_place (it has room), &hole (its entry cleared), the
 * empty list (it was the last), a new list to publish, or NULL (out of
 * memory).  A new list is made when the published one is full, or when
 * its holes would outnumber its subscribers: each copy is paid for by the
 * changes since the last one. */
static myc__sublist *changed_list(myc__topics *t, myc__topic *topic,
                                  struct myc_service *svc, int add) {
  myc__sublist *old = myc__topic_subs(topic), *l;
  uint32_t n = atomic_load_explicit(&old->n, memory_order_relaxed);
  uint32_t live = atomic_load_explicit(&old->live, memory_order_relaxed);
  t->work++;
  if (add) {
    if (n < old->cap)
      return &in_place;
    l = compacted(t, old, NULL, live < 2 ? 4 : 2 * (live + 1));
    if (l != NULL) {
      uint32_t k = atomic_load_explicit(&l->n, memory_order_relaxed);
      sublist_set(l, k, svc);
      atomic_init(&l->n, k + 1);
      atomic_init(&l->live, k + 1);
    }
    return l;
  }
  if (live <= 1)
    return t->empty;
  if (n - live + 1 <= live - 1)
    return &hole;
  return compacted(t, old, svc, live - 1);
}

/* Applies a step of relist's plan to 'topic': 'l' from changed_list. */
static void apply(myc__topics *t, myc__topic *topic, myc__sublist *l,
                  struct myc_service *svc) {
  myc__sublist *cur = myc__topic_subs(topic);
  struct myc__member *m = member_get(t, svc, topic->id);
  uint32_t pos = m != NULL ? m->pos : 0;
  if (l == &in_place) {
    uint32_t n = atomic_load_explicit(&cur->n, memory_order_relaxed);
    sublist_set(cur, n, svc);
    atomic_store_explicit(&cur->live,
                          atomic_load_explicit(&cur->live,
                                               memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&cur->n, n + 1, memory_order_release);
    bump_ver(topic);
    member_put(t, svc, topic->id, n);
    return;
  }
  if (m != NULL) /* leaving: the deletion may move other entries */
    member_delete(t, m);
  if (l == &hole) {
    sublist_set(cur, pos, NULL);
    atomic_store_explicit(&cur->live,
                          atomic_load_explicit(&cur->live,
                                               memory_order_relaxed) - 1,
                          memory_order_relaxed);
    bump_ver(topic);
    return;
  }
  publish_sublist(t, topic, l);
  members_reindex(t, topic->id, l);
}

/* Puts 'svc' on (or takes it off) the list of every topic matching
 * 'pattern', subscription subs[skip], where no other subscription of
 * 'svc' puts it.  Every new list and membership is allocated before any
 * is published: on MYC_ENOMEM nothing changed. */
static int relist(myc__topics *t, struct myc_service *svc, uint32_t skip,
                  const char *pattern, size_t len, int add) {
  uint32_t count = atomic_load(&t->count), lo = 1, hi = count, i, joins = 0;
  myc__sublist *one[1], **plan = one;
  int rc = 0;
  if (is_exact(pattern, len)) {
    myc__topic *topic = *find_slot(t, pattern, len);
    if (topic == NULL)
      return 0;
    lo = hi = topic->id;
  } else if (count > 0) {
    plan = myc__calloc(t->alloc, count * sizeof *plan);
    if (plan == NULL)
      return MYC_ENOMEM;
    t->work += count;
  }
  for (i = lo; i <= hi && count > 0; i++) {
    myc__topic *topic = myc__topics_get(t, i);
    myc__sublist **p = &plan[i - lo];
    int on = member_get(t, svc, topic->id) != NULL;
    *p = NULL;
    /* Joining: not if already on it.  Leaving: not if another of its
     * subscriptions keeps it there. */
    if (!myc__topic_match(pattern, len, topic->name, topic->len) ||
        (add ? on : !on || matched_elsewhere(t, svc, skip, topic)))
      continue;
    *p = changed_list(t, topic, svc, add);
    joins += add;
    if (*p == NULL) {
      rc = MYC_ENOMEM;
      break;
    }
  }
  if (rc == 0 && joins > 0)
    rc = members_reserve(t, joins);
  for (i = lo; i <= hi && count > 0; i++) {
    myc__sublist *l = plan[i - lo];
    myc__topic *topic = myc__topics_get(t, i);
    if (l == NULL || topic == NULL)
      continue;
    if (rc != 0) {
      if (l != &in_place && l != &hole && l != t->empty)
        sublist_free(t, l);
    } else {
      apply(t, topic, l, svc);
    }
  }
  if (plan != one)
    myc__free(t->alloc, plan, count * sizeof *plan);
  return rc;
}

/* Tells the watcher (links) that the subscriptions changed.  Outside
 * the lock: the watcher reads them back with myc__topics_patterns. */
static void notify(myc__topics *t) {
  void (*fn)(void *) = atomic_load_explicit(&t->on_change,
                                            memory_order_acquire);
  if (fn != NULL)
    fn(t->on_change_ud);
}

void myc__topics_watch(myc__topics *t, void (*fn)(void *ud), void *ud) {
  /* A notify under way may still read the old 'ud': it stays until the
   * next watcher is set. */
  if (fn != NULL)
    t->on_change_ud = ud;
  atomic_store_explicit(&t->on_change, fn, memory_order_release);
}

int myc__topics_patterns(myc__topics *t, const struct myc_service *skip,
                         int (*fn)(void *ud, const char *pattern, size_t len),
                         void *ud) {
  uint32_t i;
  int rc = 0;
  uv_mutex_lock(&t->lock);
  for (i = 0; i < t->endsubs && rc == 0; i++)
    if (t->subs[i].svc != NULL && t->subs[i].svc != skip)
      rc = fn(ud, t->subs[i].pattern, t->subs[i].len);
  uv_mutex_unlock(&t->lock);
  return rc;
}

/* Room for one more subscription of 'svc', whose count entries exist.
 * Returns 0 or MYC_ENOMEM. */
static int reserve_sub(myc__topics *t, const struct myc_service *svc) {
  struct myc__sub_count *c = own_entry(t, svc);
  if (myc__grow(t->alloc, (void **)&c->at, &c->cap, sizeof *c->at, c->n + 1,
                2) != 0)
    return MYC_ENOMEM;
  return myc__grow(t->alloc, (void **)&t->subs, &t->capsubs, sizeof *t->subs,
                   t->endsubs + 1, 16);
}

int myc__topics_subscribe(myc__topics *t, struct myc_service *svc,
                          const char *pattern, size_t len) {
  return myc__topics_subscribe_within(t, svc, pattern, len, UINT32_MAX);
}

int myc__topics_subscribe_within(myc__topics *t, struct myc_service *svc,
                                 const char *pattern, size_t len,
                                 uint32_t max) {
  myc__subscription *s;
  struct myc__sub_count *c;
  struct myc__bucket *b;
  int rc = 0, changed = 0;
  if (myc__topic_check(pattern, len, 1) != NULL)
    return MYC_ETOPIC;
  uv_mutex_lock(&t->lock);
  if (find_sub(t, svc, pattern, len) >= 0)
    goto out;
  if (count_of(t, svc, 0) >= max) {
    rc = MYC_ELIMIT;
    goto out;
  }
  /* Room for both entries first: a rebuild between the two would drop
   * the first, made at a count of 0. */
  if (((t->usedcounts + 2) * 2 > t->ncounts && counts_rebuild(t) != 0) ||
      count_make(t, svc, 0) == NULL ||
      count_make(t, svc, pattern_key(pattern, len)) == NULL ||
      reserve_sub(t, svc) != 0 ||
      bucket_reserve(t, hash_name(pattern, len)) != 0) {
    rc = MYC_ENOMEM;
    goto out;
  }
  /* Its own subscriptions so far are the others: none is skipped. */
  rc = relist(t, svc, UINT32_MAX, pattern, len, 1);
  if (rc != 0)
    goto out;
  s = &t->subs[t->endsubs];
  s->svc = svc;
  s->len = (uint16_t)len;
  memcpy(s->pattern, pattern, len);
  s->pattern[len] = '\0';
  c = own_entry(t, svc);
  c->at[c->n] = t->endsubs;
  b = bucket_get(t, hash_name(pattern, len));
  b->at[b->n++] = t->endsubs++;
  b->live++;
  t->nsubs++;
  count_add(t, s, 1);
  changed = 1;
out:
  uv_mutex_unlock(&t->lock);
  if (changed)
    notify(t);
  return rc;
}

/* Closes the holes of 'subs' once they outnumber the subscriptions, and
 * moves each service's and each bucket's indexes with them: amortised
 * O(1) a removal, order kept.  Skipped when out of memory (the holes
 * stay). */
static void compact(myc__topics *t) {
  uint32_t holes = t->endsubs - t->nsubs, i, j = 0, *to;
  if (holes < 64 || holes < t->nsubs)
    return;
  to = myc__malloc(t->alloc, t->endsubs * sizeof *to);
  if (to == NULL)
    return;
  t->work += t->endsubs + t->ncounts + t->nbuckets;
  for (i = 0; i < t->endsubs; i++) {
    to[i] = t->subs[i].svc != NULL ? j : UINT32_MAX;
    if (t->subs[i].svc != NULL)
      t->subs[j++] = t->subs[i];
  }
  for (i = 0; i < t->nbuckets; i++) {
    struct myc__bucket *b = &t->buckets[i];
    uint32_t k, n = 0;
    for (k = 0; k < b->n; k++)
      if (to[b->at[k]] != UINT32_MAX)
        b->at[n++] = to[b->at[k]];
    b->n = n;
  }
  for (i = 0; i < t->ncounts; i++) {
    struct myc__sub_count *c = &t->counts[i];
    uint32_t k;
    if (c->svc != NULL && c->key == 0)
      for (k = 0; k < c->n; k++)
        c->at[k] = to[c->at[k]];
  }
  myc__free(t->alloc, to, t->endsubs * sizeof *to);
  t->endsubs = j;
}

static int remove_sub(myc__topics *t, uint32_t i) {
  myc__subscription *s = &t->subs[i];
  struct myc__sub_count *c = own_entry(t, s->svc);
  uint32_t k;
  int rc = relist(t, s->svc, i, s->pattern, s->len, 0);
  if (rc != 0)
    return rc;
  for (k = 0; c->at[k] != i; k++)
    ;
  memmove(&c->at[k], &c->at[k + 1], (c->n - k - 1) * sizeof *c->at);
  count_add(t, s, -1);
  if (c->n == 0) {
    myc__free(t->alloc, c->at, c->cap * sizeof *c->at);
    c->at = NULL;
    c->cap = 0;
  }
  s->svc = NULL;
  t->nsubs--;
  bucket_leave(t, hash_name(s->pattern, s->len));
  compact(t);
  return 0;
}

int myc__topics_unsubscribe(myc__topics *t, struct myc_service *svc,
                            const char *pattern, size_t len) {
  int i, rc = 0;
  if (myc__topic_check(pattern, len, 1) != NULL)
    return MYC_ETOPIC;
  uv_mutex_lock(&t->lock);
  i = find_sub(t, svc, pattern, len);
  if (i >= 0)
    rc = remove_sub(t, (uint32_t)i);
  uv_mutex_unlock(&t->lock);
  if (i >= 0 && rc == 0)
    notify(t);
  return rc;
}

int myc__topics_unsubscribe_all(myc__topics *t, struct myc_service *svc) {
  struct myc__sub_count *c;
  int rc = 0, changed = 0;
  uv_mutex_lock(&t->lock);
  /* Its own subscriptions, last first; a service that never subscribed
   * (a C one, a failed load) reads nothing. */
  while (rc == 0 && (c = own_entry(t, svc)) != NULL && c->n > 0) {
    rc = remove_sub(t, c->at[c->n - 1]);
    changed |= rc == 0;
  }
  uv_mutex_unlock(&t->lock);
  if (changed)
    notify(t);
  return rc;
}
