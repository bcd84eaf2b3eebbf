local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- bandit.erc20: eth_call selectors and the decoding of what a node
-- answers, including answers no honest token gives.
local erc20 = require "bandit.erc20"
local keccak = require "bandit.keccak"

local function word(hex) return ("0"):rep(64 - #hex) .. hex end

describe("bandit.erc20", function()
  it("uses the first four bytes of keccak256 of each signature", function()
    for name, sig in pairs { token0 = "token0()", token1 = "token1()", fee = "fee()",
                             symbol = "symbol()", decimals = "decimals()" } do
      assert.equal("0x" .. keccak.hex(sig):sub(1, 8), erc20.SELECTOR[name], name)
    end
    assert.same({ { to = "0xabcdef", data = "0x313ce567" }, "latest" },
                erc20.call_params("0xABCdef", "decimals"))
  end)

  it("decodes addresses and small integers, refusing dirty words", function()
    local a = ("ab"):rep(20)
    assert.equal("0x" .. a, erc20.address("0x" .. word(a)))
    assert.is_nil(erc20.address("0x" .. "01" .. word(a):sub(3)))
    assert.is_nil(erc20.address("0x1234"))
    assert.equal(18, erc20.uint("0x" .. word("12"), 255))
    assert.is_nil(erc20.uint("0x" .. word("100"), 255))
    assert.is_nil(erc20.uint("0x" .. "1" .. word("12"):sub(2), 255))
    assert.is_nil(erc20.uint(nil, 255))
    assert.is_nil(erc20.uint("0xzz", 255))
  end)

  it("decodes ABI strings and bytes32 symbols", function()
    local usdc = "0x" .. word("20") .. word("6") .. ("555344432e65"):rep(1) ..
      ("0"):rep(52)
    assert.equal("USDC.e", erc20.text(usdc))
    local mkr = "0x" .. "4d4b52" .. ("0"):rep(58)
    assert.equal("MKR", erc20.text(mkr))
    assert.equal("", erc20.text("0x" .. word("20") .. word("0")))
    assert.is_nil(erc20.text("0x" .. word("20") .. word("40") .. word("41")))
    assert.is_nil(erc20.text("0x" .. word("ffff") .. word("1")))
    assert.is_nil(erc20.text("0x" .. word("21") .. word("1") .. word("41")))
    assert.is_nil(erc20.text("0x" .. word("20") .. word("1") .. word("00")))
    assert.is_nil(erc20.text("0x"))
  end)
end)
