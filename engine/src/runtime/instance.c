/* instance.c -- Lua instances of a service (see instance.h): each a
 * lua_State with a counting allocator on one of the service's heap slots,
 * running lua/mycelium/host.lua, which loads the module (from source text
 * the service keeps, for restarts and rollbacks), checks its shape,
 * records its subscriptions and builds ctx and the reusable msg.
 */
#include "runtime/instance.h"

#include "base/check.h"
#include "lua/snapshot.h"
#include "lua/state.h"
#include "runtime/activation.h"
#include "runtime/engine.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

void myc__instance_reset(myc__instance *in) {
  memset(in, 0, sizeof *in);
  in->ref_dispatch = in->ref_timer = in->ref_event = LUA_NOREF;
  in->ref_init = in->ref_stop = in->ref_msgh = LUA_NOREF;
  in->ref_snapshot = in->ref_live = LUA_NOREF;
  in->snap_ref = LUA_NOREF;
  in->slot = -1;
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

/* ---- loading ------------------------------------------------------------ */

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
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
  myc_engine *e = s->eng;
  myc__instance *in = a->in;
  int inst;

  luaL_openlibs(L);
  myc__lua_prepare(L, e->lua_path, a->module);
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
  lua_pushstring(L, e->lua_path);
  lua_setfield(L, -2, "lua_path");
  if (e->contracts != NULL) {
    /* Immutable and freed after every service: safe to share. */
    lua_pushlightuserdata(L, e->contracts);
    lua_setfield(L, -2, "contracts");
    lua_pushboolean(L, e->validate);
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
  return 0;
}

int myc__instance_load(myc_service *s, myc__instance *in, const char *module,
                       const char *code, size_t code_len, char *err,
                       size_t errlen) {
  host_args args;
  lua_State *L;
  int slot, rc;

  myc__instance_reset(in);
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
      myc__name_error(s->name, lua_tostring(L, -1), err, errlen);
    lua_close(L);
    slot_release(s, slot);
    myc__instance_reset(in);
    return rc == LUA_ERRMEM ? MYC_ENOMEM : MYC_ELUA;
  }
  lua_settop(L, 0);
  in->L = L;
  in->slot = slot;
  return 0;
}

void myc__instance_close(myc_service *s, myc__instance *in) {
  int slot = in->slot;
  if (in->L == NULL)
    return;
  /* After the module's stop, which may still close them cleanly. */
  myc__service_stop_resources(s, in->L);
  uv_mutex_lock(&s->hook_lock);
  lua_close(in->L);
  in->L = NULL;
  uv_mutex_unlock(&s->hook_lock);
  slot_release(s, slot);
  myc__instance_reset(in);
}

/* ---- taking over ---------------------------------------------------------- */

void myc__instance_forget_timers(myc_service *s, uint64_t lo, uint64_t hi) {
  myc__timers_forget(&s->task.worker->timers, myc__service_timer, s, lo, hi);
}

int myc__instance_init(myc_service *s, myc__instance *in, lua_State *from,
                       int snap_ref, myc__end *how, char *err,
                       size_t errlen) {
  lua_State *L = in->L;
  int rc, h;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
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
  myc__set_running(s, in);
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  rc = myc__activate(s, in, MYC_ACT_INIT, in->ref_init, 1, 0);
  myc__set_running(s, &s->cur);
  h = myc__activation_end(s, in, rc);
  if (h < 0)
    return 0;
  {
    char why[1024];
    const char *text = rc ? lua_tostring(L, -1) : NULL;
    myc__end_reason(s, in, h, text, why, sizeof why);
    myc__name_error(s->name, why, err, errlen);
    myc__log_error(s, "init", text && h == MYC_END_ERROR ? text : why, NULL);
  }
  lua_settop(L, 0);
  *how = (myc__end)h;
  /* What the failed init started must not outlive it. */
  myc__instance_forget_timers(s, in->first_timer, UINT64_MAX);
  return MYC_ELUA;
}

/* Copies the patterns 's' is subscribed to.  Returns how many, or -1
 * when out of memory; '*out' is freed by the caller with 'n' entries. */
static int current_patterns(myc_service *s, myc__subscription **out) {
  myc__topics *t = s->topics;
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
  if (myc__instance_call(in, in->ref_live, 0, 1) != 0 || !lua_istable(L, -1)) {
    myc__log_error(s, "subscribe", lua_tostring(L, -1), NULL);
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
    if (p != NULL && myc__topics_subscribe(s->topics, s, p, len) != 0)
      myc__log_error(s, "subscribe", "out of memory", NULL);
    lua_pop(L, 1);
  }
  for (i = 0; i < nold; i++)
    if (!in_list(L, list, old[i].pattern, old[i].len))
      myc__topics_unsubscribe(s->topics, s, old[i].pattern, old[i].len);
  if (old != NULL)
    myc__free(&s->eng->alloc, old, (size_t)nold * sizeof *old);
  lua_settop(L, 0);
}

void myc__instance_commit(myc_service *s, myc__instance *in) {
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (s->cur.L != NULL && s->retired.L != NULL)
    myc__instance_retire(s, &s->retired, 1);
  apply_subscriptions(s, in);
  /* Timers of earlier instances would fire into ids the new one never
   * gave out. */
  myc__instance_forget_timers(s, 0, in->first_timer);
  uv_mutex_lock(&s->hook_lock);
  if (s->cur.L != NULL)
    s->retired = s->cur;
  s->cur = *in;
  s->hook_L = in->L;
  s->hook_slot = in->slot;
  uv_mutex_unlock(&s->hook_lock);
  atomic_store(&s->mem_cur, in->slot);
  myc__instance_reset(in);
}

/* ---- ending ------------------------------------------------------------- */

/* Calls the stop of 'in' as a fresh activation; logs what it raised. */
static void call_stop(myc_service *s, myc__instance *in) {
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  if (myc__activate(s, in, MYC_ACT_STOP, in->ref_stop, 0, 0) != 0)
    myc__log_error(s, "stop", lua_tostring(in->L, -1), NULL);
  lua_settop(in->L, 0);
}

void myc__instance_retire(myc_service *s, myc__instance *r, int close) {
  if (r->L == NULL)
    return;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (!r->stopped) {
    r->stopped = 1;
    myc__set_running(s, r);
    call_stop(s, r);
    myc__set_running(s, &s->cur);
    /* Its sockets and clients end with it, even if it is kept for a
     * rollback. */
    myc__service_stop_resources(s, r->L);
  }
  if (close)
    myc__instance_close(s, r);
}

void myc__instance_end(myc_service *s, int stop) {
  if (s->cur.L == NULL)
    return;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (stop)
    call_stop(s, &s->cur);
  uv_mutex_lock(&s->hook_lock);
  s->hook_L = NULL;
  s->hook_slot = -1;
  uv_mutex_unlock(&s->hook_lock);
  myc__instance_close(s, &s->cur);
}

int myc__instance_snapshot(myc_service *s, int *ref, char *err,
                           size_t errlen) {
  lua_State *L = s->cur.L;
  int rc, how;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  *ref = LUA_NOREF;
  if (L == NULL)
    return 0;
  myc__activation_new_trace(s);
  rc = myc__activate(s, &s->cur, MYC_ACT_SNAPSHOT, s->cur.ref_snapshot, 0, 1);
  how = myc__activation_end(s, &s->cur, rc);
  if (how >= 0) {
    char why[1024];
    myc__end_reason(s, &s->cur, how, rc ? lua_tostring(L, -1) : NULL, why,
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

void myc__instance_unref(myc_service *s, int ref) {
  if (s->cur.L != NULL)
    luaL_unref(s->cur.L, LUA_REGISTRYINDEX, ref);
}
