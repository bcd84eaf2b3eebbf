/* monitor.h -- the engine's monitor thread: a libuv loop apart from the
 * workers, so that status answers and time budgets are enforced while a
 * worker is stuck in a handler.  It runs the watchdog (what runs, since
 * when, interrupting handlers past their budget), the control channel
 * (control.c) and the module file watcher (reload = "watch").
 */
#ifndef MYC_MONITOR_H
#define MYC_MONITOR_H

#include "mycelium.h"

#include <stdint.h>

/* Work handed to the monitor loop from another thread. */
typedef struct myc__mcall {
  struct myc__mcall *next;
  /* Runs on the monitor loop with 'alive' set, or, once the monitor has
   * stopped, on the caller's thread with 'alive' 0 (then only free). */
  void (*fn)(struct myc__mcall *c, int alive);
} myc__mcall;

/* Starts the monitor thread if the engine needs one: a handler time
 * budget, a control channel, or reload = "watch" (threaded engines).
 * The control socket is bound before this returns.  Returns 0 or a
 * negative code with the reason in 'err' (then nothing runs). */
int myc__monitor_start(myc_engine *e, char *err, size_t errlen);

/* Stops and joins the thread; pending calls run with 'alive' 0.  Any
 * thread but the monitor's; idempotent. */
void myc__monitor_stop(myc_engine *e);

/* Frees what is left once the services are freed. */
void myc__monitor_free(myc_engine *e);

/* Queues 'c' for the monitor loop.  Any thread. */
void myc__monitor_call(myc_engine *e, myc__mcall *c);

/* Monotonic clock of the watchdog, ns. */
int64_t myc__monitor_now(void);

#endif
