-- eip55.lua -- 20-byte Ethereum addresses <-> EIP-55 mixed-case checksum hex.
--
-- Results are memoised: a stream names the same pools and routers over and
-- over, and one checksum costs a Keccak-256. The memo is bounded (cleared
-- whole when full) so an adversarial stream of fresh addresses cannot grow
-- it without limit.
local keccak = require "bandit.keccak"

local byte, char, find, lower, sub, format =
  string.byte, string.char, string.find, string.lower, string.sub,
  string.format
local concat, type, tonumber, error = table.concat, type, tonumber, error
local unpack = unpack or table.unpack

local M = {}

M.cache_limit = 65536
local cache, cached = {}, 0

-- The 40 hex digits of s ("0x" + 40 or bare 40), or nil.
local function digits(s)
  if type(s) ~= "string" then return nil end
  if #s == 42 and find(s, "^0[xX]%x+$") then return sub(s, 3) end
  if #s == 40 and find(s, "^%x+$") then return s end
  return nil
end

local function compute(hex40)
  local low = lower(hex40)
  local h = keccak.digest(low)
  local out = {}
  for i = 1, 40 do
    local c = byte(low, i)
    -- Letters whose hash nibble has its high bit set are upper-cased.
    if c >= 97 and keccak.nibble(h, i - 1) >= 8 then c = c - 32 end
    out[i] = c
  end
  return "0x" .. char(unpack(out))
end

local function remember(key, value)
  if cached >= M.cache_limit then cache, cached = {}, 0 end
  cache[key] = value
  cached = cached + 1
  return value
end

--- Checksummed form of an address given as "0x"+40 hex or 40 hex digits,
--- in any case. Returns nil, message when s is not an address.
function M.checksum(s)
  local hit = cache[s]
  if hit then return hit end
  local hex40 = digits(s)
  if not hex40 then return nil, "not a 20-byte hex address" end
  return remember(s, compute(hex40))
end

--- True when s is an address whose case is either uniform or a correct
--- EIP-55 checksum (the standard's acceptance rule).
function M.is_valid(s)
  local hex40 = digits(s)
  if not hex40 then return false end
  if not find(hex40, "%l") or not find(hex40, "%u") then return true end
  return M.checksum(s) == "0x" .. hex40
end

--- Checksummed address of 20 raw bytes.
function M.from_bytes(raw)
  if type(raw) ~= "string" or #raw ~= 20 then
    error("bandit.eip55: from_bytes expects a 20-byte string", 2)
  end
  local t = {}
  for i = 1, 20 do t[i] = format("%02x", byte(raw, i)) end
  return M.checksum(concat(t))
end

--- The 20 raw bytes of an address, or nil, message.
function M.to_bytes(s)
  local hex40 = digits(s)
  if not hex40 then return nil, "not a 20-byte hex address" end
  local t = {}
  for i = 1, 20 do t[i] = tonumber(sub(hex40, 2 * i - 1, 2 * i), 16) end
  return char(unpack(t))
end

function M.clear_cache() cache, cached = {}, 0 end

return M
