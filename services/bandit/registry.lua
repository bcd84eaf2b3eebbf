-- registry.lua -- the pool and token registry (pools.json, tokens.json).
--
-- Every lookup is by lowercase 0x-address so callers may pass any case;
-- pools keep the file's order, which is the order venues are listed in.
-- A pool whose token is missing from the token list keeps working but has
-- no decimals, so its human price is null and it is never a venue.
local cjson = require "cjson"
local eip55 = require "bandit.eip55"

local lower, format, floor = string.lower, string.format, math.floor
local type, ipairs, tostring, setmetatable, next, pcall =
  type, ipairs, tostring, setmetatable, next, pcall
local open = io.open

local M = {}
local Registry = {}
Registry.__index = Registry

local KINDS = { v2 = true, v3 = true }
-- Uniswap V2 forks charge 0.30 %; a V2 entry may omit fee_ppm.
local DEFAULT_V2_FEE = 3000

-- cjson gives objects and arrays as tables; an object has no [1] but
-- does have keys (an empty table may be either and is accepted).
local function is_array(v)
  return type(v) == "table" and (v[1] ~= nil or next(v) == nil)
end

local function is_int(v, lo, hi)
  return type(v) == "number" and v == floor(v) and v >= lo and v <= hi
end

local function check_token(t, i)
  if type(t) ~= "table" then
    return nil, "token #" .. i .. " is not an object"
  end
  local addr = eip55.checksum(t.address)
  if not addr then return nil, "token #" .. i .. ": bad address" end
  if type(t.symbol) ~= "string" then
    return nil, "token " .. addr .. ": symbol must be a string"
  end
  if t.decimals ~= nil and not is_int(t.decimals, 0, 255) then
    return nil, "token " .. addr .. ": decimals must be an integer 0..255"
  end
  return { address = addr, key = lower(addr), symbol = t.symbol,
           decimals = t.decimals, name = t.name }
end

-- Symbol and decimals of one side of a pool: the token list wins, the
-- pool's own tokenN_symbol is the fallback.
local function side(reg, p, n, addr)
  local tok = reg.tokens[lower(addr)]
  local sym = (tok and tok.symbol) or p["token" .. n .. "_symbol"]
  if type(sym) ~= "string" then sym = addr end
  return sym, tok and tok.decimals
end

local function check_pool(reg, p, i)
  if type(p) ~= "table" then
    return nil, "pool #" .. i .. " is not an object"
  end
  local addr = eip55.checksum(p.address)
  if not addr then return nil, "pool #" .. i .. ": bad address" end
  local where = "pool " .. addr .. ": "
  if not KINDS[p.kind] then return nil, where .. "kind must be v2 or v3" end
  local t0, t1 = eip55.checksum(p.token0), eip55.checksum(p.token1)
  if not t0 or not t1 then return nil, where .. "bad token0/token1" end
  local fee = p.fee_ppm
  if fee == nil and p.kind == "v2" then fee = DEFAULT_V2_FEE end
  if not is_int(fee, 0, 999999) then
    return nil, where .. "fee_ppm must be an integer 0..999999"
  end
  local sym0, dec0 = side(reg, p, 0, t0)
  local sym1, dec1 = side(reg, p, 1, t1)
  local dex = type(p.dex) == "string" and p.dex or "unknown"
  local pair = sym0 .. "/" .. sym1
  return {
    address = addr, key = lower(addr), dex = dex, kind = p.kind,
    fee_ppm = fee, token0 = t0, token1 = t1, sym0 = sym0, sym1 = sym1,
    dec0 = dec0, dec1 = dec1, pair = pair,
    -- Pairs are ordered: (A, B) and (B, A) are different pairs.
    pair_key = lower(t0) .. "/" .. lower(t1),
    label = type(p.label) == "string" and p.label or (dex .. " " .. pair),
    index = i,
  }
end

local function add_tokens(reg, tokens)
  for i, t in ipairs(tokens) do
    local tok, err = check_token(t, i)
    if not tok then return nil, err end
    if reg.tokens[tok.key] then
      return nil, "duplicate token " .. tok.address
    end
    reg.tokens[tok.key] = tok
  end
  return true
end

local function add_pools(reg, pools)
  for i, p in ipairs(pools) do
    local pool, err = check_pool(reg, p, i)
    if not pool then return nil, err end
    if reg.by_key[pool.key] then
      return nil, "duplicate pool " .. pool.address
    end
    reg.pools[#reg.pools + 1] = pool
    reg.by_key[pool.key] = pool
    local v = reg.venues_by_pair[pool.pair_key]
    if not v then v = {} reg.venues_by_pair[pool.pair_key] = v end
    v[#v + 1] = pool
  end
  return true
end

--- A registry from decoded pools.json and tokens.json arrays. Returns nil,
--- message when the data is invalid (it comes from files users edit).
function M.new(pools, tokens)
  if not is_array(pools) then return nil, "pools: expected an array" end
  if tokens ~= nil and not is_array(tokens) then
    return nil, "tokens: expected an array"
  end
  local reg = setmetatable({ pools = {}, by_key = {}, tokens = {},
                             venues_by_pair = {} }, Registry)
  local ok, err = add_tokens(reg, tokens or {})
  if ok then ok, err = add_pools(reg, pools) end
  if not ok then return nil, err end
  return reg
end

local function read_json(path)
  local f, err = open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, path .. ": " .. tostring(v) end
  return v
end

--- A registry from file paths; tokens_path may be nil.
function M.load(pools_path, tokens_path)
  local pools, err = read_json(pools_path)
  if not pools then return nil, err end
  local tokens
  if tokens_path then
    tokens, err = read_json(tokens_path)
    if not tokens then return nil, err end
  end
  local reg
  reg, err = M.new(pools, tokens)
  if not reg then return nil, format("%s: %s", pools_path, err) end
  return reg
end

--- The pool at address s (any case, 0x-prefixed), or nil.
function Registry:pool(s)
  if type(s) ~= "string" then return nil end
  return self.by_key[s] or self.by_key[lower(s)]
end

--- The pools of an ordered pair key (pool.pair_key), in file order.
function Registry:venues(pair_key)
  return self.venues_by_pair[pair_key] or {}
end

function Registry:token(s)
  if type(s) ~= "string" then return nil end
  return self.tokens[lower(s)]
end

return M
