-- pipeline.lua -- the whole Bandit decision for a stream of websocket
-- messages, in one Lua state: classify (abi), retract or apply (detector),
-- record (report). It is the reference the engine services must match.
--
-- Invariant: every message fed is exactly one of: the subscription reply
-- (line 1 when no id was given), an accepted event, or a skipped line with
-- its reason; a skipped line changes no state and evaluates nothing.
local abi = require "bandit.abi"
local detector = require "bandit.detector"
local report = require "bandit.report"

local setmetatable, type, error, ipairs = setmetatable, type, error, ipairs

local M = {}
local Pipeline = {}
Pipeline.__index = Pipeline

--- A pipeline over `registry`. opts.subscription: the subscription id when
--- known (then every message is a notification); otherwise the first
--- message is the eth_subscribe reply. opts.reorg_window: see detector.
--- opts.keep_events = false drops accepted events once applied (benchmarks).
function M.new(registry, opts)
  if type(registry) ~= "table" or not registry.pool then
    error("bandit.pipeline.new: registry expected", 2)
  end
  opts = opts or {}
  return setmetatable({
    reg = registry,
    det = detector.new(registry, { reorg_window = opts.reorg_window }),
    sub_id = opts.subscription, expect_reply = opts.subscription == nil,
    keep_events = opts.keep_events ~= false,
    lines = 0, events = {}, skipped = {}, signals = {},
    n_events = 0, n_retracted = 0, n_skipped = 0,
    by_kind = {}, by_reason = {}, by_pair = {}, by_trigger = {},
  }, Pipeline)
end

local function bump(t, k) t[k] = (t[k] or 0) + 1 end

local function skip(self, line, reason, retracts_line)
  self.n_skipped = self.n_skipped + 1
  bump(self.by_reason, reason)
  self.skipped[#self.skipped + 1] = report.skipped(line, reason, retracts_line)
  return "skipped", reason
end

local function signal(self, sig, line, trigger, ev)
  bump(self.by_pair, sig.buy.pair)
  bump(self.by_trigger, trigger)
  self.signals[#self.signals + 1] = report.signal(sig, {
    line = line, trigger = trigger, block = ev.block, logIndex = ev.logIndex,
  })
end

local function accept(self, line, ev)
  ev.line = line
  self.n_events = self.n_events + 1
  bump(self.by_kind, ev.kind)
  if self.keep_events then self.events[#self.events + 1] = ev end
  local _, sig = self.det:accept(ev)
  if sig then signal(self, sig, line, "event", ev) end
  return "event", ev
end

-- Rule 3: a removed log retracts the accepted log with its identity.
local function removal(self, line, view)
  local bh, th, li = abi.log_key(view)
  local ev = bh and self.det:find(bh, th, li)
  if not ev then return skip(self, line, "removed_unmatched") end
  ev.retracted_by_line = line
  self.n_retracted = self.n_retracted + 1
  skip(self, line, "retraction", ev.line)
  local _, sig = self.det:retract(ev)
  if sig then signal(self, sig, line, "retraction", ev) end
  return "skipped", "retraction"
end

--- Process one message. Returns "subscription", "event" (and the event)
--- or "skipped" (and the reason).
function Pipeline:feed(text)
  self.lines = self.lines + 1
  if self.expect_reply and self.lines == 1 then
    self.sub_id = abi.subscription_reply(text)
    return "subscription"
  end
  local view, reason = abi.envelope(text, self.sub_id)
  if not view then return skip(self, self.lines, reason) end
  if view.removed == true then return removal(self, self.lines, view) end
  local ev
  ev, reason = abi.decode(view, self.reg)
  if not ev then return skip(self, self.lines, reason) end
  return accept(self, self.lines, ev)
end

--- Event records as of now (retractions seen so far are reflected).
function Pipeline:event_records()
  local out = {}
  for i, ev in ipairs(self.events) do out[i] = report.event(ev) end
  return out
end

--- The summary object (report.summary) as of now.
function Pipeline:summary()
  local states = {}
  for i, pool in ipairs(self.reg.pools) do
    local ev, price = self.det:state(pool)
    states[i] = { pool = pool, ev = ev, price = price }
  end
  return report.summary {
    lines = self.lines, subscription_id = self.sub_id,
    events_accepted = self.n_events, events_by_kind = self.by_kind,
    events_retracted = self.n_retracted,
    skipped = self.n_skipped, skipped_by_reason = self.by_reason,
    evaluations = self.det.evaluations, signals = #self.signals,
    signals_by_pair = self.by_pair, signals_by_trigger = self.by_trigger,
    pool_states = states,
  }
end

return M
