-- dedup.lua -- which log notifications a node sends again after a
-- reconnect (a restarted node replaying from an older block, a load
-- balancer switching to a node that is behind).
--
-- Invariant: within one connection nothing is a duplicate (README: a log
-- delivered twice is two events, removals retract the newest copy);
-- after a reconnect, a notification is a duplicate iff it repeats, in
-- order, what earlier connections delivered of the same log (identity:
-- blockHash, txHash, logIndex; what: added or removed). Memory is bounded:
-- the newest `size` identities are remembered, older ones forgotten.
local byte, setmetatable, type, assert, tonumber =
  string.byte, setmetatable, type, assert, tonumber

local M = {}

local ADDED, REMOVED = byte("a"), byte("r")

-- A log's history is the string of what was delivered ("a", "ar", ...);
-- a log that flaps without end is remembered up to this many deliveries.
local MAX_HISTORY = 32

local Window = {}
Window.__index = Window

-- Identities sit in a ring of `size` slots, the oldest overwritten
-- first. No key string is built per log: `index` maps a transaction hash
-- (already an interned string) to the slot of its newest log, and each
-- slot links to the slot of the previous log of the same transaction
-- (`prev`), whose block hash and log index are compared. A link is valid
-- while the slot it names still holds that transaction and is older
-- (`stamp`, the order slots were filled in). Per slot also: the log's
-- history (what was delivered: "a", "ar", ...) and how much of it the
-- current connection replayed (`at`, valid when `conn` is the current
-- connection). Only `index` is a hash table; the rest are arrays.

--- A window remembering the newest `size` (>= 1) log identities.
function M.new(size)
  assert(type(size) == "number" and size >= 1 and size % 1 == 0,
         "dedup.new: size must be a whole number >= 1")
  return setmetatable({
    size = size, index = {}, tx = {}, block = {}, log = {}, prev = {},
    stamp = {}, history = {}, at = {}, conn = {}, next = 1, filled = 0,
    n = 0, suppressed = 0, connection = 1,
  }, Window)
end

--- A new connection starts: its notifications are checked against what
--- the earlier ones delivered.
function Window:reconnected()
  self.connection = self.connection + 1
end

-- A transaction's logs are searched this far back: a stream of logs of
-- one transaction (a hostile node) must not make each log cost a walk of
-- the whole window. Real transactions have a few logs of tracked pools.
local MAX_WALK = 64

-- The slot of log (bh, th, li), or nil.
function Window:find(bh, th, li)
  local i = self.index[th]
  local tx, block, log, prev, stamp = self.tx, self.block, self.log,
    self.prev, self.stamp
  for _ = 1, MAX_WALK do
    if not i then return nil end
    if block[i] == bh and log[i] == li then return i end
    local p = prev[i]
    if not p or tx[p] ~= th or stamp[p] > stamp[i] then return nil end
    i = p
  end
  return nil
end

-- Fills the oldest slot with a new identity.
function Window:remember(bh, th, li, what)
  local i = self.next
  local old = self.tx[i]
  if old == nil then
    self.n = self.n + 1
  elseif self.index[old] == i then
    self.index[old] = nil -- the last log of its transaction still here
  end
  self.filled = self.filled + 1
  self.prev[i], self.index[th] = self.index[th], i
  self.tx[i], self.block[i], self.log[i], self.stamp[i] = th, bh, li,
    self.filled
  self.history[i], self.at[i], self.conn[i] = what, 1, self.connection
  self.next = i % self.size + 1
  return i
end

-- Log indexes come as numbers, or decimal strings past 13 hex digits
-- (also when written with leading zeros): one log, one value.
local function log_index(li)
  local n = type(li) == "string" and tonumber(li)
  if n and n <= 2 ^ 53 then return n end
  return li
end

--- Whether the notification of log (bh, th, li) -- removed or added --
--- repeats what an earlier connection delivered. Returns true, id,
--- caught_up (the repeat reached the last delivery known for that log)
--- when it does; otherwise remembers it and returns false, id. `id`
--- names the log while it stays in the window.
function Window:seen(bh, th, li, removed)
  li = log_index(li)
  local i = self:find(bh, th, li)
  if not i then
    i = self:remember(bh, th, li, removed and "r" or "a")
    return false, self.stamp[i]
  end
  local h, now = self.history[i], self.connection
  local done = self.conn[i] == now and self.at[i] or 0
  self.conn[i] = now
  if done < #h and byte(h, done + 1) == (removed and REMOVED or ADDED) then
    self.at[i] = done + 1
    self.suppressed = self.suppressed + 1
    return true, self.stamp[i], done + 1 == #h
  end
  if #h < MAX_HISTORY then h = h .. (removed and "r" or "a") end
  self.history[i], self.at[i] = h, #h
  return false, self.stamp[i]
end

--- The history of a log still in the window, or nil (tests).
function Window:history_of(bh, th, li)
  local i = self:find(bh, th, log_index(li))
  return i and self.history[i]
end

return M
