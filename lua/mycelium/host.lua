-- mycelium.host -- runs one service inside its own Lua state: loads the
-- module, checks its shape, builds ctx and msg, and gives the engine the
-- entry points it calls (dispatch, timer, init, stop).
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.defer_check() -- once per engine: M.new
local core = require "mycelium.core"
local core_call = core.call
local ctxmod = require "mycelium.ctx"
local msgmod = require "mycelium.msg"
local topic = require "mycelium.topic"
local events = require "mycelium.events"

local C = cdefs.library()
local type, pairs, ipairs, error, format = type, pairs, ipairs, error, string.format
local tostring, loadstring, xpcall = tostring, loadstring, xpcall

local M = {}

-- The engine runs a module's top level and its init with the JIT off, so
-- that the load budget's hook reaches every loop: LuaJIT runs hooks in
-- its interpreter only (docs/SUPERVISION.md).  What that code asks of
-- the JIT as a whole (jit.on() or jit.off() without arguments) is kept
-- and applied once init returns; calls about one function pass through.
local jit = require "jit"
local jit_on, jit_off, select = jit.on, jit.off, select
local jit_wanted = true
jit.on = function(...)
  if select("#", ...) > 0 then return jit_on(...) end
  jit_wanted = true
end
jit.off = function(...)
  if select("#", ...) > 0 then return jit_off(...) end
  jit_wanted = false
end
local function jit_start()
  jit.on, jit.off = jit_on, jit_off
  if jit_wanted then jit_on() end
end

-- Two things plain Lua can do to the whole process, and so to every other
-- service in it: end it (os.exit), or change its C locale, which every
-- thread's number formatting reads (metrics and JSON logs would carry
-- "1,5" for "1.5").  In a service both are errors that say what to use.
local setlocale = os.setlocale
os.exit = function()
  error("os.exit would end the whole engine and every service in it: "
        .. "ctx:exit([reason]) ends this service, ctx:shutdown(code) stops "
        .. "the engine", 2)
end
os.setlocale = function(locale, category)
  if locale ~= nil then
    error("os.setlocale would change the locale of the whole engine (the "
          .. "number format of every thread's logs and metrics): a service "
          .. "may only read it, with os.setlocale(nil [, category])", 2)
  end
  return setlocale(nil, category or "all")
end

local function check_module(mod, path)
  if type(mod) ~= "table" then
    error(format("%s must return a table (the service module), got %s",
                 path, type(mod)), 0)
  end
  local h, om = mod.handlers, mod.on_message
  if om ~= nil and type(om) ~= "function" then
    error(format("%s: on_message must be a function, got %s", path, type(om)), 0)
  end
  if h ~= nil then
    if type(h) ~= "table" then
      error(format("%s: handlers must be a table of functions, got %s",
                   path, type(h)), 0)
    end
    for k, fn in pairs(h) do
      if type(k) ~= "string" or type(fn) ~= "function" then
        error(format("%s: handlers[%s] must be a function keyed by topic",
                     path, tostring(k)), 0)
      end
    end
  end
  for _, f in ipairs { "init", "stop", "snapshot", "warmup" } do
    if mod[f] ~= nil and type(mod[f]) ~= "function" then
      error(format("%s: %s must be a function, got %s", path, f,
                   type(mod[f])), 0)
    end
  end
  local s = mod.subscribe
  if s ~= nil and type(s) ~= "table" and type(s) ~= "string" then
    error(format("%s: subscribe must be a list of topics, got %s", path,
                 type(s)), 0)
  end
  if om == nil and h == nil and mod.init == nil then
    error(format("%s: the module has no handler: define on_message, "
                 .. "handlers or (for a pure source) init", path), 0)
  end
end

-- Subscriptions: the 'subscribe' list plus every handlers key.
local function subscriptions(mod)
  local list, seen = {}, {}
  local s = mod.subscribe
  if type(s) == "string" then s = { s } end
  for _, t in ipairs(s or {}) do
    if not seen[t] then list[#list + 1], seen[t] = t, true end
  end
  local keys = {}
  for k in pairs(mod.handlers or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, t in ipairs(keys) do
    if not seen[t] then list[#list + 1], seen[t] = t, true end
  end
  return list
end

-- Picks the handler of a topic: handlers[topic], else the longest
-- matching pattern key, else on_message.
local function handler_resolver(mod)
  local h, om = mod.handlers, mod.on_message
  return function(name)
    if h ~= nil then
      local fn = h[name]
      if fn ~= nil then return fn end
      local best
      for pat, f in pairs(h) do
        if topic.is_pattern(pat) and topic.match(pat, name)
            and (best == nil or #pat > #best) then
          best, fn = pat, f
        end
      end
      if fn ~= nil then return fn end
    end
    return om
  end
end

-- Compiles 'source' (the engine read it from 'path', and keeps it for
-- restarts and rollbacks) with the path as chunk name, so errors read
-- "path:line: ...".
local function load_module(path, source)
  local chunk, err = loadstring(source, "@" .. path)
  if chunk == nil then
    error(err, 0)
  end
  local ok, mod = xpcall(chunk, debug.traceback)
  if not ok then
    error(format("error while loading %s: %s", path, tostring(mod)), 0)
  end
  check_module(mod, path)
  return mod
end

-- The runtime's own files are not the service's: a change to them needs
-- a new engine, not a reload.
local RUNTIME = (debug.getinfo(1, "S").source:match("^@(.*/)mycelium/host%.lua$"))

-- Records every Lua file 'svc' requires from now on, so that SIGHUP and
-- reload = "watch" see a change in a module as in the service's file.
-- Every searcher after package.preload is wrapped, not only Lua's own:
-- the engine puts the searcher of its precompiled runtime modules before
-- it, so Lua's file searcher has no fixed index.
local function record_requires(svc)
  local loaders, searchpath = package.loaders, package.searchpath
  for i = 2, #loaders do
    local searcher = loaders[i]
    loaders[i] = function(modname)
      local found = searcher(modname)
      if type(found) == "function" then
        local file = searchpath(modname, package.path)
        if file ~= nil and (RUNTIME == nil or file:sub(1, #RUNTIME) ~= RUNTIME) then
          C.myc_ffi_depend(svc, file, #file)
        end
      end
      return found
    end
  end
end

function M.new(lud, info)
  local svc = ffi.cast("myc_service *", lud)
  local view = ffi.cast("myc_svc_view *", lud)
  cdefs.check_once(svc)
  local name = info.name
  events.set_service(svc)
  -- MYC_JIT_LOG=dir: this service's trace events (as LuaJIT's -jv prints
  -- them: traces compiled, every abort with its reason and place, each
  -- with its time) are appended to dir/<service>.jitv, to find what
  -- keeps a handler from compiling (docs/TUNING.md).
  local jitlog = os.getenv("MYC_JIT_LOG")
  if jitlog and jitlog ~= "" then
    require("mycelium.jitlog").start(jitlog .. "/" .. name .. ".jitv")
  end
  -- MYC_JIT_PROFILE=dir: LuaJIT's sampling profiler in the service named
  -- by MYC_JIT_PROFILE_SERVICE (one per process), its samples by function
  -- and line written to dir/<service>.prof when the state closes.
  local jitprof = os.getenv("MYC_JIT_PROFILE")
  if jitprof and jitprof ~= "" and
     os.getenv("MYC_JIT_PROFILE_SERVICE") == name then
    require("mycelium.jitprofile").start(jitprof .. "/" .. name .. ".prof",
      tonumber(os.getenv("MYC_JIT_PROFILE_MS") or "") or 1)
  end
  record_requires(svc)
  local mod = load_module(info.module, info.source)
  local opts = {}
  if info.opts ~= nil then
    opts = core.unpack(info.opts)
  end

  -- The engine's contract set (immutable, freed after every service).
  local typed
  if info.contracts ~= nil then
    local set = require("mycelium.contract").wrap(info.contracts)
    typed = set:engine_support { svc = svc, view = view, service = name,
                                 validate = info.validate }
  end
  local flush = typed and typed.flush or function() end

  local resolve = handler_resolver(mod)
  local function has_handler(p)
    return resolve(p) ~= nil
  end
  local ctx = ctxmod.new(svc, name, opts, has_handler, typed, view)
  ctx._stage({})
  for _, t in ipairs(subscriptions(mod)) do
    -- The list is the module's: an error names its file, not this one.
    local ok, err = pcall(ctx.subscribe, ctx, t)
    if not ok then
      error(format("%s: %s", info.module,
                   tostring(err):gsub("^[^\n]-host%.lua:%d+: ", "")), 0)
    end
  end

  local env
  env = {
    -- mycelium.msgpack, loaded with the first table payload read.
    unpack = function(p, n)
      env.unpack = require("mycelium.msgpack").decode
      return env.unpack(p, n)
    end,
    type_name = typed and typed.type_name
        or function(tag) return "type:" .. tag end,
    typed = typed and typed.typed
        or function(_, p, n) return ffi.string(p, n) end,
  }
  local function keep(b)
    C.myc_ffi_buf_ref(b)
    return ffi.gc(ffi.cast("myc_buf *", b), function(x)
      C.myc_ffi_buf_release(svc, x)
    end)
  end
  local next_msg, new_batch, R = msgmod.current(view, env, keep)

  -- A topic a reload stopped handling can still have messages queued:
  -- they go to "$dead" without ending the instance.
  local function unhandled()
    C.myc_ffi_unhandled(svc)
  end

  -- Replies come on "$reply", to this service alone.
  local on_reply = ctx._on_reply
  local function reply(_, m)
    on_reply(m)
  end

  local by_topic = {} -- topic id -> handler
  local function handler_for(b)
    local id = b.topic_id
    local t = R.topic(b)
    local fn = t == "$reply" and reply or resolve(t) or unhandled
    by_topic[id] = fn
    return fn
  end

  -- mycelium.testing's injected fault: the batch's first message fails
  -- as if its handler had raised.
  local function fault(first)
    view.faults = view.faults - 1
    view.cursor = first
    error("injected fault", 0)
  end

  -- Every activation starts with flush(): messages made with ctx:new
  -- that the previous one did not emit become garbage-collected.
  -- A batch holding a sampled message (engine/src/runtime/span.h): the
  -- engine clock at each handler's end, for the messages' spans.
  local clock_ns = C.myc_ffi_clock_ns
  local function traced(first, n, marks)
    local batch = view.batch
    for i = first, n - 1 do
      view.cursor = i
      local b = batch[i]
      local fn = by_topic[b.topic_id] or handler_for(b)
      fn(ctx, next_msg())
      marks[i] = clock_ns(svc)
    end
  end

  local function dispatch(first, n)
    flush()
    new_batch()
    if view.faults > 0 then fault(first) end
    local marks = view.marks
    if marks ~= nil then
      traced(first, n, marks)
    else
      local batch = view.batch
      for i = first, n - 1 do
        view.cursor = i
        local b = batch[i]
        local fn = by_topic[b.topic_id] or handler_for(b)
        fn(ctx, next_msg())
      end
    end
    view.cursor = -1
    new_batch()
  end

  -- The module's warmup(ctx, warm), once init returned (the JIT is on):
  -- warm:deliver(topic, value) hands value to the handler of topic as a
  -- message from the engine would come (the same dispatch loop, the same
  -- msg views), so that the traces LuaJIT records then serve the real
  -- messages.  The engine drops what the service emits meanwhile
  -- (engine/src/runtime/warm.c) and bounds its time.
  local warm_batch = ffi.new("myc_buf *[1]")
  local warm_counts = ffi.new("double[2]")
  local function deliver(_, t, value)
    if type(t) ~= "string" or resolve(t) == nil then
      error(format("warm-up: service '%s' has no handler for topic %s", name,
                   tostring(t)), 2)
    end
    -- What an earlier deliver whose emit raised left kept.
    local stale = C.myc_ffi_warm_frame(svc)
    if stale ~= nil then C.myc_ffi_buf_release(svc, stale) end
    local rc = C.myc_ffi_warm_capture(svc)
    if rc ~= 0 then
      if rc == cdefs.E.ETIMEDOUT then
        error("warm-up: still running after its budget (load_timeout_ms)", 2)
      end
      error("warm-up: deliver is for the module's warmup only", 2)
    end
    local ok, why, code = ctx:emit(t, value)
    local b = C.myc_ffi_warm_frame(svc)
    if b == nil then
      error(format("warm-up: cannot make a message on '%s': %s %s", t,
                   tostring(why), tostring(code or ok)), 2)
    end
    local batch, n, marks, faults = view.batch, view.batch_n, view.marks,
      view.faults
    warm_batch[0] = b
    view.batch, view.batch_n, view.marks, view.faults = warm_batch, 1, nil, 0
    -- From C, as the engine calls dispatch (mycelium.core's call says
    -- why): a pcall here would leave the side traces that return from
    -- the handler to the interpreter for good.
    local done, err = pcall(core_call, dispatch, 0, 1)
    view.batch, view.batch_n, view.marks, view.faults = batch, n, marks, faults
    view.cursor = -1
    warm_batch[0] = nil
    C.myc_ffi_buf_release(svc, b)
    if not done then error(err, 0) end
  end
  local function warmup()
    cdefs.need("service")
    local metrics = package.loaded["mycelium.metrics"]
    local warm = {
      deliver = deliver,
      -- Emits and log records dropped so far.
      dropped = function()
        C.myc_ffi_warm_counts(svc, warm_counts)
        return warm_counts[0], warm_counts[1]
      end,
    }
    local jitlog = package.loaded["mycelium.jitlog"]
    if jitlog then jitlog.mark("warm-up") end
    if metrics then metrics.warm(true) end
    local ok, err = pcall(mod.warmup, ctx, warm)
    -- The warm-up's garbage (megabytes of scratch messages and state)
    -- is freed here, on the loading thread and in the warm-up's time,
    -- rather than swept by the collector's steps in the first seconds
    -- of traffic (docs/TUNING.md, "Warm-up").
    collectgarbage("collect")
    if metrics then metrics.warm(false) end
    if jitlog then jitlog.mark("traffic", true) end
    flush()
    if not ok then error(err, 0) end
  end

  local fire_timer, event = ctx._fire_timer, events.dispatch
  return {
    dispatch = dispatch,
    timer = function(id)
      flush()
      return fire_timer(id)
    end,
    event = function(...)
      flush()
      return event(...)
    end,
    -- 'state': a copy of the previous instance's snapshot, or nil.
    init = function(state)
      flush()
      if mod.init then mod.init(ctx, opts, state) end
      jit_start()
    end,
    -- nil: the engine skips the warm-up.
    warmup = mod.warmup and function()
      flush()
      return warmup()
    end,
    stop = function()
      flush()
      if mod.stop then mod.stop(ctx) end
    end,
    -- The engine copies what it returns into the next instance's state
    -- (engine/src/lua/snapshot.c says what can be carried).
    snapshot = function()
      flush()
      if mod.snapshot == nil then return nil end
      return mod.snapshot(ctx)
    end,
    -- The instance takes over: stop recording subscriptions, return them.
    live = function()
      ctx._live()
      return ctx._stage(nil) or {}
    end,
  }
end

return M
