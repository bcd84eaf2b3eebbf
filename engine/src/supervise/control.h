/* control.h -- the control channel (docs/CONTROL.md): a Unix socket on
 * the monitor loop answering one request line per connection (status,
 * reload) with one line of JSON.
 */
#ifndef MYC_CONTROL_H
#define MYC_CONTROL_H

#include "supervise/supervisor.h"

#include <uv.h>

typedef struct myc__control myc__control;

/* Listens on 'url' ("unix:///path") on 'loop'.  A stale socket file (no
 * one answering) is replaced; a live one is an error.  Returns 0, or a
 * negative code with the reason in 'err'. */
int myc__control_open(myc__supervise *sv, uv_loop_t *loop, const char *url,
                      myc__control **out, char *err, size_t errlen);

/* Closes the listener and every connection, and removes the socket file.
 * The loop must run afterwards for the handles to finish closing. */
void myc__control_close(myc__control *c);

/* Writes the engine's status as one JSON object ('text' set: a table
 * for people) into a buffer from the engine's allocator ('*len' bytes,
 * freed with that size).  Returns 0 or MYC_ENOMEM. */
int myc__control_status(myc_engine *e, int text, char **out, size_t *len);

#endif
