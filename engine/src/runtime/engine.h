/* engine.h -- the engine object: configuration, topics, workers and
 * services.  Everything hangs off it; there is no global mutable state.
 */
#ifndef MYC_ENGINE_H
#define MYC_ENGINE_H

#include "base/clock.h"
#include "base/log.h"
#include "core/topic.h"
#include "runtime/worker.h"

struct myc_engine {
  myc__alloc alloc;
  myc__alloc lua_alloc; /* base of every service's counting allocator */
  char *node;
  char *lua_path;
  myc_mailbox_config mailbox;
  int manual;
  myc__clock clock;
  myc__log log;

  myc_contract_set *contracts; /* NULL: typed messages are refused */
  int validate;                /* check rules on every typed emit */

  myc__topics topics;
  uint32_t dead_topic; /* id of "$dead" */

  myc__worker *workers;
  uint32_t nworkers;     /* initialised so far */
  uint32_t nworkers_max; /* configured */
  uint32_t next_worker; /* round-robin placement */

  myc_service **services;
  uint32_t nservices, capservices;
  uv_mutex_t services_lock; /* appends vs. the monitor thread's reads */

  myc_supervisor_config supervisor;
  struct myc__group **groups;
  uint32_t ngroups;
  char *control; /* "unix:///path" or NULL */
  myc_reload_mode reload;
  struct myc__monitor *monitor; /* NULL: no monitor thread */

  int started;
  _Atomic int stopping;
  _Atomic int exit_code;
  _Atomic uint64_t delivered; /* messages handled, all services */
  _Atomic uint64_t no_subscriber;

  myc__pool host_pool; /* manual engines: the driving thread's pool */
  myc__rng host_rng;
  uint64_t host_seq;
  uv_mutex_t host_lock;

  struct myc_collector **collectors; /* mycelium.testing */
  uint32_t ncollectors;

  uv_mutex_t stop_lock;
  uv_async_t *stop_async; /* set while myc_engine_run() waits */
};

/* Keeps 'c' to free it with the engine.  Returns 0 or MYC_ENOMEM. */
int myc__engine_add_collector(myc_engine *e, struct myc_collector *c);
void myc__collector_free(struct myc_collector *c);

/* Directory holding mycelium/host.lua: 'configured' if not NULL, else
 * $MYCELIUM_PATH, the source tree, the install location. */
const char *myc__find_lua_dir(const char *configured);

/* Finds a service by name, or NULL. */
myc_service *myc__engine_find(myc_engine *e, const char *name, size_t len);

#endif
