/* pipeline.c -- runs one producer -> consumers pipeline on a threaded
 * engine, the common part of the engine scenarios (emit.c, workers.c).
 * The producer (lua/producer.lua) reports the time spent emitting; each
 * consumer (lua/consumer.lua, or a C callback) reports its rate from its
 * first message to its last. */
#include "pipeline.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  myc_engine *e;
  const bench_pipeline *p;
  bench_pipeline_result *r;
  int reported;
  int expected;
  /* C consumer */
  uint64_t count;
  double first;
} run_state;

static int is_topic(const myc_message *m, const char *t) {
  return m->topic_len == strlen(t) && memcmp(m->topic, t, m->topic_len) == 0;
}

static void on_result(void *ud, const myc_message *m) {
  run_state *st = ud;
  char text[128];
  double a = 0, b = 0, c = 0;
  size_t n = m->len < sizeof text - 1 ? m->len : sizeof text - 1;
  memcpy(text, m->data, n);
  text[n] = '\0';
  sscanf(text, "%lf %lf %lf", &a, &b, &c);
  if (is_topic(m, "bench.result.producer")) {
    st->r->sent = a;
    st->r->emit_secs = b;
    st->r->refused = c;
  } else {
    int i = st->r->nconsumers++;
    st->r->received[i] = a;
    st->r->recv_secs[i] = b;
  }
  if (++st->reported == st->expected)
    myc_engine_stop(st->e, 0);
}

static void on_data(void *ud, const myc_message *m) {
  run_state *st = ud;
  (void)m;
  if (st->count++ == 0)
    st->first = bench_now();
  if (st->count == st->p->total) {
    int i = st->r->nconsumers++;
    st->r->received[i] = (double)st->count;
    st->r->recv_secs[i] = bench_now() - st->first;
    if (++st->reported == st->expected)
      myc_engine_stop(st->e, 0);
  }
}

static void pack_str(msgpack_packer *pk, const char *k, const char *v) {
  msgpack_pack_str_with_body(pk, k, strlen(k));
  msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void pack_num(msgpack_packer *pk, const char *k, double v) {
  msgpack_pack_str_with_body(pk, k, strlen(k));
  msgpack_pack_double(pk, v);
}

static int add_lua(myc_engine *e, const char *name, const char *file,
                   int worker, const bench_pipeline *p, int read,
                   const myc_mailbox_config *mb) {
  char path[1024], err[1024];
  msgpack_sbuffer sb;
  msgpack_packer pk;
  myc_service_config sc = {0};
  int rc;
  snprintf(path, sizeof path, "%s/%s", MYC_BENCH_LUA_DIR, file);
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 6);
  pack_num(&pk, "total", (double)p->total);
  pack_str(&pk, "mode", p->mode);
  pack_str(&pk, "topic", "bench.data");
  pack_num(&pk, "pause_at", p->pause_at);
  pack_num(&pk, "work", p->consumer_work);
  msgpack_pack_str_with_body(&pk, "read", 4);
  if (read)
    msgpack_pack_true(&pk);
  else
    msgpack_pack_false(&pk);
  sc.name = name;
  sc.module = path;
  sc.opts = sb.data;
  sc.opts_len = sb.size;
  sc.worker = worker;
  sc.mailbox = mb;
  rc = myc_engine_add_service(e, &sc, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "bench: %s\n", err);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

static int add_consumers(run_state *st) {
  const bench_pipeline *p = st->p;
  int i, rc = 0;
  for (i = 0; i < p->nconsumers && rc == 0; i++) {
    const bench_consumer *c = &p->consumers[i];
    char name[32];
    snprintf(name, sizeof name, "consumer%d", i);
    if (c->kind == BENCH_C)
      rc = myc_engine_add_c_service(st->e, name, "bench.data", on_data, st,
                                    c->worker);
    else
      rc = add_lua(st->e, name, "consumer.lua", c->worker, p,
                   c->kind == BENCH_LUA_READ,
                   p->mailbox.capacity ? &p->mailbox : NULL);
  }
  return rc;
}

int bench_pipeline_run(const bench_pipeline *p, bench_pipeline_result *r) {
  myc_engine_config cfg;
  run_state st;
  char err[1024];
  int rc, i;

  memset(&st, 0, sizeof st);
  memset(r, 0, sizeof *r);
  st.p = p;
  st.r = r;
  st.expected = 1 + (p->drops_expected ? 0 : p->nconsumers);
  myc_engine_config_init(&cfg);
  cfg.workers = p->workers;
  /* The tracing runs' collector is absent on purpose: no warning. */
  cfg.log_level = p->trace_export ? MYC_LOG_ERROR : MYC_LOG_WARN;
  cfg.trace_export = p->trace_export;
  cfg.trace_endpoint = p->trace_endpoint;
  cfg.trace_sample = p->trace_sample;
  if (myc_engine_new(&st.e, &cfg) != 0)
    return 1;
  rc = add_lua(st.e, "producer", "producer.lua", p->producer_worker, p, 0, NULL);
  if (rc == 0)
    rc = add_consumers(&st);
  if (rc == 0)
    rc = myc_engine_add_c_service(st.e, "results", "bench.result.*", on_result,
                                  &st, p->producer_worker);
  if (rc == 0)
    rc = myc_engine_start(st.e, err, sizeof err);
  if (rc == 0)
    rc = myc_engine_run(st.e, 0);
  for (i = 0; i < p->nconsumers; i++) {
    myc_service_stats s;
    if (myc_engine_service_stats(st.e, (uint32_t)i + 1, &s) == 0) {
      r->dropped += (double)s.dropped;
      r->mailbox_dropped += (double)s.dropped_oldest;
    }
  }
  myc_engine_free(st.e);
  if (rc != 0 || (!p->drops_expected && r->nconsumers != p->nconsumers)) {
    fprintf(stderr, "bench: pipeline %s failed (rc %d)\n", p->mode, rc);
    return 1;
  }
  for (i = 0; i < r->nconsumers; i++)
    if (!p->drops_expected && r->received[i] != (double)p->total) {
      fprintf(stderr, "bench: consumer got %.0f of %llu\n", r->received[i],
              (unsigned long long)p->total);
      return 1;
    }
  return 0;
}

double bench_pipeline_rate(const bench_pipeline_result *r) {
  double worst = 0;
  int i;
  for (i = 0; i < r->nconsumers; i++) {
    double rate = r->received[i] / r->recv_secs[i];
    if (i == 0 || rate < worst)
      worst = rate;
  }
  return worst;
}
