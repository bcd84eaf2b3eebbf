-- feeder.lua -- plays a capture file into the pipeline as raw text lines
-- on bandit.raw, the way the adapter would receive them from a node:
-- as fast as the pipeline takes them, or at opts.rate lines per second,
-- once or opts.loops times (0: forever). Then bandit.end.feeder.
--
-- Invariant: it never outruns a consumer. Before each chunk it looks at
-- the fill of every mailbox downstream (ctx:pressure) and waits while
-- one is above opts.pause_above: a dropped log would change every later
-- signal, so the feeder slows down instead.
--
-- The capture is read whole in init (a local file, read once before any
-- message flows); later loops send lines 2.. again (line 1 is the
-- subscription reply, which a node sends once).
-- The Bandit modules live in services/ (two levels up from here).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
package.path = here .. "/../../services/?.lua;" .. package.path
local wire = require "bandit.wire"

local format, floor, min, type, tostring, ipairs =
  string.format, math.floor, math.min, type, tostring, ipairs
local now_ns = wire.now_ns

local T = wire.TOPICS

local M = {}
local S

local read_lines = require("bandit.capture").read

local function pressure(ctx)
  local worst = 0
  for _, t in ipairs(S.watch) do
    local p = ctx:pressure(t)
    if p > worst then worst = p end
  end
  return worst
end

local function finish(ctx)
  S.done = true
  S.pub_end { service = ctx.name, lines = S.sent, loops = S.loop,
              t0_ns = S.t0, seconds = (now_ns() - S.t0) / 1e9 }
end

-- Sends up to n lines; returns false once the capture is played out.
local function send(n)
  local lines, pub = S.lines, S.pub
  for _ = 1, n do
    if S.pos > #lines then
      S.loop = S.loop + 1
      if S.loops ~= 0 and S.loop >= S.loops then return false end
      S.pos = 2
      if S.pos > #lines then return false end
    end
    pub(lines[S.pos])
    S.pos, S.sent = S.pos + 1, S.sent + 1
  end
  return true
end

local pump

-- As fast as the consumers go: a chunk, then yield the worker (after(0))
-- so the services behind us run; back off 1 ms while they are full.
local function fast(ctx)
  if pressure(ctx) > S.high then return ctx:after(1, pump) end
  if not send(S.chunk) then return finish(ctx) end
  ctx:after(0, pump)
end

-- Paced: every millisecond, what the rate allows since the start.
local function paced(ctx)
  local due = floor((now_ns() - S.t0) / 1e9 * S.rate) - S.sent
  if due > 0 and pressure(ctx) <= S.high then
    if not send(min(due, S.chunk * 16)) then return finish(ctx) end
  end
  ctx:after(1, pump)
end

pump = function(ctx)
  if S.done then return end
  if S.rate then return paced(ctx) end
  return fast(ctx)
end

function M.init(ctx, opts)
  if type(opts.capture) ~= "string" then
    error(format("service '%s': opts.capture (the capture file) is required",
                 ctx.name), 0)
  end
  local lines, err = read_lines(opts.capture)
  if not lines then
    error(format("service '%s': cannot read capture %s: %s", ctx.name,
                 opts.capture, tostring(err)), 0)
  end
  S = {
    lines = lines, pos = 1, sent = 0, loop = 0, loops = opts.loops or 1,
    rate = opts.rate, chunk = opts.chunk or 256, done = false,
    high = opts.pause_above or 0.5,
    watch = opts.watch or { T.raw, T.log_state, T.enriched_state, T.applied },
    pub = ctx:publisher(opts.topic or T.raw),
    pub_end = ctx:publisher(T.end_feeder),
  }
  ctx:after(opts.start_after_ms or 0, function(c)
    S.t0 = now_ns()
    pump(c)
  end)
end

--- Warm-up (docs/API.md, Warm-up): the send loop and the pressure check
--- compiled before the first line, as the services' handlers are. The
--- feeder shares a worker with them, so its first ticks, interpreted and
--- recording traces, would hold the first logs behind them. The engine
--- drops what it publishes meanwhile; the play position is put back.
function M.warmup(ctx)
  local pos, sent, loop, loops = S.pos, S.sent, S.loop, S.loops
  S.loops = 0
  local ok, err = pcall(function()
    -- A paced tick's worth of lines per round, as at 10 000 events/s.
    for _ = 1, 300 do
      pressure(ctx)
      send(12)
    end
  end)
  S.pos, S.sent, S.loop, S.loops = pos, sent, loop, loops
  if not ok then error(err, 0) end
end

return M
