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
#include "lua/strtab.h"
#include "runtime/activation.h"
#include "runtime/engine.h"
#include "runtime/request.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void myc__instance_reset(myc__instance *in) {
  memset(in, 0, sizeof *in);
  in->ref_dispatch = in->ref_timer = in->ref_event = LUA_NOREF;
  in->ref_init = in->ref_stop = in->ref_msgh = LUA_NOREF;
  in->ref_snapshot = in->ref_live = in->ref_warmup = LUA_NOREF;
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
  /* Zero after a close; what a close that escaped left is no longer
   * this slot's. */
  atomic_store(&b->used, 0);
  atomic_store(&b->peak, 0);
  b->refused = 0;
  b->tripped = 0;
  b->poisoned = 0;
  b->escaped = 0;
  b->escape = NULL;
  b->L = NULL;
  b->overtime = 0;
  atomic_store(&b->loading, 0);
  b->extra = 0;
  atomic_store(&b->deadline_ns, 0);
  atomic_store(&b->poison, 0);
  atomic_fetch_and(&s->mem_busy, ~(1u << i));
}

/* ---- closing ------------------------------------------------------------ */

/* On the helper thread: no hook, no compiled trace, no JIT.  A state's
 * finalizers still run Lua code when it is closed; a state abandoned
 * mid-call may hold traces half made (their machine code not yet
 * executable) or throw away what LuaJIT needs to raise an error in one,
 * so they run interpreted.  luaJIT_setmode raises inside a finalizer of
 * the collector: lua_cpcall catches that, and the traces then stay. */
static int reset_vm(lua_State *H) {
  lua_sethook(H, NULL, 0, 0);
  luaJIT_setmode(H, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  luaJIT_setmode(H, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_FLUSH);
  return 0;
}

/* Closes state 'L' of budget 'b' ('helper': its helper thread, or NULL
 * before it had one).  The collector is stopped first: an abandoned
 * state's stacks are not to be walked.  An allocation past the ceiling
 * while finalizers run escapes again: the state is then left allocated
 * (logged) rather than risk the process.  Returns 0 or -1 (left). */
static int close_state(lua_State *L, lua_State *helper, myc__lua_budget *b) {
  myc__escape esc;
  size_t used = atomic_load(&b->used);
  /* Closing allocates (the reset's call, finalizers): one more reserve
   * of room, from where the state stands. */
  if (b->limit != 0 && used > b->limit)
    b->extra = used - b->limit;
  lua_gc(L, LUA_GCSTOP, 0);
  if (MYC_ESCAPE_ARM(b, &esc))
    return -1;
  if (helper != NULL)
    (void)lua_cpcall(helper, reset_vm, NULL);
  lua_close(L);
  myc__escape_disarm(b, &esc);
  return 0;
}

static void close_logged(myc_service *s, lua_State *L, lua_State *helper,
                         myc__lua_budget *b) {
  char line[300];
  size_t used = atomic_load(&b->used);
  if (close_state(L, helper, b) == 0)
    return;
  snprintf(line, sizeof line, "its Lua state went past its memory ceiling "
           "while closing (finalizers): %zu bytes are left to the process",
           used);
  myc__log_write(&s->eng->log, MYC_LOG_ERROR, myc__clock_now(&s->eng->clock),
                 s->name, s->name_len, NULL, NULL, line, strlen(line), NULL,
                 0);
}

/* ---- loading ------------------------------------------------------------ */

/* Whether the 'len' bytes at 'p' contain 'what'. */
static int line_has(const char *p, size_t len, const char *what) {
  size_t n = strlen(what), i;
  for (i = 0; i + n <= len; i++)
    if (memcmp(p + i, what, n) == 0)
      return 1;
  return 0;
}

/* The traceback of an error, without the frames of the service host
 * (lua/mycelium/host.lua): they are the engine's, and would send the
 * reader to a file that is not theirs. */
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1), *p, *nl;
  luaL_Buffer b;
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  p = lua_tostring(L, -1);
  luaL_buffinit(L, &b);
  for (; *p != '\0'; p = nl) {
    nl = strchr(p + 1, '\n');
    if (nl == NULL)
      nl = p + strlen(p);
    if (p[0] != '\n' ||
        !line_has(p, (size_t)(nl - p), "/mycelium/host.lua:"))
      luaL_addlstring(&b, p, (size_t)(nl - p));
  }
  luaL_pushresult(&b);
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

  in->helper = lua_newthread(L);
  luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_openlibs(L);
  /* Opening "jit" turns the JIT on: off again, until init returns. */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  myc__lua_prepare(L, e->lua_path, a->module, e->ffi_table);
  myc__bytecode_install(L, &e->bytecode);
  lua_pushcfunction(L, msgh);
  in->ref_msgh = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Loading the runtime makes little garbage: collection cycles over a
   * heap that only grows would be wasted.  Back on before the module's
   * own code runs. */
  lua_gc(L, LUA_GCSTOP, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mycelium.host");
  lua_call(L, 1, 1);
  lua_gc(L, LUA_GCRESTART, 0);
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
  in->ref_warmup = take_ref(L, inst, "warmup");
  return 0;
}

/* Runs start_host on fresh state 'L' under its load budget.  Start_host
 * turns the JIT off (host.lua turns it on after init, unless the module
 * turned it off), so that the deadline's hook reaches every loop of the
 * module's top level.  Returns the lua_cpcall result or
 * MYC_CALL_ESCAPED. */
static int run_start_host(myc_service *s, myc__lua_budget *b, lua_State *L,
                          host_args *args) {
  myc__escape esc;
  int rc;
  atomic_store(&b->loading, 1);
  myc__deadline_start(b, L, s->load_timeout_ms);
  if (MYC_ESCAPE_ARM(b, &esc))
    return MYC_CALL_ESCAPED;
  rc = lua_cpcall(L, start_host, args);
  myc__escape_disarm(b, &esc);
  atomic_store(&b->loading, 0);
  myc__deadline_end(b, L);
  return rc;
}

/* Why loading 'module' failed with 'rc', into 'err'. */
static void load_error(myc_service *s, myc__lua_budget *b, lua_State *L,
                       const char *module, int rc, char *err,
                       size_t errlen) {
  if (b->tripped || b->escaped)
    snprintf(err, errlen, "service '%s': memory limit of %zu bytes "
             "exceeded while loading %s", s->name, b->limit, module);
  else if (b->overtime)
    snprintf(err, errlen, "service '%s': loading %s: its top level was "
             "still running after its load budget of %g ms, interrupted",
             s->name, module, b->deadline_ms);
  else
    myc__name_error(s->name, rc == MYC_CALL_ESCAPED ? NULL
                                                    : lua_tostring(L, -1),
                    err, errlen);
}

int myc__instance_load(myc_service *s, myc__instance *in, const char *module,
                       const char *code, size_t code_len, char *err,
                       size_t errlen) {
  host_args args;
  lua_State *L;
  myc__lua_budget *b;
  int slot, rc;

  myc__instance_reset(in);
  slot = slot_take(s);
  if (slot < 0) {
    snprintf(err, errlen, "service '%s': a reload or restart is already "
             "under way", s->name);
    return MYC_ESTATE;
  }
  b = &s->mem[slot];
  L = lua_newstate(myc__lua_alloc, b);
  if (L == NULL) {
    snprintf(err, errlen, "service '%s': cannot create a Lua state", s->name);
    slot_release(s, slot);
    return MYC_ENOMEM;
  }
  b->L = L;
  args.s = s;
  args.in = in;
  args.module = module;
  args.code = code;
  args.code_len = code_len;
  rc = run_start_host(s, b, L, &args);
  if (rc != 0) {
    load_error(s, b, L, module, rc, err, errlen);
    close_logged(s, L, in->helper, b);
    slot_release(s, slot);
    myc__instance_reset(in);
    return rc == LUA_ERRMEM || rc == MYC_CALL_ESCAPED ? MYC_ENOMEM
                                                      : MYC_ELUA;
  }
  lua_settop(L, 0);
  in->L = L;
  in->slot = slot;
  return 0;
}

/* Below this a region is not worth its allocation. */
#define PREPARE_MIN (64u << 10)

/* Room in the string table of 'in' for the strings of the coming copy:
 * as many as the last copy made, or, before the first, one per 64 bytes
 * of the old state's data (a string object is 24 bytes and more, and
 * most of a state this size is its keys).  Not when the throw-away
 * strings would come near the memory limit (strtab.h: about 48 bytes
 * each). */
static void reserve_strings(myc_service *s, myc__instance *in, size_t old) {
  myc__lua_budget *b = &s->mem[in->slot];
  size_t have = atomic_load(&b->used), peak = atomic_load(&b->peak);
  size_t n = atomic_load(&s->snap_strings);
  if (n == 0)
    n = old > have ? (old - have) / 64 : 0;
  if (n < 1024 || (b->limit != 0 && have + (2 * n + 8192) * 64 > b->limit))
    return;
  (void)myc__strtab_reserve(in->L, n);
  /* The cache now holds the throw-away strings' blocks, spread over the
   * heap: the copy would take them before the region, and run about
   * twice as slow over them (a 10 000-entry table of 3-field tables). */
  myc__lua_budget_trim(b);
  /* The throw-away strings are not the state's own peak. */
  atomic_store(&b->peak, peak > atomic_load(&b->used) ? peak
                                                       : atomic_load(&b->used));
}

size_t myc__instance_prepare(myc_service *s, myc__instance *in) {
  myc__lua_budget *b = &s->mem[in->slot];
  size_t old = atomic_load(&s->mem[atomic_load(&s->mem_cur)].used);
  size_t have, n;
  if (in->L != NULL) {
    reserve_strings(s, in, old);
    /* For the next reload, which copies out of this state. */
    (void)myc__snapshot_prepare(in->L);
  }
  have = atomic_load(&b->used);
  /* What the old state holds beyond its code (about what 'in' holds
   * now) is its data, an upper bound of the snapshot: garbage not yet
   * collected counts too, and its room serves the state's next
   * allocations instead of the worker's heap. */
  if (in->L == NULL || old <= have + PREPARE_MIN)
    return 0;
  n = (old - have) + (old - have) / 8;
  return myc__lua_budget_prepare(b, n) == 0 ? b->prep_size : 0;
}

void myc__instance_load_interrupt(myc_service *s) {
  int i;
  for (i = 0; i < MYC_SLOTS; i++)
    if (atomic_load(&s->mem[i].loading))
      atomic_store(&s->mem[i].deadline_ns, 1);
}

void myc__instance_close(myc_service *s, myc__instance *in) {
  int slot = in->slot;
  if (in->L == NULL)
    return;
  /* After the module's stop, which may still close them cleanly. */
  myc__service_stop_resources(s, in->L);
  uv_mutex_lock(&s->hook_lock);
  close_logged(s, in->L, in->helper, &s->mem[slot]);
  in->L = NULL;
  uv_mutex_unlock(&s->hook_lock);
  slot_release(s, slot);
  myc__instance_reset(in);
}

/* ---- taking over ---------------------------------------------------------- */

void myc__instance_forget_timers(myc_service *s, uint64_t lo, uint64_t hi) {
  myc__timers_forget(&s->task.worker->timers, myc__service_timer, s, lo, hi);
}

int myc__instance_run_init(myc_service *s, myc__instance *in) {
  myc__lua_budget *b = &s->mem[in->slot];
  int rc;
  myc__deadline_start(b, in->L, s->load_timeout_ms);
  rc = myc__activate(s, in, MYC_ACT_INIT, in->ref_init, 1, 0);
  myc__deadline_end(b, in->L);
  return rc;
}

/* Pushes onto 'in' a copy of the value registered as 'snap_ref' in state
 * 'from' (nil without one).  Returns 0 or MYC_ELUA with the reason. */
static int push_state(myc_service *s, myc__instance *in, lua_State *from,
                      int snap_ref, char *err, size_t errlen) {
  char why[900];
  size_t strings = 0;
  int rc;
  if (from == NULL || snap_ref == LUA_NOREF || snap_ref == LUA_REFNIL) {
    lua_pushnil(in->L);
    return 0;
  }
  if (myc__state_budget(from)->escaped) {
    snprintf(err, errlen, "service '%s': snapshot: the state that held it "
             "was abandoned", s->name);
    return MYC_ELUA;
  }
  lua_rawgeti(from, LUA_REGISTRYINDEX, snap_ref);
  rc = myc__snapshot_copy(from, -1, in->L, &strings, why, sizeof why);
  lua_pop(from, 1);
  if (rc == 0)
    atomic_store(&s->snap_strings, strings);
  if (rc != 0) {
    snprintf(err, errlen, "service '%s': snapshot: %s%s", s->name,
             s->mem[in->slot].tripped ? "memory limit exceeded: " : "", why);
    return MYC_ELUA;
  }
  return 0;
}

int myc__instance_init(myc_service *s, myc__instance *in, lua_State *from,
                       int snap_ref, myc__end *how, char *err,
                       size_t errlen) {
  int rc, h;
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  in->first_timer = s->next_timer_id + 1;
  *how = MYC_END_ERROR;
  if (push_state(s, in, from, snap_ref, err, errlen) != 0)
    return MYC_ELUA;
  myc__set_running(s, in);
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  rc = myc__instance_run_init(s, in);
  h = myc__activation_end(s, in, rc);
  myc__set_running(s, &s->cur);
  /* No warm-up here (a restart, a reload, a spawn): it would run on a
   * worker that is turning, and hold its other services for as long as
   * it takes; these instances start cold (warm.h). */
  if (h < 0)
    return 0;
  {
    char why[1024];
    const char *text = myc__call_error(in, rc);
    myc__end_reason(s, in, h, text, why, sizeof why);
    myc__name_error(s->name, why, err, errlen);
    myc__log_error(s, "init", text && h == MYC_END_ERROR ? text : why, NULL);
  }
  myc__call_clear(in);
  *how = (myc__end)h;
  /* What the failed init started must not outlive it. */
  myc__instance_forget_timers(s, in->first_timer, UINT64_MAX);
  return MYC_ELUA;
}

/* Copies the patterns 's' is subscribed to.  Returns how many, or -1
 * when out of memory; '*out' is freed by the caller with 'n' entries. */
static int current_patterns(myc_service *s, myc__subscription **out) {
  myc__topics *t = s->topics;
  uint32_t n;
  uv_mutex_lock(&t->lock);
  /* A first instance has none: no read of every other service's. */
  n = myc__topics_count_locked(t, s);
  *out = n ? myc__malloc(&s->eng->alloc, n * sizeof **out) : NULL;
  if (n > 0 && *out == NULL) {
    uv_mutex_unlock(&t->lock);
    return -1;
  }
  if (n > 0)
    n = myc__topics_copy_locked(t, s, *out, n);
  uv_mutex_unlock(&t->lock);
  return (int)n;
}

/* A pattern of the new list, sorted for lookups: a service may hold
 * thousands, and each of the old ones is looked up once. */
typedef struct {
  const char *p;
  size_t len;
} pattern_ref;

static int pattern_cmp(const void *a, const void *b) {
  const pattern_ref *x = a, *y = b;
  int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
  return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* Whether 'p' is in 'sorted' (n entries), or with no sorted copy (out of
 * memory) in the list at stack index 'list'. */
static int in_list(lua_State *L, int list, const pattern_ref *sorted, int n,
                   const char *p, size_t len) {
  pattern_ref key = {p, len};
  int i;
  if (sorted != NULL)
    return bsearch(&key, sorted, (size_t)n, sizeof *sorted, pattern_cmp) !=
           NULL;
  for (i = 1; i <= n; i++) {
    size_t l;
    const char *q;
    lua_rawgeti(L, list, i);
    q = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &l) : NULL;
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
  pattern_ref *sorted;
  int list, i, k, n, nold = current_patterns(s, &old), rc;
  rc = myc__instance_call(in, in->ref_live, 0, 1);
  if (rc != 0 || !lua_istable(L, -1)) {
    const char *text = myc__call_error(in, rc);
    myc__log_error(s, "subscribe", text ? text : "out of memory", NULL);
    myc__call_clear(in);
    if (old != NULL)
      myc__free(&s->eng->alloc, old, (size_t)nold * sizeof *old);
    return;
  }
  list = lua_gettop(L);
  n = (int)lua_objlen(L, list);
  /* The old instance's patterns stay until the new ones are in, so the
   * bound is on the new list's length, not on what is held meanwhile. */
  if ((uint32_t)n > s->eng->max_subscriptions_per_service) {
    char why[160];
    snprintf(why, sizeof why, "%d patterns, over max_subscriptions_per_"
             "service (%u): the first %u are subscribed (raise it in the "
             "config)", n, s->eng->max_subscriptions_per_service,
             s->eng->max_subscriptions_per_service);
    myc__log_error(s, "subscribe", why, NULL);
    n = (int)s->eng->max_subscriptions_per_service;
  }
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *p;
    lua_rawgeti(L, list, i);
    p = lua_tolstring(L, -1, &len);
    if (p != NULL && myc__topics_subscribe(s->topics, s, p, len) != 0)
      myc__log_error(s, "subscribe", "out of memory", NULL);
    lua_pop(L, 1);
  }
  /* The strings stay on the list, itself on the stack, until the end. */
  sorted = nold > 0 && n > 0
               ? myc__malloc(&s->eng->alloc, (size_t)n * sizeof *sorted)
               : NULL;
  for (i = 1, k = 0; sorted != NULL && i <= n; i++) {
    lua_rawgeti(L, list, i);
    if (lua_type(L, -1) == LUA_TSTRING) {
      sorted[k].p = lua_tolstring(L, -1, &sorted[k].len);
      k++;
    }
    lua_pop(L, 1);
  }
  if (sorted != NULL)
    qsort(sorted, (size_t)k, sizeof *sorted, pattern_cmp);
  for (i = 0; i < nold; i++)
    if (!in_list(L, list, sorted, sorted != NULL ? k : n, old[i].pattern,
                 old[i].len))
      myc__topics_unsubscribe(s->topics, s, old[i].pattern, old[i].len);
  if (sorted != NULL)
    myc__free(&s->eng->alloc, sorted, (size_t)n * sizeof *sorted);
  if (old != NULL)
    myc__free(&s->eng->alloc, old, (size_t)nold * sizeof *old);
  lua_settop(L, 0);
}

void myc__instance_commit(myc_service *s, myc__instance *in) {
  MYC_ASSERT_OWNER(&myc__service_worker(s)->owner);
  if (s->cur.L != NULL && s->retired.L != NULL)
    myc__instance_retire(s, &s->retired, 1);
  /* Before the new instance counts its own (apply_subscriptions tells it
   * it is live): replies to the old one's would find nobody waiting. */
  if (s->cur.L != NULL)
    myc__request_drop_pending(s);
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

void myc__instance_commit_first(myc_service *s, myc__instance *in) {
  apply_subscriptions(s, in);
  uv_mutex_lock(&s->hook_lock);
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
  int rc;
  myc__activation_new_trace(s);
  myc__worker_tick(s->task.worker);
  rc = myc__activate(s, in, MYC_ACT_STOP, in->ref_stop, 0, 0);
  if (rc != 0) {
    const char *text = myc__call_error(in, rc);
    myc__log_error(s, "stop", text ? text : "memory limit exceeded", NULL);
  }
  myc__call_clear(in);
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
  myc__request_drop_pending(s);
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
    myc__end_reason(s, &s->cur, how, myc__call_error(&s->cur, rc), why,
                    sizeof why);
    snprintf(err, errlen, "service '%s': snapshot failed: %s", s->name, why);
    myc__call_clear(&s->cur);
    /* Past a budget the instance is over, as after a handler (its state
     * may even be abandoned): it crashes now rather than at its next
     * message. */
    if (how == MYC_END_MEMORY || how == MYC_END_TIMEOUT) {
      myc__log_error(s, "snapshot", why, NULL);
      myc__instance_end(s, 0);
      myc__service_terminated(s, how, why);
    }
    return MYC_ELUA;
  }
  /* luaL_ref of nil is LUA_REFNIL: no state to carry. */
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  return 0;
}

void myc__instance_unref(myc_service *s, int ref) {
  if (s->cur.L != NULL && !myc__instance_dead(&s->cur))
    luaL_unref(s->cur.L, LUA_REGISTRYINDEX, ref);
}
