/* observe.c -- attaching observation to an engine: its settings, the
 * listener beside the workers of the runtime (started with the engine, stopped
 * when it quiesces), and the exposition for embedders
 * (myc_engine_metrics).
 */
#include "observe/observe.h"

#include "observe/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The process's start from /proc (field 22 of /proc/self/stat, in clock
 * ticks after boot, plus the boot time); the engine's creation when /proc
 * cannot tell. */
static double process_start(myc_engine *e) {
  unsigned long long ticks = 0, btime = 0;
  char buf[1024], *p;
  long hz = sysconf(_SC_CLK_TCK);
  size_t n;
  int field;
  FILE *f = fopen("/proc/self/stat", "r");
  double fallback = (double)e->created_ns / 1e9;
  if (f == NULL)
    return fallback;
  n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold spaces: count fields after its ')'. */
  p = strrchr(buf, ')');
  for (field = 2; p != NULL && field < 22; field++)
    p = strchr(p + 1, ' ');
  if (p == NULL || sscanf(p + 1, "%llu", &ticks) != 1 || hz <= 0)
    return fallback;
  f = fopen("/proc/stat", "r");
  if (f == NULL)
    return fallback;
  while (fgets(buf, sizeof buf, f) != NULL)
    if (sscanf(buf, "btime %llu", &btime) == 1)
      break;
  fclose(f);
  return btime ? (double)btime + (double)ticks / (double)hz : fallback;
}

static int listener_start(void *ud, char *err, size_t errlen) {
  myc__observe *o = ud;
  char line[512];
  int rc;
  if (o->e->manual) /* turned by the host: no thread of its own */
    return 0;
  rc = myc__server_start(o, err, errlen);
  if (rc == 0) {
    /* The port bound, not the one asked for (0 picks a free one). */
    snprintf(line, sizeof line, "metrics: serving http://%.*s:%d/metrics",
             (int)(strrchr(o->listen, ':') - o->listen), o->listen, o->port);
    myc_engine_log(o->e, MYC_LOG_INFO, NULL, line);
  }
  return rc;
}

static void listener_stop(void *ud) { myc__server_stop(ud); }

static void on_free(void *ud) {
  myc__observe *o = ud;
  const myc__alloc *a = &o->e->alloc;
  myc__server_stop(o);
  o->e->observe = NULL;
  myc__custom_free(&o->custom, a);
  myc__strfree(a, o->listen);
  myc__free(a, o, sizeof *o);
}

int myc__observe_attach(myc_engine *e, const myc_engine_config *cfg) {
  myc__observe *o;
  int rc;
  if (cfg->metrics_listen != NULL &&
      !myc__server_listen_ok(cfg->metrics_listen))
    return MYC_EINVAL;
  o = myc__calloc(&e->alloc, sizeof *o);
  if (o == NULL)
    return MYC_ENOMEM;
  o->e = e;
  o->start_time_s = process_start(e);
  if (myc__custom_init(&o->custom) != 0) {
    myc__free(&e->alloc, o, sizeof *o);
    return MYC_ENOMEM;
  }
  if ((cfg->metrics_listen != NULL &&
       (o->listen = myc__strdup(&e->alloc, cfg->metrics_listen)) == NULL) ||
      myc__engine_on_free(e, on_free, o) != 0) {
    myc__strfree(&e->alloc, o->listen);
    myc__custom_free(&o->custom, &e->alloc);
    myc__free(&e->alloc, o, sizeof *o);
    return MYC_ENOMEM;
  }
  e->observe = o;
  if (o->listen != NULL &&
      (rc = myc__engine_beside(e, listener_start, listener_stop, NULL, o)) !=
          0)
    return rc;
  return myc__trace_attach(e, cfg);
}

int myc_engine_metrics_port(myc_engine *e) {
  return e->observe != NULL && e->observe->server != NULL ? e->observe->port
                                                          : MYC_ESTATE;
}

int64_t myc_engine_metrics(myc_engine *e, char *buf, size_t cap) {
  myc__text t;
  int64_t len;
  if (e->observe == NULL)
    return MYC_ESTATE;
  myc__text_init(&t, &e->alloc);
  myc__metrics_render(e->observe, &t);
  if (t.oom || t.p == NULL) {
    myc__text_free(&t);
    return MYC_ENOMEM;
  }
  if (cap > 0) {
    size_t n = t.len < cap - 1 ? t.len : cap - 1;
    memcpy(buf, t.p, n);
    buf[n] = '\0';
  }
  len = (int64_t)t.len;
  myc__text_free(&t);
  return len;
}
