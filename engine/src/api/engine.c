/* engine.c -- where the layers meet: an engine made through the public
 * API is the runtime (runtime/engine.c) with supervision attached
 * (supervise/), observation (observe/) and the table of FFI functions
 * its Lua states bind through (ffi/).  Layers added later attach
 * here the same way.
 */
#include "runtime/engine.h"

#include "ffi/table.h"
#include "observe/observe.h"
#include "supervise/supervisor.h"

#include <string.h>

void myc_engine_config_init(myc_engine_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->node = "mycelium";
  cfg->workers = 0;
  cfg->mailbox.capacity = 65536;
  cfg->mailbox.policy = MYC_POLICY_DROP_OLDEST;
  cfg->mailbox.threshold = 0.8;
  cfg->mailbox.max_bytes = 1ull << 30;
  cfg->mailbox.max_message_bytes = 1ull << 26;
  cfg->log_level = MYC_LOG_INFO;
  cfg->log_format = MYC_LOG_TEXT;
  myc_supervisor_config_init(&cfg->supervisor);
  cfg->reload = MYC_RELOAD_SIGNAL;
  cfg->trace_sample = 1.0;
}

int myc_engine_new(myc_engine **out, const myc_engine_config *cfg) {
  myc_engine *e;
  int rc = myc__engine_create(&e, cfg);
  *out = NULL;
  if (rc != 0)
    return rc;
  e->ffi_table = myc__ffi_table();
  rc = myc__supervise_attach(e, cfg);
  if (rc == 0)
    rc = myc__observe_attach(e, cfg);
  if (rc != 0) {
    myc_engine_free(e);
    return rc;
  }
  *out = e;
  return 0;
}
