/* config.c -- building an engine from a config file or a list of service
 * files.  Validation lives in lua/mycelium/config.lua (it reads Lua
 * values best); this file turns its normalised table into engine calls.
 */
#include "mycelium.h"

#include "api/nats_config.h"
#include "base/file.h"
#include "ffi/table.h"
#include "lua/deadline.h"
#include "link/link.h"
#include "lua/state.h"
#include "runtime/engine.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

/* The state that reads the config.  It runs what it is given (a service
 * file too, to see whether it is a config), so within the load budget. */
static lua_State *config_state(const char *lua_dir, myc__lua_deadline *d) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return NULL;
  luaL_openlibs(L);
  myc__lua_prepare(L, lua_dir, NULL, myc__ffi_table());
  myc__lua_deadline_set(L, d, MYC_LOAD_TIMEOUT_MS);
  return L;
}

static double num_field(lua_State *L, int t, const char *k, double dflt) {
  double v;
  lua_getfield(L, t, k);
  v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

/* Copies the string field 'k' into 'dst' ("" when absent).  Returns 0,
 * or MYC_ECONFIG with the reason in 'err' when it does not fit: a name
 * cut short would silently name something else. */
static int str_field(lua_State *L, int t, const char *k, char *dst,
                     size_t cap, char *err, size_t errlen) {
  const char *s;
  size_t len = 0;
  lua_getfield(L, t, k);
  s = lua_tolstring(L, -1, &len);
  if (s != NULL && len >= cap) {
    snprintf(err, errlen, "'%s' is longer than %zu bytes", k, cap - 1);
    lua_pop(L, 1);
    return MYC_ECONFIG;
  }
  snprintf(dst, cap, "%s", s ? s : "");
  lua_pop(L, 1);
  return 0;
}

static void read_mailbox(lua_State *L, int t, myc_mailbox_config *m) {
  m->capacity = (uint32_t)num_field(L, t, "capacity", m->capacity);
  m->policy = (myc_policy)num_field(L, t, "policy", m->policy);
  m->threshold = num_field(L, t, "threshold", m->threshold);
  m->max_bytes = (uint64_t)num_field(L, t, "max_bytes", (double)m->max_bytes);
  m->max_message_bytes = (uint64_t)num_field(L, t, "max_message_bytes",
                                             (double)m->max_message_bytes);
}

static void read_supervisor(lua_State *L, int t, myc_supervisor_config *c) {
  c->backoff_initial_ms = num_field(L, t, "backoff_initial_ms",
                                    c->backoff_initial_ms);
  c->backoff_max_ms = num_field(L, t, "backoff_max_ms", c->backoff_max_ms);
  c->multiplier = num_field(L, t, "multiplier", c->multiplier);
  c->jitter = num_field(L, t, "jitter", c->jitter);
  c->max_restarts = (uint32_t)num_field(L, t, "max_restarts", c->max_restarts);
  c->window_s = num_field(L, t, "window_s", c->window_s);
  c->reset_s = num_field(L, t, "reset_s", c->reset_s);
  c->reload_probation_s = num_field(L, t, "reload_probation_s",
                                    c->reload_probation_s);
}

/* The 'tracing' table (mycelium.config checked it): export and endpoint
 * in strings[0] and strings[1]. */
static int read_tracing(lua_State *L, int t, myc_engine_config *c,
                        char (*strings)[4096], char *err, size_t errlen) {
  int rc = 0, tt;
  lua_getfield(L, t, "tracing");
  tt = lua_gettop(L);
  if (lua_istable(L, tt) &&
      (rc = str_field(L, tt, "export", strings[0], sizeof strings[0], err,
                      errlen)) == 0 &&
      (rc = str_field(L, tt, "endpoint", strings[1], sizeof strings[1], err,
                      errlen)) == 0) {
    c->trace_export = strings[0];
    c->trace_endpoint = strings[1];
    c->trace_sample = num_field(L, tt, "sample", 1.0);
    c->trace_queue = (uint32_t)num_field(L, tt, "queue", 0);
  }
  lua_pop(L, 1);
  return rc;
}

/* 'strings' holds the node name, the control URL, the metrics address and
 * the tracing export format and endpoint for the call.
 * Returns 0 or MYC_ECONFIG (with the reason in 'err'). */
static int read_engine_config(lua_State *L, int t, myc_engine_config *c,
                              char (*strings)[4096], char *err,
                              size_t errlen) {
  int rc;
  myc_engine_config_init(c);
  if ((rc = str_field(L, t, "node", strings[0], sizeof strings[0], err,
                      errlen)) != 0 ||
      (rc = str_field(L, t, "control", strings[1], sizeof strings[1], err,
                      errlen)) != 0)
    return rc;
  strings[2][0] = '\0';
  lua_getfield(L, t, "metrics");
  if (lua_istable(L, -1) &&
      (rc = str_field(L, lua_gettop(L), "listen", strings[2],
                      sizeof strings[2], err, errlen)) != 0) {
    lua_pop(L, 1);
    return rc;
  }
  lua_pop(L, 1);
  c->metrics_listen = strings[2][0] ? strings[2] : NULL;
  if ((rc = read_tracing(L, t, c, strings + 3, err, errlen)) != 0)
    return rc;
  c->node = strings[0];
  c->workers = (uint32_t)num_field(L, t, "workers", 0);
  c->max_services = (uint32_t)num_field(L, t, "max_services", 0);
  c->max_topics_per_service =
      (uint32_t)num_field(L, t, "max_topics_per_service", 0);
  c->max_subscriptions_per_service =
      (uint32_t)num_field(L, t, "max_subscriptions_per_service", 0);
  c->log_level = (myc_log_level)num_field(L, t, "log_level", MYC_LOG_INFO);
  c->log_format = (myc_log_format)num_field(L, t, "log_format", MYC_LOG_TEXT);
  c->log_rate = num_field(L, t, "log_rate", 0);
  c->log_burst = num_field(L, t, "log_burst", 0);
  c->reload = (myc_reload_mode)num_field(L, t, "reload", MYC_RELOAD_SIGNAL);
  c->control = strings[1][0] ? strings[1] : NULL;
  lua_getfield(L, t, "mailbox");
  read_mailbox(L, lua_gettop(L), &c->mailbox);
  lua_pop(L, 1);
  lua_getfield(L, t, "supervisor");
  read_supervisor(L, lua_gettop(L), &c->supervisor);
  lua_pop(L, 1);
  return 0;
}

/* Declares the groups listed in 'supervisors' ('dflt': the engine's
 * supervisor settings, which a group's own keys override). */
static int add_groups(lua_State *L, int t, myc_engine *e,
                      const myc_supervisor_config *dflt, char *err,
                      size_t errlen) {
  int i, rc = 0;
  lua_getfield(L, t, "supervisors");
  for (i = 1; rc == 0; i++) {
    myc_supervisor_config sc = *dflt;
    char name[256];
    lua_rawgeti(L, -1, i);
    if (lua_isnil(L, -1))
      break;
    rc = str_field(L, lua_gettop(L), "name", name, sizeof name, err, errlen);
    if (rc != 0)
      break;
    read_supervisor(L, lua_gettop(L), &sc);
    rc = myc_engine_add_group(e, name,
                              (myc_strategy)num_field(L, lua_gettop(L),
                                                      "strategy", 0),
                              &sc);
    if (rc != 0)
      snprintf(err, errlen, "supervisors.%s: %s", name, myc_strerror(rc));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return rc;
}

/* One service of the config, read: its strings are the config table's
 * (kept alive by it until the engine is built). */
typedef struct {
  myc_service_config sc;
  myc_mailbox_config mb;
} service_entry;

/* Field 'k' of table 't' as a string the table keeps ("" when absent),
 * at most cap - 1 bytes.  A number is stored back as its string, so
 * that the table holds what '*out' points to. */
static int str_ref(lua_State *L, int t, const char *k, const char **out,
                   size_t cap, char *err, size_t errlen) {
  size_t len = 0;
  const char *s;
  lua_getfield(L, t, k);
  s = lua_tolstring(L, -1, &len);
  if (s != NULL && len >= cap) {
    snprintf(err, errlen, "'%s' is longer than %zu bytes", k, cap - 1);
    lua_pop(L, 1);
    return MYC_ECONFIG;
  }
  *out = s != NULL ? s : "";
  if (s != NULL)
    lua_setfield(L, t, k);
  else
    lua_pop(L, 1);
  return 0;
}

/* Reads the service described by the table on top of the stack. */
static int read_service(lua_State *L, myc_engine *e, service_entry *out,
                        char *err, size_t errlen) {
  int t = lua_gettop(L);
  myc_service_config *sc = &out->sc;
  const char *group = "";
  size_t optslen = 0;
  int rc;

  memset(out, 0, sizeof *out);
  out->mb = e->mailbox;
  if ((rc = str_ref(L, t, "name", &sc->name, 256, err, errlen)) != 0 ||
      (rc = str_ref(L, t, "module", &sc->module, 4096, err, errlen)) != 0 ||
      (rc = str_ref(L, t, "group", &group, 256, err, errlen)) != 0)
    return rc;
  sc->group = group[0] ? group : NULL;
  sc->worker = (int32_t)num_field(L, t, "worker", -1);
  sc->restart = (myc_restart)num_field(L, t, "restart", MYC_RESTART_PERMANENT);
  sc->memory_limit_mb = num_field(L, t, "memory_limit_mb", 0);
  sc->handler_timeout_ms = num_field(L, t, "handler_timeout_ms", 0);
  sc->load_timeout_ms = num_field(L, t, "load_timeout_ms", 0);
  sc->log_rate = num_field(L, t, "log_rate", 0);
  sc->log_burst = num_field(L, t, "log_burst", 0);
  /* An explicit 0 means no probation; absent means the engine's. */
  sc->reload_probation_s = num_field(L, t, "reload_probation_s", 0);
  lua_getfield(L, t, "reload_probation_s");
  if (lua_isnumber(L, -1) && lua_tonumber(L, -1) == 0)
    sc->reload_probation_s = -1;
  lua_pop(L, 1);
  lua_getfield(L, t, "mailbox");
  if (lua_istable(L, -1)) {
    read_mailbox(L, lua_gettop(L), &out->mb);
    sc->mailbox = &out->mb; /* set again once the list stops moving */
  }
  lua_pop(L, 1);
  lua_getfield(L, t, "opts");
  sc->opts = lua_tolstring(L, -1, &optslen);
  if (sc->opts != NULL)
    lua_setfield(L, t, "opts"); /* as str_ref: the table keeps it */
  else
    lua_pop(L, 1);
  sc->opts_len = optslen;
  return 0;
}

/* Adds the services of the list on top of the stack, their Lua states
 * made in parallel (myc_engine_add_services). */
static int add_services(lua_State *L, myc_engine *e, char *err,
                        size_t errlen) {
  int list = lua_gettop(L), rc = 0;
  size_t n = lua_objlen(L, list), i;
  service_entry *v;
  myc_service_config *scs;
  if (n == 0)
    return 0;
  v = myc__calloc(&e->alloc, n * sizeof *v);
  scs = myc__calloc(&e->alloc, n * sizeof *scs);
  if (v == NULL || scs == NULL) {
    snprintf(err, errlen, "out of memory");
    rc = MYC_ENOMEM;
  }
  for (i = 0; i < n && rc == 0; i++) {
    lua_rawgeti(L, list, (int)i + 1);
    if (lua_istable(L, -1))
      rc = read_service(L, e, &v[i], err, errlen);
    lua_settop(L, list);
    scs[i] = v[i].sc;
    if (v[i].sc.mailbox != NULL)
      scs[i].mailbox = &v[i].mb;
  }
  if (rc == 0)
    rc = myc_engine_add_services(e, scs, n, err, errlen);
  myc__free(&e->alloc, v, n * sizeof *v);
  myc__free(&e->alloc, scs, n * sizeof *scs);
  return rc;
}

static void log_warnings(lua_State *L, int t, myc_engine *e) {
  int i;
  lua_getfield(L, t, "warnings");
  for (i = 1;; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_isnil(L, -1))
      break;
    myc_engine_log(e, MYC_LOG_WARN, NULL, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

/* jit.mcode_protect: process-wide (myc_jit_set_mcode_protect), so only
 * when the config says it.  Not in effect is worth a warning, not a
 * refusal: the engine runs the same, warming up slower. */
static void apply_jit(lua_State *L, int t, myc_engine *e) {
  lua_getfield(L, t, "jit");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "mcode_protect");
    if (lua_isboolean(L, -1) &&
        myc_jit_set_mcode_protect(lua_toboolean(L, -1)) != 0)
      myc_engine_log(e, MYC_LOG_WARN, NULL,
                     "jit.mcode_protect = false is not in effect: LuaJIT's "
                     "mprotect() calls do not reach the engine's (a "
                     "sanitizer's or libc's comes first); traces still "
                     "switch their code between writable and executable");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Loads the contracts file the config names (already resolved against
 * its directory) into 'e'.  Every error of the file goes to 'err', one
 * per line. */
static int load_contracts(lua_State *L, int t, myc_engine *e, char *err,
                          size_t errlen) {
  myc_contract_set *cs;
  const char *path;
  size_t i, n, used;
  int validate, rc;

  lua_getfield(L, t, "contracts");
  lua_getfield(L, t, "validate");
  path = lua_tostring(L, -2);
  validate = !lua_isboolean(L, -1) || lua_toboolean(L, -1);
  if (path == NULL) {
    lua_pop(L, 2);
    return 0;
  }
  rc = myc_contract_load(&cs, path, e->alloc.fn, e->alloc.ud);
  if (cs == NULL) {
    snprintf(err, errlen, "contracts '%s': %s", path, myc_strerror(rc));
  } else if (rc != 0) {
    n = myc_contract_error_count(cs);
    used = (size_t)snprintf(err, errlen, "contracts '%s': %zu error%s:", path,
                            n, n == 1 ? "" : "s");
    for (i = 0; i < n && used < errlen; i++)
      used += (size_t)snprintf(err + used, errlen - used, "\n%s",
                               myc_contract_error(cs, i));
  } else if ((rc = myc_engine_set_contracts(e, cs, validate)) != 0) {
    snprintf(err, errlen, "contracts '%s': %s", path, myc_strerror(rc));
  }
  if (rc != 0)
    myc_contract_free(cs);
  lua_pop(L, 2);
  return rc;
}

#define MAX_LINKS 64

/* Reads the list 'key' of URLs (at most MAX_LINKS) into 'urls'. */
static size_t read_urls(lua_State *L, int t, const char *key,
                        const char **urls) {
  size_t n = 0, i = 0;
  lua_getfield(L, t, key);
  while (n < MAX_LINKS) {
    lua_rawgeti(L, -1, (int)++i);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    /* The config table keeps the string alive until the engine is built;
     * NATS servers are nats_config.c's. */
    if (!myc__is_nats_url(lua_tostring(L, -1)))
      urls[n++] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}

/* listen, connect and link: the engine's links, if any. */
static int add_links(lua_State *L, int t, myc_engine *e, char *err,
                     size_t errlen) {
  const char *listen[MAX_LINKS], *connect[MAX_LINKS];
  size_t nl = read_urls(L, t, "listen", listen);
  size_t nc = read_urls(L, t, "connect", connect);
  myc__link_config c;
  myc__links *links;
  int lt;
  if (nl == 0 && nc == 0)
    return 0;
  myc__link_config_init(&c);
  lua_getfield(L, t, "link");
  lt = lua_gettop(L);
  if (lua_istable(L, lt)) {
    c.max_frame = (uint32_t)num_field(L, lt, "max_frame", c.max_frame);
    c.queue_frames = (uint32_t)num_field(L, lt, "queue_frames", c.queue_frames);
    c.queue_bytes = (uint64_t)num_field(L, lt, "queue_bytes",
                                        (double)c.queue_bytes);
    c.max_subscriptions = (uint32_t)num_field(L, lt, "max_subscriptions",
                                              c.max_subscriptions);
    c.handshake_timeout_ms = num_field(L, lt, "handshake_timeout_ms",
                                       c.handshake_timeout_ms);
    c.frame_timeout_ms = num_field(L, lt, "frame_timeout_ms",
                                   c.frame_timeout_ms);
    c.reconnect.initial_ms = num_field(L, lt, "reconnect_initial_ms",
                                       c.reconnect.initial_ms);
    c.reconnect.max_ms = num_field(L, lt, "reconnect_max_ms",
                                   c.reconnect.max_ms);
    c.wire_max = (int)num_field(L, lt, "wire", c.wire_max);
    c.unknown_fail = (int)num_field(L, lt, "unknown_type", c.unknown_fail);
    c.worker = (int32_t)num_field(L, lt, "worker", c.worker);
    lua_getfield(L, lt, "allow_uids");
    while (lua_istable(L, -1) && c.nallow_uids < MYC_LINK_MAX_UIDS) {
      lua_rawgeti(L, -1, (int)c.nallow_uids + 1);
      if (!lua_isnumber(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      c.allow_uids[c.nallow_uids++] = (uint32_t)lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, lt, "psk_file");
    if (lua_isstring(L, -1)) {
      int rc = myc__link_psk_load(&c, lua_tostring(L, -1), err, errlen);
      if (rc != 0) {
        lua_pop(L, 2);
        return rc;
      }
    }
    lua_pop(L, 1);
    lua_getfield(L, lt, "tls");
    if (lua_istable(L, -1)) {
      int tt = lua_gettop(L);
      if (str_field(L, tt, "cert", c.tls_cert, sizeof c.tls_cert, err,
                    errlen) != 0 ||
          str_field(L, tt, "key", c.tls_key, sizeof c.tls_key, err,
                    errlen) != 0 ||
          str_field(L, tt, "ca", c.tls_ca, sizeof c.tls_ca, err, errlen) != 0) {
        lua_pop(L, 2);
        return MYC_ECONFIG;
      }
      lua_getfield(L, tt, "verify_client");
      c.tls_verify_client = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return myc__links_attach(e, &c, listen, nl, connect, nc, &links, err,
                           errlen);
}

static int build_engine(lua_State *L, myc_engine **out, char *err,
                        size_t errlen) {
  int t = lua_gettop(L), rc;
  myc_engine_config c;
  myc_engine *e;
  char strings[5][4096];

  rc = read_engine_config(L, t, &c, strings, err, errlen);
  if (rc != 0)
    return rc;
  rc = myc_engine_new(&e, &c);
  if (rc != 0) {
    snprintf(err, errlen, "cannot create the engine: %s", myc_strerror(rc));
    return rc;
  }
  log_warnings(L, t, e);
  apply_jit(L, t, e);
  rc = load_contracts(L, t, e, err, errlen);
  if (rc == 0)
    rc = add_groups(L, t, e, &c.supervisor, err, errlen);
  lua_getfield(L, t, "services");
  if (rc == 0 && lua_istable(L, -1))
    rc = add_services(L, e, err, errlen);
  lua_settop(L, t);
  if (rc == 0)
    rc = add_links(L, t, e, err, errlen);
  if (rc == 0)
    rc = myc__config_add_nats(L, t, e, err, errlen);
  if (rc != 0) {
    myc_engine_free(e);
    return rc;
  }
  *out = e;
  return 0;
}

int myc_engine_from_files(myc_engine **out, const char *const *files, int nfiles,
                     char *err, size_t errlen) {
  myc__lua_deadline d;
  lua_State *L;
  int i, rc;

  *out = NULL;
  /* Lua would open a FIFO and wait for a writer. */
  for (i = 0; i < nfiles; i++)
    if (myc__regular_or_absent(files[i], err, errlen) != 0)
      return MYC_ECONFIG;
  L = config_state(myc__find_lua_dir(NULL), &d);
  if (L == NULL) {
    snprintf(err, errlen, "out of memory");
    return MYC_ENOMEM;
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "mycelium.config");
  rc = lua_pcall(L, 1, 1, 0);
  if (rc == 0) {
    lua_getfield(L, -1, "load");
    lua_createtable(L, nfiles, 0);
    for (i = 0; i < nfiles; i++) {
      lua_pushstring(L, files[i]);
      lua_rawseti(L, -2, i + 1);
    }
    rc = lua_pcall(L, 1, 1, 0);
  }
  /* A pcall of config.lua may have caught the deadline's error. */
  if (rc != 0 || d.fired) {
    if (d.fired)
      snprintf(err, errlen, "%s: its top level was still running after the "
               "load budget of %d ms, interrupted", files[0], (int)d.ms);
    else
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return MYC_ECONFIG;
  }
  lua_sethook(L, NULL, 0, 0);
  rc = build_engine(L, out, err, errlen);
  lua_close(L);
  return rc;
}

int myc_engine_from_file(myc_engine **out, const char *path, char *err,
                         size_t errlen) {
  char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  return myc_engine_from_files(out, &path, 1, err, errlen);
}
