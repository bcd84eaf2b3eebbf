local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local keccak = require "bandit.keccak"
local eip55 = require "bandit.eip55"

describe("bandit.keccak", function()
  it("hashes the empty string", function()
    assert.equal("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
      keccak.hex(""))
  end)

  it("gives the three Uniswap topic0 values of the README", function()
    assert.equal("1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1",
      keccak.hex("Sync(uint112,uint112)"))
    assert.equal("d78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822",
      keccak.hex("Swap(address,uint256,uint256,uint256,uint256,address)"))
    assert.equal("c42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67",
      keccak.hex("Swap(address,address,int256,int256,uint160,uint128,int24)"))
    assert.equal("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
      keccak.hex("Transfer(address,address,uint256)"))
  end)

  -- Around the 136-byte rate: padding in the same block, a full block
  -- plus a padding block, and several blocks. Expected values from an
  -- independent textbook Keccak in Python.
  it("handles block boundaries", function()
    local a = string.rep("a", 1)
    assert.equal("34367dc248bbd832f4e3e69dfaac2f92638bd0bbd18f2912ba4ef454919cf446",
      keccak.hex(a:rep(135)))
    assert.equal("a6c4d403279fe3e0af03729caada8374b5ca54d8065329a3ebcaeb4b60aa386e",
      keccak.hex(a:rep(136)))
    assert.equal("d869f639c7046b4929fc92a4d988a8b22c55fbadb802c0c66ebcd484f1915f39",
      keccak.hex(a:rep(137)))
    assert.equal("5b7e0e47a96f32a88b4f14ca177982790807c40e1a105742ba0fc1babe1ef826",
      keccak.hex(a:rep(300)))
    assert.equal("4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15",
      keccak.hex("The quick brown fox jumps over the lazy dog"))
  end)

  it("returns 32 raw bytes and reads nibbles", function()
    local d = keccak.digest("")
    assert.equal(32, #d)
    assert.equal(0xc, keccak.nibble(d, 0))
    assert.equal(0x5, keccak.nibble(d, 1))
  end)

  it("hashes binary input with NULs", function()
    assert.equal(keccak.hex("\0\1\2"), keccak.hex("\0\1\2"))
    assert.are_not.equal(keccak.hex("\0"), keccak.hex(""))
  end)

  -- Interpreted, a digest boxes a cdata per 64-bit operation and costs
  -- about a hundred times a compiled one: the permutation must compile.
  it("compiles its permutation", function()
    local jit, jutil = require "jit", require "jit.util"
    local format = string.format
    local aborts, traces, recording = {}, 0, {}
    local function in_permutation(func)
      return jutil.funcinfo(func).source == "=keccak-f"
    end
    -- "stop" and "abort" name the trace: a trace is the permutation's
    -- when it started there. Only what LuaJIT cannot compile counts
    -- (NYI): a trace started at the function's entry that meets its
    -- round loop aborts as at any inner loop, and the loop's own trace
    -- compiles.
    local function on_trace(what, tr, func, pc, code, reason)
      if what == "start" then
        recording[tr] = in_permutation(func)
      elseif what == "abort" and recording[tr] then
        if type(code) == "number" then
          code = format(require("jit.vmdef").traceerr[code], reason)
        end
        code = tostring(code)
        if code:find("NYI", 1, true) then aborts[#aborts + 1] = code end
      elseif what == "stop" and recording[tr] then
        traces = traces + 1
      end
    end
    jit.flush() -- the tests before compiled it already
    jit.attach(on_trace, "trace")
    for i = 1, 40 do keccak.digest(format("compile %d", i)) end
    jit.attach(on_trace)
    assert.same({}, aborts)
    assert.is_true(traces > 0)
  end)

  it("rejects non-strings", function()
    assert.has_error(function() keccak.digest(5) end,
      "bandit.keccak: digest expects a string, got number")
  end)
end)

describe("bandit.eip55", function()
  -- Test vectors from EIP-55 itself.
  local VECTORS = {
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
  }

  it("checksums the EIP-55 vectors from any case", function()
    for _, v in ipairs(VECTORS) do
      assert.equal(v, eip55.checksum(v:lower()))
      assert.equal(v, eip55.checksum("0x" .. v:sub(3):upper()))
      assert.equal(v, eip55.checksum(v:sub(3):lower()))
      assert.is_true(eip55.is_valid(v))
    end
  end)

  it("checksums the fixture tokens as tokens.json spells them", function()
    for _, v in ipairs { "0x0d500B1d8E8eF31E21C99d1Db9A6444d3ADf1270",
                         "0x2791Bca1f2de4661ED88A30C99A7a9449Aa84174",
                         "0x7ceB23fD6bC0adD59E62ac25578270cFf1b9f619" } do
      assert.equal(v, eip55.checksum(v:lower()))
    end
  end)

  it("refuses a wrong mixed-case checksum and malformed addresses", function()
    assert.is_false(eip55.is_valid("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"))
    for _, bad in ipairs { "0x123", "0x" .. string.rep("g", 40), 42, "",
                           "0x" .. string.rep("a", 41) } do
      assert.is_nil(eip55.checksum(bad))
      assert.is_false(eip55.is_valid(bad))
    end
  end)

  it("converts to and from 20 raw bytes", function()
    local raw = eip55.to_bytes(VECTORS[5])
    assert.equal(20, #raw)
    assert.equal(VECTORS[5], eip55.from_bytes(raw))
    assert.has_error(function() eip55.from_bytes("short") end,
      "bandit.eip55: from_bytes expects a 20-byte string")
  end)

  it("keeps its memo bounded", function()
    local limit = eip55.cache_limit
    eip55.cache_limit = 4
    for i = 1, 50 do
      local a = string.format("0x%040x", i)
      assert.equal(40, #eip55.checksum(a) - 2)
    end
    eip55.cache_limit = limit
    eip55.clear_cache()
    assert.equal(VECTORS[5], eip55.checksum(VECTORS[5]:lower()))
  end)
end)
