/* nats_config.h -- the NATS part of a config file: connect's nats:// and
 * tls:// URLs and the 'nats' table (docs/NATS.md). */
#ifndef MYC_API_NATS_CONFIG_H
#define MYC_API_NATS_CONFIG_H

#include "runtime/engine.h"

#include <lua.h>
#include <stddef.h>

/* Whether 'url' is a NATS server's (connect lists both kinds). */
int myc__is_nats_url(const char *url);

/* Gives 'e' a NATS connection when the config table at index 't' of 'L'
 * lists NATS URLs under 'connect'.  Returns 0 or an error code with the
 * reason in 'err'. */
int myc__config_add_nats(lua_State *L, int t, myc_engine *e, char *err,
                         size_t errlen);

#endif
