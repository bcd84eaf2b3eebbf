-- spec/hostile/load_spec.lua -- module paths that are not a regular
-- file (a FIFO, a directory, a device) are refused with a message that
-- names them, without waiting (a FIFO's open waited for a writer).
local testing = require "mycelium.testing"

local WORKER = [[
return { subscribe = { "in" },
         on_message = function(ctx, msg) ctx:emit("out", "v1 " .. msg.data) end }]]

local function fails_within(seconds, spec)
  local t0 = testing.monotonic()
  local ok, err = pcall(testing.engine, spec)
  local took = testing.monotonic() - t0
  assert.is_false(ok)
  assert.is_true(took < seconds, "took " .. took .. " s")
  return err
end

describe("only regular files are loaded", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/d.lua && mkfifo " .. dir .. "/f.lua") == 0)
  end)
  after_each(function()
    os.execute("rm -rf " .. dir)
    testing.cleanup()
  end)

  it("a directory, a FIFO or a device as a module is refused, naming it", function()
    for path, kind in pairs { [dir .. "/d.lua"] = "a directory",
                              [dir .. "/f.lua"] = "a FIFO",
                              ["/dev/null"] = "a device" } do
      local err = fails_within(3, { services = { { name = "x", module = path } } })
      assert.matches("cannot read " .. path .. ": it is " .. kind
                     .. ", not a regular file", err, 1, true)
    end
  end)

  it("a reload from one is refused at once; the old version goes on", function()
    local eng = testing.engine { services = { { name = "w", module = testing.module(WORKER) } } }
    local ok, err = eng:reload("w", dir .. "/f.lua")
    assert.is_nil(ok)
    assert.matches("it is a FIFO, not a regular file", err, 1, true)
    assert.are.equal("running", eng:stats("w").state)
    eng:close()
  end)
end)
