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
local ffi = require "ffi"
local wire = require "bandit.wire"

local byte, setmetatable, type, assert, tonumber =
  string.byte, setmetatable, type, assert, tonumber
local C, copy = ffi.C, ffi.copy
local key_of, put_hashes, HASHES = wire.hash_key, wire.put_hashes, wire.HASHES

ffi.cdef "int memcmp(const void *, const void *, size_t);"

local M = {}

local ADDED, REMOVED = byte("a"), byte("r")

-- A log's history is the string of what was delivered ("a", "ar", ...);
-- a log that flaps without end is remembered up to this many deliveries.
local MAX_HISTORY = 32

-- Bytes of one identity in the ring: block hash, then transaction hash.
local SLOT = 64

local Window = {}
Window.__index = Window

-- Identities sit in a ring of `size` slots, the oldest overwritten
-- first. No string is made per log: the hashes' 64 bytes sit in an FFI
-- ring (`hashes`, slot i at (i - 1) * SLOT), and `index` maps a number
-- made from 53 bits of the tx hash (wire.hash_key) to the slot of the
-- newest log with that key. Each slot links to the slot of the previous
-- log of the same key (`prev`); every log of the chain is compared in
-- full (both hashes, log index), so logs of two transactions whose keys
-- collide share a chain and stay apart. A link is valid while the slot
-- it names still holds that key and is older (`stamp`, the order slots
-- were filled in). Per slot also: the log's history (what was
-- delivered: "a", "ar", ...) and how much of it the current connection
-- replayed (`at`, valid when `conn` is the current connection). Only
-- `index` is a hash table; the rest are arrays.

--- A window remembering the newest `size` (>= 1) log identities.
function M.new(size)
  assert(type(size) == "number" and size >= 1 and size % 1 == 0,
         "dedup.new: size must be a whole number >= 1")
  return setmetatable({
    size = size, index = {}, key = {}, log = {}, prev = {},
    hashes = ffi.new("uint8_t[?]", size * SLOT),
    stamp = {}, history = {}, at = {}, conn = {}, next = 1, filled = 0,
    n = 0, suppressed = 0, connection = 1,
  }, Window)
end

--- A new connection starts: its notifications are checked against what
--- the earlier ones delivered.
function Window:reconnected()
  self.connection = self.connection + 1
end

-- A key's logs are searched this far back: a stream of logs of one
-- transaction (a hostile node) must not make each log cost a walk of the
-- whole window. Real transactions have a few logs of tracked pools.
local MAX_WALK = 64

-- The slot of log (p: its 64 hash bytes, k: their key, li), or nil.
function Window:find(p, k, li)
  local i = self.index[k]
  local key, log, prev, stamp, hashes = self.key, self.log, self.prev,
    self.stamp, self.hashes
  for _ = 1, MAX_WALK do
    if not i then return nil end
    if log[i] == li and C.memcmp(hashes + (i - 1) * SLOT, p, SLOT) == 0 then
      return i
    end
    local q = prev[i]
    if not q or key[q] ~= k or stamp[q] > stamp[i] then return nil end
    i = q
  end
  return nil
end

-- Fills the oldest slot with a new identity.
function Window:remember(p, k, li, what)
  local i = self.next
  local old = self.key[i]
  if old == nil then
    self.n = self.n + 1
  elseif self.index[old] == i then
    self.index[old] = nil -- the last log of its key still here
  end
  self.filled = self.filled + 1
  self.prev[i], self.index[k] = self.index[k], i
  copy(self.hashes + (i - 1) * SLOT, p, SLOT)
  self.key[i], self.log[i], self.stamp[i] = k, li, self.filled
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

--- Whether the notification of a log -- removed or added -- repeats
--- what an earlier connection delivered. The log: `p`, a pointer to its
--- block hash and transaction hash as 32 + 32 bytes (wire.HASHES after
--- wire.put_hashes), read during the call only; and its log index `li`.
--- Returns true, id, caught_up (the repeat reached the last delivery
--- known for that log) when it does; otherwise remembers it and returns
--- false, id. `id` names the log while it stays in the window.
function Window:seen_bytes(p, li, removed)
  li = log_index(li)
  local k = key_of(p + 32)
  local i = self:find(p, k, li)
  if not i then
    i = self:remember(p, k, li, removed and "r" or "a")
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

--- Window:seen_bytes for hashes given as 0x-hex strings of 64 validated
--- digits (removed logs, tests). Uses wire.HASHES.
function Window:seen(bh, th, li, removed)
  put_hashes(bh, 3, th, 3)
  return self:seen_bytes(HASHES, li, removed)
end

--- The history of a log still in the window, or nil (tests): its hashes
--- as for Window:seen.
function Window:history_of(bh, th, li)
  put_hashes(bh, 3, th, 3)
  local i = self:find(HASHES, key_of(HASHES + 32), log_index(li))
  return i and self.history[i]
end

return M
