/* mycelium.h -- the public C API of the Mycelium event engine.
 *
 * One engine owns topics, worker threads, services (Lua modules, or C
 * callbacks) and their mailboxes.  Everything a host program needs to embed
 * it is declared here; nothing else in engine/ is a stable interface.
 *
 * Conventions (as in libuv): functions return 0 on success and a negative
 * MYC_E* code on failure; myc_strerror() and myc_err_name() describe any
 * code, including the libuv codes that pass through unchanged.  If a call
 * that takes a callback fails, the callback is never called.  Handles are
 * opaque; what a script or another thread can name is an id, never a
 * pointer.
 */
#ifndef MYCELIUM_H
#define MYCELIUM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MYC_BUILDING)
#define MYC_EXTERN __attribute__((visibility("default")))
#else
#define MYC_EXTERN
#endif

#define MYC_VERSION_MAJOR 0
#define MYC_VERSION_MINOR 2
#define MYC_VERSION_PATCH 0

/* Returns the version as "major.minor.patch".  Cannot fail. */
MYC_EXTERN const char *myc_version(void);

/* ===================================================================== */
/* Errors                                                                 */
/* ===================================================================== */

/* Engine codes live in their own block, away from errno values and from
 * libuv's -3000 and -4095 ranges, so any code can be passed through. */
#define MYC_ERRNO_MAP(XX)                                                     \
  XX(EINVAL, -5001, "invalid argument")                                      \
  XX(ENOMEM, -5002, "out of memory")                                         \
  XX(EFULL, -5003, "mailbox full")                                           \
  XX(ENOENT, -5004, "no such service or topic")                              \
  XX(EEXIST, -5005, "already exists")                                        \
  XX(ETOPIC, -5006, "invalid topic name")                                    \
  XX(ELUA, -5007, "Lua error")                                               \
  XX(ECONFIG, -5008, "invalid configuration")                                \
  XX(ESTATE, -5009, "operation not valid in the current state")             \
  XX(ETOOBIG, -5010, "message too large")                                    \
  XX(ETYPE, -5011, "unsupported value type")                                 \
  XX(ESTOPPED, -5012, "engine is stopping")                                  \
  XX(ECONTRACT, -5013, "invalid contract")                                   \
  XX(ELIMIT, -5014, "limit exceeded")                                        \
  XX(ETLS, -5015, "TLS failure (handshake, certificate or record)")          \
  XX(ETIMEDOUT, -5016, "timed out")

typedef enum {
#define XX(name, value, text) MYC_##name = (value),
  MYC_ERRNO_MAP(XX)
#undef XX
} myc_errno;

/* Returns a static description of 'err' (engine, libuv or errno code).
 * Never returns NULL. */
MYC_EXTERN const char *myc_strerror(int err);

/* Returns the symbolic name of 'err' ("EFULL", "ECONNREFUSED", ...).
 * Never returns NULL. */
MYC_EXTERN const char *myc_err_name(int err);

/* LuaJIT as distributions build it makes its machine-code area writable,
 * then executable again, around every trace it compiles or links: two
 * mprotect() calls per trace, each a TLB flush on every core running a
 * thread of the process (costly on VMs, and a service compiles hundreds
 * of traces in its first second; docs/TUNING.md).  With 'protect' 0,
 * LuaJIT's code areas are kept writable and executable instead, as
 * LuaJIT's build option LUAJIT_UNPROTECT_MCODE does: faster warm-up, but
 * memory that is both writable and executable (no W^X for JIT code).  1
 * (the default) restores the protection for the areas' next switch.
 * Process-wide: it applies to every engine and every Lua state.  It works
 * by defining mprotect() ahead of libc and changes only LuaJIT's calls;
 * returns 0, or MYC_ESTATE (nothing changed) when LuaJIT's calls cannot
 * reach it: libmycelium loaded with RTLD_LOCAL, or a sanitizer's
 * mprotect in front of it. */
MYC_EXTERN int myc_jit_set_mcode_protect(int protect);

/* ===================================================================== */
/* Memory                                                                 */
/* ===================================================================== */

/* One allocation hook, shaped like lua_Alloc: nsize == 0 frees 'ptr' and
 * returns NULL; otherwise it returns a block of 'nsize' bytes holding the
 * first min(osize, nsize) bytes of 'ptr' (which may be NULL), or NULL on
 * failure with 'ptr' untouched.  It must be safe to call from any thread. */
typedef void *(*myc_alloc_fn)(void *ud, void *ptr, size_t osize,
                              size_t nsize);

/* ===================================================================== */
/* Engine                                                                 */
/* ===================================================================== */

typedef struct myc_engine myc_engine;

typedef enum {
  MYC_POLICY_DROP_OLDEST = 0, /* evict the oldest queued message */
  MYC_POLICY_DROP_NEWEST = 1, /* discard the message being delivered */
  MYC_POLICY_REJECT = 2       /* refuse it: the emitter sees "full" */
} myc_policy;

typedef enum { MYC_LOG_TEXT = 0, MYC_LOG_JSON = 1 } myc_log_format;

typedef enum {
  MYC_LOG_DEBUG = 0,
  MYC_LOG_INFO = 1,
  MYC_LOG_WARN = 2,
  MYC_LOG_ERROR = 3
} myc_log_level;

/* A service's mailbox is bounded in messages and in payload bytes (the
 * message being handled counts), and takes no message over
 * 'max_message_bytes'; what does not fit is lost by 'policy' and counted.
 * A byte field of 0 is its default (1 GiB, 64 MiB). */
typedef struct {
  uint32_t capacity; /* messages, exactly (1 to 2^30) */
  myc_policy policy;
  double threshold; /* fill ratio above which backpressure is signalled */
  uint64_t max_bytes;         /* payload bytes queued */
  uint64_t max_message_bytes; /* largest payload taken (at most max_bytes) */
} myc_mailbox_config;

/* Receives every log line the engine or a service writes, without the
 * trailing newline.  Called on the thread that logs; must be thread-safe. */
typedef void (*myc_log_fn)(void *ud, int level, const char *line, size_t len);

/* Supervision (docs/SUPERVISION.md): how a crashed service is restarted.
 * A service restarts after an exponential backoff with jitter; more than
 * 'max_restarts' restarts within 'window_s' seconds and it is failed.
 * Times are at most 10^12 ms or 10^9 s (about 31 years), 'multiplier' at
 * most 1000 and 'max_restarts' at most 100000: anything else (NaN and
 * infinities too) makes the engine or group MYC_EINVAL. */
typedef struct {
  double backoff_initial_ms; /* delay before the first restart (10) */
  double backoff_max_ms;     /* the delay never grows past this (5000) */
  double multiplier;         /* growth per consecutive restart (2) */
  double jitter;             /* the delay varies by +- this fraction (0.2) */
  uint32_t max_restarts;     /* restarts allowed within the window (5) */
  double window_s;           /* the intensity window (60) */
  double reset_s;            /* quiet time after which the backoff starts
                                again from backoff_initial_ms (30) */
  double reload_probation_s; /* a reloaded version that crashes this soon is
                                rolled back (5; 0: no probation) */
} myc_supervisor_config;

/* Fills 'sc' with the defaults given above.  Cannot fail. */
MYC_EXTERN void myc_supervisor_config_init(myc_supervisor_config *sc);

/* When a service's code is reloaded besides `mycelium reload`. */
typedef enum {
  MYC_RELOAD_SIGNAL = 0, /* SIGHUP reloads every service whose file changed */
  MYC_RELOAD_WATCH = 1,  /* also when a module file changes (debounced) */
  MYC_RELOAD_OFF = 2     /* only on request (control channel, C API) */
} myc_reload_mode;

typedef struct {
  const char *node;        /* node name in logs and handshakes */
  uint32_t workers;        /* worker threads; 0: one per core */
  myc_mailbox_config mailbox; /* default for every service */
  myc_log_level log_level;
  myc_log_format log_format;
  myc_log_fn log_fn; /* NULL: write to stderr */
  void *log_ud;
  const char *lua_path; /* directory holding the Lua runtime; NULL: search */
  /* Manual engines run no threads: the host drives them with
   * myc_engine_run_once() and myc_engine_advance() on a virtual clock.
   * This is what mycelium.testing uses. */
  int manual;
  myc_alloc_fn alloc; /* NULL: realloc/free */
  void *alloc_ud;
  /* The services' Lua heaps (each counted against its own budget); NULL:
   * the same as 'alloc'.  Separate because LuaJIT 2.1 cannot survive an
   * allocation failure inside lua_newstate() itself. */
  myc_alloc_fn lua_alloc;
  void *lua_alloc_ud;
  myc_supervisor_config supervisor; /* default for every service */
  /* Control channel (docs/CONTROL.md): "unix:///path" or NULL for none. */
  const char *control;
  myc_reload_mode reload;
  /* Metrics listener (docs/METRICS.md): "host:port" (a numeric IPv4 or
   * [IPv6] address; port 0 picks a free one) serving GET /metrics from a
   * thread of its own, or NULL for none.  Threaded engines only. */
  const char *metrics_listen;
  /* Span export (docs/OBSERVABILITY.md): "zipkin" (v2 JSON) or "otlp"
   * (OTLP/HTTP JSON), or NULL for none.  Every handled message of a
   * sampled trace is a span, posted in batches to 'trace_endpoint'
   * ("http://host:port/path") from a thread of its own.  Threaded engines
   * only: a manual engine ignores it. */
  const char *trace_export;
  const char *trace_endpoint;
  /* The fraction of traces kept, 0 to 1, decided from the trace id alone
   * so that every process keeps the same traces (default 1). */
  double trace_sample;
  /* Spans per worker waiting for export (rounded up to a power of two);
   * past it new spans are dropped and counted.  0: 4096. */
  uint32_t trace_queue;
  /* Services at once, configured, spawned and the engine's own: past it
   * myc_engine_add_service, myc_engine_spawn and ctx:spawn return
   * MYC_ELIMIT, so that a service spawning in a loop gets an error rather
   * than taking the process's memory (each Lua service holds its own
   * state).  0: MYC_DEFAULT_MAX_SERVICES. */
  uint32_t max_services;
  /* Each service's log records pass a token bucket: 'log_rate' records
   * per second, bursts of 'log_burst'; past it the service's records are
   * dropped and counted (docs/OBSERVABILITY.md).  The engine's own lines
   * are not limited.  0: MYC_DEFAULT_LOG_RATE, MYC_DEFAULT_LOG_BURST;
   * a negative rate: no limit. */
  double log_rate;
  double log_burst;
  /* Topics one service may create (by emitting on, publishing to or
   * asking the pressure of a topic nobody used before; a link or NATS
   * connection counts as its engine service, _links or _nats): past it
   * the service's new topics are refused with MYC_ELIMIT while the topics
   * that exist go on working.  Topics are never removed, and the engine's
   * table holds about a million: without this bound one service making
   * topic names in a loop would leave none for the others.  0:
   * MYC_DEFAULT_MAX_TOPICS_PER_SERVICE. */
  uint32_t max_topics_per_service;
  /* Distinct patterns one service may subscribe to at a time (a
   * subscription is engine memory outside the service's memory_limit):
   * past it a new one is refused with MYC_ELIMIT.  The engine's _links
   * and _nats are bounded by their own settings instead.  0:
   * MYC_DEFAULT_MAX_SUBSCRIPTIONS_PER_SERVICE. */
  uint32_t max_subscriptions_per_service;
} myc_engine_config;

#define MYC_DEFAULT_MAX_SERVICES 10000
#define MYC_DEFAULT_MAX_TOPICS_PER_SERVICE 100000
#define MYC_DEFAULT_MAX_SUBSCRIPTIONS_PER_SERVICE 10000
#define MYC_DEFAULT_LOG_RATE 1000.0
#define MYC_DEFAULT_LOG_BURST 10000.0

/* Fills 'cfg' with the defaults: one worker per core, 65536-message
 * mailboxes of at most 1 GiB with drop_oldest at 0.8, taking messages of
 * up to 64 MiB, info level text logs to stderr, the
 * supervisor defaults, no control channel, reload on SIGHUP.  Cannot
 * fail. */
MYC_EXTERN void myc_engine_config_init(myc_engine_config *cfg);

/* Creates an engine.  Strings in 'cfg' are copied.  On success '*out'
 * owns everything and must be released with myc_engine_free().  Returns
 * MYC_EINVAL for a bad configuration or MYC_ENOMEM; '*out' is then NULL. */
MYC_EXTERN int myc_engine_new(myc_engine **out, const myc_engine_config *cfg);

/* Creates an engine and its services from a Lua config file (docs/CONFIG.md),
 * loading the contracts file it names (`contracts`, relative to the config
 * file's directory; `validate = false` turns rule checks off).  On failure
 * returns MYC_ECONFIG, MYC_ECONTRACT (every error of the contracts file,
 * one per line) or MYC_ELUA with a message naming the file and key in
 * 'err' (always NUL-terminated when errlen > 0). */
MYC_EXTERN int myc_engine_from_file(myc_engine **out, const char *path,
                                    char *err, size_t errlen);

/* Like myc_engine_from_file() for what `mycelium run` accepts: one config
 * file, or one or more service files (each a service named after its file,
 * default configuration).  A single file is a config when the table it
 * returns has a 'services' list. */
MYC_EXTERN int myc_engine_from_files(myc_engine **out,
                                     const char *const *files, int nfiles,
                                     char *err, size_t errlen);

/* Starts the engine: runs every service's init, then (unless manual)
 * starts the worker threads.  If any init fails, the services already
 * initialised are stopped, nothing runs, and the error is returned with
 * its message in 'err'. */
MYC_EXTERN int myc_engine_start(myc_engine *e, char *err, size_t errlen);

/* Blocks until the engine is asked to stop (myc_engine_stop(), a service's
 * ctx:shutdown(code), or SIGINT/SIGTERM when 'handle_signals' is set), then
 * drains mailboxes, calls every service's stop and joins the workers.
 * What is still queued after that is released and counted as dropped at
 * shutdown, so the counters are final when this returns.  Returns the
 * exit code requested by the stop, or MYC_ESTATE for an engine that is
 * manual, not started, or started on a host loop. */
MYC_EXTERN int myc_engine_run(myc_engine *e, int handle_signals);

/* Called on the host loop's thread when an engine started with
 * myc_engine_start_on_loop() has stopped; 'code' is the exit code the
 * stop asked for.  The engine may be freed from here. */
typedef void (*myc_stopped_cb)(void *ud, int code);

/* libuv's uv_loop_t (<uv.h>): the host's loop. */
struct uv_loop_s;

/* Starts the engine as myc_engine_start() does, but worker 0 runs on the
 * host's libuv 'loop' instead of a thread of its own: the services placed
 * on worker 0 (myc_service_config.worker = 0, or automatic placement with
 * one worker) run on the thread that runs 'loop', inside its uv_run(),
 * between the host's own callbacks and I/O; workers 1 and up are threads.
 * The host must use the libuv the engine is linked with (the one of
 * `pkg-config libuv`).  Call it from the loop's thread.
 *
 * The engine adds its handles to 'loop' (it watches worker 0's loop and
 * turns it without blocking, only when it has something to do), so
 * uv_run(loop, UV_RUN_DEFAULT) does not return while the engine runs.  A
 * stop (myc_engine_stop() from any thread, a service's ctx:shutdown)
 * drains and stops the services as myc_engine_run() does, from the loop's
 * callbacks, then removes the handles and calls on_stopped(ud, code)
 * (may be NULL) on the loop's thread; the counters are final then.  The
 * engine handles no signals in this mode: they are the host's.
 * myc_engine_run() returns MYC_ESTATE for such an engine;
 * myc_engine_free() before on_stopped (from the loop's thread) stops it
 * first, blocking, and on_stopped is not called; the engine's handles
 * then leave 'loop' on its next turn.  So does a failed start.
 *
 * Returns 0; MYC_EINVAL ('loop' NULL); MYC_ESTATE (manual or already
 * started); the error of myc_engine_start(), with its message in 'err';
 * or the libuv error of watching worker 0's loop. */
MYC_EXTERN int myc_engine_start_on_loop(myc_engine *e, struct uv_loop_s *loop,
                                        myc_stopped_cb on_stopped, void *ud,
                                        char *err, size_t errlen);

/* Asks the engine to stop with exit code 'code'.  Safe from any thread and
 * from a signal-free context; returns at once. */
MYC_EXTERN void myc_engine_stop(myc_engine *e, int code);

/* Manual engines only: runs each worker's libuv loop once without
 * blocking (socket and client callbacks of C facilities), then delivers
 * queued messages until every mailbox is empty or 'max_batches' batches
 * ran (0: no limit).  Returns the number of messages delivered, or a
 * negative error. */
MYC_EXTERN int64_t myc_engine_run_once(myc_engine *e, uint64_t max_batches);

/* Manual engines only: moves the virtual clock forward by 'ms'
 * milliseconds (0 to 10^12), firing due timers in deadline order and
 * delivering what they emit before the next one fires.  Returns 0,
 * MYC_EINVAL for a negative, NaN or larger 'ms', or MYC_ESTATE. */
MYC_EXTERN int myc_engine_advance(myc_engine *e, double ms);

/* Manual engines only: stops the services (drain, then stop) and returns
 * the exit code; the engine can then only be freed. */
MYC_EXTERN int myc_engine_shutdown(myc_engine *e);

/* Nonzero once a stop was requested; '*code' receives its exit code. */
MYC_EXTERN int myc_engine_stopping(myc_engine *e, int *code);

/* Frees the engine.  Stops it first if it is still running.  Every buffer,
 * Lua state and thread is released.  Cannot fail. */
MYC_EXTERN void myc_engine_free(myc_engine *e);

/* Writes a log line through the engine's sink with the engine's format
 * ("node" and "service" fields filled).  'service' may be NULL. */
MYC_EXTERN void myc_engine_log(myc_engine *e, myc_log_level level,
                               const char *service, const char *msg);

/* ===================================================================== */
/* Services                                                               */
/* ===================================================================== */

/* Which terminations restart a service (as in Erlang/OTP): a permanent
 * service always restarts, a transient one only after a crash (not after
 * ctx:exit()), a temporary one never. */
typedef enum {
  MYC_RESTART_PERMANENT = 0,
  MYC_RESTART_TRANSIENT = 1,
  MYC_RESTART_TEMPORARY = 2
} myc_restart;

typedef struct {
  const char *name;      /* unique; also the "source" of what it emits:
                            1 to 255 letters, digits and _ - . :, starting
                            with a letter, a digit or _ */
  const char *module;    /* path of the Lua file */
  const void *opts;      /* MessagePack map handed to init, or NULL */
  size_t opts_len;
  int32_t worker;        /* -1: automatic placement */
  const myc_mailbox_config *mailbox; /* NULL: engine default */
  /* Supervision and budgets (docs/SUPERVISION.md); zero is the default. */
  myc_restart restart;
  const char *group;         /* a supervisor group (myc_engine_add_group) */
  double memory_limit_mb;    /* Lua heap limit; 0: none; else 1 to 1048576 */
  double handler_timeout_ms; /* handler time budget; 0: none; at most 10^12 */
  double reload_probation_s; /* 0: the engine's; < 0: no probation; at most
                                10^9 */
  /* Budget of loading the module (its top level) and of each init:
   * 0: handler_timeout_ms when set, else MYC_LOAD_TIMEOUT_MS; at most
   * 10^12. */
  double load_timeout_ms;
  /* This service's log rate limit (docs/OBSERVABILITY.md): records per
   * second and burst, as myc_engine_config's log_rate and log_burst,
   * which a 0 here keeps; a negative rate: no limit for this service;
   * at most 1e9 each, a burst of at least 1. */
  double log_rate;
  double log_burst;
} myc_service_config;

/* The load and init budget of a service that sets neither
 * load_timeout_ms nor handler_timeout_ms. */
#define MYC_LOAD_TIMEOUT_MS 5000

/* Loads a Lua service: creates its Lua state, compiles and runs the module,
 * checks that it returns a table with a handler, and subscribes it.  Must
 * be called before myc_engine_start(): once the engine runs, this returns
 * MYC_ESTATE and says so in 'err' (services are placed on workers and
 * initialised before the workers start; to change a running service's
 * code, use myc_engine_reload()).  On failure nothing is left behind and
 * 'err' names the file (and line for a syntax error), or the setting out
 * of its range (MYC_EINVAL), or the engine's max_services (MYC_ELIMIT). */
MYC_EXTERN int myc_engine_add_service(myc_engine *e,
                                      const myc_service_config *sc,
                                      char *err, size_t errlen);

/* Adds the 'n' services of 'scs' as myc_engine_add_service() called for
 * each in turn would, but their Lua states are made in parallel, on up
 * to as many threads (the caller's among them) as the engine has workers
 * and the machine has cores; names, budgets, placement, the supervisor
 * groups and the subscriptions are handled on the calling thread in the
 * order of 'scs'.  The outcome is the one of the loop: on failure the
 * error is the one of the first service (in order) that fails, named in
 * 'err' as myc_engine_add_service() names it; the services before it are
 * added, it and those after it are not (nothing of them is left).  A
 * name given twice is MYC_EEXIST at its second place.  Before
 * myc_engine_start() (else MYC_ESTATE).  Returns 0 or the error
 * (MYC_EINVAL for 'scs' NULL with 'n' > 0). */
MYC_EXTERN int myc_engine_add_services(myc_engine *e,
                                       const myc_service_config *scs,
                                       size_t n, char *err, size_t errlen);

/* Adds a Lua service to a running engine, from any thread (a service's
 * ctx:spawn calls it too).  The module is loaded and its top level run
 * on the calling thread, the name registered and the subscriptions
 * applied before this returns, so messages sent to the service from then
 * on wait in its mailbox; its init runs on its worker right after.  An
 * init that raises counts as a crash: the restart policy ('restart', the
 * engine's supervisor settings) decides, as for a configured service.  A
 * spawned service that ends for good (stopped, or failed) is removed, as
 * by myc_engine_kill().  Before myc_engine_start() it is added as
 * myc_engine_add_service() adds one (and removed once it ends).
 *
 * Returns 0; MYC_EEXIST (the name is taken, by a configured or spawned
 * service); MYC_EINVAL (a bad name, worker, budget, a 'group': groups
 * are fixed, or a module path that is not a regular file); MYC_ENOENT
 * (the module file cannot be opened); MYC_ELUA (the module does not
 * compile, raises or returns no handler: 'err' names the file and line);
 * MYC_ELIMIT (the engine runs myc_engine_config.max_services services
 * already); MYC_ESTOPPED (the engine is stopping); MYC_ENOMEM.  On error
 * nothing is left. */
MYC_EXTERN int myc_engine_spawn(myc_engine *e, const myc_service_config *sc,
                                char *err, size_t errlen);

/* Removes Lua service 'name' (configured or spawned) from a running
 * engine, from any thread.  Its name is free again when this returns.
 * On its worker, between two batches (after the handler that runs, if
 * one does), its stop runs, its Lua state, timers and subscriptions go,
 * the requests queued for it fail at once for their askers ("failed"),
 * and what is queued for it is dropped and counted
 * (myc_lifecycle_stats.dropped, and the log line of the removal); its
 * memory is freed once no other thread can still reach it.  Services it
 * spawned keep running.
 *
 * Returns 0; MYC_ENOENT (no such service, or removed already); MYC_EINVAL
 * (a bad name, or one of the engine's C services); MYC_ESTATE (a member
 * of a supervisor group, or the engine is not running); MYC_ESTOPPED (the
 * engine is stopping: every service stops with it); MYC_ENOMEM. */
MYC_EXTERN int myc_engine_kill(myc_engine *e, const char *name, char *err,
                               size_t errlen);

/* Services added and removed while the engine runs. */
typedef struct {
  uint64_t spawned;  /* myc_engine_spawn() and ctx:spawn successes */
  uint64_t removed;  /* services removed (killed, or spawned and ended) */
  uint64_t dropped;  /* messages queued for removed services, dropped */
  uint32_t services; /* services now */
  uint32_t pending_free; /* removed, not freed yet (a grace period) */
} myc_lifecycle_stats;

/* Fills 'out'.  Any thread. */
MYC_EXTERN void myc_engine_lifecycle_stats(myc_engine *e,
                                           myc_lifecycle_stats *out);

/* How a supervisor group reacts when one of its services terminates. */
typedef enum {
  MYC_ONE_FOR_ONE = 0, /* only that service restarts */
  MYC_ONE_FOR_ALL = 1, /* every service of the group restarts */
  MYC_REST_FOR_ONE = 2 /* it and the services added after it restart */
} myc_strategy;

/* Declares the supervisor group 'name' ('sc' NULL: the engine's settings;
 * the name follows the rule of service names); services join it through
 * myc_service_config.group, in the order they are added.  Before myc_engine_start().  Returns 0, MYC_EEXIST, MYC_EINVAL or
 * MYC_ENOMEM. */
MYC_EXTERN int myc_engine_add_group(myc_engine *e, const char *name,
                                    myc_strategy strategy,
                                    const myc_supervisor_config *sc);

/* Hot-reloads service 'name' from 'module' (NULL: its current file, read
 * again).  The new code is compiled in a fresh Lua state, then, between
 * two batches on the service's worker, the old instance's snapshot() goes
 * to the new init(ctx, opts, state) and the new instance takes over the
 * mailbox.  If loading or init fails, the old instance keeps running and
 * the error (file:line for a syntax error) is written to 'err'.  Threaded
 * engines: any thread but a worker's; waits for the swap (at most 10 s:
 * MYC_ETIMEDOUT, the swap still happens when the worker gets to it).  On
 * an engine started on a host loop, the loop's thread may also reload a
 * service of worker 0: it loads and swaps it before returning.  Manual
 * engines: the driving thread.  Returns 0, MYC_ENOENT, MYC_ELUA,
 * MYC_ESTATE (not started, or a reload of it is already under way),
 * MYC_ESTOPPED (the engine is stopping), MYC_ETIMEDOUT. */
MYC_EXTERN int myc_engine_reload(myc_engine *e, const char *name,
                                 const char *module, char *err,
                                 size_t errlen);

/* ===================================================================== */
/* Messages from C                                                        */
/* ===================================================================== */

typedef enum {
  MYC_KIND_RAW = 1,   /* opaque bytes */
  MYC_KIND_TABLE = 2, /* MessagePack */
  MYC_KIND_TYPED = 3  /* a contract struct; 'type' is its tag */
} myc_kind;

/* What a C subscriber sees: a read-only view valid during the callback. */
typedef struct {
  const char *topic;
  size_t topic_len;
  const char *source;
  size_t source_len;
  int kind;
  uint16_t type;
  const uint8_t *data;
  size_t len;
  const uint8_t *trace_id; /* 16 bytes */
  const uint8_t *span_id;  /* 8 bytes */
  uint64_t seq;
  uint64_t ts_ns; /* engine clock, ns since the Unix epoch */
} myc_message;

/* A C subscriber: called on its worker's thread for each message. */
typedef void (*myc_message_cb)(void *ud, const myc_message *msg);

/* Adds a C service named 'name' (the rule of myc_service_config.name)
 * that calls 'cb' for every message on 'pattern' (an exact topic,
 * "prefix.*" or "*").  Before start, or at any time on a manual engine:
 * once a threaded engine runs, this returns MYC_ESTATE and logs why at
 * error level.  On success returns 0; 'cb' is never called if this
 * fails. */
MYC_EXTERN int myc_engine_add_c_service(myc_engine *e, const char *name,
                                        const char *pattern,
                                        myc_message_cb cb, void *ud,
                                        int32_t worker);

/* Publishes 'len' bytes of 'data' on 'topic' as a new trace root, from a
 * source named "host".  The bytes are copied into an engine buffer.
 * Manual engines: call from the driving thread.  Threaded engines: safe
 * from any thread.  Returns 0, MYC_EFULL when every subscriber refused it,
 * MYC_ETOPIC for an invalid topic.
 *
 * MYC_KIND_TYPED checks the payload against the engine's contracts
 * (myc_engine_set_contracts) before anything is sent: MYC_ECONTRACT when
 * none are loaded or 'type' is not one of their tags, MYC_EINVAL when
 * 'len' is not the type's size, and, unless validation is off,
 * MYC_ECONTRACT when a validation rule fails (myc_contract_validate()
 * names type, field and rule). */
MYC_EXTERN int myc_publish(myc_engine *e, const char *topic, int kind,
                           uint16_t type, const void *data, size_t len);

/* ===================================================================== */
/* Introspection                                                          */
/* ===================================================================== */

typedef struct {
  const char *name;
  int32_t worker;
  const char *state; /* "running", "stopped", ... */
  uint64_t in;       /* messages handled */
  uint64_t out;      /* messages emitted */
  uint64_t unrouted; /* of 'out': emitted on a topic no service (nor
                        collector) subscribed to, so delivered nowhere */
  uint64_t errors;   /* handler errors */
  uint64_t dropped;  /* messages lost from its mailbox, all reasons */
  uint64_t dropped_oldest, dropped_newest, rejected;
  uint64_t too_large; /* over its mailbox's max_message_bytes */
  uint32_t queue_depth, queue_capacity;
  uint64_t queue_bytes, queue_max_bytes; /* payload bytes queued, bound */
  uint64_t memory_bytes; /* Lua heap */
  /* Supervision (docs/SUPERVISION.md). */
  const char *restart;   /* "permanent", "transient" or "temporary" */
  const char *group;     /* supervisor group, or NULL */
  uint64_t restarts;     /* instances started again after a termination */
  uint64_t timeouts;     /* handlers reported past their time budget */
  uint64_t reloads;      /* successful hot reloads */
  uint64_t reload_failures; /* refused reloads (load, compile or init) */
  uint64_t rollbacks;    /* reloads undone by the probation */
  uint64_t memory_limit; /* bytes; 0: none */
  uint64_t memory_peak;  /* of the current instance */
  uint32_t version;      /* code version: 1, then +1 per reload */
  char running[128];     /* what runs now ("handler swaps.raw", "init",
                            "timer"...), "" when idle */
  double running_ms;     /* how long it has run (measured by the
                            watchdog, which runs when a handler budget or
                            a control channel is configured; else 0) */
  double last_pause_ms;  /* the last reload's swap: time handling nothing */
  uint64_t requests_dropped; /* requests still waiting for their reply
                                when the instance that sent them ended or
                                was replaced (a restart, a reload) */
  uint64_t replies_late; /* replies that came when nobody waited for them:
                            after the request's deadline, after the
                            instance that sent it ended, or a second
                            responder's */
  uint64_t logs_suppressed; /* its log records dropped over its log rate
                               (log_rate, log_burst) */
} myc_service_stats;

/* Losses of one service's mailbox for one topic (see
 * myc_engine_service_drops).  'topic' is "(other)" for topics beyond the
 * per-mailbox table (64 topics). */
typedef struct {
  const char *topic;
  uint64_t dropped_oldest, dropped_newest, rejected, shutdown, too_large;
} myc_drop_stats;

/* Fills up to 'max' entries of 'out' with the losses of service 'index'
 * by topic; returns how many were filled, or MYC_ENOENT.  Same threading
 * note as myc_engine_service_stats. */
MYC_EXTERN int myc_engine_service_drops(myc_engine *e, uint32_t index,
                                        myc_drop_stats *out, uint32_t max);

/* Number of services.  Cannot fail. */
MYC_EXTERN uint32_t myc_engine_service_count(myc_engine *e);

/* Copies the counters of service 'index' (0-based) into 'st'.  Returns
 * MYC_ENOENT for an index out of range.  The strings stay valid until the
 * service is removed (myc_engine_kill(), or a spawned service that ended;
 * the indexes of the services after it then move down by one) or the
 * engine is freed.  Threaded engines: counters are read without stopping
 * the workers and may be a moment old. */
MYC_EXTERN int myc_engine_service_stats(myc_engine *e, uint32_t index,
                                        myc_service_stats *st);

/* The engine's metrics in the Prometheus text format 0.0.4
 * (docs/METRICS.md), as the metrics listener serves them, written to
 * 'buf' as snprintf() would: at most cap - 1 bytes and a NUL (when cap >
 * 0).  Returns the length of the whole text (a result >= cap means it
 * was cut: call again with more room), MYC_ENOMEM, or MYC_ESTATE for an
 * engine not made by myc_engine_new().  Any thread; waits for no
 * worker. */
MYC_EXTERN int64_t myc_engine_metrics(myc_engine *e, char *buf, size_t cap);

/* The port the metrics listener is bound to (useful when
 * metrics_listen asked for port 0), or MYC_ESTATE while it is not
 * listening.  Any thread. */
MYC_EXTERN int myc_engine_metrics_port(myc_engine *e);

/* What span export did so far (docs/OBSERVABILITY.md). */
typedef struct {
  uint64_t sampled;  /* spans recorded: handled messages of kept traces */
  uint64_t exported; /* spans the collector accepted */
  uint64_t dropped_queue_full; /* the worker's export queue was full */
  uint64_t dropped_rejected;   /* the collector refused them (4xx) */
  uint64_t dropped_shutdown;   /* unsent when the engine stopped */
  uint64_t posts_ok, posts_failed; /* export requests (failed: retried) */
  uint64_t queued;   /* waiting: in the queues and being retried */
} myc_trace_stats;

/* Fills 'st'.  Returns 0, or MYC_ESTATE when the engine exports no spans.
 * Any thread. */
MYC_EXTERN int myc_engine_trace_stats(myc_engine *e, myc_trace_stats *st);

/* Runs the command-line tool 'name' of the Lua runtime (`mycelium trace`
 * runs "trace": docs/OBSERVABILITY.md) with its 'argc' arguments 'argv',
 * printing to stdout and stderr.  Returns its exit status (0 success, 1
 * failure, 2 bad arguments). */
MYC_EXTERN int myc_command(const char *name, int argc, char **argv);

/* ===================================================================== */
/* Contracts                                                              */
/* ===================================================================== */

/* Message types declared in contracts.yaml (docs/CONTRACTS.md): loaded,
 * validated and laid out here, so a C publisher can fill a typed payload
 * (packed little-endian, 'offset'/'size' per field) and C and Lua agree on
 * every byte.  A set is immutable once loaded: any thread may read it
 * while its owner keeps it alive.
 */
/* A loaded contracts file: its schema, message types and diagnostics. */
typedef struct myc_contract_set myc_contract_set;
/* One message type of a set; valid as long as the set is. */
typedef struct myc_contract_type myc_contract_type;

/* Field kinds, with the canonical spelling used in contracts.yaml. */
#define MYC_FIELD_KIND_MAP(XX)                                                \
  XX(U8, 1, "u8", 1)                                                         \
  XX(U16, 2, "u16", 2)                                                       \
  XX(U32, 3, "u32", 4)                                                       \
  XX(U64, 4, "u64", 8)                                                       \
  XX(I8, 5, "i8", 1)                                                         \
  XX(I16, 6, "i16", 2)                                                       \
  XX(I32, 7, "i32", 4)                                                       \
  XX(I64, 8, "i64", 8)                                                       \
  XX(F32, 9, "f32", 4)                                                       \
  XX(F64, 10, "f64", 8)                                                      \
  XX(BOOL, 11, "bool", 1)                                                    \
  XX(U256, 12, "U256", 32)                                                   \
  XX(I256, 13, "I256", 32)                                                   \
  XX(ARRAY, 14, "array", 0)                                                  \
  XX(STRING, 15, "String", 0)                                                \
  XX(VEC, 16, "Vec", 0)

typedef enum {
#define XX(name, value, text, size) MYC_FIELD_##name = (value),
  MYC_FIELD_KIND_MAP(XX)
#undef XX
} myc_field_kind;

/* Everything known about one field.  Layout is packed little-endian:
 * 'offset' is from the start of the payload, 'size' its bytes.
 *   scalars, U256, I256: count 1, elem_kind == kind, elem_size == size.
 *   ARRAY [T; N]:  count N elements of elem_kind/elem_size at 'offset'.
 *   STRING:        u16 length, then 'count' (capacity) bytes.
 *   VEC Vec<T>:    u16 length, then 'count' (capacity) elements.
 * An element of kind ARRAY is always [u8; elem_size]. */
typedef struct {
  const char *name;
  const char *type; /* canonical type text, e.g. "[u8; 20]", "Vec<U256>" */
  myc_field_kind kind;
  myc_field_kind elem_kind;
  uint32_t elem_size;
  uint32_t count;
  uint32_t offset;
  uint32_t size;
  int optional; /* 1 when the contract marks it optional (zero = absent) */
  int line;     /* line of its key in the contracts file */
} myc_contract_field;

/* Loads the contracts file at 'path'.  'alloc' may be NULL (realloc/free);
 * every allocation of the set goes through it.
 *
 * Returns 0 with a valid set in '*out'; MYC_ECONTRACT when the file could
 * not be read or has errors, with '*out' holding a set that lists ALL of
 * them (myc_contract_error*) and no types; MYC_ENOMEM or MYC_EINVAL (bad
 * arguments) with '*out' NULL.  The caller frees any non-NULL '*out' with
 * myc_contract_free(). */
MYC_EXTERN int myc_contract_load(myc_contract_set **out, const char *path,
                                 myc_alloc_fn alloc, void *ud);

/* As myc_contract_load(), from 'len' bytes of YAML at 'text'; 'name' is
 * the file name used in messages.  'text' need not be NUL-terminated and
 * is not referenced after the call. */
MYC_EXTERN int myc_contract_load_string(myc_contract_set **out,
                                        const char *name, const char *text,
                                        size_t len, myc_alloc_fn alloc,
                                        void *ud);

/* Frees a set and everything it owns; pointers obtained from it become
 * invalid.  NULL is a no-op.  Cannot fail. */
MYC_EXTERN void myc_contract_free(myc_contract_set *cs);

/* Number of diagnostics; 0 for a good set. */
MYC_EXTERN size_t myc_contract_error_count(const myc_contract_set *cs);

/* Diagnostic 'i' as "file:line: where: what", or NULL if 'i' is out of
 * range.  Owned by the set. */
MYC_EXTERN const char *myc_contract_error(const myc_contract_set *cs,
                                          size_t i);

/* Stable short name of diagnostic 'i' ("duplicate_tag", "unknown_type",
 * ...; docs/CONTRACTS.md lists them), or NULL if out of range. */
MYC_EXTERN const char *myc_contract_error_kind(const myc_contract_set *cs,
                                               size_t i);

/* Line (1-based) of diagnostic 'i', 0 if it has none or is out of range. */
MYC_EXTERN int myc_contract_error_line(const myc_contract_set *cs, size_t i);

/* The schema digest: 64 lowercase hex digits of SHA-256 over the
 * normalised schema (docs/CONTRACTS.md).  "" for a set with errors. */
MYC_EXTERN const char *myc_contract_digest(const myc_contract_set *cs);

/* The schema section: id, version and oldest compatible version. */
MYC_EXTERN uint32_t myc_contract_schema_id(const myc_contract_set *cs);
MYC_EXTERN uint16_t myc_contract_schema_version(const myc_contract_set *cs);
MYC_EXTERN uint16_t myc_contract_min_compatible(const myc_contract_set *cs);

/* Number of message types, and type 'i' in ascending tag order (NULL if
 * out of range). */
MYC_EXTERN size_t myc_contract_type_count(const myc_contract_set *cs);
MYC_EXTERN const myc_contract_type *
myc_contract_type_at(const myc_contract_set *cs, size_t i);

/* The type named 'name' or tagged 'tag', or NULL if there is none. */
MYC_EXTERN const myc_contract_type *
myc_contract_type_by_name(const myc_contract_set *cs, const char *name);
MYC_EXTERN const myc_contract_type *
myc_contract_type_by_tag(const myc_contract_set *cs, uint32_t tag);

/* Properties of a type.  Strings are owned by the set. */
MYC_EXTERN const char *myc_contract_type_name(const myc_contract_type *t);
MYC_EXTERN uint16_t myc_contract_type_tag(const myc_contract_type *t);
MYC_EXTERN size_t myc_contract_type_size(const myc_contract_type *t);
MYC_EXTERN const char *myc_contract_type_domain(const myc_contract_type *t);
/* Per-type digest (64 hex digits): equal on two nodes exactly when the
 * type's name, tag, fields, layout and rules are equal. */
MYC_EXTERN const char *myc_contract_type_digest(const myc_contract_type *t);

/* Fields, in declaration (= layout) order. */
MYC_EXTERN size_t myc_contract_field_count(const myc_contract_type *t);
/* Field 'i', or NULL if out of range. */
MYC_EXTERN const myc_contract_field *
myc_contract_field_at(const myc_contract_type *t, size_t i);
/* Index of the field named 'name', or -1. */
MYC_EXTERN int myc_contract_field_index(const myc_contract_type *t,
                                        const char *name);

/* Checks a filled payload of type 't' against its validation rules (and
 * the length prefixes of String and Vec fields against their capacity).
 * Returns 0, or MYC_ECONTRACT with "Type.field: rule" in 'err' (which may
 * be NULL) for the first violation; MYC_EINVAL if 'len' is not the type's
 * size.  Thread-safe; allocates nothing. */
MYC_EXTERN int myc_contract_validate(const myc_contract_type *t,
                                     const void *payload, size_t len,
                                     char *err, size_t errlen);

/* The file name of a set: the path given to myc_contract_load(), or the
 * 'name' given to myc_contract_load_string().  Owned by the set. */
MYC_EXTERN const char *myc_contract_file(const myc_contract_set *cs);

/* Gives engine 'e' its contract set: Lua services can then make typed
 * messages (ctx:new) and read them (msg.data), and myc_publish() checks
 * MYC_KIND_TYPED payloads against it.  'validate' nonzero checks every
 * typed message against its validation rules when it is emitted (ctx:emit,
 * a publisher, myc_publish); zero skips the rules on that hot path (config
 * `validate = false`) but still refuses unknown tags and wrong sizes.
 *
 * Call it before adding Lua services (each service's Lua state gets the
 * set when it is created), at most once.  On success the engine owns 'cs'
 * and frees it with myc_engine_free(); on error 'cs' still belongs to the
 * caller.  Returns MYC_EINVAL if 'cs' is NULL or has errors, MYC_ESTATE if
 * a Lua service exists or the engine has contracts already. */
MYC_EXTERN int myc_engine_set_contracts(myc_engine *e, myc_contract_set *cs,
                                        int validate);

/* The contract set of 'e' (owned by the engine, valid until it is freed),
 * or NULL if it has none.  Cannot fail. */
MYC_EXTERN const myc_contract_set *myc_engine_contracts(const myc_engine *e);


#ifdef __cplusplus
}
#endif
#endif /* MYCELIUM_H */
