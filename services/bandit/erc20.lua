-- erc20.lua -- the eth_call requests MetadataService makes and the ABI
-- decoding of their results: token0(), token1() and fee() of a pool,
-- symbol() and decimals() of a token.
--
-- Invariant: a result that is not exactly what the function's ABI says
-- (wrong length, high bits set, a string that overruns its data) decodes
-- to nil, message; nothing here raises on what a node returns.
local find, sub, lower, byte, char =
  string.find, string.sub, string.lower, string.byte, string.char
local tonumber, type, concat = tonumber, type, table.concat

local M = {}

--- Function selectors: the first 4 bytes of keccak256 of the signature
--- (checked in spec/services/bandit/erc20_spec.lua).
M.SELECTOR = {
  token0 = "0x0dfe1681",      -- token0()
  token1 = "0xd21220a7",      -- token1()
  fee = "0xddca3f43",         -- fee() (Uniswap V3 pools)
  symbol = "0x95d89b41",      -- symbol()
  decimals = "0x313ce567",    -- decimals()
}

--- The params of eth_call for function `name` of contract `to`.
function M.call_params(to, name)
  return { { to = lower(to), data = M.SELECTOR[name] }, "latest" }
end

-- The hex digits of a 0x result, or nil.
local function digits(result)
  if type(result) ~= "string" or not find(result, "^0x%x*$") or
     #result % 2 ~= 0 then
    return nil
  end
  return lower(sub(result, 3))
end

-- 64-digit word k (1-based) of hex digits h.
local function word(h, k) return sub(h, 64 * (k - 1) + 1, 64 * k) end

--- An address result (token0/token1): 0x + 40 lowercase digits.
function M.address(result)
  local h = digits(result)
  if not h or #h < 64 then return nil, "not an ABI word" end
  local w = word(h, 1)
  if sub(w, 1, 24) ~= ("0"):rep(24) then
    return nil, "not an address (upper 12 bytes are not zero)"
  end
  return "0x" .. sub(w, 25)
end

--- A small unsigned result (decimals: uint8, fee: uint24) up to `max`.
function M.uint(result, max)
  local h = digits(result)
  if not h or #h < 64 then return nil, "not an ABI word" end
  local w = word(h, 1)
  if sub(w, 1, 48) ~= ("0"):rep(48) then return nil, "value too large" end
  local v = tonumber(sub(w, 49), 16)
  if v > max then return nil, "value too large" end
  return v
end

local function bytes_of(h)
  local out = {}
  for i = 1, #h, 2 do out[#out + 1] = char(tonumber(sub(h, i, i + 1), 16)) end
  return concat(out)
end

-- A bytes32 symbol (MKR and other early tokens): up to the first NUL.
local function bytes32_text(w)
  local s = bytes_of(w)
  local z = find(s, "\0", 1, true)
  return z and sub(s, 1, z - 1) or s
end

--- A string result (symbol): the ABI `string` encoding (offset, length,
--- bytes), or a bytes32 as some old tokens return.
function M.text(result)
  local h = digits(result)
  if not h or #h < 64 then return nil, "not an ABI word" end
  if #h == 64 then return bytes32_text(h) end
  local off = tonumber(word(h, 1), 16)
  if not off or off % 32 ~= 0 or 2 * off + 64 > #h then
    return nil, "bad string offset"
  end
  local len = tonumber(sub(h, 2 * off + 1, 2 * off + 64), 16)
  local start = 2 * off + 65
  if not len or start + 2 * len - 1 > #h then
    return nil, "string overruns the result"
  end
  local s = bytes_of(sub(h, start, start + 2 * len - 1))
  for i = 1, #s do
    if byte(s, i) == 0 then return nil, "string holds a NUL byte" end
  end
  return s
end

return M
