/* load.c -- myc_engine_add_services: many services added at once, their
 * Lua states made on loader threads.  Making a service's state (the
 * runtime's modules, its module's top level) is most of what adding it
 * costs, and states of different services share nothing, so they are
 * made in parallel; what touches the engine's shared tables (the name
 * registry, the supervisor's hook, the subscriptions, the workers'
 * placement) stays on the calling thread, in the order given.  The
 * outcome is the one of myc_engine_add_service called for each in turn:
 * the same checks, the error of the first service that fails (in order),
 * the services before it added, none after it.
 */
#include "runtime/engine.h"

#include "runtime/instance.h"

#include <stdio.h>
#include <string.h>

/* Below this many, threads would cost more than they save. */
#define MIN_PARALLEL 8

typedef struct {
  myc_service *s; /* NULL: not prepared (at or after the first error) */
  myc__instance in;
  int loaded;
} entry;

typedef struct {
  entry *items;
  size_t n; /* prepared: loaders take [0, n) */
  _Atomic size_t next;
  uv_mutex_t lock; /* guards first, err */
  size_t first;    /* index of the first failure so far, or SIZE_MAX */
  int rc;
  char *err;
  size_t errlen;
} batch;

/* Records the failure of service 'i' if none before it failed. */
static void fail(batch *b, size_t i, int rc, const char *why) {
  uv_mutex_lock(&b->lock);
  if (i < b->first) {
    b->first = i;
    b->rc = rc;
    snprintf(b->err, b->errlen, "%s", why);
  }
  uv_mutex_unlock(&b->lock);
}

static size_t first_failure(batch *b) {
  size_t f;
  uv_mutex_lock(&b->lock);
  f = b->first;
  uv_mutex_unlock(&b->lock);
  return f;
}

static void loader(void *arg) {
  batch *b = arg;
  char err[1024];
  for (;;) {
    size_t i = atomic_fetch_add(&b->next, 1);
    entry *it;
    int rc;
    /* Past the first failure nothing is kept: no need to load it. */
    if (i >= b->n || i > first_failure(b))
      return;
    it = &b->items[i];
    rc = myc__service_load_first(it->s, &it->in, err, sizeof err);
    if (rc != 0)
      fail(b, i, rc, err);
    else
      it->loaded = 1;
  }
}

/* How many threads load 'n' services, the caller's included. */
static unsigned loaders_for(myc_engine *e, size_t n) {
  unsigned k = uv_available_parallelism();
  if (k > e->sched.nworkers)
    k = e->sched.nworkers;
  if (n < MIN_PARALLEL || k < 2)
    return 1;
  return (size_t)k > n ? (unsigned)n : k;
}

/* Runs the loaders: the calling thread is one of them.  A thread that
 * cannot start leaves its share to the others. */
static void load_all(myc_engine *e, batch *b) {
  unsigned k = loaders_for(e, b->n), started = 0, i;
  uv_thread_t threads[64];
  if (k > 64)
    k = 64;
  for (i = 1; i < k; i++)
    if (uv_thread_create(&threads[started], loader, b) == 0)
      started++;
  loader(b);
  for (i = 0; i < started; i++)
    uv_thread_join(&threads[i]);
}

/* Whether 'name' comes earlier in the batch than index 'i': a hash set
 * of the names seen so far ('seen', 'cap' slots, a power of two). */
static int seen_before(const myc_service_config *scs, size_t *seen, size_t cap,
                       size_t i) {
  const char *name = scs[i].name;
  size_t mask = cap - 1, h = 2166136261u, k;
  for (k = 0; name[k] != '\0'; k++)
    h = (h ^ (unsigned char)name[k]) * 16777619u;
  for (k = h & mask; seen[k] != 0; k = (k + 1) & mask)
    if (strcmp(scs[seen[k] - 1].name, name) == 0)
      return 1;
  seen[k] = i + 1;
  return 0;
}

/* The calling thread, in order: the checks and preparation of each
 * service, up to the first that fails.  Returns how many are prepared. */
static size_t prepare_all(myc_engine *e, const myc_service_config *scs,
                          size_t n, batch *b) {
  size_t cap = 16, i;
  size_t *seen;
  char err[1024];
  while (cap < 2 * n)
    cap *= 2;
  seen = myc__calloc(&e->alloc, cap * sizeof *seen);
  if (seen == NULL) {
    fail(b, 0, MYC_ENOMEM, "out of memory");
    return 0;
  }
  for (i = 0; i < n; i++) {
    myc__worker *w;
    int rc = myc__engine_check_new(e, scs[i].name, scs[i].worker, &w, err,
                                   sizeof err, 0);
    if (rc == 0 && seen_before(scs, seen, cap, i)) {
      snprintf(err, sizeof err, "service '%s' is defined twice", scs[i].name);
      rc = MYC_EEXIST;
    }
    if (rc == 0)
      rc = myc__service_prepare(e, &scs[i], w, &b->items[i].s, err, sizeof err);
    if (rc != 0) {
      fail(b, i, rc, err);
      break;
    }
  }
  myc__free(&e->alloc, seen, cap * sizeof *seen);
  return i;
}

int myc_engine_add_services(myc_engine *e, const myc_service_config *scs,
                            size_t n, char *err, size_t errlen) {
  batch b;
  size_t i, ok;
  char dummy[1];
  int rc = 0;
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (n == 0)
    return 0;
  if (scs == NULL)
    return MYC_EINVAL;
  memset(&b, 0, sizeof b);
  b.first = SIZE_MAX;
  b.err = err;
  b.errlen = errlen;
  b.items = myc__calloc(&e->alloc, n * sizeof *b.items);
  if (b.items == NULL || uv_mutex_init(&b.lock) != 0) {
    myc__free(&e->alloc, b.items, n * sizeof *b.items);
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  b.n = prepare_all(e, scs, n, &b);
  atomic_init(&b.next, 0);
  if (b.n > 0)
    load_all(e, &b);
  /* Committed in order up to the first failure, as one by one. */
  ok = b.first < b.n ? b.first : b.n;
  for (i = 0; i < b.n; i++) {
    entry *it = &b.items[i];
    if (i < ok && rc == 0) {
      myc__service_place(it->s);
      myc__instance_commit(it->s, &it->in);
      /* On failure (out of memory) it frees the service and says so. */
      rc = myc__engine_register(e, it->s, err, errlen);
      continue;
    }
    if (it->loaded)
      myc__instance_close(it->s, &it->in);
    myc__service_free(it->s);
  }
  if (rc == 0)
    rc = b.first == SIZE_MAX ? 0 : b.rc;
  uv_mutex_destroy(&b.lock);
  myc__free(&e->alloc, b.items, n * sizeof *b.items);
  return rc;
}
