/* service.c -- service host: one lua_State per instance of a Lua service,
 * created with a counting allocator, running lua/mycelium/host.lua;
 * batches of messages go to Lua in one protected call.  A handler error
 * costs the message that raised it (it goes to "$dead") and the instance,
 * which the supervisor replaces; the mailbox and the rest of the batch
 * wait for the next instance.
 */
#include "runtime/service.h"

#include "runtime/emit.h"
#include "runtime/engine.h"
#include "lua/lua_core.h"
#include "lua/snapshot.h"

#include <errno.h>
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
  case MYC_SVC_RESTARTING:
    return "restarting";
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

static void instance_reset(myc__instance *in) {
  memset(in, 0, sizeof *in);
  in->ref_dispatch = in->ref_timer = in->ref_event = LUA_NOREF;
  in->ref_init = in->ref_stop = in->ref_msgh = LUA_NOREF;
  in->ref_snapshot = in->ref_live = in->ref_fault = LUA_NOREF;
  in->snap_ref = LUA_NOREF;
  in->slot = -1;
}

static myc_service *service_alloc(myc_engine *e, const char *name,
                                  const myc_mailbox_config *mb,
                                  struct myc__worker *w) {
  myc_service *s;
  size_t len = strlen(name);
  int i;
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
  if (uv_mutex_init(&s->hook_lock) != 0) {
    myc__mailbox_destroy(&s->mb, &e->alloc);
    myc__strfree(&e->alloc, s->name);
    myc__free(&e->alloc, s, sizeof *s);
    return NULL;
  }
  s->name_len = (uint8_t)len;
  s->eng = e;
  s->worker = w;
  s->view.batch = s->batch;
  s->view.cursor = -1;
  instance_reset(&s->cur);
  instance_reset(&s->retired);
  instance_reset(&s->dying);
  s->hook_slot = -1;
  for (i = 0; i < MYC_SLOTS; i++) {
    s->mem[i].base = &e->lua_alloc;
    s->mem[i].owner = s;
  }
  atomic_init(&s->state, MYC_SVC_LOADED);
  myc__service_new_activation(s);
  return s;
}

/* ---- heap slots --------------------------------------------------------- */

/* Reserves a free heap budget.  Any thread.  Returns its index or -1. */
static int slot_take(myc_service *s) {
  unsigned busy = atomic_load(&s->mem_busy);
  for (;;) {
    int i;
    for (i = 0; i < MYC_SLOTS && (busy & (1u << i)); i++)
      ;
    if (i == MYC_SLOTS)
      return -1;
    if (atomic_compare_exchange_weak(&s->mem_busy, &busy, busy | (1u << i)))
      return i;
  }
}

static void slot_release(myc_service *s, int i) {
  myc__lua_budget *b = &s->mem[i];
  myc__lua_budget_drain(b);
  atomic_store(&b->peak, 0);
  b->refused = 0;
  b->tripped = 0;
  atomic_store(&b->poison, 0);
  atomic_fetch_and(&s->mem_busy, ~(1u << i));
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

/* 'msg' without its traceback, prefixed with the service unless it
 * already names it. */
static void name_error(const char *name, const char *msg, char *err,
                       size_t errlen) {
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

static void copy_error(lua_State *L, const char *name, char *err,
                       size_t errlen) {
  name_error(name, lua_tostring(L, -1), err, errlen);
}

static int take_ref(lua_State *L, int table, const char *field) {
  lua_getfield(L, table, field);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

typedef struct {
  myc_service *s;
  myc__instance *in;
  const char *module;
  const char *code;
  size_t code_len;
} host_args;

/* Sets the state up and runs host.new(svc, info), keeping references to
 * the entry points.  Runs under lua_cpcall: an out-of-memory error while
 * opening the libraries is an error return, not a panic. */
static int start_host(lua_State *L) {
  host_args *a = lua_touserdata(L, 1);
  myc_service *s = a->s;
  myc__instance *in = a->in;
  int inst;

  luaL_openlibs(L);
  myc__lua_prepare(L, s->eng->lua_path, a->module);
  lua_pushcfunction(L, msgh);
  in->ref_msgh = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mycelium.host");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_pushlightuserdata(L, s);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, s->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, a->module);
  lua_setfield(L, -2, "module");
  lua_pushlstring(L, a->code, a->code_len);
  lua_setfield(L, -2, "source");
  if (s->opts != NULL) {
    lua_pushlstring(L, s->opts, s->opts_len);
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
  in->ref_dispatch = take_ref(L, inst, "dispatch");
  in->ref_timer = take_ref(L, inst, "timer");
  in->ref_event = take_ref(L, inst, "event");
  in->ref_init = take_ref(L, inst, "init");
  in->ref_stop = take_ref(L, inst, "stop");
  in->ref_snapshot = take_ref(L, inst, "snapshot");
  in->ref_live = take_ref(L, inst, "live");
  in->ref_fault = take_ref(L, inst, "fault");
  return 0;
}

int myc__read_file(myc_engine *e, const char *path, char **out, size_t *len,
                   char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  long size;
  char *buf;
  *out = NULL;
  *len = 0;
  if (f == NULL) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return MYC_ENOENT;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    return MYC_EINVAL;
  }
  buf = myc__malloc(&e->alloc, (size_t)size + 1);
  if (buf == NULL) {
    fclose(f);
    snprintf(err, errlen, "out of memory reading %s", path);
    return MYC_ENOMEM;
  }
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
    snprintf(err, errlen, "cannot read %s: %s", path,
             ferror(f) ? strerror(errno) : "file changed while reading");
    myc__free(&e->alloc, buf, (size_t)size + 1);
    fclose(f);
    return MYC_EINVAL;
  }
  fclose(f);
  buf[size] = '\0';
  *out = buf;
  *len = (size_t)size;
  return 0;
}

int myc__instance_load(myc_service *s, myc__instance *in, const char *module,
                       const char *code, size_t code_len, char *err,
                       size_t errlen) {
  host_args args;
  lua_State *L;
  int slot, rc;

  instance_reset(in);
  slot = slot_take(s);
  if (slot < 0) {
    snprintf(err, errlen, "service '%s': a reload or restart is already "
             "under way", s->name);
    return MYC_ESTATE;
  }
  L = lua_newstate(myc__lua_alloc, &s->mem[slot]);
  if (L == NULL) {
    snprintf(err, errlen, "service '%s': cannot create a Lua state", s->name);
    slot_release(s, slot);
    return MYC_ENOMEM;
  }
  args.s = s;
  args.in = in;
  args.module = module;
  args.code = code;
  args.code_len = code_len;
  rc = lua_cpcall(L, start_host, &args);
  if (rc != 0) {
    if (s->mem[slot].tripped)
      snprintf(err, errlen, "service '%s': memory limit of %zu bytes "
               "exceeded while loading %s", s->name, s->mem[slot].limit,
               module);
    else
      copy_error(L, s->name, err, errlen);
    lua_close(L);
    slot_release(s, slot);
    instance_reset(in);
    return rc == LUA_ERRMEM ? MYC_ENOMEM : MYC_ELUA;
  }
  lua_settop(L, 0);
  in->L = L;
  in->slot = slot;
  return 0;
}

/* ---- facility resources ------------------------------------------------ */

void myc__service_attach(myc_service *s, myc__resource *r) {
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

/* Stops the resources attached by the instance running 'owner' (NULL:
 * every one). */
static void stop_resources(myc_service *s, lua_State *owner) {
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

void myc__instance_close(myc_service *s, myc__instance *in) {
  int slot = in->slot;
  if (in->L == NULL)
    return;
  /* After the module's stop, which may still close them cleanly. */
  stop_resources(s, in->L);
  uv_mutex_lock(&s->hook_lock);
  lua_close(in->L);
  in->L = NULL;
  uv_mutex_unlock(&s->hook_lock);
  slot_release(s, slot);
  instance_reset(in);
}

/* ---- activations --------------------------------------------------------- */

/* The state that runs now: the current instance, or one being started. */
static void set_running(myc_service *s, myc__instance *in) {
  uv_mutex_lock(&s->hook_lock);
  s->hook_L = in->L;
  s->hook_slot = in->slot;
  uv_mutex_unlock(&s->hook_lock);
}

static inline void act_begin(myc_service *s, int kind) {
  atomic_store_explicit(&s->act_gen,
                        atomic_load_explicit(&s->act_gen,
                                             memory_order_relaxed) + 1,
                        memory_order_relaxed);
  atomic_store_explicit(&s->act_kind, kind, memory_order_release);
  s->exit_req = 0;
  s->intr_fired = 0;
}

/* Removes an interruption the watchdog armed (rare: only after a budget
 * was exceeded). */
static void disarm(myc_service *s) {
  uv_mutex_lock(&s->hook_lock);
  if (s->hook_L != NULL)
    lua_sethook(s->hook_L, NULL, 0, 0);
  if (s->hook_slot >= 0)
    atomic_store(&s->mem[s->hook_slot].poison, 0);
  atomic_store(&s->intr_armed, 0);
  uv_mutex_unlock(&s->hook_lock);
}

static inline void act_end(myc_service *s) {
  /* Before the batch's buffers are released: status readers check it. */
  atomic_store_explicit(&s->act_kind, MYC_ACT_IDLE, memory_order_release);
  if (atomic_load_explicit(&s->intr_armed, memory_order_relaxed))
    disarm(s);
}

/* Calls the function behind 'ref' with 'nargs' arguments already pushed.
 * On error the message (with traceback) is left on the stack. */
static int call_ref(myc__instance *in, int ref, int nargs, int nres) {
  lua_State *L = in->L;
  int base = lua_gettop(L) - nargs, rc;
  lua_rawgeti(L, LUA_REGISTRYINDEX, in->ref_msgh);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_insert(L, base + 1);
  lua_insert(L, base + 1);
  rc = lua_pcall(L, nargs, nres, base + 1);
  lua_remove(L, base + 1);
  return rc;
}

static int activate(myc_service *s, myc__instance *in, int kind, int ref,
                    int nargs, int nres) {
  int rc;
  act_begin(s, kind);
  rc = call_ref(in, ref, nargs, nres);
  act_end(s);
  return rc;
}

/* How the activation that returned 'rc' ended: -1 when it simply
 * returned, else a myc__end (MYC_END_ERROR: it raised). */
static int ended_how(myc_service *s, myc__instance *in, int rc) {
  if (s->exit_req)
    return s->exit_req == 1 ? MYC_END_EXIT : MYC_END_EXIT_ABNORMAL;
  if (s->intr_fired || (in->slot >= 0 && s->mem[in->slot].poisoned))
    return MYC_END_TIMEOUT;
  if (in->slot >= 0 && s->mem[in->slot].tripped)
    return MYC_END_MEMORY;
  return rc != 0 ? MYC_END_ERROR : -1;
}

static int is_crash(int how) {
  return how == MYC_END_ERROR || how == MYC_END_MEMORY ||
         how == MYC_END_TIMEOUT;
}

/* Why an instance ended, as the log, "$dead" and the supervisor say it. */
static void end_reason(myc_service *s, myc__instance *in, int how,
                       const char *text, char *out, size_t cap) {
  const char *cut = text ? strstr(text, "\nstack traceback:") : NULL;
  int n = text == NULL ? 0 : cut ? (int)(cut - text) : (int)strlen(text);
  if (how == MYC_END_MEMORY)
    snprintf(out, cap, "memory limit of %.1f MB exceeded%s%.*s%s",
             (double)s->mem[in->slot >= 0 ? in->slot : 0].limit / 1048576,
             n ? " (" : "", n, text ? text : "", n ? ")" : "");
  else if (how == MYC_END_TIMEOUT)
    snprintf(out, cap, "handler timeout: still running after its budget "
             "of %g ms, interrupted", s->timeout_ms);
  else if (how == MYC_END_EXIT)
    snprintf(out, cap, "exited");
  else
    snprintf(out, cap, "%.*s", n, text ? text : "error");
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

/* ---- creation ------------------------------------------------------------ */

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
  s->timeout_ms = sc->handler_timeout_ms > 0 ? sc->handler_timeout_ms : 0;
  return 0;
}

int myc__service_new_lua(myc_engine *e, const myc_service_config *sc,
                         struct myc__worker *w, myc_service **out, char *err,
                         size_t errlen) {
  const myc_mailbox_config *mb = sc->mailbox ? sc->mailbox : &e->mailbox;
  myc_service *s = service_alloc(e, sc->name, mb, w);
  myc__instance in;
  char why[1024];
  int rc;

  *out = NULL;
  if (s == NULL) {
    snprintf(err, errlen, "service '%s': invalid name or mailbox, or out of "
             "memory", sc->name);
    return MYC_EINVAL;
  }
  rc = copy_config(s, sc);
  if (rc == 0)
    rc = myc__supervision_init(s, sc, err, errlen);
  else
    snprintf(err, errlen, "service '%s': out of memory", s->name);
  if (rc == 0) {
    rc = myc__read_file(e, s->module, &s->code, &s->code_len, why,
                        sizeof why);
    if (rc != 0)
      name_error(s->name, why, err, errlen);
  }
  if (rc == 0)
    rc = myc__instance_load(s, &in, s->module, s->code, s->code_len, err,
                            errlen);
  if (rc != 0) {
    myc__service_free(s);
    return rc;
  }
  myc__instance_commit(s, &in);
  atomic_store(&s->sup.version, 1);
  *out = s;
  return 0;
}

int myc__service_new_c(myc_engine *e, const char *name, const char *pattern,
                       myc_message_cb cb, void *ud, struct myc__worker *w,
                       myc_service **out) {
  myc_service *s = service_alloc(e, name, &e->mailbox, w);
  myc_service_config sc;
  int rc;
  *out = NULL;
  if (s == NULL)
    return MYC_EINVAL;
  memset(&sc, 0, sizeof sc);
  s->cb = cb;
  s->cb_ud = ud;
  rc = myc__supervision_init(s, &sc, NULL, 0);
  if (rc == 0)
    rc = myc__topics_subscribe(&e->topics, s, pattern, strlen(pattern));
  if (rc != 0) {
    myc__service_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

int myc__service_init(myc_service *s, char *err, size_t errlen) {
  myc__service_new_activation(s);
  myc__worker_tick(s->worker);
  if (s->cur.L != NULL) {
    int rc;
    lua_pushnil(s->cur.L);
    rc = activate(s, &s->cur, MYC_ACT_INIT, s->cur.ref_init, 1, 0);
    if (ended_how(s, &s->cur, rc) >= 0) {
      char why[1024];
      end_reason(s, &s->cur, ended_how(s, &s->cur, rc),
                 rc ? lua_tostring(s->cur.L, -1) : NULL, why, sizeof why);
      name_error(s->name, why, err, errlen);
      log_error(s, "init", rc ? lua_tostring(s->cur.L, -1) : why, NULL);
      lua_settop(s->cur.L, 0);
      atomic_store(&s->state, MYC_SVC_FAILED);
      return MYC_ELUA;
    }
  }
  atomic_store(&s->state, MYC_SVC_RUNNING);
  return 0;
}

/* ---- next instances ------------------------------------------------------ */

int myc__instance_init(myc_service *s, myc__instance *in, lua_State *from,
                       int snap_ref, myc__end *how, char *err,
                       size_t errlen) {
  lua_State *L = in->L;
  int rc, h;
  in->first_timer = s->next_timer_id + 1;
  *how = MYC_END_ERROR;
  if (from != NULL && snap_ref != LUA_NOREF && snap_ref != LUA_REFNIL) {
    char why[900];
    lua_rawgeti(from, LUA_REGISTRYINDEX, snap_ref);
    rc = myc__snapshot_copy(from, -1, L, why, sizeof why);
    lua_pop(from, 1);
    if (rc != 0) {
      snprintf(err, errlen, "service '%s': snapshot: %s%s", s->name,
               s->mem[in->slot].tripped ? "memory limit exceeded: " : "",
               why);
      return MYC_ELUA;
    }
  } else {
    lua_pushnil(L);
  }
  set_running(s, in);
  myc__service_new_activation(s);
  myc__worker_tick(s->worker);
  rc = activate(s, in, MYC_ACT_INIT, in->ref_init, 1, 0);
  set_running(s, &s->cur);
  h = ended_how(s, in, rc);
  if (h < 0)
    return 0;
  {
    char why[1024];
    const char *text = rc ? lua_tostring(L, -1) : NULL;
    end_reason(s, in, h, text, why, sizeof why);
    name_error(s->name, why, err, errlen);
    log_error(s, "init", text && h == MYC_END_ERROR ? text : why, NULL);
  }
  lua_settop(L, 0);
  *how = (myc__end)h;
  /* What the failed init started must not outlive it. */
  myc__timers_forget_from(&s->worker->timers, s, in->first_timer);
  return MYC_ELUA;
}

/* Copies the patterns 's' is subscribed to.  Returns how many, or -1
 * when out of memory; '*out' is freed by the caller with 'n' entries. */
static int current_patterns(myc_service *s, myc__subscription **out) {
  myc__topics *t = &s->eng->topics;
  uint32_t i, n = 0;
  uv_mutex_lock(&t->lock);
  for (i = 0; i < t->nsubs; i++)
    n += t->subs[i].svc == s;
  *out = n ? myc__malloc(&s->eng->alloc, n * sizeof **out) : NULL;
  if (n > 0 && *out == NULL) {
    uv_mutex_unlock(&t->lock);
    return -1;
  }
  n = 0;
  for (i = 0; i < t->nsubs; i++)
    if (t->subs[i].svc == s)
      (*out)[n++] = t->subs[i];
  uv_mutex_unlock(&t->lock);
  return (int)n;
}

static int in_list(lua_State *L, int list, const char *p, size_t len) {
  int i, n = (int)lua_objlen(L, list);
  for (i = 1; i <= n; i++) {
    size_t l;
    const char *q;
    lua_rawgeti(L, list, i);
    q = lua_tolstring(L, -1, &l);
    lua_pop(L, 1);
    if (q != NULL && l == len && memcmp(p, q, len) == 0)
      return 1;
  }
  return 0;
}

/* Subscribes to the new instance's list first, then leaves what is not on
 * it: a topic on both lists never misses a message. */
static void apply_subscriptions(myc_service *s, myc__instance *in) {
  lua_State *L = in->L;
  myc__subscription *old = NULL;
  int list, i, n, nold = current_patterns(s, &old);
  if (call_ref(in, in->ref_live, 0, 1) != 0 || !lua_istable(L, -1)) {
    log_error(s, "subscribe", lua_tostring(L, -1), NULL);
    lua_settop(L, 0);
    return;
  }
  list = lua_gettop(L);
  n = (int)lua_objlen(L, list);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *p;
    lua_rawgeti(L, list, i);
    p = lua_tolstring(L, -1, &len);
    if (p != NULL &&
        myc__topics_subscribe(&s->eng->topics, s, p, len) != 0)
      log_error(s, "subscribe", "out of memory", NULL);
    lua_pop(L, 1);
  }
  for (i = 0; i < nold; i++)
    if (!in_list(L, list, old[i].pattern, old[i].len))
      myc__topics_unsubscribe(&s->eng->topics, s, old[i].pattern,
                              old[i].len);
  if (old != NULL)
    myc__free(&s->eng->alloc, old, (size_t)nold * sizeof *old);
  lua_settop(L, 0);
}

void myc__instance_commit(myc_service *s, myc__instance *in) {
  if (s->cur.L != NULL && s->retired.L != NULL)
    myc__service_retire(s, &s->retired, 1);
  apply_subscriptions(s, in);
  /* Timers of earlier instances would fire into ids the new one never
   * gave out. */
  myc__timers_forget_below(&s->worker->timers, s, in->first_timer);
  uv_mutex_lock(&s->hook_lock);
  if (s->cur.L != NULL)
    s->retired = s->cur;
  s->cur = *in;
  s->hook_L = in->L;
  s->hook_slot = in->slot;
  uv_mutex_unlock(&s->hook_lock);
  atomic_store(&s->mem_cur, in->slot);
  instance_reset(in);
}

void myc__service_retire(myc_service *s, myc__instance *r, int close) {
  if (r->L == NULL)
    return;
  if (!r->stopped) {
    r->stopped = 1;
    myc__service_new_activation(s);
    myc__worker_tick(s->worker);
    set_running(s, r);
    if (activate(s, r, MYC_ACT_STOP, r->ref_stop, 0, 0) != 0)
      log_error(s, "stop", lua_tostring(r->L, -1), NULL);
    set_running(s, &s->cur);
    lua_settop(r->L, 0);
    /* Its sockets and clients end with it, even if it is kept for a
     * rollback. */
    stop_resources(s, r->L);
  }
  if (close)
    myc__instance_close(s, r);
}

void myc__service_end_instance(myc_service *s, int call_stop) {
  lua_State *L = s->cur.L;
  if (L == NULL)
    return;
  if (call_stop) {
    myc__service_new_activation(s);
    myc__worker_tick(s->worker);
    if (activate(s, &s->cur, MYC_ACT_STOP, s->cur.ref_stop, 0, 0) != 0)
      log_error(s, "stop", lua_tostring(L, -1), NULL);
    lua_settop(L, 0);
  }
  uv_mutex_lock(&s->hook_lock);
  s->hook_L = NULL;
  s->hook_slot = -1;
  uv_mutex_unlock(&s->hook_lock);
  myc__instance_close(s, &s->cur);
}

int myc__service_snapshot(myc_service *s, int *ref, char *err,
                          size_t errlen) {
  lua_State *L = s->cur.L;
  int rc, how;
  *ref = LUA_NOREF;
  if (L == NULL)
    return 0;
  myc__service_new_activation(s);
  rc = activate(s, &s->cur, MYC_ACT_SNAPSHOT, s->cur.ref_snapshot, 0, 1);
  how = ended_how(s, &s->cur, rc);
  if (how >= 0) {
    char why[1024];
    end_reason(s, &s->cur, how, rc ? lua_tostring(L, -1) : NULL, why,
               sizeof why);
    snprintf(err, errlen, "service '%s': snapshot failed: %s", s->name, why);
    lua_settop(L, 0);
    return MYC_ELUA;
  }
  /* luaL_ref of nil is LUA_REFNIL: no state to carry. */
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
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

void myc__service_unhandled(myc_service *s) {
  int32_t k = s->view.cursor;
  myc_buf *b;
  char why[400];
  if (k < 0 || (uint32_t)k >= s->view.batch_n)
    return;
  b = s->batch[k];
  snprintf(why, sizeof why, "no handler for topic '%.*s' (no longer "
           "subscribed)", (int)b->hdr.topic_len, myc__buf_topic(b));
  myc__log_write(&s->eng->log, MYC_LOG_WARN, s->worker->now, s->name,
                 s->name_len, b->hdr.trace_id, b->hdr.span_id, why,
                 strlen(why), NULL, 0);
  dead_letter(s, b, why);
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

/* The dispatch that started at 'first' ended the instance as 'how' at
 * message 'k' ('rc' nonzero: it raised there; else the whole batch up
 * to 'n' ran).  Reports, dead-letters a crash's message, and hands the
 * instance to the supervisor.  Returns the messages consumed. */
static uint32_t handler_ended(myc_service *s, uint32_t first, uint32_t n,
                              int how, int rc) {
  lua_State *L = s->cur.L;
  const char *text = rc ? lua_tostring(L, -1) : NULL;
  uint32_t k = rc ? (uint32_t)(s->view.cursor < (int32_t)first
                                   ? (int32_t)first
                                   : s->view.cursor)
                  : n - 1;
  char why[1024];

  s->view.cursor = -1;
  end_reason(s, &s->cur, how, text, why, sizeof why);
  if (is_crash(how)) {
    myc__counter_add(&s->n_errors, 1);
    if (rc) {
      log_error(s, "handler", how == MYC_END_ERROR ? text : why,
                &s->batch[k]->hdr);
      s->view.cursor = (int32_t)k;
      dead_letter(s, s->batch[k], why);
      s->view.cursor = -1;
    } else {
      log_error(s, "batch", why, NULL);
    }
  }
  lua_settop(L, 0);
  release_range(s, first, k + 1);
  s->batch_pos = k + 1;
  myc__service_end_instance(s, !is_crash(how));
  myc__supervisor_terminated(s, how, why);
  return k + 1 - first;
}

uint32_t myc__service_dispatch(myc_service *s) {
  uint32_t first, n;
  int rc, how, ref;
  if (atomic_load_explicit(&s->state, memory_order_relaxed) !=
      MYC_SVC_RUNNING)
    return 0;
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
    act_begin(s, MYC_ACT_HANDLER);
    dispatch_c(s, first, n);
    act_end(s);
  } else {
    ref = s->cur.ref_dispatch;
    if (atomic_load_explicit(&s->faults, memory_order_relaxed) > 0) {
      atomic_fetch_sub(&s->faults, 1);
      ref = s->cur.ref_fault;
    }
    lua_pushinteger(s->cur.L, first);
    lua_pushinteger(s->cur.L, n);
    rc = activate(s, &s->cur, MYC_ACT_HANDLER, ref, 2, 0);
    how = ended_how(s, &s->cur, rc);
    if (how >= 0)
      return handler_ended(s, first, n, how, rc);
  }
  release_range(s, first, n);
  s->batch_pos = n;
  return n - first;
}

/* A timer or an event raised or ended the instance: an ordinary error is
 * logged and counted; a memory, timeout or exit ends the instance. */
static int activation_failed(myc_service *s, const char *what, int how,
                             int rc) {
  lua_State *L = s->cur.L;
  const char *text = rc ? lua_tostring(L, -1) : NULL;
  char why[1024];
  if (how == MYC_END_ERROR) {
    myc__counter_add(&s->n_errors, 1);
    log_error(s, what, text ? text : "error", NULL);
    lua_settop(L, 0);
    return 0;
  }
  end_reason(s, &s->cur, how, text, why, sizeof why);
  if (is_crash(how)) {
    myc__counter_add(&s->n_errors, 1);
    log_error(s, what, why, NULL);
  }
  lua_settop(L, 0);
  myc__service_end_instance(s, !is_crash(how));
  myc__supervisor_terminated(s, how, why);
  return 1;
}

int myc__service_timer(myc_service *s, uint64_t id) {
  int keep, rc, how;
  if (id & MYC_SUP_TIMER) {
    myc__supervisor_timer(s, id);
    return 0;
  }
  if (s->cur.L == NULL || atomic_load(&s->state) != MYC_SVC_RUNNING)
    return 0;
  myc__service_new_activation(s);
  lua_pushnumber(s->cur.L, (lua_Number)id);
  rc = activate(s, &s->cur, MYC_ACT_TIMER, s->cur.ref_timer, 1, 1);
  how = ended_how(s, &s->cur, rc);
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
  if (L == NULL || atomic_load(&s->state) != MYC_SVC_RUNNING)
    return MYC_ENOENT;
  myc__service_new_activation(s);
  myc__worker_tick(s->worker);
  lua_pushnumber(L, (lua_Number)source);
  lua_pushinteger(L, code);
  lua_pushnumber(L, (lua_Number)(uintptr_t)data);
  lua_pushnumber(L, (lua_Number)len);
  rc = activate(s, &s->cur, MYC_ACT_EVENT, s->cur.ref_event, 4, 1);
  how = ended_how(s, &s->cur, rc);
  if (how >= 0) {
    activation_failed(s, "event", how, rc);
    myc__worker_flush(s->worker);
    return MYC_ELUA;
  }
  found = lua_toboolean(L, -1);
  lua_settop(L, 0);
  myc__worker_flush(s->worker);
  return found ? 0 : MYC_ENOENT;
}

void myc__service_stop(myc_service *s) {
  int state = atomic_load(&s->state);
  if (state == MYC_SVC_STOPPED || state == MYC_SVC_LOADED)
    return;
  atomic_store(&s->state, MYC_SVC_STOPPED);
  myc__service_retire(s, &s->dying, 0);
  myc__service_retire(s, &s->retired, 0);
  if (s->cur.L != NULL) {
    myc__service_new_activation(s);
    myc__worker_tick(s->worker);
    if (activate(s, &s->cur, MYC_ACT_STOP, s->cur.ref_stop, 0, 0) != 0) {
      log_error(s, "stop", lua_tostring(s->cur.L, -1), NULL);
      lua_settop(s->cur.L, 0);
    }
  }
  /* After the module's stop, which may still close them cleanly. */
  stop_resources(s, NULL);
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

/* ---- what runs (other threads) ------------------------------------------ */

void myc__service_running(myc_service *s, char *buf, size_t cap) {
  static const char *names[] = {"", "handler", "init", "timer",
                                "event", "stop", "snapshot"};
  int kind = atomic_load_explicit(&s->act_kind, memory_order_acquire);
  uint32_t gen = atomic_load_explicit(&s->act_gen, memory_order_acquire);
  int32_t k = __atomic_load_n(&s->view.cursor, __ATOMIC_ACQUIRE);
  myc__topic *t = NULL;

  if (kind < 0 || kind > MYC_ACT_SNAPSHOT)
    kind = MYC_ACT_IDLE;
  if (kind == MYC_ACT_HANDLER && k >= 0 && k < MYC_BATCH) {
    myc_buf *b = __atomic_load_n(&s->batch[k], __ATOMIC_ACQUIRE);
    uint32_t id = b ? __atomic_load_n(&b->topic_id, __ATOMIC_ACQUIRE) : 0;
    /* The buffer is released only after the cursor leaves it and the
     * activation ends: if both are unchanged now, 'id' was read from a
     * live buffer. */
    if (__atomic_load_n(&s->view.cursor, __ATOMIC_ACQUIRE) == k &&
        atomic_load_explicit(&s->act_gen, memory_order_acquire) == gen &&
        atomic_load_explicit(&s->act_kind, memory_order_acquire) == kind)
      t = myc__topics_get(&s->eng->topics, id);
  }
  if (t != NULL)
    snprintf(buf, cap, "handler %s", t->name);
  else
    snprintf(buf, cap, "%s", names[kind]);
}

static void timeout_hook(lua_State *L, lua_Debug *ar) {
  void *ud;
  myc_service *s;
  (void)ar;
  lua_getallocf(L, &ud);
  s = ((myc__lua_budget *)ud)->owner;
  if (atomic_load(&s->intr_armed) &&
      atomic_load(&s->act_gen) == atomic_load(&s->intr_gen) &&
      (atomic_load(&s->intr_cursor) < 0 ||
       s->view.cursor == atomic_load(&s->intr_cursor))) {
    s->intr_fired = 1;
    luaL_error(L, "handler timeout: still running after %f ms",
               s->timeout_ms);
  }
  /* A stale request: the handler it was meant for has returned. */
  uv_mutex_lock(&s->hook_lock);
  lua_sethook(L, NULL, 0, 0);
  atomic_store(&s->intr_armed, 0);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__service_interrupt(myc_service *s, uint32_t gen, int32_t cursor) {
  uv_mutex_lock(&s->hook_lock);
  if (s->hook_L != NULL && atomic_load(&s->act_gen) == gen &&
      atomic_load(&s->act_kind) != MYC_ACT_IDLE) {
    atomic_store(&s->intr_gen, gen);
    atomic_store(&s->intr_cursor, cursor);
    atomic_store(&s->intr_armed, 1);
    /* lua_sethook may be called from another thread (it only sets the
     * hook fields; LuaJIT's own interpreter does it from a signal).  The
     * call and return masks also reach compiled code calling C functions
     * of the Lua API (docs/SUPERVISION.md lists what is reached). */
    lua_sethook(s->hook_L, timeout_hook,
                LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
  }
  uv_mutex_unlock(&s->hook_lock);
}

void myc__service_poison(myc_service *s, uint32_t gen) {
  uv_mutex_lock(&s->hook_lock);
  if (s->hook_slot >= 0 && atomic_load(&s->act_gen) == gen &&
      atomic_load(&s->act_kind) != MYC_ACT_IDLE) {
    atomic_store(&s->intr_armed, 1);
    atomic_store(&s->mem[s->hook_slot].poison, 1);
  }
  uv_mutex_unlock(&s->hook_lock);
}

/* ---- teardown ------------------------------------------------------------ */

void myc__service_free(myc_service *s) {
  myc_engine *e = s->eng;
  myc__service_drop_leftovers(s);
  myc__supervision_destroy(s);
  stop_resources(s, NULL); /* a service that never started or stopped */
  myc__instance_close(s, &s->dying);
  myc__instance_close(s, &s->retired);
  myc__instance_close(s, &s->cur);
  {
    int i;
    for (i = 0; i < MYC_SLOTS; i++)
      myc__lua_budget_drain(&s->mem[i]);
  }
  myc__mailbox_destroy(&s->mb, &e->alloc);
  myc__routes_free(s);
  uv_mutex_destroy(&s->hook_lock);
  if (s->code != NULL)
    myc__free(&e->alloc, s->code, s->code_len + 1);
  myc__free(&e->alloc, s->opts, s->opts_len);
  myc__strfree(&e->alloc, s->module);
  myc__strfree(&e->alloc, s->name);
  myc__free(&e->alloc, s, sizeof *s);
}
