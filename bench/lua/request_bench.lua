-- request_bench: the services of the request scenario (bench/request.c),
-- by opts.role:
--   "requester": opts.outstanding coroutines, each sending requests on
--     bench.req one after the other until opts.n replies came back in all;
--     reports "p50_ns p99_ns req_per_s" on bench.result.request.
--   "responder": answers every bench.req with its data.
--   "pinger"/"ponger": the baseline, the same round trip with ctx:emit
--     (bench.ping -> bench.pong), reported on bench.result.ping.
-- Round trips are timed with CLOCK_MONOTONIC in ns (ctx:now() is a
-- float of epoch seconds, too coarse for a microsecond).  The timespec
-- is read as 32-bit halves (x86-64, little-endian: the low half first;
-- monotonic seconds fit in 32 bits): a 64-bit field read boxes a cdata
-- in the interpreter, where a requester's coroutine runs, and the
-- timing would cost more than what it times.
-- clock_gettime may already be declared in this Lua state with another
-- struct (MYC_JIT_LOG's log declares it), so it is called through a
-- pointer of this file's own type.
local ffi = require "ffi"
ffi.cdef "struct bench_ts { uint32_t sec, sec_hi, nsec, nsec_hi; };"
if not pcall(function() return ffi.C.clock_gettime end) then
  ffi.cdef "int clock_gettime(int, void *);"
end
local gettime = ffi.cast("int (*)(int, struct bench_ts *)", ffi.C.clock_gettime)
local ts = ffi.new("struct bench_ts")
local function now_ns()
  gettime(1, ts)
  return ts.sec * 1e9 + ts.nsec
end

local M = {}
local role, n, warmup
local rtts, done, t_first = {}, 0, nil
local payload = string.rep("x", 16)

local function report(ctx, topic, secs)
  table.sort(rtts)
  local p50 = rtts[math.max(1, math.ceil(#rtts * 0.5))]
  local p99 = rtts[math.max(1, math.ceil(#rtts * 0.99))]
  ctx:emit(topic, string.format("%.1f %.1f %.1f", p50, p99, #rtts / secs))
end

local function record(ctx, rtt, topic)
  done = done + 1
  if done == warmup then t_first = now_ns() end
  if done > warmup then rtts[#rtts + 1] = rtt end
  if done == warmup + n then
    report(ctx, topic, (now_ns() - t_first) / 1e9)
  end
end

local OPTS = { timeout_ms = 10000 }
local function requester(ctx)
  while done < warmup + n do
    local t0 = now_ns()
    local r, why = ctx:request("bench.req", payload, OPTS)
    if r == nil then error("request failed: " .. tostring(why)) end
    record(ctx, now_ns() - t0, "bench.result.request")
  end
end

local t0
local function ping(ctx)
  t0 = now_ns()
  ctx:emit("bench.ping", payload)
end

function M.init(ctx, opts)
  role, n, warmup = opts.role, opts.n, opts.warmup
  if role == "requester" then
    -- Started from a message, not from init: init runs with the JIT off.
    ctx:subscribe("bench.start")
    ctx:emit("bench.start", "")
  elseif role == "responder" then
    ctx:subscribe("bench.req")
  elseif role == "pinger" then
    ctx:subscribe("bench.pong")
    ctx:subscribe("bench.start")
    ctx:emit("bench.start", "")
  else
    ctx:subscribe("bench.ping")
  end
end

function M.on_message(ctx, msg)
  local t = msg.topic
  if t == "bench.req" then
    ctx:reply(msg, msg.data)
  elseif t == "bench.ping" then
    ctx:emit("bench.pong", msg.data)
  elseif t == "bench.pong" then
    record(ctx, now_ns() - t0, "bench.result.ping")
    if done < warmup + n then ping(ctx) end
  elseif role == "requester" then
    for _ = 1, ctx.opts.outstanding do
      ctx:fork(requester, ctx)
    end
  else
    ping(ctx)
  end
end

return M
