/* reconnect.c -- a network client's connection lifecycle (see
 * reconnect.h): lookup, attempts with a deadline, backoff, close and
 * release, on one timer.
 */
#include "net/reconnect.h"

#include "base/backoff.h"
#include "runtime/engine.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void on_timer(uv_timer_t *h);
static void start_attempt(myc__reconnect *r);

uint64_t myc__reconnect_now(myc__reconnect *r) {
  uv_update_time(r->loop);
  return uv_now(r->loop);
}

static int vset(char *dst, size_t cap, const myc__reconnect *r, const char *fmt,
                va_list ap) {
  int n = snprintf(dst, cap, "%s %s: ", r->kind, r->server);
  char *p;
  vsnprintf(dst + n, cap - (size_t)n, fmt, ap);
  /* libpq's messages end in a newline and may span lines; a failure is
   * one line of a log or one Lua string. */
  for (p = dst; *p; p++)
    if (*p == '\n' || *p == '\t')
      *p = ' ';
  while (p > dst + n && p[-1] == ' ')
    *--p = 0;
  return n;
}

int myc__reconnect_fail(myc__reconnect *r, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vset(r->err, sizeof r->err, r, fmt, ap);
  va_end(ap);
  return status;
}

void myc__reconnect_lost(myc__reconnect *r, int status, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vset(r->lost, sizeof r->lost, r, fmt, ap);
  va_end(ap);
  r->lost_status = status;
  r->why = r->lost + n;
  memcpy(r->err, r->lost, sizeof r->err);
}

int myc__reconnect_refuse(myc__reconnect *r) {
  uint64_t now;
  if (r->closing || r->state == MYC__RC_CLOSED)
    return myc__reconnect_fail(r, MYC_ESTATE, "client closed");
  now = myc__reconnect_now(r);
  if (r->state == MYC__RC_DOWN)
    return myc__reconnect_fail(
        r, UV_ENOTCONN, "not connected (%s); next attempt in %u ms", r->why,
        (unsigned)(r->retry_at > now ? r->retry_at - now : 0));
  return 0;
}

int myc__reconnect_deliverable(const myc__reconnect *r) {
  if (r->released)
    return 0;
  /* A delivery inside an owner's call would re-enter its Lua state from
   * an FFI call, which LuaJIT does not allow. */
  assert(r->in_api == 0);
  return 1;
}

int myc__reconnect_init(myc__reconnect *r, const myc__reconnect_ops *ops,
                        uv_loop_t *loop, const char *kind,
                        const myc__reconnect_timing *t,
                        uint32_t default_connect_ms, char *err, size_t errlen) {
  uint32_t connect_timeout_ms =
      t->connect_timeout_ms ? t->connect_timeout_ms : default_connect_ms;
  uint32_t reconnect_min_ms =
      t->reconnect_min_ms ? t->reconnect_min_ms : MYC__RC_RECONNECT_MIN_MS;
  uint32_t reconnect_max_ms =
      t->reconnect_max_ms ? t->reconnect_max_ms : MYC__RC_RECONNECT_MAX_MS;
  if (reconnect_min_ms > reconnect_max_ms) {
    snprintf(err, errlen,
             "%s: reconnect_min_ms (%u) is above "
             "reconnect_max_ms (%u)",
             kind, reconnect_min_ms, reconnect_max_ms);
    return MYC_EINVAL;
  }
  memset(r, 0, sizeof *r);
  r->ops = ops;
  r->loop = loop;
  r->kind = kind;
  r->connect_timeout_ms = connect_timeout_ms;
  r->reconnect_min_ms = reconnect_min_ms;
  r->reconnect_max_ms = reconnect_max_ms;
  r->why = "";
  return 0;
}

void myc__reconnect_start(myc__reconnect *r) {
  myc__rng_seed(&r->rng);
  uv_timer_init(r->loop, &r->timer);
  uv_unref((uv_handle_t *)&r->timer);
  r->timer.data = r;
  r->gai.data = r;
  r->in_api++;
  start_attempt(r);
  r->in_api--;
}

/* ---- the timer: deadlines, retries, notifications ------------------------ */

void myc__reconnect_rearm(myc__reconnect *r) {
  uint64_t now, at = UINT64_MAX;
  if (r->released)
    return;
  if (r->notify)
    at = 0;
  else if (r->state == MYC__RC_DOWN && !r->closing)
    at = r->retry_at;
  else if (r->state == MYC__RC_RESOLVING || r->state == MYC__RC_CONNECTING)
    at = r->attempt_deadline;
  else if (r->state == MYC__RC_HANDSHAKE || r->state == MYC__RC_UP)
    at = r->ops->head_deadline(r);
  if (at == UINT64_MAX) {
    uv_timer_stop(&r->timer);
    return;
  }
  now = myc__reconnect_now(r);
  r->timer_due = at > now ? at : now;
  uv_timer_start(&r->timer, on_timer, at > now ? at - now : 0, 0);
}

int myc__reconnect_stalled(const myc__reconnect *r, uint64_t now) {
  return now - r->timer_due >= MYC__RC_STALL_MS;
}

/* Delay before the next attempt (base/backoff.h): doubling from
 * reconnect_min_ms up to reconnect_max_ms, +-20%. */
static uint32_t backoff(myc__reconnect *r) {
  myc__backoff b;
  b.initial_ms = r->reconnect_min_ms;
  b.max_ms = r->reconnect_max_ms;
  b.multiplier = 2;
  b.jitter = 0.2;
  return (uint32_t)myc__backoff_ms(&b, r->attempts++, &r->rng);
}

static void attempt_expired(myc__reconnect *r, uint64_t now) {
  /* A timer this late means the loop was not watching (a long start:
   * other services' inits and warm-ups), and the connection may be
   * waiting unread: one more full timeout, once per attempt. */
  if (myc__reconnect_stalled(r, now) && !r->attempt_spared) {
    r->attempt_spared = 1;
    r->attempt_deadline = now + r->connect_timeout_ms;
    return;
  }
  if (r->resolving)
    uv_cancel((uv_req_t *)&r->gai); /* on_resolved ignores the result */
  myc__reconnect_lost(r, UV_ETIMEDOUT, "cannot connect: timed out after %u ms",
                      r->connect_timeout_ms);
  r->ops->drop(r);
}

static void on_timer(uv_timer_t *h) {
  myc__reconnect *r = h->data;
  unsigned n = r->notify;
  uint64_t now;
  r->notify = 0;
  if (n & MYC__RC_N_DOWN)
    r->ops->event(r, MYC__RC_EV_DOWN);
  if ((n & MYC__RC_N_UP) && !r->released && r->state == MYC__RC_UP)
    r->ops->event(r, MYC__RC_EV_UP);
  if ((n & MYC__RC_N_CLOSED) && !r->released)
    r->ops->event(r, MYC__RC_EV_CLOSED);
  if (r->released)
    return;
  if ((n & ~(MYC__RC_N_CLIENT - 1)) && r->ops->notified != NULL &&
      r->ops->notified(r, n))
    return;
  now = myc__reconnect_now(r);
  switch (r->state) {
  case MYC__RC_DOWN:
    if (!r->closing && now >= r->retry_at)
      start_attempt(r);
    break;
  case MYC__RC_RESOLVING:
  case MYC__RC_CONNECTING:
    if (now >= r->attempt_deadline)
      attempt_expired(r, now);
    break;
  case MYC__RC_HANDSHAKE:
  case MYC__RC_UP:
    if (r->ops->head_deadline(r) <= now)
      r->ops->head_expired(r, now);
    break;
  }
  myc__reconnect_rearm(r);
}

/* ---- the lifecycle ------------------------------------------------------- */

void myc__reconnect_finish(myc__reconnect *r) {
  if (r->state == MYC__RC_CLOSED || r->ops->busy(r) || r->resolving)
    return;
  r->state = MYC__RC_CLOSED;
  r->notify |= MYC__RC_N_CLOSED;
  myc__reconnect_rearm(r);
}

void myc__reconnect_ended(myc__reconnect *r) {
  r->state = MYC__RC_DOWN;
  r->ops->ended(r);
  if (r->released)
    return;
  if (r->closing) {
    myc__reconnect_finish(r);
    return;
  }
  r->retry_ms = backoff(r);
  r->retry_at = myc__reconnect_now(r) + r->retry_ms;
  r->notify |= MYC__RC_N_DOWN;
  myc__reconnect_rearm(r);
}

void myc__reconnect_up(myc__reconnect *r) {
  r->state = MYC__RC_UP;
  r->attempts = 0;
  r->notify |= MYC__RC_N_UP;
  myc__reconnect_rearm(r);
}

static void connect_to(myc__reconnect *r, const char *ip) {
  r->state = MYC__RC_CONNECTING;
  r->ops->connect(r, ip);
  myc__reconnect_rearm(r);
}

static void release_if_done(myc__reconnect *r);

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  myc__reconnect *r = req->data;
  struct addrinfo *ai, *pick = NULL;
  char ip[64] = "";
  r->resolving = 0;
  if (r->released || r->state != MYC__RC_RESOLVING) {
    /* Released, or an attempt that timed out: nothing waits for it. */
    uv_freeaddrinfo(res);
    if (r->released)
      release_if_done(r);
    else if (r->closing)
      myc__reconnect_finish(r);
    return;
  }
  if (r->closing)
    status = UV_ECANCELED;
  /* An IPv4 address first: "localhost" is usually served on 127.0.0.1,
   * and ::1 first would fail where the server listens on IPv4 only. */
  for (ai = status == 0 ? res : NULL; ai != NULL; ai = ai->ai_next)
    if (pick == NULL ||
        (ai->ai_family == AF_INET && pick->ai_family != AF_INET))
      pick = ai;
  if (pick != NULL && pick->ai_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)pick->ai_addr, ip, sizeof ip);
  else if (pick != NULL)
    uv_ip6_name((struct sockaddr_in6 *)pick->ai_addr, ip, sizeof ip);
  uv_freeaddrinfo(res);
  if (r->closing) {
    myc__reconnect_lost(r, MYC_ESTATE, "client closed before it connected");
    myc__reconnect_ended(r);
  } else if (*ip == '\0') {
    status = status ? status : UV_EAI_NONAME;
    myc__reconnect_lost(r, status, "cannot resolve '%s': %s", r->lookup_host,
                        uv_strerror(status));
    myc__reconnect_ended(r);
  } else {
    connect_to(r, ip);
  }
}

static void start_attempt(myc__reconnect *r) {
  struct addrinfo hints;
  int rc;
  if (r->resolving) {
    /* An abandoned lookup still holds the request: try again shortly. */
    r->retry_at = myc__reconnect_now(r) + r->reconnect_min_ms;
    myc__reconnect_rearm(r);
    return;
  }
  r->attempt_deadline = myc__reconnect_now(r) + r->connect_timeout_ms;
  r->attempt_spared = 0;
  if (r->lookup_host == NULL) {
    connect_to(r, NULL);
    return;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  /* getaddrinfo() blocks: libuv runs it on its thread pool. */
  rc = uv_getaddrinfo(r->loop, &r->gai, on_resolved, r->lookup_host, NULL,
                      &hints);
  if (rc != 0) {
    myc__reconnect_lost(r, rc, "cannot resolve '%s': %s", r->lookup_host,
                        uv_strerror(rc));
    myc__reconnect_ended(r);
    return;
  }
  r->resolving = 1;
  r->state = MYC__RC_RESOLVING;
  myc__reconnect_rearm(r);
}

/* ---- the owner's calls -----------------------------------------------------
 */

void myc__reconnect_close(myc__reconnect *r) {
  if (r->closing || r->released)
    return;
  r->in_api++;
  r->closing = 1;
  switch (r->state) {
  case MYC__RC_DOWN:
    myc__reconnect_finish(r);
    break;
  case MYC__RC_RESOLVING:
    /* on_resolved fails what waited and finishes the close. */
    uv_cancel((uv_req_t *)&r->gai);
    break;
  case MYC__RC_CONNECTING:
  case MYC__RC_HANDSHAKE:
  case MYC__RC_UP:
    r->ops->close(r);
    break;
  }
  r->in_api--;
}

static void on_timer_closed(uv_handle_t *h) {
  myc__reconnect *r = h->data;
  r->ops->destroy(r);
}

static void release_if_done(myc__reconnect *r) {
  if (r->released && !r->resolving && !r->ops->busy(r) && r->handles == 0 &&
      !r->timer_closing) {
    r->timer_closing = 1;
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
  }
}

void myc__reconnect_release(myc__reconnect *r) {
  if (r->released)
    return;
  r->in_api++;
  r->released = 1;
  if (r->resolving)
    uv_cancel((uv_req_t *)&r->gai); /* on_resolved then releases */
  r->ops->release(r);
  uv_timer_stop(&r->timer);
  release_if_done(r);
  r->in_api--;
}

void myc__reconnect_handle_closing(myc__reconnect *r) {
  r->handles++;
}

void myc__reconnect_handle_closed(myc__reconnect *r) {
  r->handles--;
  release_if_done(r);
}

const char *myc__reconnect_state(const myc__reconnect *r) {
  if (r->state == MYC__RC_CLOSED)
    return "closed";
  if (r->closing)
    return "closing";
  switch (r->state) {
  case MYC__RC_DOWN:
    return "down";
  case MYC__RC_UP:
    return "up";
  default:
    return "connecting";
  }
}

void myc__reconnect_bind(myc__reconnect *r, myc_service *s, uint64_t source) {
  r->svc = s;
  r->source = source;
}

void myc__reconnect_to_service(myc__reconnect *r, int code, const void *ev,
                               size_t size) {
  (void)myc__service_event(r->svc, r->source, code, ev, size);
}
