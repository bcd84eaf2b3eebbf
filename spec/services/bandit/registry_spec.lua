local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local H = require "spec.services.bandit.helper"
local registry = require "bandit.registry"

local NONE = {}    -- marks a field to leave out

local function pool(over)
  local p = { address = H.addr("p"), dex = "sushiswap", kind = "v2",
              token0 = H.addr("t0"), token1 = H.addr("t1"), fee_ppm = 3000 }
  for k, v in pairs(over or {}) do p[k] = v ~= NONE and v or nil end
  return p
end

local TOKENS = {
  { symbol = "T0", address = H.addr("t0"), decimals = 6 },
  { symbol = "T1", address = H.addr("t1"), decimals = 18 },
}

describe("bandit.registry", function()
  it("loads the fixture files", function()
    local reg = assert(registry.load(H.DATA .. "pools.json", H.DATA .. "tokens.json"))
    assert.equal(7, #reg.pools)
    local p = reg:pool("0x7fc02afdc20328c62ce9e3e09c24314020cbb1a4")
    assert.equal("0x7fC02afdC20328c62ce9e3E09C24314020cbB1A4", p.address)
    assert.equal("WMATIC/USDC.e", p.pair)
    assert.equal(18, p.dec0)
    assert.equal(6, p.dec1)
    assert.equal(3, #reg:venues(p.pair_key))
  end)

  it("looks pools and tokens up in any case", function()
    local reg = assert(registry.new({ pool() }, TOKENS))
    local a = H.addr("p")
    assert.equal(reg:pool(a), reg:pool(H.checksum(a)))
    assert.equal(reg:pool(a), reg:pool("0x" .. a:sub(3):upper()))
    assert.is_nil(reg:pool(H.addr("q")))
    assert.is_nil(reg:pool(nil))
    assert.equal("T0", reg:token(H.addr("t0"):upper():gsub("^0X", "0x")).symbol)
  end)

  it("keeps ordered pairs apart and venues in file order", function()
    local reg = assert(registry.new({
      pool { address = H.addr("a"), label = "first" },
      pool { address = H.addr("b"), token0 = H.addr("t1"), token1 = H.addr("t0") },
      pool { address = H.addr("c"), kind = "v3", fee_ppm = 100, label = "third" },
    }, TOKENS))
    local p = reg:pool(H.addr("a"))
    local v = reg:venues(p.pair_key)
    assert.equal(2, #v)
    assert.equal("first", v[1].label)
    assert.equal("third", v[2].label)
    assert.equal("T1/T0", reg:pool(H.addr("b")).pair)
    assert.equal(1, #reg:venues(reg:pool(H.addr("b")).pair_key))
    assert.same({}, reg:venues("nope"))
  end)

  it("defaults a V2 fee and a label", function()
    local reg = assert(registry.new({ pool { fee_ppm = NONE } }, TOKENS))
    local p = reg:pool(H.addr("p"))
    assert.equal(3000, p.fee_ppm)
    assert.equal("sushiswap T0/T1", p.label)
  end)

  it("keeps a pool whose token is unknown, without decimals", function()
    local reg = assert(registry.new({ pool { token1 = H.addr("zz"), token1_symbol = "ZZ" } }, TOKENS))
    local p = reg:pool(H.addr("p"))
    assert.equal("T0/ZZ", p.pair)
    assert.is_nil(p.dec1)
  end)

  it("reports invalid data as nil, message", function()
    for _, c in ipairs {
      { { pool { kind = "v4" } }, "kind must be v2 or v3" },
      { { pool { address = "0x12" } }, "bad address" },
      { { pool { token0 = 5 } }, "bad token0/token1" },
      { { pool { fee_ppm = 1000000 } }, "fee_ppm must be an integer 0..999999" },
      { { pool { kind = "v3", fee_ppm = NONE } }, "fee_ppm must be an integer" },
      { { pool(), pool() }, "duplicate pool" },
      { { 5 }, "pool #1 is not an object" },
    } do
      local reg, err = registry.new(c[1], TOKENS)
      assert.is_nil(reg)
      assert.truthy(err:find(c[2], 1, true), err)
    end
    local reg, err = registry.new({ pool() }, { { symbol = "X", address = H.addr("x"), decimals = 1.5 } })
    assert.is_nil(reg)
    assert.truthy(err:find("decimals", 1, true))
    assert.is_nil((registry.new("nope")))
    assert.is_nil((registry.new({ address = "0x1" })))
    assert.is_nil((registry.new({ pool() }, { symbol = "X" })))
  end)

  it("reports unreadable files", function()
    local reg, err = registry.load("/nonexistent/pools.json")
    assert.is_nil(reg)
    assert.is_string(err)
    local tmp = os.tmpname()
    local f = io.open(tmp, "w") f:write("[{") f:close()
    reg, err = registry.load(tmp)
    os.remove(tmp)
    assert.is_nil(reg)
    assert.truthy(err:find(tmp, 1, true))
  end)
end)
