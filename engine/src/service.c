/* service.c -- service host: one lua_State per Lua service, created with a
 * counting allocator, running lua/mycelium/host.lua; batches of messages
 * go to Lua in one protected call, and a handler error costs only the
 * message that raised it.
 */
#include "service.h"

#include "emit.h"
#include "engine.h"
#include "lua_core.h"

#include <lauxlib.h>
#include <lualib.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#define DEAD_TOPIC "$dead"

const char *myc__service_state_name(int state) {
  switch (state) {
  case MYC_SVC_LOADED:
    return "loaded";
  case MYC_SVC_RUNNING:
    return "running";
  case MYC_SVC_STOPPED:
    return "stopped";
  default:
    return "failed";
  }
}

void myc__service_new_activation(myc_service *s) {
  myc__rng *r = &s->worker->rng;
  uint64_t a = myc__rng_id(r), b = myc__rng_id(r), span = myc__rng_id(r);
  memcpy(s->act_trace, &a, 8);
  memcpy(s->act_trace + 8, &b, 8);
  memcpy(s->act_span, &span, 8);
}

static myc_service *service_alloc(myc_engine *e, const char *name,
                                  const myc_mailbox_config *mb,
                                  struct myc__worker *w) {
  myc_service *s;
  size_t len = strlen(name);
  if (len == 0 || len > MYC_SOURCE_MAX)
    return NULL;
  s = myc__calloc(&e->alloc, sizeof *s);
  if (s == NULL)
    return NULL;
  s->name = myc__strdup(&e->alloc, name);
  if (s->name == NULL || myc__mailbox_init(&s->mb, &e->alloc, mb) != 0) {
    myc__strfree(&e->alloc, s->name);
    myc__free(&e->alloc, s, sizeof *s);
    return NULL;
  }
  s->name_len = (uint8_t)len;
  s->eng = e;
  s->worker = w;
  s->view.batch = s->batch;
  s->view.cursor = -1;
  s->ref_dispatch = s->ref_timer = s->ref_event = LUA_NOREF;
  s->ref_init = s->ref_stop = LUA_NOREF;
  s->mem.base = &e->lua_alloc;
  atomic_init(&s->state, MYC_SVC_LOADED);
  myc__service_new_activation(s);
  return s;
}

/* ---- Lua state --------------------------------------------------------- */

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* The error on top of the stack, without its traceback, prefixed with the
 * service unless the message already names it. */
static void copy_error(lua_State *L, const char *name, char *err,
                       size_t errlen) {
  const char *msg = lua_tostring(L, -1);
  const char *cut;
  char named[300];
  int n;
  if (err == NULL || errlen == 0)
    return;
  if (msg == NULL)
    msg = "error";
  cut = strstr(msg, "\nstack traceback:");
  n = cut ? (int)(cut - msg) : (int)strlen(msg);
  snprintf(named, sizeof named, "service '%s'", name);
  if (strstr(msg, named) != NULL && (cut == NULL || strstr(msg, named) < cut))
    snprintf(err, errlen, "%.*s", n, msg);
  else
    snprintf(err, errlen, "%s: %.*s", named, n, msg);
}

static int take_ref(lua_State *L, int table, const char *field) {
  lua_getfield(L, table, field);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

typedef struct {
  myc_service *s;
  const myc_service_config *sc;
} host_args;

/* Sets the state up and runs host.new(svc, info), keeping references to
 * the entry points.  Runs under lua_cpcall: an out-of-memory error while
 * opening the libraries is an error return, not a panic. */
static int start_host(lua_State *L) {
  host_args *a = lua_touserdata(L, 1);
  myc_service *s = a->s;
  const myc_service_config *sc = a->sc;
  int inst;

  luaL_openlibs(L);
  myc__lua_prepare(L, s->eng->lua_path, sc->module);
  lua_pushcfunction(L, msgh);
  s->ref_msgh = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mycelium.host");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_pushlightuserdata(L, s);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, s->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, sc->module);
  lua_setfield(L, -2, "module");
  if (sc->opts != NULL) {
    lua_pushlstring(L, sc->opts, sc->opts_len);
    lua_setfield(L, -2, "opts");
  }
  lua_pushstring(L, s->eng->lua_path);
  lua_setfield(L, -2, "lua_path");
  if (s->eng->contracts != NULL) {
    /* Immutable and freed after every service: safe to share. */
    lua_pushlightuserdata(L, s->eng->contracts);
    lua_setfield(L, -2, "contracts");
    lua_pushboolean(L, s->eng->validate);
    lua_setfield(L, -2, "validate");
  }
  lua_call(L, 2, 1);
  inst = lua_gettop(L);
  s->ref_dispatch = take_ref(L, inst, "dispatch");
  s->ref_timer = take_ref(L, inst, "timer");
  s->ref_event = take_ref(L, inst, "event");
  s->ref_init = take_ref(L, inst, "init");
  s->ref_stop = take_ref(L, inst, "stop");
  return 0;
}

int myc__service_new_lua(myc_engine *e, const myc_service_config *sc,
                         struct myc__worker *w, myc_service **out, char *err,
                         size_t errlen) {
  const myc_mailbox_config *mb = sc->mailbox ? sc->mailbox : &e->mailbox;
  myc_service *s = service_alloc(e, sc->name, mb, w);
  int rc;

  *out = NULL;
  if (s == NULL) {
    snprintf(err, errlen, "service '%s': invalid name or mailbox, or out of "
             "memory", sc->name);
    return MYC_EINVAL;
  }
  s->module = myc__strdup(&e->alloc, sc->module);
  s->L = s->module ? lua_newstate(myc__lua_alloc, &s->mem) : NULL;
  if (s->L == NULL) {
    snprintf(err, errlen, "service '%s': cannot create a Lua state", s->name);
    myc__service_free(s);
    return MYC_ENOMEM;
  }
  {
    host_args args = {s, sc};
    rc = lua_cpcall(s->L, start_host, &args) == 0 ? 0 : MYC_ELUA;
  }
  if (rc != 0) {
    copy_error(s->L, s->name, err, errlen);
    myc__topics_unsubscribe_all(&e->topics, s);
    myc__service_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int myc__service_new_c(myc_engine *e, const char *name, const char *pattern,
                       myc_message_cb cb, void *ud, struct myc__worker *w,
                       myc_service **out) {
  myc_service *s = service_alloc(e, name, &e->mailbox, w);
  int rc;
  *out = NULL;
  if (s == NULL)
    return MYC_EINVAL;
  s->cb = cb;
  s->cb_ud = ud;
  rc = myc__topics_subscribe(&e->topics, s, pattern, strlen(pattern));
  if (rc != 0) {
    myc__service_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

/* Calls the function behind 'ref' with 'nargs' arguments already pushed.
 * On error the message (with traceback) is left on the stack. */
static int call_ref(myc_service *s, int ref, int nargs, int nres) {
  lua_State *L = s->L;
  int base = lua_gettop(L) - nargs, rc;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_msgh);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_insert(L, base + 1);
  lua_insert(L, base + 1);
  rc = lua_pcall(L, nargs, nres, base + 1);
  lua_remove(L, base + 1);
  return rc;
}

static void split_traceback(const char *text, char *msg, size_t msglen,
                            const char **tb) {
  const char *cut = strstr(text, "\nstack traceback:");
  size_t n = cut ? (size_t)(cut - text) : strlen(text);
  if (n >= msglen)
    n = msglen - 1;
  memcpy(msg, text, n);
  msg[n] = '\0';
  *tb = cut ? cut + 1 : "";
}

static void log_error(myc_service *s, const char *what, const char *text,
                      const myc_frame *f) {
  char msg[1024], line[1200];
  const char *tb;
  const char *keys[2] = {"error", "traceback"};
  const char *vals[2];
  split_traceback(text, msg, sizeof msg, &tb);
  vals[0] = msg;
  vals[1] = tb;
  snprintf(line, sizeof line, "%s failed: %s", what, msg);
  myc__log_write_kv(&s->eng->log, MYC_LOG_ERROR, s->worker->now, s->name,
                    s->name_len, f ? f->trace_id : s->act_trace,
                    f ? f->span_id : s->act_span, line, 2, keys, vals);
}

int myc__service_init(myc_service *s, char *err, size_t errlen) {
  myc__service_new_activation(s);
  myc__worker_tick(s->worker);
  if (s->L != NULL && call_ref(s, s->ref_init, 0, 0) != 0) {
    copy_error(s->L, s->name, err, errlen);
    log_error(s, "init", lua_tostring(s->L, -1), NULL);
    lua_settop(s->L, 0);
    atomic_store(&s->state, MYC_SVC_FAILED);
    return MYC_ELUA;
  }
  atomic_store(&s->state, MYC_SVC_RUNNING);
  return 0;
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
  msgpack_sbuffer sb;
  msgpack_packer pk;
  char hex[32];

  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 8);
  pack_str(&pk, "topic", myc__buf_topic(b), b->hdr.topic_len);
  pack_str(&pk, "error", error, strlen(error));
  pack_str(&pk, "service", s->name, s->name_len);
  pack_str(&pk, "kind", kinds[b->hdr.kind <= 3 ? b->hdr.kind : 0],
           strlen(kinds[b->hdr.kind <= 3 ? b->hdr.kind : 0]));
  msgpack_pack_str_with_body(&pk, "type", 4);
  msgpack_pack_uint16(&pk, b->hdr.type);
  msgpack_pack_str_with_body(&pk, "payload", 7);
  msgpack_pack_bin_with_body(&pk, myc__buf_payload(b), b->hdr.payload_len);
  myc__hex(hex, b->hdr.trace_id, 16);
  pack_str(&pk, "trace_id", hex, 32);
  myc__hex(hex, b->hdr.span_id, 8);
  pack_str(&pk, "span_id", hex, 16);
  if (sb.data != NULL)
    (void)myc__emit(s, s->eng->dead_topic, MYC_KIND_TABLE, 0, sb.data,
                    sb.size);
  msgpack_sbuffer_destroy(&sb);
}

/* ---- dispatch ---------------------------------------------------------- */

static void release_range(myc_service *s, uint32_t from, uint32_t to) {
  myc__worker *w = s->worker;
  uint32_t i;
  for (i = from; i < to; i++)
    myc__buf_release(&w->pool, &s->eng->alloc, s->batch[i]);
  myc__mailbox_done(&s->mb, to - from);
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

static void dispatch_c(myc_service *s, uint32_t first, uint32_t n) {
  myc_message m;
  uint32_t i;
  for (i = first; i < n; i++) {
    s->view.cursor = (int32_t)i;
    fill_message(s->batch[i], &m);
    s->cb(s->cb_ud, &m);
  }
  s->view.cursor = -1;
}

/* A handler raised: log it with the message's trace, send the message to
 * "$dead", and count it as handled so the rest of the batch goes on. */
static void handler_failed(myc_service *s, uint32_t k) {
  const char *text = lua_tostring(s->L, -1);
  char msg[1024];
  const char *tb;
  myc_buf *b = s->batch[k];

  myc__counter_add(&s->n_errors, 1);
  split_traceback(text ? text : "error", msg, sizeof msg, &tb);
  log_error(s, "handler", text ? text : "error", &b->hdr);
  s->view.cursor = (int32_t)k;
  dead_letter(s, b, msg);
  s->view.cursor = -1;
  lua_settop(s->L, 0);
}

uint32_t myc__service_dispatch(myc_service *s) {
  uint32_t first, n;
  if (s->batch_pos == s->view.batch_n) {
    uint32_t i;
    s->view.batch_n = myc__mailbox_pop(&s->mb, s->batch, MYC_BATCH);
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
  if (s->cb != NULL) {
    dispatch_c(s, first, n);
  } else {
    lua_pushinteger(s->L, first);
    lua_pushinteger(s->L, n);
    if (call_ref(s, s->ref_dispatch, 2, 0) != 0) {
      /* Messages before the cursor were handled; the one at it failed. */
      int32_t k = s->view.cursor < (int32_t)first ? (int32_t)first
                                                  : s->view.cursor;
      s->view.cursor = -1;
      handler_failed(s, (uint32_t)k);
      release_range(s, first, (uint32_t)k + 1);
      s->batch_pos = (uint32_t)k + 1;
      return (uint32_t)k + 1 - first;
    }
  }
  release_range(s, first, n);
  s->batch_pos = n;
  return n - first;
}

int myc__service_timer(myc_service *s, uint64_t id) {
  int keep;
  if (s->L == NULL || atomic_load(&s->state) != MYC_SVC_RUNNING)
    return 0;
  myc__service_new_activation(s);
  lua_pushnumber(s->L, (lua_Number)id);
  if (call_ref(s, s->ref_timer, 1, 1) != 0) {
    myc__counter_add(&s->n_errors, 1);
    log_error(s, "timer", lua_tostring(s->L, -1), NULL);
    lua_settop(s->L, 0);
    return 1;
  }
  keep = lua_toboolean(s->L, -1);
  lua_settop(s->L, 0);
  return keep;
}

int myc__service_event(myc_service *s, uint64_t source, int code,
                       const void *data, size_t len) {
  int found;
  if (s->L == NULL || atomic_load(&s->state) != MYC_SVC_RUNNING)
    return MYC_ENOENT;
  myc__service_new_activation(s);
  myc__worker_tick(s->worker);
  lua_pushnumber(s->L, (lua_Number)source);
  lua_pushinteger(s->L, code);
  lua_pushnumber(s->L, (lua_Number)(uintptr_t)data);
  lua_pushnumber(s->L, (lua_Number)len);
  if (call_ref(s, s->ref_event, 4, 1) != 0) {
    myc__counter_add(&s->n_errors, 1);
    log_error(s, "event", lua_tostring(s->L, -1), NULL);
    lua_settop(s->L, 0);
    myc__worker_flush(s->worker);
    return MYC_ELUA;
  }
  found = lua_toboolean(s->L, -1);
  lua_settop(s->L, 0);
  myc__worker_flush(s->worker);
  return found ? 0 : MYC_ENOENT;
}

void myc__service_attach(myc_service *s, myc__resource *r) {
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

static void stop_resources(myc_service *s) {
  while (s->resources != NULL) {
    myc__resource *r = s->resources;
    myc__service_detach(s, r);
    r->stop(r);
  }
}

void myc__service_stop(myc_service *s) {
  int state = atomic_load(&s->state);
  if (state == MYC_SVC_STOPPED || state == MYC_SVC_LOADED)
    return;
  atomic_store(&s->state, MYC_SVC_STOPPED);
  if (s->L != NULL) {
    myc__service_new_activation(s);
    myc__worker_tick(s->worker);
    if (call_ref(s, s->ref_stop, 0, 0) != 0) {
      log_error(s, "stop", lua_tostring(s->L, -1), NULL);
      lua_settop(s->L, 0);
    }
  }
  /* After the module's stop, which may still close them cleanly. */
  stop_resources(s);
}

void myc__service_drop_leftovers(myc_service *s) {
  myc__pool *pool = &s->worker->pool;
  uint32_t i, n;
  for (i = s->batch_pos; i < s->view.batch_n; i++) {
    myc__mailbox_count(&s->mb, MYC_DROP_SHUTDOWN, s->batch[i]->topic_id, 1);
    myc__buf_release(pool, &s->eng->alloc, s->batch[i]);
  }
  myc__mailbox_done(&s->mb, s->view.batch_n - s->batch_pos);
  s->batch_pos = s->view.batch_n;
  while ((n = myc__mailbox_pop(&s->mb, s->batch, MYC_BATCH)) > 0) {
    for (i = 0; i < n; i++) {
      myc__mailbox_count(&s->mb, MYC_DROP_SHUTDOWN, s->batch[i]->topic_id, 1);
      myc__buf_release(pool, &s->eng->alloc, s->batch[i]);
    }
    myc__mailbox_done(&s->mb, n);
  }
}

void myc__service_free(myc_service *s) {
  myc_engine *e = s->eng;
  myc__service_drop_leftovers(s);
  stop_resources(s); /* a service that never started or stopped */
  if (s->L != NULL)
    lua_close(s->L);
  myc__lua_budget_drain(&s->mem);
  myc__mailbox_destroy(&s->mb, &e->alloc);
  myc__routes_free(s);
  myc__strfree(&e->alloc, s->module);
  myc__strfree(&e->alloc, s->name);
  myc__free(&e->alloc, s, sizeof *s);
}
