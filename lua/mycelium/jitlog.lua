-- mycelium.jitlog -- a service's LuaJIT trace events to a file, as
-- `luajit -jv` prints them, each line prefixed with the milliseconds since
-- the log started (aborts during a warm-up and aborts in steady state are
-- told apart) and the microseconds from the recording's start to its end:
-- the time the handler that met a hot path spent recording and compiling
-- it, which a cold start pays between two messages (docs/TUNING.md).
-- Started by the host when MYC_JIT_LOG is set.
local jit = require "jit"
local jutil = require "jit.util"
local vmdef = require "jit.vmdef"
local ffi = require "ffi"

local format, type = string.format, type
local funcinfo, traceinfo = jutil.funcinfo, jutil.traceinfo

-- The declarations mycelium.testing makes too (a second cdef of the same
-- struct fails harmlessly).
pcall(ffi.cdef, [[
struct myc_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct myc_timespec *ts);
]])
local ts = ffi.new("struct myc_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

local function where(func, pc)
  local fi = funcinfo(func, pc)
  if fi.loc then return fi.loc end
  if fi.ffid then return vmdef.ffnames[fi.ffid] end
  return "(?)"
end

local M = {}
local out, t0

--- Appends this state's trace events to `path` until the state closes.
function M.start(path)
  out = assert(io.open(path, "a"))
  t0 = now_ms()
  local startloc, startex, started = "", "", nil
  jit.attach(function(what, tr, func, pc, otr, oex)
    if what == "start" then
      started = now_ms()
      startloc = where(func, pc)
      startex = otr and "(" .. otr .. "/" .. (oex == -1 and "stitch" or oex)
        .. ") " or ""
      return
    end
    local line
    if what == "abort" then
      local err = otr
      if type(err) == "number" then
        if type(oex) == "function" then oex = where(oex) end
        err = format(vmdef.traceerr[err], oex)
      end
      line = format("TRACE --- %s%s -- %s at %s", startex, startloc, err,
                    where(func, pc))
    elseif what == "stop" then
      line = format("TRACE %3s %s%s %s", tr, startex, startloc,
                    traceinfo(tr).linktype)
    else
      line = "TRACE " .. what
    end
    local t = now_ms()
    local took = ""
    if started and what ~= "flush" then took = format(" %.0f us", (t - started) * 1e3) end
    started = nil
    out:write(format("+%.0f ms%s [%s]\n", t - t0, took, line))
    out:flush()
  end, "trace")
end

--- Writes a mark "[MARK label]" (the host marks a warm-up's start and,
--- with `restart`, its end: times after it count from there, the start of
--- real traffic, for scripts/jit-census.sh).
function M.mark(label, restart)
  if not out then return end
  out:write(format("+%.0f ms [MARK %s]\n", now_ms() - t0, label))
  out:flush()
  if restart then t0 = now_ms() end
end

return M
