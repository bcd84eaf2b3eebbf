-- spec/hostile/fuzz_spec.lua -- what the fuzzers (fuzz/, docs/TESTING.md)
-- found, kept as regression tests beside the corpus entries that
-- reproduce them under the sanitizers.
local testing = require "mycelium.testing"

local core = testing.core

describe("found by fuzzing", function()
  describe("fuzz/msgpack", function()
    -- msgpack-c sizes a container from its header before reading an
    -- element: five bytes could make it reserve gigabytes (under ASan the
    -- process died).  Measured in a process of its own, whose peak
    -- address space tells.
    it("refuses a header announcing more elements than bytes remain, "
       .. "before allocating", function()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write([[
local core = package.loadlib(os.getenv("MYCELIUM_LIB"), "luaopen_mycelium_core")()
local function peak()
  local f = io.open("/proc/self/status")
  local kb = tonumber(f:read("*a"):match("VmPeak:%s*(%d+)"))
  f:close()
  return kb
end
local before = peak()
local v, err = core.unpack("\221\4\0\0\0" .. ("\192"):rep(16))
io.write(tostring(v), "|", tostring(err), "|", math.floor((peak() - before) / 1024), "\n")
]])
      f:close()
      local p = io.popen("MYCELIUM_LIB=" .. testing.library .. " luajit " .. script)
      local out = p:read("*a")
      p:close()
      os.remove(script)
      local v, err, mib = out:match("^(.-)|(.-)|(%d+)")
      assert.are.equal("nil", v)
      assert.are.equal("malformed MessagePack payload", err)
      assert.is_true(tonumber(mib) < 64, "reserved " .. tostring(mib) .. " MiB")
    end)

    it("still decodes what the headers truthfully announce", function()
      assert.are.same({ 1, 2, 3 }, core.unpack("\221\0\0\0\3\1\2\3"))
      assert.are.same({ a = 1 }, core.unpack("\223\0\0\0\1\161a\1"))
      assert.are.same({}, core.unpack("\220\0\0"))
      for _, bad in ipairs { "\223\223\223\223\223\36\225\192\192", "\221\255\255\255\255",
                             "\222\255\255\1\2", "\193", "\199\5\1ab", "\219\0\0\0\9abc" } do
        local v, err = core.unpack(bad)
        assert.is_nil(v)
        assert.are.equal("malformed MessagePack payload", err)
      end
    end)
  end)
end)
