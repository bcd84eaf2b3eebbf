/* metrics.c -- the engine's counters as a Prometheus text exposition
 * (format 0.0.4).  Every value is read from relaxed atomics the workers
 * write (the counters `mycelium status` shows, the histograms of
 * core/hist.h): nothing here waits for a worker, and a value may be a
 * moment old.  A family's samples are contiguous, as the format wants.
 */
#include "observe/observe.h"

#include "core/hist.h"
#include "observe/trace.h"

#include <inttypes.h>
#include <string.h>

/* The services' counters, copied while the registry lock is held (the
 * array of services may move while one is added; only the host adds
 * services once workers run, so holding it never stalls a worker). */
typedef struct {
  uint32_t n;
  myc_service_stats *st;
  myc_service **svc;
} snapshot;

static int take_snapshot(myc_engine *e, snapshot *sn) {
  uint32_t i, k = 0;
  sn->n = e->nservices;
  sn->st = myc__calloc(&e->alloc, (sn->n ? sn->n : 1) * sizeof *sn->st);
  sn->svc = myc__calloc(&e->alloc, (sn->n ? sn->n : 1) * sizeof *sn->svc);
  if (sn->st == NULL || sn->svc == NULL)
    return MYC_ENOMEM;
  for (i = 0; i < e->endservices; i++)
    if (e->services[i] != NULL) {
      sn->svc[k] = e->services[i];
      myc__engine_stats_locked(e, sn->svc[k], &sn->st[k]);
      k++;
    }
  return 0;
}

static void free_snapshot(myc_engine *e, snapshot *sn) {
  uint32_t n = sn->n ? sn->n : 1;
  myc__free(&e->alloc, sn->st, sn->st ? n * sizeof *sn->st : 0);
  myc__free(&e->alloc, sn->svc, sn->svc ? n * sizeof *sn->svc : 0);
}


static void service_label(myc__text *t, const myc_service_stats *st) {
  myc__text_printf(t, "service=\"");
  myc__text_label(t, st->name, strlen(st->name));
  myc__text_printf(t, "\"");
}

/* One sample per service of the field at 'off' (uint64_t) of the stats. */
static void per_service(myc__text *t, const snapshot *sn, const char *name,
                        const char *type, const char *help, size_t off) {
  uint32_t i;
  myc__text_family(t, name, type, help);
  for (i = 0; i < sn->n; i++) {
    uint64_t v;
    memcpy(&v, (const char *)&sn->st[i] + off, sizeof v);
    myc__text_printf(t, "%s{", name);
    service_label(t, &sn->st[i]);
    myc__text_printf(t, "} %" PRIu64 "\n", v);
  }
}

#define FIELD(f) offsetof(myc_service_stats, f)

static void services_info(myc__text *t, const snapshot *sn) {
  uint32_t i;
  myc__text_family(t, "mycelium_service_info", "gauge",
         "Always 1: a service, its worker, state, restart type and group.");
  for (i = 0; i < sn->n; i++) {
    const myc_service_stats *st = &sn->st[i];
    myc__text_printf(t, "mycelium_service_info{");
    service_label(t, st);
    myc__text_printf(t, ",worker=\"%" PRId32 "\",state=\"%s\",restart=\"%s\""
                     ",group=\"", st->worker, st->state,
                     st->restart ? st->restart : "");
    if (st->group != NULL)
      myc__text_label(t, st->group, strlen(st->group));
    myc__text_printf(t, "\",version=\"%" PRIu32 "\"} 1\n", st->version);
  }
}

static void drop_sample(myc__text *t, const myc_service_stats *st,
                        const char *topic, const char *reason, uint64_t n) {
  if (n == 0)
    return;
  myc__text_printf(t, "mycelium_messages_dropped_total{");
  service_label(t, st);
  myc__text_printf(t, ",topic=\"");
  myc__text_label(t, topic, strlen(topic));
  myc__text_printf(t, "\",reason=\"%s\"} %" PRIu64 "\n", reason, n);
}

static void drops(myc__text *t, myc_engine *e, const snapshot *sn) {
  myc_drop_stats d[MYC_DROP_TOPICS + 1];
  uint32_t i;
  int k, n;
  myc__text_family(t, "mycelium_messages_dropped_total", "counter",
         "Messages a service's mailbox lost, by topic and reason.");
  for (i = 0; i < sn->n; i++) {
    n = myc__engine_drops_locked(e, sn->svc[i], d, MYC_DROP_TOPICS + 1);
    for (k = 0; k < n; k++) {
      drop_sample(t, &sn->st[i], d[k].topic, "drop_oldest", d[k].dropped_oldest);
      drop_sample(t, &sn->st[i], d[k].topic, "drop_newest", d[k].dropped_newest);
      drop_sample(t, &sn->st[i], d[k].topic, "rejected", d[k].rejected);
      drop_sample(t, &sn->st[i], d[k].topic, "too_large", d[k].too_large);
      drop_sample(t, &sn->st[i], d[k].topic, "shutdown", d[k].shutdown);
    }
  }
}

static void reloads(myc__text *t, const snapshot *sn) {
  static const char *results[] = {"ok", "failed", "rolled_back"};
  uint32_t i, r;
  myc__text_family(t, "mycelium_reloads_total", "counter",
         "Hot reloads of a service's code: ok (swapped in), failed (refused "
         "at load, compile or init), rolled_back (undone by the probation).");
  for (i = 0; i < sn->n; i++)
    for (r = 0; r < 3; r++) {
      const myc_service_stats *st = &sn->st[i];
      uint64_t v = r == 0 ? st->reloads
                   : r == 1 ? st->reload_failures
                            : st->rollbacks;
      myc__text_printf(t, "mycelium_reloads_total{");
      service_label(t, st);
      myc__text_printf(t, ",result=\"%s\"} %" PRIu64 "\n", results[r], v);
    }
}

#if MYC_METRICS
/* The samples of one histogram: 'labels' is the text inside the braces;
 * bounds and sum are divided by 'scale' (1e9: ns to s). */
static void hist_samples(myc__text *t, const char *name, const char *labels,
                         const myc__hist *h, const myc__hist_bounds *b,
                         double scale) {
  uint64_t cum = 0;
  uint32_t i;
  for (i = 0; i <= b->n; i++) {
    cum += atomic_load_explicit(&h->n[i], memory_order_relaxed);
    if (i < b->n)
      myc__text_printf(t, "%s_bucket{%s,le=\"%.9g\"} %" PRIu64 "\n", name,
                       labels, (double)b->le[i] / scale, cum);
    else
      myc__text_printf(t, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name,
                       labels, cum);
  }
  myc__text_printf(t, "%s_sum{%s} %.9g\n%s_count{%s} %" PRIu64 "\n", name,
                   labels,
                   (double)atomic_load_explicit(&h->sum,
                                                memory_order_relaxed) /
                       scale,
                   name, labels, cum);
}

static void handler_durations(myc__text *t, myc_engine *e,
                              const snapshot *sn) {
  const char *name = "mycelium_handler_duration_seconds";
  uint32_t i;
  myc__text_family(t, name, "histogram",
         "Time a service's handlers took per message (each message of a "
         "batch counts with the batch's mean).");
  for (i = 0; i < sn->n; i++) {
    myc__text labels;
    myc__text_init(&labels, &e->alloc);
    service_label(&labels, &sn->st[i]);
    if (!labels.oom)
      hist_samples(t, name, labels.p, &sn->svc[i]->handler_ns,
                   &myc__hist_handler_ns, 1e9);
    t->oom |= labels.oom;
    myc__text_free(&labels);
  }
}

static void workers(myc__text *t, myc_engine *e) {
  myc__sched *sc = &e->sched;
  int64_t now = myc__mono_ns();
  char labels[32];
  uint32_t i;
  myc__text_family(t, "mycelium_worker_loop_lag_seconds", "gauge",
         "How long the worker's current round of callbacks has kept its loop "
         "from polling I/O and firing timers (0 while it waits).");
  for (i = 0; i < sc->nworkers; i++) {
    int64_t t0 = atomic_load_explicit(&sc->workers[i].round_start,
                                      memory_order_relaxed);
    myc__text_printf(t, "mycelium_worker_loop_lag_seconds{worker=\"%" PRIu32
                     "\"} %.9g\n", i,
                     t0 != 0 && now > t0 ? (double)(now - t0) / 1e9 : 0.0);
  }
  myc__text_family(t, "mycelium_worker_round_seconds", "histogram",
         "Duration of the worker's rounds of callbacks (the loop's lag).");
  for (i = 0; i < sc->nworkers; i++) {
    snprintf(labels, sizeof labels, "worker=\"%" PRIu32 "\"", i);
    hist_samples(t, "mycelium_worker_round_seconds", labels,
                 &sc->workers[i].rounds, &myc__hist_round_ns, 1e9);
  }
  myc__text_family(t, "mycelium_worker_batch_size", "histogram",
         "Messages a service took from its mailbox per dispatch.");
  for (i = 0; i < sc->nworkers; i++) {
    snprintf(labels, sizeof labels, "worker=\"%" PRIu32 "\"", i);
    hist_samples(t, "mycelium_worker_batch_size", labels,
                 &sc->workers[i].batches, &myc__hist_batch, 1);
  }
}
#endif

static void engine_wide(myc__text *t, myc__observe *o) {
  myc_engine *e = o->e;
  myc__text_family(t, "mycelium_messages_unrouted_total", "counter",
         "Messages emitted on a topic nobody subscribes to.");
  myc__text_printf(t, "mycelium_messages_unrouted_total %" PRIu64 "\n",
                   atomic_load(&e->topics.no_subscriber));
  myc__text_family(t, "mycelium_log_records_dropped_total", "counter",
         "Log records not written: 'overload' when the log buffer was full "
         "(stderr not keeping up), 'rate_limit' when over a service's log "
         "rate.");
  myc__text_printf(t,
                   "mycelium_log_records_dropped_total{reason=\"overload\"} "
                   "%" PRIu64 "\n",
                   atomic_load(&e->log.dropped));
  myc__text_printf(t,
                   "mycelium_log_records_dropped_total{reason="
                   "\"rate_limit\"} %" PRIu64 "\n",
                   atomic_load(&e->log.suppressed));
  myc__text_family(t, "mycelium_workers", "gauge", "Worker threads of the engine.");
  myc__text_printf(t, "mycelium_workers %" PRIu32 "\n", e->sched.nworkers);
  myc__text_family(t, "process_start_time_seconds", "gauge",
         "Start time of the process since the Unix epoch in seconds.");
  myc__text_printf(t, "process_start_time_seconds %.3f\n", o->start_time_s);
  myc__text_family(t, "mycelium_build_info", "gauge",
         "Always 1: the engine's version and build options.");
  myc__text_printf(t, "mycelium_build_info{version=\"%s\",metrics=\"%s\","
                   "net=\"%s\"} 1\n", MYC_VERSION,
                   MYC_METRICS ? "on" : "off",
#ifdef MYC_WITH_NET
                   "on"
#else
                   "off"
#endif
  );
}

void myc__metrics_render(myc__observe *o, myc__text *t) {
  myc_engine *e = o->e;
  snapshot sn;
  memset(&sn, 0, sizeof sn);
  uv_mutex_lock(&e->services_lock);
  if (take_snapshot(e, &sn) != 0) {
    uv_mutex_unlock(&e->services_lock);
    t->oom = 1;
    free_snapshot(e, &sn);
    return;
  }
  services_info(t, &sn);
  per_service(t, &sn, "mycelium_messages_handled_total", "counter",
              "Messages a service's handlers took.", FIELD(in));
  per_service(t, &sn, "mycelium_messages_emitted_total", "counter",
              "Messages a service emitted.", FIELD(out));
  drops(t, e, &sn);
  per_service(t, &sn, "mycelium_handler_errors_total", "counter",
              "Handler, timer and event errors of a service.", FIELD(errors));
  per_service(t, &sn, "mycelium_restarts_total", "counter",
              "Instances of a service started again after a termination.",
              FIELD(restarts));
  reloads(t, &sn);
  per_service(t, &sn, "mycelium_handler_timeouts_total", "counter",
              "Handlers interrupted past their time budget.", FIELD(timeouts));
  per_service(t, &sn, "mycelium_requests_dropped_total", "counter",
              "Requests still waiting for their reply when the instance "
              "that sent them ended or was replaced.",
              FIELD(requests_dropped));
  per_service(t, &sn, "mycelium_replies_late_total", "counter",
              "Replies that came when nobody waited for them (after the "
              "deadline, after the requester's instance ended, a second "
              "responder's).",
              FIELD(replies_late));
  {
    uint32_t i;
    myc__text_family(t, "mycelium_log_records_suppressed_total", "counter",
           "A service's log records dropped over its log rate.");
    for (i = 0; i < sn.n; i++) {
      myc__text_printf(t, "mycelium_log_records_suppressed_total{");
      service_label(t, &sn.st[i]);
      myc__text_printf(t, "} %" PRIu64 "\n",
                       atomic_load(&sn.svc[i]->log_bucket.total));
    }
  }
  per_service(t, &sn, "mycelium_memory_bytes", "gauge",
              "Lua heap of a service's current instance.", FIELD(memory_bytes));
  per_service(t, &sn, "mycelium_memory_limit_bytes", "gauge",
              "Memory limit of a service's Lua heap (0: none).",
              FIELD(memory_limit));
  per_service(t, &sn, "mycelium_queue_bytes", "gauge",
              "Payload bytes queued in a service's mailbox.",
              FIELD(queue_bytes));
  per_service(t, &sn, "mycelium_queue_max_bytes", "gauge",
              "Payload bytes a service's mailbox takes at most.",
              FIELD(queue_max_bytes));
  {
    uint32_t i;
    myc__text_family(t, "mycelium_queue_depth", "gauge",
           "Messages waiting in a service's mailbox.");
    for (i = 0; i < sn.n; i++) {
      myc__text_printf(t, "mycelium_queue_depth{");
      service_label(t, &sn.st[i]);
      myc__text_printf(t, "} %" PRIu32 "\n", sn.st[i].queue_depth);
    }
    myc__text_family(t, "mycelium_queue_capacity", "gauge",
           "Messages a service's mailbox holds at most.");
    for (i = 0; i < sn.n; i++) {
      myc__text_printf(t, "mycelium_queue_capacity{");
      service_label(t, &sn.st[i]);
      myc__text_printf(t, "} %" PRIu32 "\n", sn.st[i].queue_capacity);
    }
  }
#if MYC_METRICS
  handler_durations(t, e, &sn);
  workers(t, e);
#endif
  myc__trace_metrics(e, t);
  {
    /* What runs beside the workers (the links) renders its own. */
    myc__beside *b;
    for (b = e->besides; b != NULL; b = b->next) {
      size_t n = 0;
      char *part = b->metrics ? b->metrics(b->ud, &n) : NULL;
      if (part != NULL) {
        myc__text_printf(t, "%.*s", (int)n, part);
        myc__free(&e->alloc, part, n + 1);
      } else if (b->metrics != NULL) {
        t->oom = 1;
      }
    }
  }
  engine_wide(t, o);
  uv_mutex_unlock(&e->services_lock);
  /* What services declared (ctx.metrics), after the engine's own. */
  myc__custom_render(&o->custom, t);
  free_snapshot(e, &sn);
}
