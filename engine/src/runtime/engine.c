/* engine.c -- the engine's lifecycle: creation, placement of services on
 * workers, start (every init, then the threads), the stop sequence
 * (drain, then each service's stop, then join), the manual mode tests
 * drive, publishing from the host, and the counters.  What the layers
 * above do at each step they do through the hooks of engine.h.
 */
#include "runtime/engine.h"

#include "runtime/activation.h"
#include "runtime/emit.h"
#include "runtime/instance.h"
#include "lua/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORKERS 128 /* worker indexes fit the buffers' origin byte */

static int check_config(const myc_engine_config *cfg) {
  const myc_mailbox_config *m = &cfg->mailbox;
  if (cfg->workers > MAX_WORKERS || cfg->node == NULL ||
      m->capacity == 0 || !(m->threshold > 0 && m->threshold <= 1) ||
      m->policy < MYC_POLICY_DROP_OLDEST || m->policy > MYC_POLICY_REJECT ||
      cfg->log_level < MYC_LOG_DEBUG || cfg->log_level > MYC_LOG_ERROR)
    return MYC_EINVAL;
  return 0;
}

static uint32_t default_workers(void) {
  unsigned n = uv_available_parallelism();
  return n == 0 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
}

static int init_workers(myc_engine *e, uint32_t n) {
  myc__sched *sc = &e->sched;
  uint32_t i;
  sc->alloc = &e->alloc;
  sc->clock = &e->clock;
  sc->manual = e->manual;
  atomic_init(&sc->delivered, 0);
  if (myc__grace_init(&sc->hosts) != 0)
    return MYC_ENOMEM;
  sc->workers = myc__calloc(&e->alloc, n * sizeof *sc->workers);
  if (sc->workers == NULL) {
    myc__grace_destroy(&sc->hosts);
    return MYC_ENOMEM;
  }
  sc->nworkers_max = n;
  for (i = 0; i < n; i++) {
    int rc = myc__worker_init(&sc->workers[i], sc, i);
    if (rc != 0)
      return rc;
    sc->nworkers = i + 1;
  }
  return 0;
}

/* The three locks, or none of them. */
static int init_locks(myc_engine *e) {
  if (uv_mutex_init(&e->host_lock) != 0)
    return MYC_ENOMEM;
  if (uv_mutex_init(&e->stop_lock) != 0)
    goto fail_stop;
  if (uv_mutex_init(&e->services_lock) != 0)
    goto fail_services;
  return 0;
fail_services:
  uv_mutex_destroy(&e->stop_lock);
fail_stop:
  uv_mutex_destroy(&e->host_lock);
  return MYC_ENOMEM;
}

int myc__engine_create(myc_engine **out, const myc_engine_config *cfg) {
  myc__alloc a = {cfg->alloc ? cfg->alloc : myc__default_alloc, cfg->alloc_ud};
  myc_engine *e;
  int64_t dead;
  int rc;

  *out = NULL;
  if (cfg->alloc == NULL)
    myc__default_alloc_tune();
  if (check_config(cfg) != 0)
    return MYC_EINVAL;
  e = a.fn(a.ud, NULL, 0, sizeof *e);
  if (e == NULL)
    return MYC_ENOMEM;
  memset(e, 0, sizeof *e);
  e->alloc = a;
  e->lua_alloc.fn = cfg->lua_alloc ? cfg->lua_alloc : a.fn;
  e->lua_alloc.ud = cfg->lua_alloc ? cfg->lua_alloc_ud : a.ud;
  if (init_locks(e) != 0) {
    a.fn(a.ud, e, sizeof *e, 0);
    return MYC_ENOMEM;
  }
  e->mailbox = cfg->mailbox;
  e->manual = cfg->manual;
  e->max_services =
      cfg->max_services ? cfg->max_services : MYC_DEFAULT_MAX_SERVICES;
  e->max_topics_per_service = cfg->max_topics_per_service
                                  ? cfg->max_topics_per_service
                                  : MYC_DEFAULT_MAX_TOPICS_PER_SERVICE;
  e->max_subscriptions_per_service =
      cfg->max_subscriptions_per_service
          ? cfg->max_subscriptions_per_service
          : MYC_DEFAULT_MAX_SUBSCRIPTIONS_PER_SERVICE;
  myc__clock_init(&e->clock, cfg->manual);
  e->created_ns = myc__clock_now(&e->clock);
  /* The host thread's pool (manual engines) adopts what it frees. */
  (void)myc__pool_init(&e->host_pool, &e->alloc, 4096, MYC_BUF_NO_ORIGIN, 0);
  myc__rng_seed(&e->host_rng);
  e->node = myc__strdup(&e->alloc, cfg->node);
  e->lua_path = myc__strdup(&e->alloc, myc__find_lua_dir(cfg->lua_path));
  if (e->node == NULL || e->lua_path == NULL ||
      myc__bytecode_init(&e->bytecode, &e->alloc, e->lua_path) != 0 ||
      myc__slabs_init(&e->slabs, &e->lua_alloc, MYC_LUA_SLAB) != 0)
    goto nomem;
  if (myc__log_init(&e->log, &e->alloc, cfg, e->node, &e->clock) != 0)
    goto nomem;
  if (myc__topics_init(&e->topics, &e->alloc) != 0)
    goto nomem;
  dead = myc__topics_resolve(&e->topics, "$dead", 5);
  if (dead < 0)
    goto nomem;
  e->dead_topic = (uint32_t)dead;
  dead = myc__topics_resolve(&e->topics, "$reply", 6);
  if (dead < 0)
    goto nomem;
  e->reply_topic = (uint32_t)dead;
  rc = init_workers(e, cfg->workers ? cfg->workers : default_workers());
  if (rc != 0) {
    myc_engine_free(e);
    return rc;
  }
  *out = e;
  return 0;
nomem:
  myc_engine_free(e);
  return MYC_ENOMEM;
}

int myc__engine_on_free(myc_engine *e, void (*fn)(void *ud), void *ud) {
  myc__cleanup *c = myc__malloc(&e->alloc, sizeof *c), **p;
  if (c == NULL)
    return MYC_ENOMEM;
  c->fn = fn;
  c->ud = ud;
  c->next = NULL;
  for (p = &e->cleanups; *p != NULL; p = &(*p)->next)
    ;
  *p = c;
  return 0;
}

int myc__engine_beside(myc_engine *e, int (*start)(void *, char *, size_t),
                       void (*quiesce)(void *),
                       char *(*status)(void *, int, size_t *), void *ud) {
  myc__beside *b = myc__malloc(&e->alloc, sizeof *b), **p;
  if (b == NULL)
    return MYC_ENOMEM;
  b->start = start;
  b->quiesce = quiesce;
  b->status = status;
  b->metrics = NULL;
  b->ud = ud;
  b->next = NULL;
  for (p = &e->besides; *p != NULL; p = &(*p)->next)
    ;
  *p = b;
  return 0;
}

int myc__engine_beside_metrics(myc_engine *e, void *ud,
                               char *(*metrics)(void *, size_t *)) {
  myc__beside *b;
  for (b = e->besides; b != NULL; b = b->next)
    if (b->ud == ud) {
      b->metrics = metrics;
      return 0;
    }
  return MYC_ENOENT;
}

uint32_t myc__engine_count(myc_engine *e) {
  uint32_t n;
  uv_mutex_lock(&e->services_lock);
  n = e->nservices;
  uv_mutex_unlock(&e->services_lock);
  return n;
}

static uint32_t hash_name(const char *name, size_t len) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < len; i++)
    h = (h ^ (uint8_t)name[i]) * 16777619u;
  return h;
}

/* The slot of 'name' in the index, or the empty one where it would go.
 * Under services_lock, with an index. */
static myc_service **name_slot(myc_engine *e, const char *name, size_t len) {
  uint32_t mask = e->nby_name - 1, i = hash_name(name, len) & mask;
  for (;; i = (i + 1) & mask) {
    myc_service *s = e->by_name[i];
    if (s == NULL || (s->name_len == len && memcmp(s->name, name, len) == 0))
      return &e->by_name[i];
  }
}

int myc__engine_add_transport(myc_engine *e, const char *name,
                              const char *pattern, myc_message_cb cb, void *ud,
                              int32_t worker, const char *what,
                              const char *key, myc_service **out, char *err,
                              size_t errlen) {
  int rc = myc_engine_add_c_service(e, name, pattern, cb, ud, worker);
  if (rc == 0) {
    *out = myc__engine_find(e, name, strlen(name));
    return 0;
  }
  if (worker >= 0)
    snprintf(err, errlen, "%s %d: cannot add the %s service there (%s; "
             "workers are numbered from 0)", key, (int)worker, name,
             myc_strerror(rc));
  else
    snprintf(err, errlen, "%s: cannot add the %s service: %s", what, name,
             myc_strerror(rc));
  return rc;
}

int64_t myc__engine_topic(myc_engine *e, myc_service *s, const char *name,
                          size_t len) {
  if (s == NULL)
    return myc__topics_resolve(&e->topics, name, len);
  return myc__topics_resolve_quota(&e->topics, name, len, &s->topics_made,
                                   e->max_topics_per_service);
}

void myc__engine_topic_limit(myc_engine *e, myc_service *s, const char *name,
                             size_t len, char *err, size_t errlen) {
  char quoted[96];
  if (errlen == 0)
    return;
  myc__log_quote(quoted, sizeof quoted, name, len);
  if (s != NULL && !myc__topics_full(&e->topics))
    snprintf(err, errlen, "topic '%s' not created: service '%s' has made %u "
             "topics of the engine's topic table, its max_topics_per_service "
             "(raise max_topics_per_service in the config, or "
             "myc_engine_config.max_topics_per_service)", quoted, s->name,
             atomic_load_explicit(&s->topics_made, memory_order_relaxed));
  else
    snprintf(err, errlen, "topic '%s' not created: the engine's topic table "
             "is full (%u topics, made by all services together; topics are "
             "never removed)", quoted, (unsigned)MYC_TOPIC_CHUNKS *
             MYC_TOPIC_CHUNK);
}

myc_service *myc__engine_find(myc_engine *e, const char *name, size_t len) {
  myc_service *s = NULL;
  uv_mutex_lock(&e->services_lock);
  if (e->nby_name > 0)
    s = *name_slot(e, name, len);
  uv_mutex_unlock(&e->services_lock);
  return s;
}

myc_service *myc__engine_pin(myc_engine *e, const char *name, size_t len) {
  myc_service *s = NULL;
  uv_mutex_lock(&e->services_lock);
  if (e->nby_name > 0)
    s = *name_slot(e, name, len);
  /* Under the lock: a service still in the registry holds the registry's
   * reference, so the count cannot be at zero. */
  if (s != NULL)
    atomic_fetch_add(&s->refs, 1);
  uv_mutex_unlock(&e->services_lock);
  return s;
}

int myc__engine_pin_service(myc_engine *e, myc_service *s) {
  int rc = MYC_ENOENT;
  uv_mutex_lock(&e->services_lock);
  if (!atomic_load(&s->removed)) {
    atomic_fetch_add(&s->refs, 1);
    rc = 0;
  }
  uv_mutex_unlock(&e->services_lock);
  return rc;
}

int myc__engine_stats_by_name(myc_engine *e, const char *name, size_t len,
                              myc_service_stats *out) {
  myc_service *s = NULL;
  int rc = MYC_ENOENT;
  uv_mutex_lock(&e->services_lock);
  if (e->nby_name > 0)
    s = *name_slot(e, name, len);
  if (s != NULL) {
    myc__engine_stats_locked(e, s, out);
    rc = 0;
  }
  uv_mutex_unlock(&e->services_lock);
  return rc;
}

myc_service *myc__engine_at(myc_engine *e, uint32_t slot, uint64_t serial) {
  myc_service *s = NULL;
  uv_mutex_lock(&e->services_lock);
  if (slot < e->endservices && e->services[slot] != NULL &&
      e->services[slot]->serial == serial)
    s = e->services[slot];
  uv_mutex_unlock(&e->services_lock);
  return s;
}

/* Removes 's' from the name index, shifting back the names after it in
 * their run (linear probing keeps no tombstones).  Under services_lock. */
static void index_delete(myc_engine *e, myc_service *s) {
  uint32_t mask = e->nby_name - 1, i, j;
  myc_service **slot = name_slot(e, s->name, s->name_len);
  if (*slot != s)
    return;
  i = (uint32_t)(slot - e->by_name);
  e->by_name[i] = NULL;
  for (j = (i + 1) & mask; e->by_name[j] != NULL; j = (j + 1) & mask) {
    myc_service *m = e->by_name[j];
    uint32_t home = hash_name(m->name, m->name_len) & mask;
    /* 'm' may fill the hole unless its home lies cyclically in (i, j]. */
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      e->by_name[i] = m;
      e->by_name[j] = NULL;
      i = j;
    }
  }
}

/* Closes the registry's holes once they outnumber its services (and are
 * at least 64): one pass, order kept, that tells each service it moves
 * its new slot.  The removals since the last pass made the holes, so
 * they pay for it.  Under services_lock. */
static void compact_services(myc_engine *e) {
  uint32_t i, j = 0, holes = e->endservices - e->nservices;
  if (holes < 64 || holes < e->nservices)
    return;
  e->registry_work += e->endservices;
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL) {
      e->services[j] = e->services[i];
      e->services[j]->slot = j;
      j++;
    }
  e->endservices = j;
  e->rank_ok = 0;
}

int myc__engine_unregister(myc_engine *e, myc_service *s) {
  uv_mutex_lock(&e->services_lock);
  if (atomic_load(&s->removed)) {
    uv_mutex_unlock(&e->services_lock);
    return MYC_ENOENT;
  }
  atomic_store(&s->removed, 1);
  index_delete(e, s);
  e->services[s->slot] = NULL;
  e->nservices--;
  e->registry_work++;
  e->rank_ok = 0;
  compact_services(e);
  s->limbo_prev = NULL;
  s->limbo_next = e->limbo;
  if (e->limbo != NULL)
    e->limbo->limbo_prev = s;
  e->limbo = s;
  e->nlimbo++;
  atomic_fetch_add(&e->removals, 1);
  uv_mutex_unlock(&e->services_lock);
  return 0;
}

/* Room in the index for one more name.  Under services_lock.  Returns 0
 * or MYC_ENOMEM (the index unchanged). */
static int index_reserve(myc_engine *e) {
  uint32_t n = e->nby_name ? 2 * e->nby_name : 16, i, old = e->nby_name;
  myc_service **was = e->by_name;
  if (2 * (e->nservices + 1) <= e->nby_name)
    return 0;
  e->by_name = myc__calloc(&e->alloc, n * sizeof *e->by_name);
  if (e->by_name == NULL) {
    e->by_name = was;
    return MYC_ENOMEM;
  }
  e->nby_name = n;
  for (i = 0; i < old; i++)
    if (was[i] != NULL)
      *name_slot(e, was[i]->name, was[i]->name_len) = was[i];
  myc__free(&e->alloc, was, old * sizeof *was);
  return 0;
}

static int place(myc_engine *e, int32_t worker, myc__worker **out) {
  uint32_t n = e->sched.nworkers;
  if (worker >= 0 && (uint32_t)worker >= n)
    return MYC_EINVAL;
  if (worker < 0)
    worker = (int32_t)(atomic_fetch_add(&e->next_worker, 1) % n);
  *out = &e->sched.workers[worker];
  return 0;
}

static int append_service(myc_engine *e, myc_service *s) {
  uv_mutex_lock(&e->services_lock);
  /* Checked again here: two spawns of one name may race. */
  if (e->nby_name > 0 && *name_slot(e, s->name, s->name_len) != NULL) {
    uv_mutex_unlock(&e->services_lock);
    return MYC_EEXIST;
  }
  if (e->nservices >= e->max_services) {
    uv_mutex_unlock(&e->services_lock);
    return MYC_ELIMIT;
  }
  if (index_reserve(e) != 0) {
    uv_mutex_unlock(&e->services_lock);
    return MYC_ENOMEM;
  }
  if (e->endservices == e->capservices) {
    uint32_t cap = e->capservices ? 2 * e->capservices : 8;
    myc_service **p = myc__realloc(&e->alloc, e->services,
                                   e->capservices * sizeof *p, cap * sizeof *p);
    if (p == NULL) {
      uv_mutex_unlock(&e->services_lock);
      return MYC_ENOMEM;
    }
    e->services = p;
    e->capservices = cap;
  }
  s->slot = e->endservices;
  s->serial = ++e->next_serial;
  e->services[e->endservices++] = s;
  e->nservices++;
  *name_slot(e, s->name, s->name_len) = s;
  uv_mutex_unlock(&e->services_lock);
  return 0;
}

int myc__engine_check_new(myc_engine *e, const char *name, int32_t worker,
                          myc__worker **w, char *err, size_t errlen,
                          int late_ok) {
  const char *why = name ? myc__service_name_check(name) : "it has none";
  if (why != NULL) {
    /* Quoted escaped: the name may hold a newline or a quote. */
    char shown[80];
    myc__log_quote(shown, sizeof shown, name ? name : "", name ? strlen(name) : 0);
    snprintf(err, errlen, "service name \"%s\" is invalid: %s", shown, why);
    return MYC_EINVAL;
  }
  if (e->started && !late_ok) {
    snprintf(err, errlen, "service '%s' not added: the engine is running, "
             "and services are added before myc_engine_start() (a running "
             "service's code changes with myc_engine_reload())", name);
    return MYC_ESTATE;
  }
  if (myc__engine_find(e, name, strlen(name)) != NULL) {
    if (late_ok && e->started)
      snprintf(err, errlen, "spawn of '%s': the name is taken by a running "
               "service", name);
    else
      snprintf(err, errlen, "service '%s' is defined twice", name);
    return MYC_EEXIST;
  }
  if (place(e, worker, w) != 0) {
    snprintf(err, errlen, "service '%s': worker %d does not exist (workers "
             "are numbered 0 to %u)", name, worker, e->sched.nworkers - 1);
    return MYC_EINVAL;
  }
  return 0;
}

int myc__engine_register(myc_engine *e, myc_service *s, char *err,
                          size_t errlen) {
  int rc = append_service(e, s);
  if (rc != 0) {
    if (rc == MYC_EEXIST)
      snprintf(err, errlen, "spawn of '%s': the name is taken by a running "
               "service", s->name);
    else if (rc == MYC_ELIMIT)
      snprintf(err, errlen, "service '%s' not added: the engine already runs "
               "%u services, its max_services (raise max_services in the "
               "config, or myc_engine_config.max_services)", s->name,
               e->max_services);
    else
      snprintf(err, errlen, "out of memory");
    myc__topics_unsubscribe_all(&e->topics, s);
    myc__service_free(s);
  }
  return rc;
}

static int register_service(myc_engine *e, myc_service *s, char *err,
                            size_t errlen) {
  return myc__engine_register(e, s, err, errlen);
}

int myc_engine_add_service(myc_engine *e, const myc_service_config *sc,
                           char *err, size_t errlen) {
  myc__worker *w;
  myc_service *s;
  char dummy[1];
  int rc;
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  rc = myc__engine_check_new(e, sc->name, sc->worker, &w, err, errlen, 0);
  if (rc == 0)
    rc = myc__service_new_lua(e, sc, w, &s, err, errlen);
  if (rc == 0)
    rc = register_service(e, s, err, errlen);
  return rc;
}

int myc_engine_add_c_service(myc_engine *e, const char *name,
                             const char *pattern, myc_message_cb cb, void *ud,
                             int32_t worker) {
  myc__worker *w;
  myc_service *s;
  char err[256];
  /* A manual engine runs on the caller's thread, so a C service (which
   * has no init) can join it at any time: tests add collectors late. */
  int rc = myc__engine_check_new(e, name, worker, &w, err, sizeof err,
                             e->manual);
  if (rc == MYC_ESTATE)
    myc__log_write(&e->log, MYC_LOG_ERROR, myc__clock_now(&e->clock), NULL, 0,
                   NULL, NULL, err, strlen(err), NULL, 0);
  if (rc == 0 && (cb == NULL || pattern == NULL))
    rc = MYC_EINVAL;
  if (rc == 0)
    rc = myc__service_new_c(e, name, pattern, cb, ud, w, &s, err, sizeof err);
  if (rc == 0)
    rc = register_service(e, s, err, sizeof err);
  if (rc == 0 && e->started)
    atomic_store(&s->state, MYC_SVC_RUNNING);
  return rc;
}

int myc_engine_set_contracts(myc_engine *e, myc_contract_set *cs,
                             int validate) {
  uint32_t i;
  if (cs == NULL || myc_contract_error_count(cs) != 0)
    return MYC_EINVAL;
  if (e->contracts != NULL)
    return MYC_ESTATE;
  /* A Lua state receives the set when it is created: one made before
   * would never see it. */
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL && e->services[i]->cur.L != NULL)
      return MYC_ESTATE;
  e->contracts = cs;
  e->validate = validate != 0;
  return 0;
}

const myc_contract_set *myc_engine_contracts(const myc_engine *e) {
  return e->contracts;
}

/* Stops every service that ran an init, last first. */
static void quiesce(myc_engine *e);

static void stop_started(myc_engine *e, uint32_t n) {
  while (n-- > 0)
    if (e->services[n] != NULL)
      myc__service_stop(e->services[n]);
}

int myc_engine_start(myc_engine *e, char *err, size_t errlen) {
  myc__sched *sc = &e->sched;
  uint32_t i;
  char dummy[1];
  int rc;
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (e->started)
    return MYC_ESTATE;
  /* Until the threads start, the calling thread runs the workers. */
  for (i = 0; i < sc->nworkers; i++)
    myc__owner_take(&sc->workers[i].owner);
  /* Holes too: a service an init spawned ended (it is removed then). */
  for (i = 0; i < e->endservices; i++) {
    if (e->services[i] == NULL)
      continue;
    rc = myc__service_init(e->services[i], err, errlen);
    if (rc != 0) {
      /* Nothing half-started: undo the inits that succeeded. */
      stop_started(e, i);
      return rc;
    }
  }
  /* What the inits emitted for other workers goes before the threads
   * start. */
  for (i = 0; i < sc->nworkers; i++)
    myc__worker_flush(&sc->workers[i]);
  /* A service is only handed messages once it runs: what was queued
   * before (a manual engine turned before its start) waits for this. */
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL)
      myc__service_wake(e->services[i]);
  /* The layers above start what runs beside the workers (the control
   * socket is bound here, so a bad path fails the start). */
  rc = e->hooks.start ? e->hooks.start(e->hooks.ud, err, errlen) : 0;
  if (rc != 0) {
    stop_started(e, e->endservices);
    return rc;
  }
  {
    myc__beside *b;
    for (b = e->besides; b != NULL && rc == 0; b = b->next)
      rc = b->start(b->ud, err, errlen);
    if (rc != 0) {
      quiesce(e);
      stop_started(e, e->endservices);
      return rc;
    }
  }
  e->started = 1;
  if (e->hooks.started != NULL)
    e->hooks.started(e->hooks.ud);
  if (e->manual)
    return 0;
  /* On a host loop, worker 0 is the host's thread (hostloop.c). */
  for (i = e->hostloop != NULL ? 1 : 0; i < sc->nworkers; i++) {
    rc = myc__worker_start(&sc->workers[i]);
    if (rc != 0) {
      snprintf(err, errlen, "cannot start worker thread %u: %s", i,
               myc_strerror(rc));
      myc__engine_stop_why(e, 1, "a worker thread could not start");
      return rc;
    }
  }
  return 0;
}

void myc__engine_stop_why(myc_engine *e, int code, const char *why) {
  int expected = 0;
  if (atomic_compare_exchange_strong(&e->stopping, &expected, 1)) {
    snprintf(e->stop_reason, sizeof e->stop_reason, "%s", why);
    atomic_store(&e->exit_code, code);
  }
  uv_mutex_lock(&e->stop_lock);
  if (e->stop_async != NULL)
    uv_async_send(e->stop_async);
  uv_mutex_unlock(&e->stop_lock);
}

void myc_engine_stop(myc_engine *e, int code) {
  myc__engine_stop_why(e, code, "stop requested by the host (myc_engine_stop)");
}

int myc_engine_stopping(myc_engine *e, int *code) {
  int s = atomic_load(&e->stopping);
  if (s && code != NULL)
    *code = atomic_load(&e->exit_code);
  return s;
}

static void quiesce(myc_engine *e) {
  myc__beside *b;
  if (e->hooks.quiesce != NULL)
    e->hooks.quiesce(e->hooks.ud);
  for (b = e->besides; b != NULL; b = b->next)
    b->quiesce(b->ud);
}

/* ---- threaded stop sequence ------------------------------------------- */

typedef struct {
  myc_engine *e;
  uv_async_t async;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t poll;
  int draining;
  int has_signals;
  uint64_t last_delivered;
  int stable_polls;
  uint64_t drain_started;
  int signals;
} stopper;

static int all_idle(myc_engine *e) {
  uint32_t i;
  for (i = 0; i < e->sched.nworkers; i++)
    if (!myc__worker_idle(&e->sched.workers[i]))
      return 0;
  return 1;
}

static void stopper_close(stopper *st) {
  uv_close((uv_handle_t *)&st->async, NULL);
  uv_close((uv_handle_t *)&st->poll, NULL);
  if (st->has_signals) {
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    uv_close((uv_handle_t *)&st->sighup, NULL);
  }
}

/* Drained when every worker is idle and no message was handled between
 * two polls (a message in flight between workers keeps one busy). */
int myc__engine_drained(myc_engine *e, uint64_t *last, int *stable) {
  uint64_t d = atomic_load(&e->sched.delivered);
  *stable = all_idle(e) && d == *last ? *stable + 1 : 0;
  *last = d;
  return *stable >= 2;
}

void myc__engine_halt(myc_engine *e) {
  /* Nothing may hand the workers a job once they stop. */
  quiesce(e);
  myc__workers_set_phase(&e->sched, MYC_PHASE_STOP);
}

static void on_poll(uv_timer_t *h) {
  stopper *st = h->data;
  myc_engine *e = st->e;
  if (myc__engine_drained(e, &st->last_delivered, &st->stable_polls) ||
      uv_now(h->loop) - st->drain_started > MYC_DRAIN_TIMEOUT_MS) {
    uv_timer_stop(h);
    myc__engine_halt(e);
    stopper_close(st);
  }
}

static void begin_drain(stopper *st) {
  if (st->draining)
    return;
  st->draining = 1;
  st->drain_started = uv_now(st->async.loop);
  myc__workers_set_phase(&st->e->sched, MYC_PHASE_DRAIN);
  uv_timer_start(&st->poll, on_poll, 1, 1);
}

static void on_stop_async(uv_async_t *h) { begin_drain(h->data); }

static void on_hangup(uv_signal_t *h, int signum) {
  stopper *st = h->data;
  myc__engine_hooks *hk = &st->e->hooks;
  (void)signum;
  if (!st->draining && hk->hangup != NULL)
    hk->hangup(hk->ud);
}

static void on_signal(uv_signal_t *h, int signum) {
  stopper *st = h->data;
  /* A second signal while draining stops without waiting. */
  if (st->signals++ > 0 && st->draining) {
    st->drain_started = 0;
    return;
  }
  myc__engine_stop_why(st->e, 0, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* One line when myc_engine_run() returns: what was handled and lost over
 * the run, and why it ended. */
static void log_stop(myc_engine *e) {
  myc_service_stats st;
  uint64_t in = 0, dropped = 0, unrouted = 0, errors = 0;
  char line[640];
  uint32_t i;
  for (i = 0; i < e->endservices; i++) {
    if (e->services[i] == NULL)
      continue;
    myc__engine_stats_locked(e, e->services[i], &st);
    in += st.in;
    dropped += st.dropped;
    unrouted += st.unrouted;
    errors += st.errors;
  }
  /* Every service's suppressed records are summed up before the last
   * line: the workers are gone, nobody logs any more. */
  myc__log_flush_held(&e->log, myc__clock_now(&e->clock), 1);
  snprintf(line, sizeof line,
           "stopped (%s): %llu messages handled, %llu dropped, %llu "
           "unrouted, %llu handler errors; exit code %d",
           e->stop_reason[0] ? e->stop_reason : "stop requested",
           (unsigned long long)in, (unsigned long long)dropped,
           (unsigned long long)unrouted, (unsigned long long)errors,
           atomic_load(&e->exit_code));
  myc_engine_log(e, MYC_LOG_INFO, NULL, line);
}

/* Once the workers are gone, what is still queued or in transit is
 * released and counted as dropped at shutdown, so that the counters are
 * final when myc_engine_run returns. */
static void account_leftovers(myc_engine *e) {
  uint32_t i;
  for (i = 0; i < e->sched.nworkers; i++)
    myc__worker_discard_inbox(&e->sched.workers[i]);
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL)
      myc__service_drop_leftovers(e->services[i]);
}

int myc_engine_run(myc_engine *e, int handle_signals) {
  uv_loop_t loop;
  stopper st;

  if (e->manual || !e->started || e->hostloop != NULL)
    return MYC_ESTATE;
  memset(&st, 0, sizeof st);
  st.e = e;
  uv_loop_init(&loop);
  uv_async_init(&loop, &st.async, on_stop_async);
  uv_timer_init(&loop, &st.poll);
  st.async.data = st.poll.data = &st;
  if (handle_signals) {
    st.has_signals = 1;
    uv_signal_init(&loop, &st.sigint);
    uv_signal_init(&loop, &st.sigterm);
    uv_signal_init(&loop, &st.sighup);
    st.sigint.data = st.sigterm.data = st.sighup.data = &st;
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    uv_signal_start(&st.sighup, on_hangup, SIGHUP);
  }
  uv_mutex_lock(&e->stop_lock);
  e->stop_async = &st.async;
  uv_mutex_unlock(&e->stop_lock);
  if (atomic_load(&e->stopping))
    begin_drain(&st);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_mutex_lock(&e->stop_lock);
  e->stop_async = NULL;
  uv_mutex_unlock(&e->stop_lock);
  uv_loop_close(&loop);
  myc__engine_finish(e);
  return atomic_load(&e->exit_code);
}

void myc__engine_finish(myc_engine *e) {
  uint32_t i;
  for (i = 0; i < e->sched.nworkers; i++)
    myc__worker_join(&e->sched.workers[i]);
  account_leftovers(e);
  e->started = 0;
  log_stop(e);
}

/* ---- manual engines ----------------------------------------------------- */

int64_t myc_engine_run_once(myc_engine *e, uint64_t max_batches) {
  uint64_t handled = 0;
  uint32_t i;
  int busy = 1;
  if (!e->manual)
    return MYC_ESTATE;
  while (busy) {
    busy = 0;
    for (i = 0; i < e->sched.nworkers; i++) {
      myc__worker *w = &e->sched.workers[i];
      /* Sockets and clients of C facilities live on the worker loops:
       * a manual engine turns them here, without blocking. */
      uv_run(&w->loop, UV_RUN_NOWAIT);
      myc__worker_drain_inbox(w);
      handled += myc__worker_run_ready(
          w, max_batches ? (uint32_t)max_batches : 0);
    }
    /* A manual engine has no log thread: summary lines of services gone
     * quiet while over their log rate are due here. */
    myc__log_flush_held(&e->log, myc__clock_now(&e->clock), 0);
    if (max_batches)
      break;
    /* Only once every worker had its turn: a later one may have handed
     * messages to an earlier one, whose own check came before. */
    for (i = 0; i < e->sched.nworkers; i++) {
      myc__worker *w = &e->sched.workers[i];
      busy |= w->ready_head != NULL ||
              atomic_load_explicit(&w->inbox.nonempty, memory_order_relaxed);
    }
  }
  return (int64_t)handled;
}

static myc__worker *earliest_timer(myc_engine *e, int64_t limit) {
  myc__worker *best = NULL;
  uint32_t i;
  for (i = 0; i < e->sched.nworkers; i++) {
    myc__worker *w = &e->sched.workers[i];
    int64_t t = myc__timers_next(&w->timers);
    if (t <= limit && (best == NULL || t < myc__timers_next(&best->timers)))
      best = w;
  }
  return best;
}

int myc_engine_advance(myc_engine *e, double ms) {
  int64_t target;
  myc__worker *w;
  if (!e->manual || !(ms >= 0 && ms <= MYC_MAX_MS))
    return e->manual ? MYC_EINVAL : MYC_ESTATE;
  target = myc__clock_now(&e->clock) + (int64_t)(ms * 1e6);
  myc_engine_run_once(e, 0);
  while (!atomic_load(&e->stopping) && (w = earliest_timer(e, target))) {
    int64_t t = myc__timers_next(&w->timers);
    myc__clock_set(&e->clock, t);
    myc__worker_fire_timers(w, t);
    myc_engine_run_once(e, 0);
  }
  myc__clock_set(&e->clock, target);
  myc_engine_run_once(e, 0);
  return 0;
}

int myc_engine_shutdown(myc_engine *e) {
  uint32_t i, rounds;
  if (!e->manual)
    return MYC_ESTATE;
  if (!atomic_load(&e->stopping))
    myc_engine_stop(e, 0);
  quiesce(e);
  /* Bounded: services that keep messaging each other must not hang it. */
  for (rounds = 0; rounds < 1000 && myc_engine_run_once(e, 64) > 0; rounds++)
    ;
  if (e->started)
    for (i = 0; i < e->endservices; i++)
      if (e->services[i] != NULL)
        myc__service_stop(e->services[i]);
  for (i = 0; i < e->sched.nworkers; i++)
    myc__worker_flush(&e->sched.workers[i]);
  account_leftovers(e);
  e->started = 0;
  return atomic_load(&e->exit_code);
}

/* ---- publishing from the host ------------------------------------------- */

/* A typed payload from the host must be one of the engine's types, of
 * its size, and (unless validation is off) pass its rules: a subscriber
 * views the bytes as the struct without checking them again. */
static int check_typed(myc_engine *e, uint16_t type, const void *data,
                       size_t len) {
  const myc_contract_type *t =
      e->contracts ? myc_contract_type_by_tag(e->contracts, type) : NULL;
  if (t == NULL)
    return MYC_ECONTRACT;
  if (len != myc_contract_type_size(t))
    return MYC_EINVAL;
  return e->validate ? myc_contract_validate(t, data, len, NULL, 0) : 0;
}

int myc_publish(myc_engine *e, const char *topic, int kind, uint16_t type,
                const void *data, size_t len) {
  int64_t id = myc__topics_resolve(&e->topics, topic, strlen(topic));
  myc__pool *pool = e->manual ? &e->host_pool : NULL;
  myc__topic *t;
  uint64_t r[3];
  myc_buf *b;
  int rc;

  if (id < 0)
    return (int)id;
  if (kind < MYC_KIND_RAW || kind > MYC_KIND_TYPED)
    return MYC_EINVAL;
  if (kind == MYC_KIND_TYPED && (rc = check_typed(e, type, data, len)) != 0)
    return rc;
  t = myc__topics_get(&e->topics, (uint32_t)id);
  if (len > MYC_PAYLOAD_MAX)
    return MYC_ETOOBIG;
  if (len >= MYC_ADMIT_BYTES && (rc = myc__admit(&e->sched, NULL, t, len)) != 0)
    return rc;
  b = myc__frame_new(&e->alloc, pool, t, "host", 4, kind, type, data, len);
  if (b == NULL)
    return MYC_ENOMEM;
  uv_mutex_lock(&e->host_lock);
  r[0] = myc__rng_id(&e->host_rng);
  r[1] = myc__rng_id(&e->host_rng);
  r[2] = myc__rng_id(&e->host_rng);
  b->hdr.seq = ++e->host_seq;
  uv_mutex_unlock(&e->host_lock);
  memcpy(b->hdr.trace_id, r, 16);
  memcpy(b->hdr.span_id, &r[2], 8);
  b->hdr.ts_ns = (uint64_t)myc__clock_now(&e->clock);
  return myc__deliver(&e->topics, &e->sched, NULL, b);
}

/* ---- introspection ------------------------------------------------------ */

uint32_t myc_engine_service_count(myc_engine *e) {
  return myc__engine_count(e);
}

/* The service of rank 'rank' (0: the first of those in the registry, in
 * the order they came), or NULL.  Under services_lock.  With holes, a
 * lookup resumes where the previous one landed when it goes forward, so
 * a scan by rank (myc_engine_service_stats for 0, 1, 2...) reads each
 * slot once; a jump back starts again from the first slot. */
static myc_service *by_rank(myc_engine *e, uint32_t rank) {
  uint32_t slot = 0, at = 0;
  if (rank >= e->nservices)
    return NULL;
  if (e->endservices == e->nservices)
    return e->services[rank];
  if (e->rank_ok && rank >= e->rank_at) {
    slot = e->rank_slot;
    at = e->rank_at;
  }
  for (;; slot++, e->registry_work++) {
    if (e->services[slot] == NULL)
      continue;
    if (at == rank)
      break;
    at++;
  }
  e->rank_at = rank;
  e->rank_slot = slot;
  e->rank_ok = 1;
  return e->services[slot];
}

int myc_engine_service_stats(myc_engine *e, uint32_t index,
                             myc_service_stats *st) {
  myc_service *s;
  uv_mutex_lock(&e->services_lock);
  s = by_rank(e, index);
  if (s != NULL)
    myc__engine_stats_locked(e, s, st);
  uv_mutex_unlock(&e->services_lock);
  return s != NULL ? 0 : MYC_ENOENT;
}

int myc_engine_service_drops(myc_engine *e, uint32_t index,
                             myc_drop_stats *out, uint32_t max) {
  myc_service *s;
  int rc = MYC_ENOENT;
  uv_mutex_lock(&e->services_lock);
  s = by_rank(e, index);
  if (s != NULL)
    rc = myc__engine_drops_locked(e, s, out, max);
  uv_mutex_unlock(&e->services_lock);
  return rc;
}

void myc__engine_stats_locked(myc_engine *e, myc_service *s,
                              myc_service_stats *st) {
  myc__mailbox *mb = &s->task.mb;
  memset(st, 0, sizeof *st);
  st->name = s->name;
  st->worker = (int32_t)s->task.worker->index;
  st->state = myc__service_state_name(atomic_load(&s->state));
  st->in = atomic_load(&s->n_in);
  st->out = atomic_load(&s->n_out);
  st->unrouted = atomic_load(&s->n_unrouted);
  st->errors = atomic_load(&s->n_errors);
  st->requests_dropped = atomic_load(&s->n_requests_dropped);
  st->replies_late = atomic_load(&s->n_replies_late);
  st->logs_suppressed = atomic_load(&s->log_bucket.total);
  st->dropped_oldest = atomic_load(&mb->dropped[MYC_DROP_OLDEST]);
  st->dropped_newest = atomic_load(&mb->dropped[MYC_DROP_NEWEST]);
  st->rejected = atomic_load(&mb->dropped[MYC_DROP_REJECTED]);
  st->too_large = atomic_load(&mb->dropped[MYC_DROP_TOO_LARGE]);
  st->dropped = st->dropped_oldest + st->dropped_newest + st->rejected +
                st->too_large + atomic_load(&mb->dropped[MYC_DROP_SHUTDOWN]);
  st->queue_depth = myc__mailbox_depth(mb);
  st->queue_capacity = mb->capacity;
  st->queue_bytes = atomic_load(&mb->bytes);
  st->queue_max_bytes = mb->max_bytes;
  if (s->cb == NULL) {
    int slot = atomic_load(&s->mem_cur);
    st->memory_bytes = atomic_load(&s->mem[slot].used);
    st->memory_peak = atomic_load(&s->mem[slot].peak);
  }
  st->memory_limit = s->mem[0].limit;
  myc__service_running(s, st->running, sizeof st->running);
  if (e->hooks.stats != NULL)
    e->hooks.stats(e->hooks.ud, s, st);
}

int myc__engine_drops_locked(myc_engine *e, myc_service *s,
                             myc_drop_stats *out, uint32_t max) {
  myc__mailbox *mb = &s->task.mb;
  uint32_t i, n = 0;
  for (i = 0; i <= MYC_DROP_TOPICS && n < max; i++) {
    myc__drop_slot *d = i < MYC_DROP_TOPICS ? &mb->by_topic[i] : &mb->other_topics;
    uint32_t id = atomic_load_explicit(&d->topic_id, memory_order_acquire);
    myc__topic *t;
    if (id == 0)
      continue;
    out[n].dropped_oldest = atomic_load(&d->n[MYC_DROP_OLDEST]);
    out[n].dropped_newest = atomic_load(&d->n[MYC_DROP_NEWEST]);
    out[n].rejected = atomic_load(&d->n[MYC_DROP_REJECTED]);
    out[n].shutdown = atomic_load(&d->n[MYC_DROP_SHUTDOWN]);
    out[n].too_large = atomic_load(&d->n[MYC_DROP_TOO_LARGE]);
    if (out[n].dropped_oldest + out[n].dropped_newest + out[n].rejected +
            out[n].shutdown + out[n].too_large == 0)
      continue;
    t = id == MYC_DROP_OTHER_TOPIC ? NULL : myc__topics_get(&e->topics, id);
    out[n].topic = t != NULL ? t->name : "(other)";
    n++;
  }
  return (int)n;
}

void myc_engine_log(myc_engine *e, myc_log_level level, const char *service,
                    const char *msg) {
  myc__log_write(&e->log, level, myc__clock_now(&e->clock), service,
                 service ? strlen(service) : 0, NULL, NULL, msg, strlen(msg),
                 NULL, 0);
}

/* ---- teardown ----------------------------------------------------------- */

static void run_cleanups(myc_engine *e) {
  myc__cleanup *c = e->cleanups, *next;
  while (e->besides != NULL) {
    myc__beside *b = e->besides;
    e->besides = b->next;
    myc__free(&e->alloc, b, sizeof *b);
  }
  e->cleanups = NULL;
  for (; c != NULL; c = next) {
    next = c->next;
    c->fn(c->ud);
    myc__free(&e->alloc, c, sizeof *c);
  }
}

void myc_engine_free(myc_engine *e) {
  myc__sched *sc;
  uint32_t i;
  if (e == NULL)
    return;
  sc = &e->sched;
  if (e->hostloop != NULL)
    myc__hostloop_abandon(e);
  if (e->started && !e->manual) {
    myc_engine_stop(e, 0);
    myc_engine_run(e, 0);
  } else if (e->started) {
    myc_engine_shutdown(e);
  }
  for (i = 0; i < sc->nworkers; i++)
    myc__owner_take(&sc->workers[i].owner);
  e->freeing = 1;
  /* Handed-over messages reference their services: drop them first. */
  quiesce(e);
  for (i = 0; i < sc->nworkers; i++)
    myc__worker_discard_inbox(&sc->workers[i]);
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL)
      myc__service_free(e->services[i]);
  /* Removed, with the jobs that would have freed them cancelled. */
  while (e->limbo != NULL) {
    myc_service *s = e->limbo;
    e->limbo = s->limbo_next;
    myc__service_free(s);
  }
  run_cleanups(e);
  myc__free(&e->alloc, e->services, e->capservices * sizeof *e->services);
  myc__free(&e->alloc, e->by_name, e->nby_name * sizeof *e->by_name);
  for (i = 0; i < sc->nworkers; i++)
    myc__worker_destroy(&sc->workers[i]);
  if (sc->workers != NULL) {
    myc__free(&e->alloc, sc->workers, sc->nworkers_max * sizeof *sc->workers);
    myc__grace_destroy(&sc->hosts);
  }
  if (e->topics.slots != NULL)
    myc__topics_destroy(&e->topics);
  myc__pool_destroy(&e->host_pool);
  if (e->log.alloc != NULL)
    myc__log_destroy(&e->log);
  uv_mutex_destroy(&e->host_lock);
  uv_mutex_destroy(&e->stop_lock);
  uv_mutex_destroy(&e->services_lock);
  /* After the services: their Lua states read the set until closed. */
  myc_contract_free(e->contracts);
  myc__strfree(&e->alloc, e->node);
  if (e->bytecode.dir != NULL)
    myc__bytecode_destroy(&e->bytecode);
  /* After the services: their budgets gave their slabs back. */
  if (e->slabs.base != NULL)
    myc__slabs_destroy(&e->slabs);
  myc__strfree(&e->alloc, e->lua_path);
  myc__free(&e->alloc, e, sizeof *e);
}
