/* instance.h -- a Lua instance of a service: a fresh lua_State with its
 * own heap budget, running lua/mycelium/host.lua with the module loaded.
 * The supervisor (above) builds the next instance for a restart or a
 * reload with these calls and swaps it in; the runtime never decides
 * when.
 */
#ifndef MYC_INSTANCE_H
#define MYC_INSTANCE_H

#include "runtime/service.h"

/* Empties 'in' (no state, every reference LUA_NOREF, no heap slot). */
void myc__instance_reset(myc__instance *in);

/* Builds an instance of 's' running 'code' (the source of 'module'): a
 * fresh Lua state with the host runtime and the module loaded, its
 * subscriptions recorded but not applied.  The module's top level runs
 * interpreted (the JIT stays off until init returns) within the
 * service's load budget, and within its memory limit.  Touches nothing
 * the worker owns, so any thread may call it while the current instance
 * runs.  Returns 0, or MYC_ELUA / MYC_ENOMEM / MYC_ESTATE (no free heap
 * slot) with the reason in 'err'; then nothing is left. */
int myc__instance_load(myc_service *s, myc__instance *in, const char *module,
                       const char *code, size_t code_len, char *err,
                       size_t errlen);

/* Makes a load of 's' running on another thread stop at its next check
 * (as if past its budget).  Any thread. */
void myc__instance_load_interrupt(myc_service *s);

/* Prepares memory for the snapshot a reload will copy into 'in' (just
 * loaded, not yet committed): a region the size of the current
 * instance's state, past what 'in' already holds, faulted in by the
 * calling thread, so the copy on the worker neither allocates from the
 * process heap nor faults; and room in its string table for as many
 * strings as the last copy made, so that the copy does not rehash it
 * (lua/strtab.h).  A failure only leaves the copy to allocate and grow as
 * it goes.  Any thread but the worker; returns the region's size. */
size_t myc__instance_prepare(myc_service *s, myc__instance *in);

/* Calls the new instance's init(ctx, opts, state) where 'state' is a copy
 * of the value registered as 'snap_ref' in state 'from' ('from' NULL or
 * the ref LUA_NOREF: nil).  Worker thread.  Returns 0, or a negative code
 * with the reason in 'err' and '*how' set to how it ended. */
int myc__instance_init(myc_service *s, myc__instance *in, lua_State *from,
                       int snap_ref, myc__end *how, char *err, size_t errlen);

/* Calls the init of 'in' (its state argument pushed) as an activation,
 * within the service's load budget.  Returns what myc__activate()
 * does. */
int myc__instance_run_init(myc_service *s, myc__instance *in);

/* Makes 'in' the current instance: applies its subscriptions (subscribing
 * to new topics before leaving old ones) and forgets the timers of earlier
 * instances.  A current instance still open becomes the retired one (any
 * earlier retired instance must be gone).  Worker thread.  Cannot fail: a
 * subscription that cannot be added for lack of memory is logged. */
void myc__instance_commit(myc_service *s, myc__instance *in);

/* As myc__instance_commit for the first instance of a service not yet
 * placed on its worker (spawned): applies its subscriptions and makes it
 * current.  The thread that loaded it. */
void myc__instance_commit_first(myc_service *s, myc__instance *in);

/* Closes an instance that never became current, or the current one
 * ('in' == &s->cur).  Worker thread, or the thread that loaded it. */
void myc__instance_close(myc_service *s, myc__instance *in);

/* Runs the current instance's snapshot(ctx) and keeps what it returns in
 * its registry: '*ref' (LUA_NOREF without a snapshot).  Worker thread.
 * Returns 0 or MYC_ELUA with the reason; past its memory or time budget
 * the instance has then ended as a crash (the 'terminated' hook ran). */
int myc__instance_snapshot(myc_service *s, int *ref, char *err,
                           size_t errlen);

/* Drops the registry reference 'ref' of the current instance. */
void myc__instance_unref(myc_service *s, int ref);

/* Calls the current instance's stop (when 'call_stop') and ends it: its
 * state is closed and its timers forgotten.  Worker thread. */
void myc__instance_end(myc_service *s, int call_stop);

/* Runs the stop of 'in' (s->retired or s->dying) if it has not run; with
 * 'close', also closes it.  Worker thread. */
void myc__instance_retire(myc_service *s, myc__instance *in, int close);

/* Forgets the timers the instances of 's' set with ids in [lo, hi). */
void myc__instance_forget_timers(myc_service *s, uint64_t lo, uint64_t hi);

#endif
