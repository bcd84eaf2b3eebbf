/* warm.h -- a service's warm-up: the module's warmup(ctx, warm), run at
 * the engine's start, right after its init and before any worker loop
 * turns, with the JIT on, so that its handlers are compiled before real
 * traffic comes (docs/API.md, Warm-up).  Instances made later (restarts,
 * reloads, spawns) start cold: their worker is turning, and a warm-up
 * would hold its other services for as long as it takes.
 *
 * While it runs, what the service emits is made as usual and then either
 * handed back to the warm-up (a message it delivers to its own handler)
 * or dropped and counted (emit.c; the struct is myc__warm of service.h):
 * it reaches no subscriber, link or counter of the service.  Its time is
 * bounded by the service's load budget without a hook while it runs (a hook
 * keeps LuaJIT from compiling): a thread of its own hooks the state once the
 * budget is spent.
 */
#ifndef MYC_WARM_H
#define MYC_WARM_H

#include "runtime/service.h"

/* Runs the warmup of instance 'in' (init has returned; the JIT is on),
 * if its module has one.  Worker thread.  A warm-up that raises or
 * overruns the load budget is logged and the instance goes on cold:
 * returns 0.  Returns MYC_ELUA with the reason in 'err' and '*how' set
 * only when the instance cannot go on (its state was abandoned: a
 * compiled loop past twice the budget, or memory). */
int myc__instance_warmup(myc_service *s, myc__instance *in, myc__end *how,
                         char *err, size_t errlen);

#endif
