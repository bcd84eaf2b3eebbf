-- mycelium.ctx -- the ctx object a service receives (docs/API.md, ctx).
--
-- One ctx per service instance.  Its methods are closures over the
-- service's engine handle, so the hot calls (emit, a publisher) are one
-- FFI call with no lookup beyond a cached topic id.
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"

local C = cdefs.library()
-- Kept in upvalues: a function pointer there is a constant of compiled
-- code, called directly as ffi.C's were (read from C on each call, it
-- would be a load and an indirect call).
local ffi_emit = C.myc_ffi_emit
local type, tostring, tonumber, error = type, tostring, tonumber, error
local ipairs, pairs, require, rawget, rawset, setmetatable =
  ipairs, pairs, require, rawget, rawset, setmetatable
local format = string.format
local ffi_string = ffi.string

local KIND_RAW, KIND_TABLE = cdefs.KIND_RAW, cdefs.KIND_TABLE
-- mycelium.msgpack and mycelium.log are loaded when a service first
-- emits a table or logs: a service that does neither (most small ones)
-- keeps its state that much smaller and quicker to make.
local encode
encode = function(value)
  encode = require("mycelium.msgpack").encode
  return encode(value)
end
local strerror, err_name, need = cdefs.strerror, cdefs.err_name, cdefs.need

local M = {}

-- The result of an emit the engine refused: nil, message, error name.  A
-- message too large says how large, for the emitter to look at its size
-- and the subscribers' max_message_bytes.
local function refused(rc, n)
  local code = err_name(rc)
  if code == "ETOOBIG" and n then
    return nil, format("message too large (%d bytes): over the "
                       .. "max_message_bytes of every subscriber", n), code
  end
  return nil, strerror(rc), code
end

-- Creates the ctx of service 'name'.  'svc' is its myc_service*,
-- 'has_handler(t)' tells whether a topic or pattern would reach a
-- handler, and 'typed' is the contract support (Set:engine_support in
-- mycelium.contract), or nil.  Tables are encoded by mycelium.msgpack.
function M.new(svc, name, opts, has_handler, typed, view)
  local ctx = { name = name, opts = opts }
  local topic_ids = {}
  local timers = {}
  local trace_buf = ffi.new("uint8_t[24]")

  local function fail(level, fmt, ...)
    error(format("service '%s': " .. fmt, name, ...), level + 1)
  end

  -- The engine's message for a new topic it refused with ELIMIT: the
  -- service made max_topics_per_service topics, or the table is full.
  local limit_buf
  local function topic_limit(t)
    need("service")
    limit_buf = limit_buf or ffi.new("char[512]")
    C.myc_ffi_topic_limit(svc, t, #t, limit_buf, 512)
    return ffi_string(limit_buf)
  end

  -- 'emitting': the id is for an emit, which a '$' topic refuses (only
  -- the engine publishes there: a service forging '$dead' letters would
  -- mislead whoever watches them).  '$' ids are never cached, so a cached
  -- id is always one a service may emit on.  'soft': a topic the engine
  -- cannot create (ELIMIT) returns nil, its message, "ELIMIT" rather than
  -- raising, as ctx:emit reports what the engine refuses.
  local function topic_id(t, level, emitting, soft)
    local id = topic_ids[t]
    if id ~= nil then
      return id
    end
    if type(t) ~= "string" then
      fail(level + 1, "topic must be a string, got %s", type(t))
    end
    local engine_topic = t:byte(1) == 36 -- '$'
    if engine_topic and emitting then
      fail(level + 1, "emit to '%s': topics starting with '$' are the "
           .. "engine's (a service may subscribe to them, not emit on them)", t)
    end
    local r = C.myc_ffi_topic(svc, t, #t)
    if r < 0 then
      local why = C.myc_ffi_topic_check(t, #t, 0)
      if why ~= nil then
        fail(level + 1, "invalid topic '%s': %s", t, ffi_string(why))
      end
      local code = err_name(tonumber(r))
      if code == "ELIMIT" then
        local why = topic_limit(t)
        if soft then return nil, why, code end
        fail(level + 1, "%s", why)
      end
      fail(level + 1, "topic '%s': %s", t, strerror(tonumber(r)))
    end
    id = tonumber(r)
    if not engine_topic then topic_ids[t] = id end
    return id
  end

  -- Emits 'value' on topic id 'tid'; 'level' points errors at the caller.
  local function emit_value(tid, t, value, level)
    local tv, rc, n = type(value), nil, nil
    if tv == "string" then
      n = #value
      rc = ffi_emit(svc, tid, KIND_RAW, 0, value, n)
    elseif tv == "table" then
      local p
      p, n = encode(value)
      if p == nil then
        fail(level + 1, "emit to '%s': %s", t, n)
      end
      rc = ffi_emit(svc, tid, KIND_TABLE, 0, p, n)
    elseif tv == "cdata" and typed ~= nil then
      rc = typed.emit(tid, value, t, level + 1)
    else
      fail(level + 1, "emit to '%s': cannot emit a %s value (emit a string, "
           .. "a table or a message made with ctx:new)", t, tv)
    end
    if rc == 0 then
      return true
    end
    return refused(rc, n)
  end

  -- No tail calls on these paths: a tail call drops a frame, and the
  -- error levels would point past the caller.
  function ctx.emit(_, t, value)
    local tid, why, code = topic_id(t, 2, true, true)
    if tid == nil then return nil, why, code end
    local ok
    ok, why, code = emit_value(tid, t, value, 2)
    return ok, why, code
  end

  function ctx.publisher(_, t)
    local tid = topic_id(t, 2, true)
    return function(value)
      local tv, rc, n = type(value), nil, nil
      if tv == "string" then
        n = #value
        rc = ffi_emit(svc, tid, KIND_RAW, 0, value, n)
      elseif tv == "table" then
        local p
        p, n = encode(value)
        if p == nil then
          fail(2, "emit to '%s': %s", t, n)
        end
        rc = ffi_emit(svc, tid, KIND_TABLE, 0, p, n)
      elseif tv == "cdata" and typed ~= nil then
        rc = typed.emit(tid, value, t, 2)
      else
        local ok, why, code = emit_value(tid, t, value, 2)
        return ok, why, code
      end
      if rc == 0 then
        return true
      end
      return refused(rc, n)
    end
  end

  -- A message of contract type 'tname' in an engine buffer, filled from
  -- 'init' if given; emitting it hands the buffer over without a copy.
  function ctx.new(_, tname, init)
    if typed == nil then
      fail(2, "ctx:new('%s'): no contracts are loaded (name the contracts "
           .. "file in the config: contracts = \"contracts.yaml\")",
           tostring(tname))
    end
    local m = typed.new(tname, init, 2)
    return m
  end
  ctx.contracts = typed and typed.set

  local function check_pattern(p, what)
    if type(p) ~= "string" then
      fail(3, "%s: topic must be a string, got %s", what, type(p))
    end
    local why = C.myc_ffi_topic_check(p, #p, 1)
    if why ~= nil then
      fail(3, "%s: invalid topic '%s': %s", what, p, ffi_string(why))
    end
  end

  -- While an instance is being prepared (a reload or restart builds it
  -- beside the running one), its subscriptions are only recorded; the
  -- engine applies the list when the instance takes over.
  -- 'at' maps each recorded pattern to its place: a module may list
  -- thousands, and a scan per pattern made loading them quadratic.
  local staged, at

  -- Starts recording (with a list) or stops (nil); returns the list that
  -- was being recorded.
  function ctx._stage(list)
    local was = staged
    staged, at = list, {}
    for i, p in ipairs(list or {}) do at[p] = i end
    return was
  end

  local function stage(p, on)
    local i = at[p]
    if on then
      if i == nil then
        staged[#staged + 1] = p
        at[p] = #staged
      end
    elseif i ~= nil then
      table.remove(staged, i)
      at[p] = nil
      for k = i, #staged do at[staged[k]] = k end
    end
    return true
  end

  function ctx.subscribe(_, p)
    check_pattern(p, "subscribe")
    if not has_handler(p) then
      fail(2, "subscribe '%s': no handler for it (define on_message or "
           .. "handlers['%s'])", p, p)
    end
    if staged then return stage(p, true) end
    local rc = C.myc_ffi_subscribe(svc, p, #p)
    if err_name(rc) == "ELIMIT" then
      fail(2, "subscribe '%s': it holds max_subscriptions_per_service "
           .. "patterns already (unsubscribe some, or raise "
           .. "max_subscriptions_per_service in the config)", p)
    elseif rc ~= 0 then
      fail(2, "subscribe '%s': %s", p, strerror(rc))
    end
    return true
  end

  function ctx.unsubscribe(_, p)
    check_pattern(p, "unsubscribe")
    if staged then return stage(p, false) end
    local rc = C.myc_ffi_unsubscribe(svc, p, #p)
    if rc ~= 0 then
      fail(2, "unsubscribe '%s': %s", p, strerror(rc))
    end
    return true
  end

  -- The engine's bound (MYC_MAX_MS, about 31 years): math.huge or 1e13
  -- used to overflow the deadline and fire at once.
  local MAX_MS = 1e12

  -- A timer's handle.  Its cancel() is made on first use: a closure made
  -- per timer is bytecode LuaJIT cannot compile (FNEW), and a service
  -- re-arming ctx:after in its hot path would abort every trace there.
  local timer_handle = {
    __index = function(h, k)
      if k ~= "cancel" then return nil end
      local id = rawget(h, "_id")
      local cancel = function() timers[id] = nil end
      rawset(h, "cancel", cancel)
      return cancel
    end,
  }

  local function start_timer(ms, fn, every, what)
    if type(ms) ~= "number" or ms ~= ms or ms < 0 or (every and ms == 0)
        or ms > MAX_MS then
      fail(3, "%s: interval must be a %s number of milliseconds up to %g, "
           .. "got %s", what, every and "positive" or "non-negative", MAX_MS,
           tostring(ms))
    end
    if type(fn) ~= "function" then
      fail(3, "%s: callback must be a function, got %s", what, type(fn))
    end
    local id = tonumber(C.myc_ffi_timer(svc, ms, every and ms or 0))
    if id < 0 then
      fail(3, "%s: %s", what, strerror(id))
    end
    timers[id] = { fn = fn, every = every }
    return setmetatable({ _id = id }, timer_handle)
  end

  function ctx.after(_, ms, fn) return start_timer(ms, fn, false, "after") end
  function ctx.every(_, ms, fn) return start_timer(ms, fn, true, "every") end

  -- Called by the engine when timer 'id' is due; returns whether a
  -- repeating timer is still wanted.
  function ctx._fire_timer(id)
    local t = timers[id]
    if t == nil then
      return false
    end
    if not t.every then
      timers[id] = nil
    end
    t.fn(ctx)
    return t.every and timers[id] ~= nil
  end

  local function trace(off, n)
    C.myc_ffi_trace(svc, trace_buf)
    local hexbuf = ffi.new("char[32]")
    C.myc_ffi_hex(hexbuf, trace_buf + off, n)
    return ffi_string(hexbuf, 2 * n)
  end

  function ctx.trace_id() return trace(0, 16) end
  function ctx.span_id() return trace(16, 8) end
  function ctx.now() return C.myc_ffi_now(svc) end
  -- These declare the "service" section of mycelium.cdefs on first use.
  function ctx.queue_depth()
    need("service")
    return C.myc_ffi_queue_depth(svc)
  end
  function ctx.queue_capacity()
    need("service")
    return C.myc_ffi_queue_capacity(svc)
  end
  function ctx.backpressure_threshold_exceeded()
    need("service")
    return C.myc_ffi_over_threshold(svc) ~= 0
  end

  -- Highest fill ratio (0..1) of the mailboxes subscribed to 'topic': an
  -- ingress service pauses its source above some level instead of
  -- flooding consumers into dropping.
  function ctx.pressure(_, t)
    need("service")
    return C.myc_ffi_pressure(svc, topic_id(t, 2))
  end

  local stats_buf
  local STAT_FIELDS = { "in", "out", "unrouted", "errors", "dropped", "dropped_oldest",
                        "dropped_newest", "rejected", "too_large",
                        "queue_bytes", "queue_max_bytes", "memory_bytes",
                        "restarts", "timeouts", "reloads", "reload_failures",
                        "rollbacks", "memory_limit", "memory_peak",
                        "running_ms", "last_pause_ms", "requests_dropped",
                        "replies_late", "logs_suppressed" }

  -- Counters of service 'who' (default: this one), for monitors and
  -- dashboards; nil for an unknown name.  Read without stopping anyone,
  -- so a moment old for services on other workers.
  function ctx.service_stats(_, who)
    who = who or name
    need("service")
    stats_buf = stats_buf or ffi.new("myc_service_stats")
    if C.myc_ffi_stats(svc, who, #who, stats_buf) ~= 0 then
      return nil
    end
    local t = { name = who, worker = stats_buf.worker,
                state = ffi_string(stats_buf.state),
                queue_depth = stats_buf.queue_depth,
                queue_capacity = stats_buf.queue_capacity,
                version = stats_buf.version,
                running = ffi_string(stats_buf.running) }
    for _, k in ipairs(STAT_FIELDS) do
      t[k] = tonumber(stats_buf[k])
    end
    return t
  end

  -- Ends this instance after the current handler: normally (no reason,
  -- or "normal"), or with a reason, which the restart type treats as a
  -- crash (docs/SUPERVISION.md).
  function ctx.exit(_, reason)
    if reason ~= nil and type(reason) ~= "string" then
      fail(2, "exit: reason must be a string, got %s", type(reason))
    end
    local normal = reason == nil or reason == "normal"
    C.myc_ffi_exit(svc, normal and 1 or 2)
    error(format("service '%s' exited%s", name,
                 normal and "" or ": " .. reason), 0)
  end

  -- Services at run time (docs/API.md, Spawning services): the options a
  -- config gives a service, and how each goes to C.
  local RESTARTS = { permanent = 0, transient = 1, temporary = 2 }
  local SPAWN_KEYS = { opts = "table", worker = "number", restart = "string",
                       memory_limit_mb = "number", handler_timeout_ms = "number",
                       load_timeout_ms = "number" }
  local spawn_err
  local function bad_opts(fmt, ...)
    return nil, format("spawn: bad opts: " .. fmt, ...), "EINVAL"
  end

  -- Adds service 'who' running 'module' to the engine: its name, or nil,
  -- message, code (EEXIST, ELUA, EINVAL, ESTOPPED...).
  function ctx.spawn(_, who, module, o)
    if type(who) ~= "string" then
      fail(2, "spawn: name must be a string, got %s", type(who))
    end
    if type(module) ~= "string" then
      fail(2, "spawn: module must be a string (a file path), got %s",
           type(module))
    end
    o = o or {}
    if type(o) ~= "table" then
      return bad_opts("a table expected, got %s", type(o))
    end
    for k, v in pairs(o) do
      local want = SPAWN_KEYS[k]
      if want == nil then
        return bad_opts("unknown key '%s' (known: opts, worker, restart, "
                        .. "memory_limit_mb, handler_timeout_ms, "
                        .. "load_timeout_ms)", tostring(k))
      end
      if type(v) ~= want then
        return bad_opts("'%s' must be a %s, got %s", k, want, type(v))
      end
    end
    local restart = RESTARTS[o.restart or "permanent"]
    if restart == nil then
      return bad_opts("restart must be permanent, transient or temporary, "
                      .. "got '%s'", o.restart)
    end
    if o.worker ~= nil and (o.worker % 1 ~= 0 or o.worker < 0) then
      return bad_opts("worker must be an integer >= 0, got %s", o.worker)
    end
    local packed, plen = nil, 0
    if o.opts ~= nil then
      local ok, p, n = pcall(encode, o.opts)
      if not ok then return bad_opts("opts: %s", p) end
      packed, plen = p, n
    end
    need("service")
    spawn_err = spawn_err or ffi.new("char[1024]")
    local rc = C.myc_ffi_spawn(svc, who, module, packed, plen,
                               o.worker or -1, restart, o.memory_limit_mb or 0,
                               o.handler_timeout_ms or 0, o.load_timeout_ms or 0,
                               spawn_err, 1024)
    if rc ~= 0 then
      return nil, ffi_string(spawn_err), err_name(rc)
    end
    return who
  end

  -- Removes service 'who' (docs/API.md): true, or nil, message, code.
  -- Killing itself ends this instance after the current handler too.
  function ctx.kill(_, who)
    if type(who) ~= "string" then
      fail(2, "kill: name must be a string, got %s", type(who))
    end
    need("service")
    spawn_err = spawn_err or ffi.new("char[1024]")
    local rc = C.myc_ffi_kill(svc, who, spawn_err, 1024)
    if rc ~= 0 then
      return nil, ffi_string(spawn_err), err_name(rc)
    end
    if who == name then
      C.myc_ffi_exit(svc, 1)
      error(format("service '%s' killed itself", name), 0)
    end
    return true
  end

  function ctx.shutdown(_, code)
    if code ~= nil and (type(code) ~= "number" or code % 1 ~= 0) then
      fail(2, "shutdown: exit code must be an integer, got %s", tostring(code))
    end
    need("service")
    C.myc_ffi_shutdown(svc, code or 0)
  end

  -- Requests: mycelium.request, made on first use (most services never
  -- send or answer one).
  local req, is_live
  -- Apart from requests(): a closure made in a function keeps the JIT
  -- from compiling it (an upvalue close is not compiled).
  local function make_requests()
    req = require("mycelium.request").new {
      svc = svc, view = view, fail = fail, timers = timers,
      topic_id = topic_id,
      encode = function(v) return encode(v) end,
    }
    if is_live then req.live() end
    return req
  end
  local function requests()
    return req or make_requests()
  end
  function ctx.request(_, t, value, o, cb)
    return requests().request(t, value, o, cb)
  end
  function ctx.reply(_, m, value)
    local ok, why, code = requests().reply(m, value)
    return ok, why, code
  end
  function ctx.fork(_, fn, ...) requests().fork(fn, ...) end
  function ctx.remaining_ms(_, m)
    local r = requests().remaining_ms(m)
    return r
  end
  -- The engine's hooks: the instance takes over; a reply arrived.
  function ctx._live()
    is_live = true
    if req ~= nil then req.live() end
  end
  function ctx._on_reply(m) requests().on_reply(m) end
  function ctx._pending() return req and req.pending() or 0 end

  -- Loaded on first use: most services declare no metrics, and every
  -- state pays for what it requires at load.
  ctx.metrics = setmetatable({}, { __index = function(t, k)
    local m = require("mycelium.metrics").new(svc, name)
    setmetatable(t, nil)
    for mk, mv in pairs(m) do t[mk] = mv end
    return m[k]
  end })
  ctx.node = ffi_string(C.myc_ffi_node(svc))
  -- ctx.log, made on first use.
  return setmetatable(ctx, { __index = function(t, k)
    if k ~= "log" then return nil end
    local l = require("mycelium.log").new(svc, name)
    rawset(t, "log", l)
    return l
  end })
end

return M
