/* nats_config.c -- the NATS transport from a normalised config table
 * (validated by lua/mycelium/config.lua; see nats_config.h). */
#include "api/nats_config.h"

#include <string.h>

int myc__is_nats_url(const char *url) {
  return strncmp(url, "nats://", 7) == 0 || strncmp(url, "tls://", 6) == 0;
}

#ifdef MYC_WITH_NATS

#include "nats/transport.h"

#include <stdio.h>

static int str_to(lua_State *L, int t, const char *k, char *dst, size_t cap,
                  char *err, size_t errlen) {
  const char *s;
  size_t len = 0;
  lua_getfield(L, t, k);
  s = lua_tolstring(L, -1, &len);
  if (s != NULL) {
    if (len >= cap) {
      snprintf(err, errlen, "'nats.%s' is longer than %zu bytes", k, cap - 1);
      lua_pop(L, 1);
      return MYC_ECONFIG;
    }
    memcpy(dst, s, len + 1);
  }
  lua_pop(L, 1);
  return 0;
}

static double num_to(lua_State *L, int t, const char *k, double dflt) {
  double v;
  lua_getfield(L, t, k);
  v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

static int bool_to(lua_State *L, int t, const char *k, int dflt) {
  int v;
  lua_getfield(L, t, k);
  v = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

static int read_nats(lua_State *L, int nt, myc__nats_config *c, char *err,
                     size_t errlen) {
  int rc = 0, tt;
  rc |= str_to(L, nt, "prefix", c->prefix, sizeof c->prefix, err, errlen);
  rc |= str_to(L, nt, "name", c->name, sizeof c->name, err, errlen);
  rc |= str_to(L, nt, "user", c->user, sizeof c->user, err, errlen);
  rc |= str_to(L, nt, "password", c->password, sizeof c->password, err,
               errlen);
  rc |= str_to(L, nt, "token", c->token, sizeof c->token, err, errlen);
  rc |= str_to(L, nt, "creds", c->creds, sizeof c->creds, err, errlen);
  rc |= str_to(L, nt, "nkey", c->nkey, sizeof c->nkey, err, errlen);
  if (rc != 0)
    return MYC_ECONFIG;
  c->randomize = bool_to(L, nt, "randomize", c->randomize);
  c->queue_msgs = (uint32_t)num_to(L, nt, "queue_msgs", c->queue_msgs);
  c->queue_bytes =
      (uint64_t)num_to(L, nt, "queue_bytes", (double)c->queue_bytes);
  c->pending_msgs = (int)num_to(L, nt, "pending_msgs", c->pending_msgs);
  c->pending_bytes =
      (int64_t)num_to(L, nt, "pending_bytes", (double)c->pending_bytes);
  c->reconnect_wait_ms =
      num_to(L, nt, "reconnect_wait_ms", c->reconnect_wait_ms);
  c->max_reconnect = (int)num_to(L, nt, "max_reconnect", c->max_reconnect);
  c->reconnect_buf_bytes = (int)num_to(L, nt, "reconnect_buffer_bytes",
                                       c->reconnect_buf_bytes);
  c->connect_timeout_ms =
      num_to(L, nt, "connect_timeout_ms", c->connect_timeout_ms);
  c->sub_poll_ms = num_to(L, nt, "subscription_poll_ms", c->sub_poll_ms);
  c->worker = (int32_t)num_to(L, nt, "worker", c->worker);
  /* config.lua turned "drop" / "fail" into 0 / 1 */
  c->schema_fail = num_to(L, nt, "schema_mismatch", 0) != 0;
  lua_getfield(L, nt, "publish");
  if (lua_istable(L, -1)) {
    c->npublish = 0;
    while (c->npublish < MYC_NATS_MAX_PUBLISH) {
      const char *p;
      lua_rawgeti(L, -1, (int)c->npublish + 1);
      p = lua_tostring(L, -1);
      if (p == NULL || strlen(p) >= sizeof c->publish[0]) {
        lua_pop(L, 1);
        break;
      }
      memcpy(c->publish[c->npublish++], p, strlen(p) + 1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, nt, "tls");
  tt = lua_gettop(L);
  if (lua_istable(L, tt)) {
    c->tls = 1;
    rc |= str_to(L, tt, "ca", c->tls_ca, sizeof c->tls_ca, err, errlen);
    rc |= str_to(L, tt, "cert", c->tls_cert, sizeof c->tls_cert, err, errlen);
    rc |= str_to(L, tt, "key", c->tls_key, sizeof c->tls_key, err, errlen);
    c->tls_verify = bool_to(L, tt, "verify", c->tls_verify);
  }
  lua_pop(L, 1);
  return rc ? MYC_ECONFIG : 0;
}

int myc__config_add_nats(lua_State *L, int t, myc_engine *e, char *err,
                         size_t errlen) {
  const char *urls[MYC_NATS_MAX_URLS];
  size_t n = 0, i;
  myc__nats_config c;
  myc__nats *N;
  int rc = 0, tls = 0;
  lua_getfield(L, t, "connect");
  for (i = 1; lua_istable(L, -1) && n < MYC_NATS_MAX_URLS; i++) {
    const char *u;
    lua_rawgeti(L, -1, (int)i);
    u = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (u == NULL)
      break;
    /* The config table keeps the string alive until the engine is built. */
    if (myc__is_nats_url(u)) {
      urls[n++] = u;
      tls |= strncmp(u, "tls://", 6) == 0;
    }
  }
  lua_pop(L, 1);
  if (n == 0)
    return 0;
  myc__nats_config_init(&c);
  c.tls = tls;
  lua_getfield(L, t, "nats");
  if (lua_istable(L, -1))
    rc = read_nats(L, lua_gettop(L), &c, err, errlen);
  lua_pop(L, 1);
  if (rc != 0)
    return rc;
  return myc__nats_attach(e, &c, urls, n, &N, err, errlen);
}

#else

#include <stdio.h>

int myc__config_add_nats(lua_State *L, int t, myc_engine *e, char *err,
                         size_t errlen) {
  size_t i;
  int found = 0;
  (void)e;
  lua_getfield(L, t, "connect");
  for (i = 1; lua_istable(L, -1); i++) {
    const char *u;
    lua_rawgeti(L, -1, (int)i);
    u = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (u == NULL)
      break;
    found |= myc__is_nats_url(u);
  }
  lua_pop(L, 1);
  if (!found)
    return 0;
  snprintf(err, errlen,
           "connect lists a NATS server, but this mycelium was built "
           "without NATS (install libnats-dev and rebuild)");
  return MYC_ECONFIG;
}

#endif
