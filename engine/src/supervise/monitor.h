/* monitor.h -- the engine's monitor thread: a libuv loop apart from the
 * workers, so that status answers and time budgets are enforced while a
 * worker is stuck in a handler.  It runs the watchdog (what runs, since
 * when, interrupting handlers past their budget), the control channel
 * (control.c) and the module file watcher (reload = "watch").
 */
#ifndef MYC_MONITOR_H
#define MYC_MONITOR_H

#include "core/job.h"
#include "supervise/supervisor.h"

/* Starts the monitor thread if the engine needs one: a handler time
 * budget, a control channel, or reload = "watch" (threaded engines).
 * The control socket is bound before this returns.  Returns 0 or a
 * negative code with the reason in 'err' (then nothing runs). */
int myc__monitor_start(myc__supervise *sv, char *err, size_t errlen);

/* Stops and joins the thread; pending jobs are cancelled (j->fn(j, 0)).
 * Any thread but the monitor's; idempotent. */
void myc__monitor_stop(myc__supervise *sv);

/* Frees what is left once the services are freed. */
void myc__monitor_free(myc__supervise *sv);

/* Runs 'j' on the monitor loop.  Any thread; once the monitor has
 * stopped, 'j' is cancelled on the calling thread. */
void myc__monitor_post(myc__supervise *sv, myc__job *j);

#endif
