/* loader.h -- the engine's loader thread: where reloads read and load
 * new code (a module's top level runs there, within its load budget),
 * away from the monitor thread, whose control socket, file watcher and
 * watchdog must keep answering, and from the workers, whose services keep
 * handling messages meanwhile.
 */
#ifndef MYC_LOADER_H
#define MYC_LOADER_H

#include "core/job.h"
#include "supervise/supervisor.h"

/* Runs 'j' on the loader thread, started by the first job.  Any thread
 * but the loader's.  Once the loader has stopped (or cannot start), 'j'
 * is cancelled on the calling thread (j->fn(j, 0)). */
void myc__loader_post(myc__supervise *sv, myc__job *j);

/* Stops the loader: the load running now is interrupted (its deadline
 * is moved to now), the thread joined, the jobs still queued cancelled.
 * Any thread but the loader's; idempotent. */
void myc__loader_stop(myc__supervise *sv);

/* Frees what is left (after myc__loader_stop). */
void myc__loader_free(myc__supervise *sv);

#endif
