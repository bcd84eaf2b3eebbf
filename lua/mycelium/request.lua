-- mycelium.request -- ctx:request, ctx:reply, ctx:fork (docs/API.md,
-- Request and reply): the requests a service instance waits for, keyed
-- by correlation id, and their deadlines.
--
-- Deadlines are kept in one FIFO per timeout value: requests sent with
-- the same timeout expire in the order sent, so the earliest deadline is
-- always at the front of one of a few queues, and one engine timer, set
-- for the earliest, serves them all.  An answered request leaves its
-- queue when it reaches the front.
local ffi = require "ffi"
local bit = require "bit"
local cdefs = require "mycelium.cdefs"

cdefs.need("service")
local C = cdefs.library()
-- Kept in upvalues: a function pointer there is a constant of compiled
-- code, called directly as ffi.C's were (read from C on each call, it
-- would be a load and an indirect call).
local ffi_request, reply_current, ffi_reply, clock_ns =
  C.myc_ffi_request, C.myc_ffi_reply_current, C.myc_ffi_reply, C.myc_ffi_clock_ns
local E = cdefs.E
local band = bit.band
local type, tonumber, tostring, error, setmetatable, pairs =
  type, tonumber, tostring, error, setmetatable, pairs
local co_create, co_resume, co_yield, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running
local traceback = debug.traceback

local KIND_RAW, KIND_TABLE = cdefs.KIND_RAW, cdefs.KIND_TABLE
local F_REQUEST, F_FAILED, F_NO_RESPONDER = 0x02, 0x08, 0x20
local DEFAULT_MS = 5000
local MAX_MS = 1e12

-- What ctx:request returns (or the callback gets) for an engine refusal.
local REASONS = { ENOENT = "no_responder", EFULL = "full",
                  ETOOBIG = "too_large", ENOMEM = "no_memory" }

local M = { DEFAULT_MS = DEFAULT_MS }

-- Requests wait in coroutines, which the JIT does not follow across a
-- resume: this path mostly runs interpreted, where every 64-bit cdata
-- read allocates.  Hence doubles from C, and entries and reply states
-- reused rather than made per request.
local FREE_MAX = 64

-- The request state of one instance.  'c' gives what ctx has: svc, view,
-- fail(level, fmt, ...), topic_id(t, level, emitting), encode(value),
-- timers (ctx's table of timer callbacks by id).
function M.new(c)
  local svc, view, fail, timers = c.svc, c.view, c.fail, c.timers
  local out, corr = ffi.new("double[2]"), ffi.new("double[1]")
  local pending = {} -- correlation id -> entry
  local queues, qlist = {}, {} -- timeout -> FIFO; the FIFOs
  -- Deadlines are ns after 'base': exact in a double for 104 days.
  local base = clock_ns(svc)
  local armed_id, armed_at
  local ours = setmetatable({}, { __mode = "k" }) -- coroutines of ctx:fork
  -- Until the instance is live (a reload's new instance running its
  -- init), view.requests still counts the old one's.
  local live, early = false, 0
  local free, nfree = {}, 0 -- entries that left their queue, for reuse
  local R = {}

  local function count(d)
    if live then view.requests = view.requests + d else early = early + d end
  end

  function R.live()
    live = true
    view.requests = view.requests + early
    early = 0
  end

  -- An answered entry leaving its queue is referred to by nothing else.
  local function recycle(e)
    if nfree < FREE_MAX then
      e.co, e.cb, e.q = nil, nil, nil
      nfree = nfree + 1
      free[nfree] = e
    end
  end

  local function trim(q)
    local h = q.h
    while h <= q.t and q[h].done do
      recycle(q[h])
      q[h] = nil
      h = h + 1
    end
    if h > q.t then h, q.t = 1, 0 end
    q.h = h
  end

  -- On the hot path: drops at most two answered requests from the front,
  -- without a loop (one of a varying count ends the JIT's trace).  Each
  -- request sent drops up to two, so answered ones cannot pile up; the
  -- sweep drops the rest.
  local function pop_done(q)
    local h = q.h
    if h <= q.t and q[h].done then
      recycle(q[h])
      q[h], h = nil, h + 1
      if h <= q.t and q[h].done then
        recycle(q[h])
        q[h], h = nil, h + 1
      end
      if h > q.t then h, q.t = 1, 0 end
      q.h = h
    end
  end

  local sweep
  -- The closure is made apart from arm(): an upvalue close is not
  -- compiled, and arm() is on every request's path.
  local function set_timer(d)
    local id = tonumber(C.myc_ffi_timer_at(svc, base + d))
    if id < 0 then return end -- out of memory: the next request retries
    armed_id, armed_at = id, d
    timers[id] = { fn = function() sweep(id) end }
  end
  -- Sets the timer for the earliest deadline if none is set before it.
  local function arm(d)
    if armed_at == nil or d < armed_at then set_timer(d) end
  end

  local function complete(e, reply, why, detail)
    -- Read first: pop_done can recycle 'e' itself.
    local co, cb = e.co, e.cb
    e.done = true
    pending[e.corr] = nil
    count(-1)
    pop_done(e.q)
    if co ~= nil then
      local ok, err = co_resume(co, reply, why, detail)
      if not ok then error(traceback(co, tostring(err)), 0) end
    else
      cb(reply, why, detail)
    end
  end

  sweep = function(id)
    if id == armed_id then armed_id, armed_at = nil, nil end
    local now = tonumber(clock_ns(svc) - base)
    for i = 1, #qlist do
      local q = qlist[i]
      trim(q)
      while q.h <= q.t and q[q.h].deadline <= now do
        local e = q[q.h]
        q[q.h], q.h = nil, q.h + 1
        if not e.done then complete(e, nil, "timeout") end
        trim(q)
      end
    end
    local first
    for i = 1, #qlist do
      local q = qlist[i]
      if q.h <= q.t and (first == nil or q[q.h].deadline < first) then
        first = q[q.h].deadline
      end
    end
    if first ~= nil then arm(first) end
  end

  local function payload(value, what, t, level)
    local tv = type(value)
    if tv == "string" then return KIND_RAW, value, #value end
    if tv == "table" then
      local p, n = c.encode(value)
      if p == nil then fail(level + 1, "%s '%s': %s", what, t, n) end
      return KIND_TABLE, p, n
    end
    fail(level + 1, "%s '%s': cannot send a %s value (send a string or a "
         .. "table)", what, t, tv)
  end

  function R.request(t, value, opts, cb)
    if cb == nil and type(opts) == "function" then opts, cb = nil, opts end
    local ms = DEFAULT_MS
    if opts ~= nil then
      if type(opts) ~= "table" then
        fail(3, "request to '%s': options must be a table ({ timeout_ms = "
             .. "... }), got %s", tostring(t), type(opts))
      end
      ms = opts.timeout_ms
      if ms == nil then
        ms = DEFAULT_MS
      elseif type(ms) ~= "number" or not (ms >= 0 and ms <= MAX_MS) then
        fail(3, "request to '%s': timeout_ms must be a number of "
             .. "milliseconds from 0 to %g, got %s", tostring(t), MAX_MS,
             tostring(ms))
      end
    end
    local co
    if cb ~= nil then
      if type(cb) ~= "function" then
        fail(3, "request to '%s': callback must be a function, got %s",
             tostring(t), type(cb))
      end
    else
      co = co_running()
      if co == nil or not ours[co] then
        fail(3, "request to '%s' without a callback outside ctx:fork: wrap "
             .. "the code that waits in ctx:fork(function() ... end), or "
             .. "pass a callback as the last argument", tostring(t))
      end
    end
    local tid = c.topic_id(t, 3, true)
    local kind, p, n = payload(value, "request to", t, 3)
    local rc = ffi_request(svc, tid, kind, 0, p, n, ms, base, out)
    if rc ~= 0 then
      local why = REASONS[cdefs.err_name(rc)] or cdefs.strerror(rc)
      if cb ~= nil then
        cb(nil, why)
        return false
      end
      return nil, why
    end
    local q = queues[ms]
    if q == nil then
      q = { h = 1, t = 0 }
      queues[ms] = q
      qlist[#qlist + 1] = q
    end
    local e
    if nfree > 0 then
      e, free[nfree] = free[nfree], nil
      nfree = nfree - 1
      e.corr, e.deadline, e.co, e.cb, e.done, e.q = out[0], out[1], co, cb,
        false, q
    else
      e = { corr = out[0], deadline = out[1], co = co, cb = cb, done = false,
            q = q }
    end
    pending[e.corr] = e
    count(1)
    pop_done(q)
    q.t = q.t + 1
    q[q.t] = e
    arm(e.deadline)
    if co ~= nil then return co_yield() end
    return true
  end

  -- A reply arrived (topic "$reply"): 'm' its message, being handled.
  function R.on_reply(m)
    local flags = reply_current(svc, corr)
    local e = pending[corr[0]]
    -- Late (timed out), for an instance that ended, or a second
    -- responder's: nobody waits, but it is counted (replies_late).
    if e == nil then
      C.myc_ffi_reply_late(svc)
      return
    end
    if band(flags, F_FAILED) ~= 0 then
      complete(e, nil, "failed", m.data)
    elseif band(flags, F_NO_RESPONDER) ~= 0 then
      -- NATS: no engine of the cluster subscribes the request's subject.
      complete(e, nil, "no_responder")
    else
      complete(e, m)
    end
  end

  function R.reply(m, value)
    if type(m) ~= "table" or type(m._request) ~= "function" then
      fail(3, "reply: the first argument must be the request's msg, got %s",
           type(m))
    end
    local b, rs = m:_request()
    if band(b.hdr.flags, F_REQUEST) == 0 then
      fail(3, "reply: the message on '%s' from '%s' is not a request (only "
           .. "one sent with ctx:request can be answered)", m.topic, m.source)
    end
    if rs.done then
      fail(3, "reply: the request on '%s' from '%s' was already answered "
           .. "(a request gets one reply)", m.topic, m.source)
    end
    local kind, p, n = payload(value, "reply to", m.topic, 3)
    rs.done = true
    local rc = ffi_reply(svc, b, kind, 0, p, n)
    if rc == 0 then return true end
    if rc == E.ENOENT then
      return nil, "the requester is gone", "ENOENT"
    end
    return nil, cdefs.strerror(rc), cdefs.err_name(rc)
  end

  function R.remaining_ms(m)
    if type(m) ~= "table" or type(m._request) ~= "function" then
      fail(3, "remaining_ms: the argument must be a msg, got %s", type(m))
    end
    local r = C.myc_ffi_remaining_ms(svc, (m:_request()))
    if r ~= r then return nil end
    return r
  end

  function R.fork(fn, ...)
    if type(fn) ~= "function" then
      fail(3, "fork: the argument must be a function, got %s", type(fn))
    end
    local co = co_create(fn)
    ours[co] = true
    local ok, err = co_resume(co, ...)
    if not ok then error(traceback(co, tostring(err)), 0) end
  end

  -- For specs and status: requests waiting now.
  function R.pending()
    local n = 0
    for _ in pairs(pending) do n = n + 1 end
    return n
  end

  return R
end

return M
