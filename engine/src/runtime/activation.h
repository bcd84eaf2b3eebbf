/* activation.h -- one call into a service's code (a batch of handlers,
 * init, a timer, an event, stop, snapshot): its trace context, what runs
 * and since when (read by other threads without waiting for the worker),
 * how it ended, and its interruption by the watchdog.
 */
#ifndef MYC_ACTIVATION_H
#define MYC_ACTIVATION_H

#include "runtime/service.h"

/* Starts a fresh root trace for an activation outside a handler. */
void myc__activation_new_trace(myc_service *s);

/* Marks the start and the end of an activation of 'kind' (myc__activity)
 * for the threads that watch it.  Worker thread. */
void myc__act_begin(myc_service *s, int kind);
void myc__act_end(myc_service *s);

/* What a call returns when its state was abandoned (an allocation past
 * the budget's ceiling escaped, base/alloc.h): nothing is on its stack,
 * and nothing may touch it but myc__instance_close(). */
#define MYC_CALL_ESCAPED 0x100

/* Calls the function behind 'ref' of instance 'in' with 'nargs' arguments
 * already pushed, as an activation of 'kind'.  Returns the lua_pcall
 * result (on error the message, with traceback, is left on the stack) or
 * MYC_CALL_ESCAPED. */
int myc__activate(myc_service *s, myc__instance *in, int kind, int ref,
                  int nargs, int nres);

/* As myc__activate() without marking an activation (the host's own calls,
 * such as reading an instance's subscriptions); same returns. */
int myc__instance_call(myc__instance *in, int ref, int nargs, int nres);

/* The budget of state 'L' (its allocator's), also of an abandoned one. */
myc__lua_budget *myc__state_budget(lua_State *L);

/* Nonzero when the state of 'in' was abandoned. */
int myc__instance_dead(const myc__instance *in);

/* The error message a call of 'in' that returned 'rc' left, or NULL (it
 * returned, or its state was abandoned). */
const char *myc__call_error(myc__instance *in, int rc);

/* Empties the stack of 'in' after a call, unless it was abandoned. */
void myc__call_clear(myc__instance *in);

/* The on_trip of every service budget: asks for the state over its
 * memory limit to be interrupted at its next safe point (a hook).  The
 * state's thread. */
void myc__budget_tripped(myc__lua_budget *b);

/* Bounds the code state 'L' runs from now on (module top level, init) to
 * 'ms' milliseconds: a hook checks the time every thousand instructions
 * and raises once it is past ('b->overtime').  The state's thread, or
 * before it runs.  Only interpreted code is reached: run it with the JIT
 * off (instance.c does). */
void myc__deadline_start(myc__lua_budget *b, lua_State *L, double ms);
/* Removes the deadline of 'b' (and its hook, unless an interruption is
 * pending). */
void myc__deadline_end(myc__lua_budget *b, lua_State *L);

/* Hooks the state running activation 'gen' of 's' so that the deadline
 * its budget holds (set without a hook, which would keep LuaJIT from
 * compiling) is checked at the next instruction: the warm-up's bound
 * (warm.c).  Any thread. */
void myc__deadline_hook(myc_service *s, uint32_t gen);

/* The running code was told its deadline passed another way (a warm-up's
 * warm:deliver refusing): the hook will not tell it again, so that the
 * state the module puts back after the one error it catches stays put.
 * Worker thread of 's'. */
void myc__deadline_told(myc_service *s);

/* How the activation of 'in' that returned 'rc' ended: -1 when it simply
 * returned, else a myc__end (MYC_END_ERROR: it raised). */
int myc__activation_end(myc_service *s, myc__instance *in, int rc);

/* Nonzero for the ends that count as a crash. */
int myc__end_is_crash(int how);

/* Why an instance ended, as the log, "$dead" and the supervisor say it,
 * from the error 'text' (NULL: none). */
void myc__end_reason(myc_service *s, myc__instance *in, int how,
                     const char *text, char *out, size_t cap);

/* 'msg' without its traceback, prefixed with "service 'NAME': " unless it
 * already names it. */
void myc__name_error(const char *name, const char *msg, char *err,
                     size_t errlen);

/* Logs "WHAT failed: error" at error level with the traceback as a field,
 * in the trace of 'f' (NULL: the activation's). */
void myc__log_error(myc_service *s, const char *what, const char *text,
                    const myc_frame *f);

/* Makes 'in' the state that runs now (hooks and refused allocations reach
 * it).  Any thread holding the service. */
void myc__set_running(myc_service *s, myc__instance *in);

/* What runs now, "" when idle ("handler TOPIC", "init", ...).  Any
 * thread: reads the worker's progress without waiting for it. */
void myc__service_running(myc_service *s, char *buf, size_t cap);

/* Sets a hook on the running state that raises in the running handler
 * if it is still activation 'gen' at message 'cursor'.  Any thread. */
void myc__service_interrupt(myc_service *s, uint32_t gen, int32_t cursor);

/* Makes the running state's next allocation fail if it is still in
 * activation 'gen': reaches compiled loops that allocate.  Any thread. */
void myc__service_poison(myc_service *s, uint32_t gen);

#endif
