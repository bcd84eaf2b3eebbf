/* trace.c -- span export (see trace.h).  Each worker owns the producing
 * end of its queue (a single-producer, single-consumer ring), so
 * recording a span is filling a slot and a release store; the exporter thread
 * owns the consuming ends.  The exporter never drops a batch the
 * collector did not answer: it keeps it and retries with backoff, and
 * the queues, which then fill, drop new spans and count them.
 */
#include "observe/trace.h"

#include "base/backoff.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define QUEUE_DEFAULT 4096 /* spans per worker */
#define BATCH_MAX 512      /* spans per request */
#define FLUSH_MS 200       /* a partial batch waits at most this long */
#define POST_TIMEOUT_MS 2000
#define FINAL_TIMEOUT_MS 1000 /* the last post at shutdown */

typedef struct {
  _Atomic uint64_t head; /* the worker's */
  char pad1[56];
  _Atomic uint64_t tail; /* the exporter's */
  char pad2[56];
  _Atomic uint64_t sampled, dropped; /* the worker's */
  myc__span *slots;
} ring;

struct myc__trace {
  myc__tracer tracer; /* first: e->tracer points here */
  myc_engine *e;
  myc__trace_format fmt;
  char *endpoint;
  double sample;
  uint32_t nrings, cap; /* cap: a power of two */
  ring *rings;

  myc__span *batch; /* BATCH_MAX, the exporter's */
  uint32_t nbatch;

  uv_thread_t thread;
  uv_mutex_t lock;
  uv_cond_t cond;
  int running, stop; /* under lock */

  _Atomic uint64_t exported, rejected, shutdown, posts_ok, posts_failed;
  _Atomic uint32_t pending; /* spans of the batch being retried */
  char last_error[256];     /* under lock */
};

/* ---- the workers' side ---------------------------------------------- */

static myc__span *slot(void *ud, uint32_t worker) {
  myc__trace *tr = ud;
  ring *r = &tr->rings[worker];
  uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  atomic_store_explicit(
      &r->sampled, atomic_load_explicit(&r->sampled, memory_order_relaxed) + 1,
      memory_order_relaxed);
  if (h - t >= tr->cap) {
    atomic_store_explicit(
        &r->dropped,
        atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
        memory_order_relaxed);
    return NULL;
  }
  return &r->slots[h & (tr->cap - 1)];
}

static void commit(void *ud, uint32_t worker) {
  myc__trace *tr = ud;
  ring *r = &tr->rings[worker];
  atomic_store_explicit(
      &r->head, atomic_load_explicit(&r->head, memory_order_relaxed) + 1,
      memory_order_release);
}

/* ---- the exporter's side -------------------------------------------- */

/* Moves queued spans into the batch until it is full. */
static void drain(myc__trace *tr) {
  uint32_t i;
  for (i = 0; i < tr->nrings && tr->nbatch < BATCH_MAX; i++) {
    ring *r = &tr->rings[i];
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    while (t < h && tr->nbatch < BATCH_MAX)
      tr->batch[tr->nbatch++] = r->slots[t++ & (tr->cap - 1)];
    atomic_store_explicit(&r->tail, t, memory_order_release);
  }
}

static uint64_t queued(myc__trace *tr) {
  uint64_t n = 0;
  uint32_t i;
  for (i = 0; i < tr->nrings; i++)
    n += atomic_load_explicit(&tr->rings[i].head, memory_order_acquire) -
         atomic_load_explicit(&tr->rings[i].tail, memory_order_acquire);
  return n;
}

static void log_line(myc__trace *tr, myc_log_level level, const char *msg) {
  myc_engine_log(tr->e, level, NULL, msg);
}

/* Posts the batch.  Returns 1 when it is done with (sent, or refused for
 * good), 0 when it should be tried again. */
static int post(myc__trace *tr, int timeout_ms) {
  myc__text body;
  char err[256] = "", line[400];
  int status;
  myc__text_init(&body, &tr->e->alloc);
  myc__trace_encode(tr->fmt, tr->e->node, tr->batch, tr->nbatch, &body);
  if (body.oom) {
    myc__text_free(&body);
    snprintf(err, sizeof err, "out of memory encoding %" PRIu32 " spans",
             tr->nbatch);
    status = -1;
  } else {
    status = myc__http_call("POST", tr->endpoint, "application/json",
                               body.p, body.len, timeout_ms, NULL, err,
                               sizeof err);
    myc__text_free(&body);
  }
  if (status >= 200 && status < 300) {
    atomic_fetch_add(&tr->posts_ok, 1);
    atomic_fetch_add(&tr->exported, tr->nbatch);
    return 1;
  }
  atomic_fetch_add(&tr->posts_failed, 1);
  if (status >= 400 && status < 500 && status != 408 && status != 429) {
    /* The collector will refuse the same body again. */
    snprintf(line, sizeof line, "tracing: %s refused %" PRIu32
             " spans (HTTP %d); dropped", tr->endpoint, tr->nbatch, status);
    log_line(tr, MYC_LOG_WARN, line);
    atomic_fetch_add(&tr->rejected, tr->nbatch);
    return 1;
  }
  if (status > 0)
    snprintf(err, sizeof err, "%s answered HTTP %d", tr->endpoint, status);
  uv_mutex_lock(&tr->lock);
  snprintf(tr->last_error, sizeof tr->last_error, "%s", err);
  uv_mutex_unlock(&tr->lock);
  return 0;
}

/* Waits up to 'ms' or until asked to stop; returns nonzero to stop. */
static int nap(myc__trace *tr, double ms) {
  int stop;
  uv_mutex_lock(&tr->lock);
  if (!tr->stop)
    (void)uv_cond_timedwait(&tr->cond, &tr->lock, (uint64_t)(ms * 1e6));
  stop = tr->stop;
  uv_mutex_unlock(&tr->lock);
  return stop;
}

static void exporter(void *arg) {
  myc__trace *tr = arg;
  myc__backoff bo = {100, 5000, 2, 0.2};
  myc__rng rng;
  uint32_t failures = 0;
  int64_t oldest = 0; /* when the batch's first span was taken */
  char line[400];
  myc__rng_seed(&rng);
  for (;;) {
    int stopping;
    if (tr->nbatch < BATCH_MAX) {
      uint32_t before = tr->nbatch;
      drain(tr);
      if (before == 0 && tr->nbatch > 0)
        oldest = myc__mono_ns();
    }
    stopping = nap(tr, 0) != 0;
    if (tr->nbatch > 0 &&
        (tr->nbatch == BATCH_MAX || stopping || failures > 0 ||
         myc__mono_ns() - oldest >= (int64_t)FLUSH_MS * 1000000)) {
      if (post(tr, stopping ? FINAL_TIMEOUT_MS : POST_TIMEOUT_MS)) {
        if (failures > 0) {
          snprintf(line, sizeof line, "tracing: %s reachable again after %"
                   PRIu32 " failed posts", tr->endpoint, failures);
          log_line(tr, MYC_LOG_INFO, line);
        }
        tr->nbatch = 0;
        failures = 0;
        atomic_store(&tr->pending, 0);
        continue; /* more may be queued */
      }
      atomic_store(&tr->pending, tr->nbatch);
      if (failures++ == 0) {
        snprintf(line, sizeof line, "tracing: cannot export spans (%s); "
                 "retrying with backoff, new spans queue and then drop",
                 tr->last_error);
        log_line(tr, MYC_LOG_WARN, line);
      }
      if (stopping)
        break;
      /* Stopping meanwhile: the next round makes the final post. */
      (void)nap(tr, myc__backoff_ms(&bo, failures - 1, &rng));
      continue;
    }
    if (stopping)
      break;
    /* Asked to stop while napping: go round once more, so that what the
     * workers queued since the last drain is posted with the rest. */
    (void)nap(tr, tr->nbatch > 0 ? 20 : 50);
  }
  /* What the last post did not take, and what stayed queued. */
  atomic_fetch_add(&tr->shutdown, tr->nbatch + queued(tr));
  tr->nbatch = 0;
  atomic_store(&tr->pending, 0);
}

/* ---- attaching -------------------------------------------------------- */

static int exporter_start(void *ud, char *err, size_t errlen) {
  myc__trace *tr = ud;
  int rc;
  uv_mutex_lock(&tr->lock);
  tr->stop = 0;
  uv_mutex_unlock(&tr->lock);
  rc = uv_thread_create(&tr->thread, exporter, tr);
  if (rc != 0) {
    snprintf(err, errlen, "tracing: cannot start the exporter thread: %s",
             uv_strerror(rc));
    return rc;
  }
  tr->running = 1;
  return 0;
}

static void exporter_stop(void *ud) {
  myc__trace *tr = ud;
  if (!tr->running)
    return;
  uv_mutex_lock(&tr->lock);
  tr->stop = 1;
  uv_cond_signal(&tr->cond);
  uv_mutex_unlock(&tr->lock);
  uv_thread_join(&tr->thread);
  tr->running = 0;
}

static char *status_part(void *ud, int json, size_t *len);

static void trace_free(void *ud) {
  myc__trace *tr = ud;
  const myc__alloc *a = &tr->e->alloc;
  uint32_t i;
  exporter_stop(tr);
  tr->e->tracer = NULL;
  for (i = 0; i < tr->nrings; i++)
    myc__free(a, tr->rings[i].slots, tr->cap * sizeof(myc__span));
  myc__free(a, tr->rings, tr->nrings * sizeof *tr->rings);
  myc__free(a, tr->batch, BATCH_MAX * sizeof *tr->batch);
  myc__strfree(a, tr->endpoint);
  uv_cond_destroy(&tr->cond);
  uv_mutex_destroy(&tr->lock);
  myc__free(a, tr, sizeof *tr);
}

static int check(const myc_engine_config *cfg, myc__trace_format *fmt) {
  if (strcmp(cfg->trace_export, "zipkin") == 0)
    *fmt = MYC_TRACE_ZIPKIN;
  else if (strcmp(cfg->trace_export, "otlp") == 0)
    *fmt = MYC_TRACE_OTLP;
  else
    return MYC_EINVAL;
  if (!myc__trace_endpoint_ok(cfg->trace_endpoint) ||
      !(cfg->trace_sample >= 0 && cfg->trace_sample <= 1) ||
      cfg->trace_queue > (1u << 24))
    return MYC_EINVAL;
  return 0;
}

static int alloc_rings(myc__trace *tr, uint32_t want) {
  const myc__alloc *a = &tr->e->alloc;
  uint32_t i;
  for (tr->cap = 1; tr->cap < want; tr->cap <<= 1)
    ;
  tr->nrings = tr->e->sched.nworkers;
  tr->rings = myc__calloc(a, tr->nrings * sizeof *tr->rings);
  tr->batch = myc__calloc(a, BATCH_MAX * sizeof *tr->batch);
  if (tr->rings == NULL || tr->batch == NULL)
    return MYC_ENOMEM;
  for (i = 0; i < tr->nrings; i++)
    if ((tr->rings[i].slots = myc__calloc(a, tr->cap * sizeof(myc__span))) ==
        NULL)
      return MYC_ENOMEM;
  return 0;
}

int myc__trace_attach(myc_engine *e, const myc_engine_config *cfg) {
  myc__trace_format fmt;
  myc__trace *tr;
  int rc;
  if (cfg->trace_export == NULL)
    return 0;
  if ((rc = check(cfg, &fmt)) != 0)
    return rc;
  if (e->manual) /* no thread to export from */
    return 0;
  tr = myc__calloc(&e->alloc, sizeof *tr);
  if (tr == NULL)
    return MYC_ENOMEM;
  tr->e = e;
  tr->fmt = fmt;
  tr->sample = cfg->trace_sample;
  /* sample * 2^56, exact at both ends: 1 keeps every trace. */
  tr->tracer.sample_below = cfg->trace_sample >= 1
                                ? (uint64_t)1 << 56
                                : (uint64_t)(cfg->trace_sample * 72057594037927936.0);
  tr->tracer.slot = slot;
  tr->tracer.commit = commit;
  tr->tracer.ud = tr;
  if (uv_mutex_init(&tr->lock) != 0) {
    myc__free(&e->alloc, tr, sizeof *tr);
    return MYC_ENOMEM;
  }
  if (uv_cond_init(&tr->cond) != 0) {
    uv_mutex_destroy(&tr->lock);
    myc__free(&e->alloc, tr, sizeof *tr);
    return MYC_ENOMEM;
  }
  if ((tr->endpoint = myc__strdup(&e->alloc, cfg->trace_endpoint)) == NULL ||
      alloc_rings(tr, cfg->trace_queue ? cfg->trace_queue : QUEUE_DEFAULT) !=
          0 ||
      myc__engine_on_free(e, trace_free, tr) != 0) {
    trace_free(tr);
    return MYC_ENOMEM;
  }
  /* Registered to be freed: from here the engine owns it. */
  if ((rc = myc__engine_beside(e, exporter_start, exporter_stop, status_part,
                               tr)) != 0)
    return rc;
  e->tracer = &tr->tracer;
  return 0;
}

/* ---- what it shows ---------------------------------------------------- */

static void totals(myc__trace *tr, uint64_t *sampled, uint64_t *dropped) {
  uint32_t i;
  *sampled = *dropped = 0;
  for (i = 0; i < tr->nrings; i++) {
    *sampled += atomic_load_explicit(&tr->rings[i].sampled,
                                     memory_order_relaxed);
    *dropped += atomic_load_explicit(&tr->rings[i].dropped,
                                     memory_order_relaxed);
  }
}

int myc_engine_trace_stats(myc_engine *e, myc_trace_stats *st) {
  myc__trace *tr = e->tracer != NULL ? e->tracer->ud : NULL;
  if (tr == NULL)
    return MYC_ESTATE;
  memset(st, 0, sizeof *st);
  totals(tr, &st->sampled, &st->dropped_queue_full);
  st->exported = atomic_load(&tr->exported);
  st->dropped_rejected = atomic_load(&tr->rejected);
  st->dropped_shutdown = atomic_load(&tr->shutdown);
  st->posts_ok = atomic_load(&tr->posts_ok);
  st->posts_failed = atomic_load(&tr->posts_failed);
  st->queued = queued(tr) + atomic_load(&tr->pending);
  return 0;
}

void myc__trace_metrics(myc_engine *e, myc__text *t) {
  myc_trace_stats st;
  if (myc_engine_trace_stats(e, &st) != 0)
    return;
  myc__text_family(t, "mycelium_trace_spans_sampled_total", "counter",
         "Handled messages whose trace was sampled: spans recorded.");
  myc__text_printf(t, "mycelium_trace_spans_sampled_total %" PRIu64 "\n",
                   st.sampled);
  myc__text_family(t, "mycelium_trace_spans_exported_total", "counter",
         "Spans the collector accepted.");
  myc__text_printf(t, "mycelium_trace_spans_exported_total %" PRIu64 "\n",
                   st.exported);
  myc__text_family(t, "mycelium_trace_spans_dropped_total", "counter",
         "Spans lost: queue_full (the export queue was full), rejected (the "
         "collector refused them), shutdown (unsent when the engine "
         "stopped).");
  myc__text_printf(t,
                   "mycelium_trace_spans_dropped_total{reason=\"queue_full\"} "
                   "%" PRIu64 "\n"
                   "mycelium_trace_spans_dropped_total{reason=\"rejected\"} "
                   "%" PRIu64 "\n"
                   "mycelium_trace_spans_dropped_total{reason=\"shutdown\"} "
                   "%" PRIu64 "\n",
                   st.dropped_queue_full, st.dropped_rejected,
                   st.dropped_shutdown);
  myc__text_family(t, "mycelium_trace_export_requests_total", "counter",
         "Export requests to the collector: ok, or failed (retried).");
  myc__text_printf(t,
                   "mycelium_trace_export_requests_total{result=\"ok\"} %"
                   PRIu64 "\n"
                   "mycelium_trace_export_requests_total{result=\"failed\"} %"
                   PRIu64 "\n", st.posts_ok, st.posts_failed);
  myc__text_family(t, "mycelium_trace_queue_spans", "gauge",
         "Spans waiting for export (queued and being retried).");
  myc__text_printf(t, "mycelium_trace_queue_spans %" PRIu64 "\n", st.queued);
}

static char *status_part(void *ud, int json, size_t *len) {
  myc__trace *tr = ud;
  myc_trace_stats st;
  myc__text t;
  char *out;
  (void)myc_engine_trace_stats(tr->e, &st);
  myc__text_init(&t, &tr->e->alloc);
  if (json)
    myc__text_printf(&t,
                     ",\"tracing\":{\"export\":\"%s\",\"endpoint\":\"%s\","
                     "\"sample\":%g,\"sampled\":%" PRIu64 ",\"exported\":%"
                     PRIu64 ",\"queued\":%" PRIu64 ",\"dropped\":{"
                     "\"queue_full\":%" PRIu64 ",\"rejected\":%" PRIu64
                     ",\"shutdown\":%" PRIu64 "},\"posts_failed\":%" PRIu64
                     "}",
                     tr->fmt == MYC_TRACE_ZIPKIN ? "zipkin" : "otlp",
                     tr->endpoint, tr->sample, st.sampled, st.exported,
                     st.queued, st.dropped_queue_full, st.dropped_rejected,
                     st.dropped_shutdown, st.posts_failed);
  else
    myc__text_printf(&t,
                     "\ntracing: %s to %s, sample %g: %" PRIu64
                     " spans sampled, %" PRIu64 " exported, %" PRIu64
                     " queued; dropped: queue full %" PRIu64
                     ", rejected %" PRIu64 ", shutdown %" PRIu64
                     "; failed posts %" PRIu64 "\n",
                     tr->fmt == MYC_TRACE_ZIPKIN ? "zipkin" : "otlp",
                     tr->endpoint, tr->sample, st.sampled, st.exported,
                     st.queued, st.dropped_queue_full, st.dropped_rejected,
                     st.dropped_shutdown, st.posts_failed);
  if (t.oom || t.p == NULL) {
    myc__text_free(&t);
    return NULL;
  }
  out = t.p;
  *len = t.len;
  /* The caller frees '*len' + 1 bytes: give it a block of that size. */
  if (t.cap != t.len + 1) {
    out = myc__realloc(&tr->e->alloc, t.p, t.cap, t.len + 1);
    if (out == NULL) {
      myc__text_free(&t);
      return NULL;
    }
  }
  return out;
}
