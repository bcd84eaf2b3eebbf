/* service.c -- services (see service.h): creation, the batch dispatch
 * its worker runs, timers and facility events, dead letters, stop and
 * teardown.  A handler error costs the message that raised it (it goes
 * to "$dead") and the instance, which the 'terminated' hook replaces; the
 * mailbox and the rest of the batch wait for the next instance.
 */
#include "runtime/service.h"

#include "base/file.h"
#include "runtime/activation.h"
#include "runtime/emit.h"
#include "runtime/engine.h"
#include "runtime/instance.h"
#include "runtime/request.h"
#include "runtime/span.h"
#include "runtime/warm.h"

#include <lauxlib.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

static const myc__task_ops service_ops;

const char *myc__service_state_name(int state) {
  switch (state) {
  case MYC_SVC_LOADED:
    return "loaded";
  case MYC_SVC_RUNNING:
    return "running";
  case MYC_SVC_RESTARTING:
    return "restarting";
  case MYC_SVC_STOPPED:
    return "stopped";
  default:
    return "failed";
  }
}

const char *myc__service_name_check(const char *name) {
  size_t i, len = strlen(name);
  if (len == 0 || len > MYC_SOURCE_MAX)
    return "a service name is 1 to 255 bytes";
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    int word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '_';
    if (!word && (i == 0 || (c != '-' && c != '.' && c != ':')))
      return "a service name is letters, digits and _ - . :, starting "
             "with a letter, a digit or _";
  }
  return NULL;
}

/* A service with its name and mailbox, placed on 'w', with no instance.
 * Returns NULL (with the reason in 'err') for a bad name or mailbox, or
 * out of memory. */
static myc_service *service_alloc(myc_engine *e, const char *name,
                                  const myc_mailbox_config *mb,
                                  myc__worker *w, char *err, size_t errlen) {
  myc_service *s;
  size_t len = strlen(name);
  int i, rc = MYC_ENOMEM;
  if (len == 0 || len > MYC_SOURCE_MAX) {
    snprintf(err, errlen, "a service needs a name of 1 to 255 bytes");
    return NULL;
  }
  s = myc__calloc(&e->alloc, sizeof *s);
  if (s == NULL)
    goto nomem;
  s->name = myc__strdup(&e->alloc, name);
  if (s->name == NULL)
    goto fail_name;
  rc = myc__mailbox_init(&s->task.mb, &e->alloc, mb);
  if (rc != 0) {
    if (rc == MYC_EINVAL)
      snprintf(err, errlen, "service '%s': invalid mailbox settings", name);
    goto fail_mailbox;
  }
  if (uv_mutex_init(&s->hook_lock) != 0)
    goto fail_lock;
  s->name_len = (uint8_t)len;
  s->log_bucket.service = s->name;
  s->log_bucket.service_len = len;
  s->eng = e;
  s->topics = &e->topics;
  /* Placed by the caller: on the worker's thread, once the service is
   * complete (a spawned one from another thread, later). */
  s->task.worker = w;
  s->task.ops = &service_ops;
  /* Set once: a service never changes worker, and ctx:new's inline path
   * reads these when the service's Lua state starts, as constants. */
  if (w != NULL) {
    s->view.small_free = &w->pool.free[0];
    s->view.small_nfree = &w->pool.nfree[0];
  }
  atomic_init(&s->refs, 1);
  s->view.batch = s->batch;
  s->view.cursor = -1;
  myc__instance_reset(&s->cur);
  myc__instance_reset(&s->retired);
  myc__instance_reset(&s->dying);
  s->hook_slot = -1;
  for (i = 0; i < MYC_SLOTS; i++) {
    s->mem[i].base = &e->lua_alloc;
    s->mem[i].owner = s;
    s->mem[i].on_trip = myc__budget_tripped;
    s->mem[i].slab_size = MYC_LUA_SLAB;
    s->mem[i].pool = &e->slabs;
  }
  atomic_init(&s->state, MYC_SVC_LOADED);
  return s;
fail_lock:
  myc__mailbox_destroy(&s->task.mb, &e->alloc);
fail_mailbox:
  myc__strfree(&e->alloc, s->name);
fail_name:
  myc__free(&e->alloc, s, sizeof *s);
  if (rc == MYC_EINVAL)
    return NULL;
nomem:
  snprintf(err, errlen, "service '%s': out of memory", name);
  return NULL;
}

/* ---- facility resources ------------------------------------------------ */

void myc__service_attach(myc_service *s, myc__resource *r) {
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  r->owner = s->hook_L;
  r->prev = NULL;
  r->next = s->resources;
  if (s->resources != NULL)
    s->resources->prev = r;
  s->resources = r;
}

void myc__service_detach(myc_service *s, myc__resource *r) {
  if (r->prev == NULL && s->resources != r)
    return; /* not attached */
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    s->resources = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

void myc__service_stop_resources(myc_service *s, lua_State *owner) {
  myc__resource *r = s->resources, *next;
  while (r != NULL) {
    next = r->next;
    if (owner == NULL || r->owner == owner) {
      myc__service_detach(s, r);
      r->stop(r);
      /* A stop may detach others: start over. */
      next = s->resources;
    }
    r = next;
  }
}

/* ---- creation ------------------------------------------------------------ */

/* The budgets of 'sc' in range, else MYC_EINVAL naming the key: a limit of
 * 1e300 MB or an infinite timeout would overflow its conversion, and a
 * heap under 1 MB cannot even hold the service host. */
static int check_budgets(const myc_service_config *sc, char *err,
                         size_t errlen) {
  double mb = sc->memory_limit_mb, ms = sc->handler_timeout_ms;
  if (!(mb == 0 || (mb >= MYC_MIN_MEMORY_MB && mb <= MYC_MAX_MEMORY_MB))) {
    snprintf(err, errlen, "service '%s': memory_limit_mb must be 0 (no "
             "limit) or from %.0f to %.0f, got %g", sc->name, MYC_MIN_MEMORY_MB,
             MYC_MAX_MEMORY_MB, mb);
    return MYC_EINVAL;
  }
  if (!(ms <= MYC_MAX_MS) || !(sc->load_timeout_ms <= MYC_MAX_MS)) {
    snprintf(err, errlen, "service '%s': %s must be at most %g, got %g",
             sc->name, ms <= MYC_MAX_MS ? "load_timeout_ms"
                                        : "handler_timeout_ms",
             MYC_MAX_MS, ms <= MYC_MAX_MS ? sc->load_timeout_ms : ms);
    return MYC_EINVAL;
  }
  /* NaN fails every comparison: refused too. */
  if (!(sc->log_rate <= MYC_MAX_LOG_RATE) ||
      !(sc->log_burst == 0 ||
        (sc->log_burst >= 1 && sc->log_burst <= MYC_MAX_LOG_RATE))) {
    snprintf(err, errlen, "service '%s': %s must be %s, got %g", sc->name,
             sc->log_rate <= MYC_MAX_LOG_RATE ? "log_burst" : "log_rate",
             sc->log_rate <= MYC_MAX_LOG_RATE
                 ? "0 (the engine's) or from 1 to 1e9"
                 : "at most 1e9 (0: the engine's, negative: no limit)",
             sc->log_rate <= MYC_MAX_LOG_RATE ? sc->log_burst : sc->log_rate);
    return MYC_EINVAL;
  }
  return 0;
}

static int copy_config(myc_service *s, const myc_service_config *sc) {
  myc_engine *e = s->eng;
  size_t limit = (size_t)(sc->memory_limit_mb * 1048576.0);
  int i;
  s->module = myc__strdup(&e->alloc, sc->module);
  if (s->module == NULL)
    return MYC_ENOMEM;
  if (sc->opts != NULL && sc->opts_len > 0) {
    s->opts = myc__malloc(&e->alloc, sc->opts_len);
    if (s->opts == NULL)
      return MYC_ENOMEM;
    memcpy(s->opts, sc->opts, sc->opts_len);
    s->opts_len = sc->opts_len;
  }
  for (i = 0; i < MYC_SLOTS; i++) {
    s->mem[i].limit = limit;
    /* Room to unwind and report once the limit is hit. */
    s->mem[i].reserve = limit / 4 + 262144;
  }
  s->log_bucket.rate = sc->log_rate;
  s->log_bucket.burst = sc->log_burst;
  s->timeout_ms = sc->handler_timeout_ms > 0 ? sc->handler_timeout_ms : 0;
  s->load_timeout_ms = sc->load_timeout_ms > 0     ? sc->load_timeout_ms
                       : sc->handler_timeout_ms > 0 ? sc->handler_timeout_ms
                                                    : MYC_LOAD_TIMEOUT_MS;
  return 0;
}

/* Tells the hook a service was made.  Returns 0 or its refusal. */
static int announce(myc_service *s, const myc_service_config *sc, char *err,
                    size_t errlen) {
  myc__engine_hooks *h = &s->eng->hooks;
  return h->service_added ? h->service_added(h->ud, s, sc, err, errlen) : 0;
}

int myc__service_prepare(myc_engine *e, const myc_service_config *sc,
                         myc__worker *w, myc_service **out, char *err,
                         size_t errlen) {
  const myc_mailbox_config *mb = sc->mailbox ? sc->mailbox : &e->mailbox;
  myc_service *s = service_alloc(e, sc->name, mb, w, err, errlen);
  int rc;

  *out = NULL;
  if (s == NULL)
    return MYC_EINVAL;
  rc = check_budgets(sc, err, errlen);
  if (rc != 0) {
    myc__service_free(s);
    return rc;
  }
  rc = copy_config(s, sc);
  if (rc == 0)
    rc = announce(s, sc, err, errlen);
  else
    snprintf(err, errlen, "service '%s': out of memory", s->name);
  if (rc != 0) {
    myc__service_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int myc__service_load_first(myc_service *s, myc__instance *in, char *err,
                            size_t errlen) {
  char why[1024];
  int rc = myc__read_file(&s->eng->alloc, s->module, &s->code, &s->code_len,
                          why, sizeof why);
  if (rc != 0) {
    myc__instance_reset(in);
    myc__name_error(s->name, why, err, errlen);
    return rc;
  }
  return myc__instance_load(s, in, s->module, s->code, s->code_len, err,
                            errlen);
}

/* A Lua service with its first instance loaded, not committed.  On
 * failure returns a negative code with the reason in 'err', nothing
 * left. */
static int new_lua(myc_engine *e, const myc_service_config *sc, myc__worker *w,
                   myc_service **out, myc__instance *in, char *err,
                   size_t errlen) {
  int rc = myc__service_prepare(e, sc, w, out, err, errlen);
  if (rc == 0)
    rc = myc__service_load_first(*out, in, err, errlen);
  if (rc != 0 && *out != NULL) {
    myc__service_free(*out);
    *out = NULL;
  }
  return rc;
}

int myc__service_new_lua(myc_engine *e, const myc_service_config *sc,
                         myc__worker *w, myc_service **out, char *err,
                         size_t errlen) {
  myc__instance in;
  int rc = new_lua(e, sc, w, out, &in, err, errlen);
  if (rc == 0) {
    myc__service_place(*out);
    myc__instance_commit(*out, &in);
  }
  return rc;
}

int myc__service_new_spawned(myc_engine *e, const myc_service_config *sc,
                             myc__worker *w, myc_service **out,
                             myc__instance *in, char *err, size_t errlen) {
  return new_lua(e, sc, w, out, in, err, errlen);
}

void myc__service_place(myc_service *s) {
  myc__worker_place(s->task.worker, &s->task, &service_ops);
  s->placed = 1;
  /* Here, not at the allocation: it draws from the worker's generator,
   * which only its thread may (a spawn allocates on another). */
  myc__activation_new_trace(s);
}

void myc__service_start_spawned(myc_service *s) {
  char err[1024];
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (myc__service_init(s, err, sizeof err) == 0) {
    myc__service_wake(s);
    return;
  }
  /* Its init raised (logged): as a crash, for the supervisor. */
  myc__instance_end(s, 0);
  myc__service_terminated(s, MYC_END_ERROR, err);
}

int myc__service_new_c(myc_engine *e, const char *name, const char *pattern,
                       myc_message_cb cb, void *ud, myc__worker *w,
                       myc_service **out, char *err, size_t errlen) {
  myc_service *s = service_alloc(e, name, &e->mailbox, w, err, errlen);
  myc_service_config sc;
  int rc;
  *out = NULL;
  if (s == NULL)
    return MYC_EINVAL;
  myc__service_place(s);
  memset(&sc, 0, sizeof sc);
  sc.name = name;
  s->cb = cb;
  s->cb_ud = ud;
  rc = announce(s, &sc, err, errlen);
  if (rc == 0)
    rc = myc__topics_subscribe(s->topics, s, pattern, strlen(pattern));
  if (rc != 0) {
    myc__service_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int myc__service_init(myc_service *s, char *err, size_t errlen) {
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  if (s->cur.L != NULL) {
    int rc, how;
    lua_pushnil(s->cur.L);
    rc = myc__instance_run_init(s, &s->cur);
    how = myc__activation_end(s, &s->cur, rc);
    if (how >= 0) {
      char why[1024];
      const char *text = myc__call_error(&s->cur, rc);
      myc__end_reason(s, &s->cur, how, text, why, sizeof why);
      myc__name_error(s->name, why, err, errlen);
      myc__log_error(s, "init", text && how == MYC_END_ERROR ? text : why,
                     NULL);
      myc__call_clear(&s->cur);
      atomic_store(&s->state, MYC_SVC_FAILED);
      return MYC_ELUA;
    }
    /* At the engine's start, before it counts as running: its first
     * messages find its handlers compiled.  A spawn while the engine runs
     * starts cold (warm.h). */
    if (!atomic_load(&s->eng->started)) {
      myc__end wh;
      if (myc__instance_warmup(s, &s->cur, &wh, err, errlen) != 0) {
        atomic_store(&s->state, MYC_SVC_FAILED);
        return MYC_ELUA;
      }
    }
  }
  atomic_store(&s->state, MYC_SVC_RUNNING);
  return 0;
}

/* ---- ends ------------------------------------------------------------------ */

void myc__service_wake(myc_service *s) {
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (myc__service_pending(s) && !s->task.queued)
    myc__worker_schedule(s->task.worker, &s->task);
}

void myc__service_terminated(myc_service *s, int how, const char *why) {
  myc__engine_hooks *h = &s->eng->hooks;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (h->terminated != NULL) {
    h->terminated(h->ud, s, how, why);
    return;
  }
  /* No supervisor: the service stays down and leaves its topics. */
  atomic_store(&s->state, myc__end_is_crash(how) ? MYC_SVC_FAILED
                                                 : MYC_SVC_STOPPED);
  myc__topics_unsubscribe_all(s->topics, s);
  myc__request_fail_queued(s, why);
}

/* ---- dead letters ------------------------------------------------------ */

static void pack_str(msgpack_packer *pk, const char *k, const char *v,
                     size_t n) {
  msgpack_pack_str_with_body(pk, k, strlen(k));
  msgpack_pack_str_with_body(pk, v, n);
}

/* Publishes the failed message on "$dead" as a child of its span:
 * {topic, error, service, kind, type, payload, trace_id, span_id}. */
static void dead_letter(myc_service *s, myc_buf *b, const char *error) {
  static const char *kinds[] = {"?", "raw", "table", "typed"};
  static const char again[] = "a dead letter this service failed on is not "
                              "sent to $dead again (it would come back to "
                              "the services that fail on it)";
  const char *kind = kinds[b->hdr.kind <= 3 ? b->hdr.kind : 0];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  char hex[32];

  /* A service that fails on every dead letter would otherwise feed
   * itself one per crash, for as long as it is restarted. */
  if (__atomic_load_n(&b->topic_id, __ATOMIC_RELAXED) == s->eng->dead_topic) {
    myc__log_write(&s->eng->log, MYC_LOG_WARN, s->task.worker->now, s->name,
                   s->name_len, b->hdr.trace_id, b->hdr.span_id, again,
                   sizeof again - 1, NULL, 0);
    return;
  }
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 8);
  pack_str(&pk, "topic", myc__buf_topic(b), b->hdr.topic_len);
  pack_str(&pk, "error", error, strlen(error));
  pack_str(&pk, "service", s->name, s->name_len);
  pack_str(&pk, "kind", kind, strlen(kind));
  msgpack_pack_str_with_body(&pk, "type", 4);
  msgpack_pack_uint16(&pk, b->hdr.type);
  msgpack_pack_str_with_body(&pk, "payload", 7);
  msgpack_pack_bin_with_body(&pk, myc__buf_payload(b), b->hdr.payload_len);
  myc__hex(hex, b->hdr.trace_id, 16);
  pack_str(&pk, "trace_id", hex, 32);
  myc__hex(hex, b->hdr.span_id, 8);
  pack_str(&pk, "span_id", hex, 16);
  if (sb.data != NULL)
    (void)myc__emit_engine(s, s->eng->dead_topic, MYC_KIND_TABLE, sb.data,
                           sb.size);
  msgpack_sbuffer_destroy(&sb);
}

void myc__service_unhandled(myc_service *s) {
  int32_t k = s->view.cursor;
  myc_buf *b;
  char why[400];
  if (k < 0 || (uint32_t)k >= s->view.batch_n)
    return;
  b = s->batch[k];
  snprintf(why, sizeof why, "no handler for topic '%.*s' (no longer "
           "subscribed)", (int)b->hdr.topic_len, myc__buf_topic(b));
  myc__log_write(&s->eng->log, MYC_LOG_WARN, s->task.worker->now, s->name,
                 s->name_len, b->hdr.trace_id, b->hdr.span_id, why,
                 strlen(why), NULL, 0);
  dead_letter(s, b, why);
}

/* ---- dispatch ---------------------------------------------------------- */

static void release_range(myc_service *s, uint32_t from, uint32_t to) {
  myc__worker *w = s->task.worker;
  uint64_t bytes = 0;
  uint32_t i;
  for (i = from; i < to; i++) {
    bytes += s->batch[i]->hdr.payload_len;
    myc__buf_release(&w->pool, &s->eng->alloc, s->batch[i]);
  }
  myc__mailbox_done(&s->task.mb, to - from, bytes);
  myc__counter_add(&s->n_in, to - from);
}

static void fill_message(myc_buf *b, myc_message *m) {
  m->topic = myc__buf_topic(b);
  m->topic_len = b->hdr.topic_len;
  m->source = myc__buf_source(b);
  m->source_len = b->hdr.source_len;
  m->kind = b->hdr.kind;
  m->type = b->hdr.type;
  m->data = myc__buf_payload(b);
  m->len = b->hdr.payload_len;
  m->trace_id = b->hdr.trace_id;
  m->span_id = b->hdr.span_id;
  m->seq = b->hdr.seq;
  m->ts_ns = b->hdr.ts_ns;
}

/* Other threads read the cursor (status, the watchdog). */
static void set_cursor(myc_service *s, int32_t k) {
  __atomic_store_n(&s->view.cursor, k, __ATOMIC_RELEASE);
}

static void dispatch_c(myc_service *s, uint32_t first, uint32_t n) {
  int64_t *marks = s->view.marks;
  myc_message m;
  uint32_t i;
  for (i = first; i < n; i++) {
    set_cursor(s, (int32_t)i);
    fill_message(s->batch[i], &m);
    s->cb(s->cb_ud, &m);
    if (marks != NULL)
      marks[i] = myc__clock_now(&s->eng->clock);
  }
  set_cursor(s, -1);
}

/* The dispatch that started at 'first' ended the instance as 'how' at
 * message 'k' ('rc' nonzero: it raised there; else the whole batch up
 * to 'n' ran).  Reports, dead-letters a crash's message, and hands the
 * instance's end to the 'terminated' hook.  Returns the messages
 * consumed. */
static uint32_t handler_ended(myc_service *s, uint32_t first, uint32_t n,
                              int how, int rc, int traced) {
  const char *text = myc__call_error(&s->cur, rc);
  uint32_t k = rc ? (uint32_t)(s->view.cursor < (int32_t)first
                                   ? (int32_t)first
                                   : s->view.cursor)
                  : n - 1;
  int crash = myc__end_is_crash(how);
  char why[1024];

  set_cursor(s, -1);
  myc__end_reason(s, &s->cur, how, text, why, sizeof why);
  if (traced)
    myc__span_batch_end(s, first, k, rc ? (how == MYC_END_ERROR ? text : why)
                                        : NULL);
  if (crash) {
    myc__counter_add(&s->n_errors, 1);
    if (rc) {
      myc__log_error(s, "handler", how == MYC_END_ERROR ? text : why,
                     &s->batch[k]->hdr);
      set_cursor(s, (int32_t)k);
      /* Its asker hears now, not at its deadline. */
      myc__request_fail(s, s->batch[k], why);
      dead_letter(s, s->batch[k], why);
      set_cursor(s, -1);
    } else {
      myc__log_error(s, "batch", why, NULL);
    }
  }
  myc__call_clear(&s->cur);
  release_range(s, first, k + 1);
  s->batch_pos = k + 1;
  myc__instance_end(s, !crash);
  myc__service_terminated(s, how, why);
  return k + 1 - first;
}

/* Hands the next batch (at most MYC_BATCH messages) to the service.
 * Returns the number of messages handled. */
static uint32_t dispatch(myc_service *s) {
  uint32_t first, n;
  int rc, how, traced = 0;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (atomic_load_explicit(&s->state, memory_order_relaxed) !=
      MYC_SVC_RUNNING)
    return 0;
  if (s->batch_pos == s->view.batch_n) {
    uint32_t i;
    s->view.batch_n = myc__mailbox_pop(&s->task.mb, s->batch, MYC_BATCH);
    s->batch_pos = 0;
    /* Frames from another core miss the cache: start every load now so
     * that the misses overlap instead of stalling one handler each. */
    for (i = 0; i < s->view.batch_n; i++)
      __builtin_prefetch(s->batch[i]);
    for (i = 0; i < s->view.batch_n; i++)
      __builtin_prefetch((char *)s->batch[i] + 64);
  }
  first = s->batch_pos;
  n = s->view.batch_n;
  if (first == n)
    return 0;
  /* Tracing off costs this branch per batch. */
  if (s->eng->tracer != NULL)
    traced = myc__span_batch_begin(s, first, n);
  if (s->cb != NULL) {
    myc__act_begin(s, MYC_ACT_HANDLER);
    dispatch_c(s, first, n);
    myc__act_end(s);
  } else {
    lua_pushinteger(s->cur.L, first);
    lua_pushinteger(s->cur.L, n);
    rc = myc__activate(s, &s->cur, MYC_ACT_HANDLER, s->cur.ref_dispatch, 2,
                       0);
    how = myc__activation_end(s, &s->cur, rc);
    if (how >= 0)
      return handler_ended(s, first, n, how, rc, traced);
  }
  if (traced)
    myc__span_batch_end(s, first, n - 1, NULL);
  release_range(s, first, n);
  s->batch_pos = n;
  return n - first;
}

/* A turn (myc__task_ops.run): what was queued when it began, at most
 * 'batches' batches. */
static uint32_t service_run(myc__task *t, uint32_t batches) {
  myc_service *s = myc__service_of(t);
  uint32_t turn = 0, done = 0;
  uint32_t avail = atomic_load_explicit(&t->mb.len, memory_order_relaxed) +
                   (s->view.batch_n - s->batch_pos);
#if MYC_METRICS
  /* One clock read per batch: each message of a batch counts with the
   * batch's mean time, so the histogram's count is the messages handled
   * and its sum their total time. */
  int64_t t0 = myc__mono_ns(), t1;
#endif
  do {
    uint32_t n;
    myc__worker_tick(t->worker);
    n = dispatch(s);
    done += n;
#if MYC_METRICS
    t1 = myc__mono_ns();
    if (n > 0) {
      myc__hist_add(&s->handler_ns, &myc__hist_handler_ns,
                    (uint64_t)(t1 - t0) / n, n);
      myc__hist_add(&t->worker->batches, &myc__hist_batch, n, 1);
    }
    t0 = t1;
#endif
  } while (++turn < batches && done < avail && myc__service_pending(s));
  return done;
}

static int service_pending(const myc__task *t) {
  return myc__service_pending(
      (const myc_service *)((const char *)t - offsetof(myc_service, task)));
}

static void service_stop(myc__task *t) { myc__service_stop(myc__service_of(t)); }

static const myc__task_ops service_ops = {service_run, service_pending,
                                          service_stop};

/* A timer or an event raised or ended the instance: an ordinary error is
 * logged and counted; a memory, timeout or exit ends the instance. */
static int activation_failed(myc_service *s, const char *what, int how,
                             int rc) {
  const char *text = myc__call_error(&s->cur, rc);
  int crash = myc__end_is_crash(how);
  char why[1024];
  if (how == MYC_END_ERROR) {
    myc__counter_add(&s->n_errors, 1);
    myc__log_error(s, what, text ? text : "error", NULL);
    myc__call_clear(&s->cur);
    return 0;
  }
  myc__end_reason(s, &s->cur, how, text, why, sizeof why);
  if (crash) {
    myc__counter_add(&s->n_errors, 1);
    myc__log_error(s, what, why, NULL);
  }
  myc__call_clear(&s->cur);
  myc__instance_end(s, !crash);
  myc__service_terminated(s, how, why);
  return 1;
}

int myc__service_timer(void *arg, uint64_t id) {
  myc_service *s = arg;
  int keep, rc, how;
  if (s->cur.L == NULL || atomic_load(&s->state) != MYC_SVC_RUNNING)
    return 0;
  myc__activation_new_trace(s);
  lua_pushnumber(s->cur.L, (lua_Number)id);
  rc = myc__activate(s, &s->cur, MYC_ACT_TIMER, s->cur.ref_timer, 1, 1);
  how = myc__activation_end(s, &s->cur, rc);
  if (how >= 0)
    return activation_failed(s, "timer", how, rc) ? 0 : 1;
  keep = lua_toboolean(s->cur.L, -1);
  lua_settop(s->cur.L, 0);
  return keep;
}

int myc__service_event(myc_service *s, uint64_t source, int code,
                       const void *data, size_t len) {
  int found, rc, how;
  lua_State *L = s->cur.L;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (L == NULL || atomic_load(&s->state) != MYC_SVC_RUNNING)
    return MYC_ENOENT;
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  lua_pushnumber(L, (lua_Number)source);
  lua_pushinteger(L, code);
  lua_pushnumber(L, (lua_Number)(uintptr_t)data);
  lua_pushnumber(L, (lua_Number)len);
  rc = myc__activate(s, &s->cur, MYC_ACT_EVENT, s->cur.ref_event, 4, 1);
  how = myc__activation_end(s, &s->cur, rc);
  if (how >= 0) {
    activation_failed(s, "event", how, rc);
    myc__worker_flush(s->task.worker);
    return MYC_ELUA;
  }
  found = lua_toboolean(L, -1);
  lua_settop(L, 0);
  myc__worker_flush(s->task.worker);
  return found ? 0 : MYC_ENOENT;
}

void myc__service_stop(myc_service *s) {
  int state = atomic_load(&s->state);
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (state == MYC_SVC_STOPPED || state == MYC_SVC_LOADED)
    return;
  atomic_store(&s->state, MYC_SVC_STOPPED);
  myc__instance_retire(s, &s->dying, 0);
  myc__instance_retire(s, &s->retired, 0);
  if (s->cur.L != NULL) {
    myc__activation_new_trace(s);
    myc__worker_tick(s->task.worker);
    int rc = myc__activate(s, &s->cur, MYC_ACT_STOP, s->cur.ref_stop, 0, 0);
    if (rc != 0) {
      const char *text = myc__call_error(&s->cur, rc);
      myc__log_error(s, "stop", text ? text : "memory limit exceeded", NULL);
      myc__call_clear(&s->cur);
    }
  }
  myc__request_drop_pending(s);
  /* After the module's stop, which may still close them cleanly. */
  myc__service_stop_resources(s, NULL);
}

uint64_t myc__service_end(myc_service *s, const char *why) {
  uint64_t queued;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  myc__service_stop(s);
  atomic_store(&s->state, MYC_SVC_STOPPED);
  myc__topics_unsubscribe_all(s->topics, s);
  /* Its askers hear now rather than at their deadlines. */
  myc__request_fail_queued(s, why);
  myc__instance_close(s, &s->dying);
  myc__instance_close(s, &s->retired);
  myc__instance_end(s, 0);
  myc__instance_forget_timers(s, 0, UINT64_MAX);
  queued = (s->view.batch_n - s->batch_pos) +
           atomic_load_explicit(&s->task.mb.len, memory_order_relaxed);
  myc__service_drop_leftovers(s);
  myc__worker_flush(s->task.worker);
  return queued;
}

/* Counts messages 'from' to 'to' of the batch as lost at shutdown and
 * releases them. */
static void drop_range(myc_service *s, uint32_t from, uint32_t to) {
  myc__mailbox *mb = &s->task.mb;
  uint64_t bytes = 0;
  uint32_t i;
  for (i = from; i < to; i++) {
    myc__mailbox_count(mb, MYC_DROP_SHUTDOWN, s->batch[i]->topic_id, 1);
    bytes += s->batch[i]->hdr.payload_len;
    myc__buf_release(&s->task.worker->pool, &s->eng->alloc, s->batch[i]);
  }
  myc__mailbox_done(mb, to - from, bytes);
}

void myc__service_drop_leftovers(myc_service *s) {
  uint32_t n;
  drop_range(s, s->batch_pos, s->view.batch_n);
  s->batch_pos = s->view.batch_n;
  while ((n = myc__mailbox_pop(&s->task.mb, s->batch, MYC_BATCH)) > 0)
    drop_range(s, 0, n);
}

/* ---- files the code loaded ---------------------------------------------- */

int myc__service_depend(myc_service *s, const char *path, uint64_t digest) {
  const myc__alloc *a = &s->eng->alloc;
  struct myc__dep *grown;
  char *copy;
  uint32_t i, cap;
  uv_mutex_lock(&s->hook_lock);
  for (i = 0; i < s->ndeps; i++)
    if (strcmp(s->deps[i].path, path) == 0) {
      s->deps[i].digest = digest;
      uv_mutex_unlock(&s->hook_lock);
      return 0;
    }
  cap = s->capdeps ? 2 * s->capdeps : 8;
  grown = s->ndeps < s->capdeps
              ? s->deps
              : myc__realloc(a, s->deps, s->capdeps * sizeof *s->deps,
                             cap * sizeof *s->deps);
  if (grown != NULL && grown != s->deps) {
    s->deps = grown;
    s->capdeps = cap;
  }
  copy = grown ? myc__strdup(a, path) : NULL;
  if (copy != NULL) {
    s->deps[s->ndeps].path = copy;
    s->deps[s->ndeps++].digest = digest;
    atomic_fetch_add(&s->files_gen, 1);
  }
  uv_mutex_unlock(&s->hook_lock);
  return copy ? 0 : MYC_ENOMEM;
}

static void deps_free(myc_service *s) {
  uint32_t i;
  for (i = 0; i < s->ndeps; i++)
    myc__strfree(&s->eng->alloc, s->deps[i].path);
  myc__free(&s->eng->alloc, s->deps, s->capdeps * sizeof *s->deps);
}

/* ---- teardown ------------------------------------------------------------ */

void myc__service_free(myc_service *s) {
  myc_engine *e = s->eng;
  myc__engine_hooks *h = &e->hooks;
  int i;
  myc__service_drop_leftovers(s);
  /* What it suppressed and nobody summed up yet: said before its name
   * goes. */
  myc__log_bucket_done(&e->log, &s->log_bucket, myc__clock_now(&e->clock));
  if (s->sup != NULL && h->service_freed != NULL)
    h->service_freed(h->ud, s);
  myc__service_stop_resources(s, NULL); /* one that never started or stopped */
  myc__instance_close(s, &s->dying);
  myc__instance_close(s, &s->retired);
  myc__instance_close(s, &s->cur);
  for (i = 0; i < MYC_SLOTS; i++)
    myc__lua_budget_drain(&s->mem[i]);
  /* A spawned service that never reached its worker has no timer and no
   * place there (and this may be another thread). */
  if (s->placed && !e->freeing) {
    myc__instance_forget_timers(s, 0, UINT64_MAX);
    myc__worker_unplace(s->task.worker, &s->task);
  }
  myc__mailbox_destroy(&s->task.mb, &e->alloc);
  myc__routes_free(s);
  myc__span_free(s);
  uv_mutex_destroy(&s->hook_lock);
  deps_free(s);
  if (s->code != NULL)
    myc__free(&e->alloc, s->code, s->code_len + 1);
  myc__free(&e->alloc, s->opts, s->opts_len);
  myc__strfree(&e->alloc, s->module);
  myc__strfree(&e->alloc, s->parent);
  myc__strfree(&e->alloc, s->name);
  myc__free(&e->alloc, s, sizeof *s);
}
