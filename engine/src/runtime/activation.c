/* activation.c -- calls into a service's code and what other threads see
 * of them (see activation.h).
 *
 * Other threads never wait for the worker: they read (act_kind, act_gen,
 * cursor), which the worker publishes with release stores, and the
 * watchdog interrupts a handler by setting a Lua hook under hook_lock.
 *
 * Every call into a state is protected twice: by lua_pcall, for the
 * errors LuaJIT raises itself, and by an escape (base/alloc.h) for the
 * allocations its budget refuses, which never return to LuaJIT.  The
 * budgets (memory, the deadline of loading and init, the watchdog's
 * requests) raise their errors from one hook, which only runs in the
 * interpreter: a safe point.
 */
#include "runtime/activation.h"

#include "runtime/engine.h"
#include "runtime/span.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

void myc__activation_new_trace(myc_service *s) {
  myc__rng *r = &s->task.worker->rng;
  uint64_t a = myc__rng_id(r), b = myc__rng_id(r), span = myc__rng_id(r);
  memcpy(s->act_trace, &a, 8);
  memcpy(s->act_trace + 8, &b, 8);
  memcpy(s->act_span, &span, 8);
}

void myc__set_running(myc_service *s, myc__instance *in) {
  uv_mutex_lock(&s->hook_lock);
  s->hook_L = in->L;
  s->hook_slot = in->slot;
  uv_mutex_unlock(&s->hook_lock);
}

void myc__act_begin(myc_service *s, int kind) {
  atomic_store_explicit(&s->act_gen,
                        atomic_load_explicit(&s->act_gen,
                                             memory_order_relaxed) + 1,
                        memory_order_relaxed);
  atomic_store_explicit(&s->act_kind, kind, memory_order_release);
  s->exit_req = 0;
  s->intr_fired = 0;
}

/* Count of instructions between two deadline checks. */
#define DEADLINE_COUNT 1000

static void interrupt_hook(lua_State *L, lua_Debug *ar);

/* The hook a state keeps while no interruption is pending: the deadline
 * check while one is set, else none.  Under hook_lock for a state other
 * threads may hook. */
static void rest_hook(lua_State *L, myc__lua_budget *b) {
  if (atomic_load(&b->deadline_ns) != 0)
    lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, DEADLINE_COUNT);
  else
    lua_sethook(L, NULL, 0, 0);
}

/* Removes an interruption the watchdog armed (rare: only after a budget
 * was exceeded). */
static void disarm(myc_service *s) {
  uv_mutex_lock(&s->hook_lock);
  if (s->hook_L != NULL)
    rest_hook(s->hook_L, &s->mem[s->hook_slot]);
  if (s->hook_slot >= 0)
    atomic_store(&s->mem[s->hook_slot].poison, 0);
  atomic_store(&s->intr_armed, 0);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__act_end(myc_service *s) {
  /* Before the batch's buffers are released: status readers check it. */
  atomic_store_explicit(&s->act_kind, MYC_ACT_IDLE, memory_order_release);
  if (atomic_load_explicit(&s->intr_armed, memory_order_relaxed))
    disarm(s);
}

myc__lua_budget *myc__state_budget(lua_State *L) {
  void *ud;
  /* Reads the allocator fields only: valid on an abandoned state too. */
  lua_getallocf(L, &ud);
  return ud;
}

int myc__instance_dead(const myc__instance *in) {
  return in->L != NULL && myc__state_budget(in->L)->escaped;
}

const char *myc__call_error(myc__instance *in, int rc) {
  if (rc == 0 || rc == MYC_CALL_ESCAPED || myc__instance_dead(in))
    return NULL;
  return lua_tostring(in->L, -1);
}

void myc__call_clear(myc__instance *in) {
  if (in->L != NULL && !myc__instance_dead(in))
    lua_settop(in->L, 0);
}

int myc__instance_call(myc__instance *in, int ref, int nargs, int nres) {
  lua_State *L = in->L;
  myc__lua_budget *b = myc__state_budget(L);
  myc__escape esc;
  int base, rc;
  if (b->escaped)
    return MYC_CALL_ESCAPED;
  base = lua_gettop(L) - nargs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, in->ref_msgh);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_insert(L, base + 1);
  lua_insert(L, base + 1);
  /* Nothing below may touch L once an allocation escaped: its stack
   * pointers may be those of a trace that never returns. */
  if (MYC_ESCAPE_ARM(b, &esc))
    return MYC_CALL_ESCAPED;
  rc = lua_pcall(L, nargs, nres, base + 1);
  myc__escape_disarm(b, &esc);
  lua_remove(L, base + 1);
  return rc;
}

int myc__activate(myc_service *s, myc__instance *in, int kind, int ref,
                  int nargs, int nres) {
  static const char *what[] = {"", "", "init", "timer", "event", "stop"};
  int64_t t0 = 0;
  int rc;
  MYC_ASSERT_OWNER(&s->task.worker->owner);
  /* A handler's spans are its messages' (span.c); the other activations
   * are the roots of the traces they start. */
  if (s->eng->tracer != NULL && kind > MYC_ACT_HANDLER &&
      kind <= MYC_ACT_STOP)
    t0 = myc__clock_now(&s->eng->clock);
  myc__act_begin(s, kind);
  rc = myc__instance_call(in, ref, nargs, nres);
  myc__act_end(s);
  if (t0 != 0)
    myc__span_activation(s, what[kind], t0, myc__call_error(in, rc));
  return rc;
}

int myc__activation_end(myc_service *s, myc__instance *in, int rc) {
  myc__lua_budget *b = in->slot >= 0 ? &s->mem[in->slot] : NULL;
  /* An abandoned state cannot exit normally: how it ended is the budget
   * that stopped it. */
  if (s->exit_req && rc != MYC_CALL_ESCAPED)
    return s->exit_req == 1 ? MYC_END_EXIT : MYC_END_EXIT_ABNORMAL;
  if (s->intr_fired || (b != NULL && (b->poisoned || b->overtime)))
    return MYC_END_TIMEOUT;
  if (b != NULL && (b->tripped || b->escaped))
    return MYC_END_MEMORY;
  return rc != 0 ? MYC_END_ERROR : -1;
}

int myc__end_is_crash(int how) {
  return how == MYC_END_ERROR || how == MYC_END_MEMORY ||
         how == MYC_END_TIMEOUT;
}

void myc__end_reason(myc_service *s, myc__instance *in, int how,
                     const char *text, char *out, size_t cap) {
  const char *cut = text ? strstr(text, "\nstack traceback:") : NULL;
  int n = text == NULL ? 0 : cut ? (int)(cut - text) : (int)strlen(text);
  if (how == MYC_END_MEMORY)
    snprintf(out, cap, "memory limit of %.1f MB exceeded%s%.*s%s",
             (double)s->mem[in->slot >= 0 ? in->slot : 0].limit / 1048576,
             n ? " (" : "", n, text ? text : "", n ? ")" : "");
  else if (how == MYC_END_TIMEOUT && in->slot >= 0 &&
           s->mem[in->slot].overtime)
    snprintf(out, cap, "init timeout: still running after its budget of "
             "%g ms, interrupted", s->mem[in->slot].deadline_ms);
  else if (how == MYC_END_TIMEOUT)
    snprintf(out, cap, "handler timeout: still running after its budget "
             "of %g ms, interrupted", s->timeout_ms);
  else if (how == MYC_END_EXIT)
    snprintf(out, cap, "exited");
  else
    snprintf(out, cap, "%.*s", n, text ? text : "error");
}

void myc__name_error(const char *name, const char *msg, char *err,
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

void myc__log_error(myc_service *s, const char *what, const char *text,
                    const myc_frame *f) {
  char msg[1024], line[1200];
  const char *tb;
  const char *keys[2] = {"error", "traceback"};
  const char *vals[2];
  if (!myc__log_admit(&s->eng->log, &s->log_bucket, MYC_LOG_ERROR,
                      s->task.worker->now, s->name, s->name_len))
    return;
  split_traceback(text, msg, sizeof msg, &tb);
  vals[0] = msg;
  vals[1] = tb;
  snprintf(line, sizeof line, "%s failed: %s", what, msg);
  myc__log_write_kv(&s->eng->log, MYC_LOG_ERROR, s->task.worker->now, s->name,
                    s->name_len, f ? f->trace_id : s->act_trace,
                    f ? f->span_id : s->act_span, line, 2, keys, vals);
}

/* ---- what runs (other threads) ------------------------------------------ */

void myc__service_running(myc_service *s, char *buf, size_t cap) {
  static const char *names[] = {"",      "handler", "init",     "timer",
                                "event", "stop",    "snapshot", "warm-up"};
  int kind = atomic_load_explicit(&s->act_kind, memory_order_acquire);
  uint32_t gen = atomic_load_explicit(&s->act_gen, memory_order_acquire);
  int32_t k = __atomic_load_n(&s->view.cursor, __ATOMIC_ACQUIRE);
  myc__topic *t = NULL;

  if (kind < 0 || kind > MYC_ACT_WARMUP)
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
      t = myc__topics_get(s->topics, id);
  }
  if (t != NULL)
    snprintf(buf, cap, "handler %s", t->name);
  else
    snprintf(buf, cap, "%s", names[kind]);
}

/* Raises in the running code when a budget says so.  Runs in the
 * interpreter only, where LuaJIT's frames are in order: raising is safe
 * here, unlike in an allocation made by compiled code. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  myc__lua_budget *b = myc__state_budget(L);
  myc_service *s = b->owner;
  int64_t deadline = atomic_load(&b->deadline_ns);
  (void)ar;
  /* Over the memory limit: raised again at the next instruction of code
   * that catches it, until the call returns to the engine. */
  if (b->tripped) {
    lua_pushliteral(L, "not enough memory");
    lua_error(L);
  }
  if (deadline != 0 && myc__mono_ns() >= deadline) {
    b->overtime = 1;
    /* A warm-up is told once, so that the module can put its state
     * back; one that goes on regardless meets the watch thread's
     * next step (warm.c). */
    if (s->warm != NULL)
      myc__deadline_told(s);
    luaL_error(L, "still running after its budget of %g ms", b->deadline_ms);
  }
  if (b->loading)
    return; /* the watchdog never hooks a state being loaded */
  if (atomic_load(&s->intr_armed) &&
      atomic_load(&s->act_gen) == atomic_load(&s->intr_gen) &&
      (atomic_load(&s->intr_cursor) < 0 ||
       s->view.cursor == atomic_load(&s->intr_cursor))) {
    s->intr_fired = 1;
    luaL_error(L, "handler timeout: still running after %f ms",
               s->timeout_ms);
  }
  if (!atomic_load(&s->intr_armed))
    return; /* the deadline's periodic check */
  /* A stale request: the handler it was meant for has returned. */
  uv_mutex_lock(&s->hook_lock);
  rest_hook(L, b);
  atomic_store(&s->intr_armed, 0);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__budget_tripped(myc__lua_budget *b) {
  lua_State *L = b->L;
  myc_service *s = b->owner;
  /* The watchdog may be hooking this state; a thread closing it holds
   * the lock too (its finalizers allocate): the next allocation asks
   * again, and the ceiling bounds what happens meanwhile. */
  if (L == NULL || uv_mutex_trylock(&s->hook_lock) != 0)
    return;
  if (lua_gethook(L) != interrupt_hook || lua_gethookcount(L) != 1)
    lua_sethook(L, interrupt_hook,
                LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__deadline_start(myc__lua_budget *b, lua_State *L, double ms) {
  myc_service *s = b->owner;
  b->deadline_ms = ms;
  b->overtime = 0;
  uv_mutex_lock(&s->hook_lock);
  atomic_store(&b->deadline_ns, myc__mono_ns() + (int64_t)(ms * 1e6));
  lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, DEADLINE_COUNT);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__deadline_end(myc__lua_budget *b, lua_State *L) {
  myc_service *s = b->owner;
  uv_mutex_lock(&s->hook_lock);
  atomic_store(&b->deadline_ns, 0);
  /* Only the deadline's own hook (a warm-up's is set by its watch
   * thread, myc__deadline_hook): a pending interruption stays. */
  if (!b->escaped && !b->tripped && lua_gethook(L) == interrupt_hook &&
      (lua_gethookcount(L) == DEADLINE_COUNT ||
       (s->warm != NULL && !atomic_load(&s->intr_armed))))
    lua_sethook(L, NULL, 0, 0);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__deadline_hook(myc_service *s, uint32_t gen) {
  uv_mutex_lock(&s->hook_lock);
  if (s->hook_L != NULL && atomic_load(&s->act_gen) == gen &&
      atomic_load(&s->act_kind) != MYC_ACT_IDLE &&
      (s->hook_slot < 0 ||
       atomic_load(&s->mem[s->hook_slot].deadline_ns) != 0))
    lua_sethook(s->hook_L, interrupt_hook,
                LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
  uv_mutex_unlock(&s->hook_lock);
}

void myc__deadline_told(myc_service *s) {
  uv_mutex_lock(&s->hook_lock);
  if (s->hook_slot >= 0) {
    atomic_store(&s->mem[s->hook_slot].deadline_ns, 0);
    if (s->hook_L != NULL && !atomic_load(&s->intr_armed))
      lua_sethook(s->hook_L, NULL, 0, 0);
  }
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
    lua_sethook(s->hook_L, interrupt_hook,
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
