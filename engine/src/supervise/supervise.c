/* supervise.c -- attaching supervision to an engine: the settings, the
 * runtime hooks through which the engine reports to this layer, and the
 * teardown when the engine is freed (see supervisor.h).
 */
#include "supervise/supervisor.h"

#include "supervise/loader.h"
#include "supervise/monitor.h"

#include <stdio.h>
#include <string.h>

static int on_service_added(void *ud, myc_service *s,
                            const myc_service_config *sc, char *err,
                            size_t errlen) {
  return myc__supervision_init(ud, s, sc, err, errlen);
}

static void on_service_freed(void *ud, myc_service *s) {
  (void)ud;
  myc__supervision_destroy(s);
}

static void on_terminated(void *ud, myc_service *s, int how, const char *why) {
  (void)ud;
  myc__supervisor_terminated(s, how, why);
}

static void on_stats(void *ud, myc_service *s, myc_service_stats *st) {
  (void)ud;
  if (s->sup != NULL)
    myc__supervision_stats(s, st);
}

/* One line at the start of a threaded engine: what runs where, and how
 * to reach it. */
static void log_start(myc__supervise *sv) {
  static const char *const reload[] = {"signal", "watch", "off"};
  myc_engine *e = sv->e;
  char line[4096];
  size_t n;
  uint32_t i, k = 0;
  n = (size_t)snprintf(line, sizeof line,
                       "started: node %s, %u worker%s, %u service%s:", e->node,
                       e->sched.nworkers, e->sched.nworkers == 1 ? "" : "s",
                       e->nservices, e->nservices == 1 ? "" : "s");
  for (i = 0; i < e->endservices && n < sizeof line; i++)
    if (e->services[i] != NULL)
      n += (size_t)snprintf(line + n, sizeof line - n, "%s %s (worker %u)",
                            k++ ? "," : "", e->services[i]->name,
                            e->services[i]->task.worker->index);
  if (n < sizeof line)
    snprintf(line + n, sizeof line - n, "; control %s; reload %s",
             sv->control ? sv->control : "none", reload[sv->reload]);
  myc_engine_log(e, MYC_LOG_INFO, NULL, line);
}

static int on_start(void *ud, char *err, size_t errlen) {
  return myc__monitor_start(ud, err, errlen);
}

/* Said once nothing can fail the start any more (a metrics port in use,
 * say, fails it after on_start). */
static void on_started(void *ud) {
  myc__supervise *sv = ud;
  if (!sv->e->manual)
    log_start(sv);
}

/* The monitor first: nothing asks for a reload once it is gone. */
static void on_quiesce(void *ud) {
  myc__monitor_stop(ud);
  myc__loader_stop(ud);
}

static void on_hangup(void *ud) {
  myc__supervise *sv = ud;
  if (sv->reload != MYC_RELOAD_OFF)
    myc__reload_changed(sv);
}

/* After the services (whose supervision refers to the groups). */
static void on_free(void *ud) {
  myc__supervise *sv = ud;
  const myc__alloc *a = &sv->e->alloc;
  myc__monitor_free(sv);
  myc__loader_free(sv);
  uv_mutex_destroy(&sv->loader_lock);
  myc__groups_free(sv);
  myc__strfree(a, sv->control);
  myc__free(a, sv, sizeof *sv);
}

static int settings_ok(const myc_engine_config *cfg) {
  return myc__supervisor_config_ok(&cfg->supervisor) &&
         cfg->reload >= MYC_RELOAD_SIGNAL && cfg->reload <= MYC_RELOAD_OFF &&
         (cfg->control == NULL || strncmp(cfg->control, "unix://", 7) == 0);
}

int myc__supervise_attach(myc_engine *e, const myc_engine_config *cfg) {
  myc__supervise *sv;
  myc__engine_hooks *h = &e->hooks;
  if (!settings_ok(cfg))
    return MYC_EINVAL;
  sv = myc__calloc(&e->alloc, sizeof *sv);
  if (sv == NULL)
    return MYC_ENOMEM;
  if (uv_mutex_init(&sv->loader_lock) != 0) {
    myc__free(&e->alloc, sv, sizeof *sv);
    return MYC_ENOMEM;
  }
  sv->e = e;
  sv->cfg = cfg->supervisor;
  sv->reload = cfg->reload;
  if ((cfg->control != NULL &&
       (sv->control = myc__strdup(&e->alloc, cfg->control)) == NULL) ||
      myc__engine_on_free(e, on_free, sv) != 0) {
    myc__strfree(&e->alloc, sv->control);
    uv_mutex_destroy(&sv->loader_lock);
    myc__free(&e->alloc, sv, sizeof *sv);
    return MYC_ENOMEM;
  }
  h->ud = sv;
  h->service_added = on_service_added;
  h->service_freed = on_service_freed;
  h->terminated = on_terminated;
  h->stats = on_stats;
  h->start = on_start;
  h->started = on_started;
  h->quiesce = on_quiesce;
  h->hangup = on_hangup;
  return 0;
}
