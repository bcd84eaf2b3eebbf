/* service.c -- the FFI entry points of a service's own calls (see
 * ffi.h): thin, each one call into the runtime below. */
#include "ffi/ffi.h"

#include "base/check.h"
#include "base/file.h"
#include "runtime/activation.h"
#include "runtime/emit.h"
#include "runtime/engine.h"
#include "runtime/request.h"

#include <math.h>

#include <stdio.h>
#include <string.h>

#define ON_WORKER(s) MYC_ASSERT_OWNER(&myc__service_worker(s)->owner)

int myc_ffi_emit(myc_service *s, uint32_t topic_id, int kind, uint16_t type,
                 const void *data, size_t len) {
  return myc__emit(s, topic_id, kind, type, data, len);
}

int myc_ffi_request(myc_service *s, uint32_t topic_id, int kind,
                    uint16_t type, const void *data, size_t len,
                    double timeout_ms, int64_t base, double *out) {
  myc__worker *w = myc__service_worker(s);
  int64_t deadline;
  uint64_t corr = s->next_corr + 1;
  int rc;
  if (!(timeout_ms >= 0 && timeout_ms <= MYC_MAX_MS))
    return MYC_EINVAL;
  if (s->warm != NULL)
    return MYC_ESTATE; /* nothing leaves a warm-up */
  deadline = w->now + (int64_t)(timeout_ms * 1e6);
  rc = myc__emit_request(s, topic_id, kind, type, data, len, deadline, corr);
  if (rc != 0)
    return rc;
  s->next_corr = corr;
  out[0] = (double)corr;
  out[1] = (double)(deadline - base);
  return 0;
}

int myc_ffi_reply_current(myc_service *s, double *corr) {
  myc_buf *b = s->view.batch[s->view.cursor];
  ON_WORKER(s);
  *corr = (double)myc__buf_req(b)->corr;
  return b->hdr.flags;
}

int myc_ffi_reply(myc_service *s, myc_buf *req, int kind, uint16_t type,
                  const void *data, size_t len) {
  ON_WORKER(s);
  return myc__request_reply(s, req, kind, type, data, len, 0);
}

double myc_ffi_remaining_ms(myc_service *s, myc_buf *req) {
  int64_t deadline;
  if (!(req->hdr.flags & MYC_FRAME_REQUEST))
    return NAN;
  deadline = (int64_t)(req->hdr.ts_ns + myc__buf_req(req)->budget_ns);
  return (double)(deadline - myc__clock_now(&s->eng->clock)) / 1e6;
}

void myc_ffi_reply_late(myc_service *s) {
  myc__counter_add(&s->n_replies_late, 1);
}

int64_t myc_ffi_timer_at(myc_service *s, int64_t deadline) {
  uint64_t id = ++s->next_timer_id;
  int rc;
  ON_WORKER(s);
  rc = myc__worker_add_timer(myc__service_worker(s), myc__service_timer, s,
                             deadline, 0, id);
  return rc < 0 ? rc : (int64_t)id;
}

int64_t myc_ffi_clock_ns(myc_service *s) {
  return myc__clock_now(&s->eng->clock);
}

myc_buf *myc_ffi_buf_new(myc_service *s, size_t size) {
  ON_WORKER(s);
  return myc__emit_buf_new(s, size);
}

int myc_ffi_emit_buf(myc_service *s, uint32_t topic_id, myc_buf *b, int kind,
                     uint16_t type) {
  return myc__emit_buf(s, topic_id, b, kind, type);
}

void myc_ffi_buf_ref(myc_buf *b) { myc__buf_ref(b, 1); }

void myc_ffi_buf_release(myc_service *s, myc_buf *b) {
  ON_WORKER(s);
  myc__buf_release(&myc__service_worker(s)->pool, &s->eng->alloc, b);
}

int64_t myc_ffi_topic(myc_service *s, const char *name, size_t len) {
  return myc__engine_topic(s->eng, s, name, len);
}

void myc_ffi_topic_limit(myc_service *s, const char *name, size_t len,
                         char *err, size_t errlen) {
  myc__engine_topic_limit(s->eng, s, name, len, err, errlen);
}

const char *myc_ffi_topic_name(myc_service *s, uint32_t id) {
  myc__topic *t = myc__topics_get(s->topics, id);
  return t ? t->name : NULL;
}

const char *myc_ffi_topic_check(const char *name, size_t len, int pattern) {
  return myc__topic_check(name, len, pattern);
}

int myc_ffi_subscribe(myc_service *s, const char *pattern, size_t len) {
  return myc__topics_subscribe_within(s->topics, s, pattern, len,
                                      s->eng->max_subscriptions_per_service);
}

int myc_ffi_unsubscribe(myc_service *s, const char *pattern, size_t len) {
  return myc__topics_unsubscribe(s->topics, s, pattern, len);
}

int64_t myc_ffi_timer(myc_service *s, double delay_ms, double repeat_ms) {
  int64_t now = myc__clock_now(&s->eng->clock);
  uint64_t id;
  int rc;
  ON_WORKER(s);
  /* Also NaN and infinities: a deadline past int64 ns fired at once. */
  if (!(delay_ms >= 0 && delay_ms <= MYC_MAX_MS) ||
      !(repeat_ms >= 0 && repeat_ms <= MYC_MAX_MS))
    return MYC_EINVAL;
  id = ++s->next_timer_id;
  rc = myc__worker_add_timer(myc__service_worker(s), myc__service_timer, s,
                             now + (int64_t)(delay_ms * 1e6),
                             (int64_t)(repeat_ms * 1e6), id);
  return rc < 0 ? rc : (int64_t)id;
}

double myc_ffi_now(myc_service *s) {
  return (double)myc__clock_now(&s->eng->clock) / 1e9;
}

void myc_ffi_shutdown(myc_service *s, int code) {
  char why[320];
  if (s->warm != NULL)
    return; /* a warm-up's handlers run against scratch state */
  snprintf(why, sizeof why, "service '%s' called ctx:shutdown(%d)", s->name,
           code);
  myc__engine_stop_why(s->eng, code, why);
}

/* The mailbox's own count keeps the whole batch until it is released
 * (which is what bounds memory); the batch's handled part is not
 * waiting any more. */
uint32_t myc_ffi_queue_depth(myc_service *s) {
  uint32_t done = s->view.cursor >= 0 ? (uint32_t)s->view.cursor + 1
                                      : s->batch_pos;
  return atomic_load_explicit(&s->task.mb.len, memory_order_relaxed) +
         (s->view.batch_n - done);
}

uint32_t myc_ffi_queue_capacity(myc_service *s) { return s->task.mb.capacity; }

int myc_ffi_over_threshold(myc_service *s) {
  return myc_ffi_queue_depth(s) > s->task.mb.threshold;
}

/* So a source can pause before anyone has to drop. */
double myc_ffi_pressure(myc_service *s, uint32_t topic_id) {
  myc__topic *t = myc__topics_get(s->topics, topic_id);
  myc__sublist *l;
  double worst = 0;
  uint32_t i;
  if (t == NULL)
    return 0;
  l = myc__topic_subs(t);
  for (i = 0; i < l->n; i++) {
    myc_service *sub = myc__sublist_at(l, i);
    double p;
    if (sub == NULL)
      continue;
    p = myc__mailbox_pressure(&sub->task.mb);
    /* A subscriber that forwards (the links' service) is as full as the
     * fullest queue past its mailbox that the topic goes to. */
    if (sub->pressure != NULL) {
      double q = sub->pressure(sub->cb_ud, t);
      if (q > p)
        p = q;
    }
    if (p > worst)
      worst = p;
  }
  return worst;
}

int myc_ffi_stats(myc_service *s, const char *name, size_t len,
                  myc_service_stats *out) {
  return myc__engine_stats_by_name(s->eng, name, len, out);
}

int myc_ffi_spawn(myc_service *s, const char *name, const char *module,
                  const void *opts, size_t opts_len, int32_t worker,
                  int restart, double memory_limit_mb,
                  double handler_timeout_ms, double load_timeout_ms,
                  char *err, size_t errlen) {
  myc_service_config sc;
  char path[4096];
  const char *slash;
  if (s->warm != NULL) {
    snprintf(err, errlen, "spawn: not during a warm-up");
    return MYC_ESTATE;
  }
  memset(&sc, 0, sizeof sc);
  sc.name = name;
  sc.module = module;
  /* Beside the spawner's own module, as a module's require would look:
   * a service tree moves as a whole. */
  uv_mutex_lock(&s->hook_lock);
  slash = s->module ? strrchr(s->module, '/') : NULL;
  if (module[0] != '/' && slash != NULL &&
      snprintf(path, sizeof path, "%.*s/%s", (int)(slash - s->module),
               s->module, module) < (int)sizeof path)
    sc.module = path;
  uv_mutex_unlock(&s->hook_lock);
  sc.opts = opts;
  sc.opts_len = opts_len;
  sc.worker = worker;
  sc.restart = (myc_restart)restart;
  sc.memory_limit_mb = memory_limit_mb;
  sc.handler_timeout_ms = handler_timeout_ms;
  sc.load_timeout_ms = load_timeout_ms;
  return myc__engine_spawn(s->eng, &sc, s->name, err, errlen);
}

int myc_ffi_kill(myc_service *s, const char *name, char *err, size_t errlen) {
  if (s->warm != NULL) {
    snprintf(err, errlen, "kill: not during a warm-up");
    return MYC_ESTATE;
  }
  return myc__engine_kill(s->eng, name, s->name, err, errlen);
}

int myc_ffi_log_level(myc_service *s) { return s->eng->log.level; }
int myc_ffi_log_format(myc_service *s) { return s->eng->log.format; }
const char *myc_ffi_node(myc_service *s) { return s->eng->node; }

void myc_ffi_trace(myc_service *s, uint8_t *out24) {
  if (s->view.cursor >= 0) {
    const myc_frame *f = &s->view.batch[s->view.cursor]->hdr;
    memcpy(out24, f->trace_id, 16);
    memcpy(out24 + 16, f->span_id, 8);
  } else {
    memcpy(out24, s->act_trace, 16);
    memcpy(out24 + 16, s->act_span, 8);
  }
}

void myc_ffi_log(myc_service *s, int level, const char *msg, size_t len,
                 const char *extra, size_t extra_len) {
  uint8_t tr[24];
  int64_t now;
  if (s->warm != NULL) {
    s->warm->logs++; /* about scratch state: noise in the real log */
    return;
  }
  now = myc__clock_now(&s->eng->clock);
  if (!myc__log_admit(&s->eng->log, &s->log_bucket, level, now, s->name,
                      s->name_len))
    return;
  myc_ffi_trace(s, tr);
  myc__log_write(&s->eng->log, level, now, s->name, s->name_len, tr, tr + 16,
                 msg, len, extra, extra_len);
}

void myc_ffi_exit(myc_service *s, int how) {
  if (s->warm == NULL)
    s->exit_req = how;
}

int myc_ffi_warm_capture(myc_service *s) {
  ON_WORKER(s);
  if (s->warm == NULL)
    return MYC_ESTATE;
  if (myc__mono_ns() >= s->warm->deadline_ns) {
    s->warm->overtime = 1;
    myc__deadline_told(s);
    return MYC_ETIMEDOUT;
  }
  s->warm->capture = 1;
  s->warm->handled++;
  return 0;
}

myc_buf *myc_ffi_warm_frame(myc_service *s) {
  myc_buf *b;
  ON_WORKER(s);
  if (s->warm == NULL)
    return NULL;
  b = s->warm->frame;
  s->warm->frame = NULL;
  s->warm->capture = 0;
  return b;
}

void myc_ffi_warm_counts(myc_service *s, double *out2) {
  out2[0] = s->warm ? (double)s->warm->emits : 0;
  out2[1] = s->warm ? (double)s->warm->logs : 0;
}

void myc_ffi_unhandled(myc_service *s) {
  ON_WORKER(s);
  myc__service_unhandled(s);
}

void myc_ffi_hex(char *dst, const uint8_t *src, size_t n) {
  myc__hex(dst, src, n);
}

int myc_ffi_depend(myc_service *s, const char *path, size_t len) {
  char p[4096];
  uint64_t digest;
  if (len >= sizeof p)
    return MYC_EINVAL;
  memcpy(p, path, len);
  p[len] = '\0';
  if (myc__file_digest(&s->eng->alloc, p, &digest) != 0)
    return 0;
  return myc__service_depend(s, p, digest);
}
