/* activation.c -- calls into a service's code and what other threads see
 * of them (see activation.h).
 *
 * Other threads never wait for the worker: they read (act_kind, act_gen,
 * cursor), which the worker publishes with release stores, and the
 * watchdog interrupts a handler by setting a Lua hook under hook_lock.
 */
#include "runtime/activation.h"

#include "runtime/engine.h"

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

void myc__act_end(myc_service *s) {
  /* Before the batch's buffers are released: status readers check it. */
  atomic_store_explicit(&s->act_kind, MYC_ACT_IDLE, memory_order_release);
  if (atomic_load_explicit(&s->intr_armed, memory_order_relaxed))
    disarm(s);
}

int myc__instance_call(myc__instance *in, int ref, int nargs, int nres) {
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

int myc__activate(myc_service *s, myc__instance *in, int kind, int ref,
                  int nargs, int nres) {
  int rc;
  MYC_ASSERT_OWNER(&s->task.worker->owner);
  myc__act_begin(s, kind);
  rc = myc__instance_call(in, ref, nargs, nres);
  myc__act_end(s);
  return rc;
}

int myc__activation_end(myc_service *s, myc__instance *in, int rc) {
  if (s->exit_req)
    return s->exit_req == 1 ? MYC_END_EXIT : MYC_END_EXIT_ABNORMAL;
  if (s->intr_fired || (in->slot >= 0 && s->mem[in->slot].poisoned))
    return MYC_END_TIMEOUT;
  if (in->slot >= 0 && s->mem[in->slot].tripped)
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
      t = myc__topics_get(s->topics, id);
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
