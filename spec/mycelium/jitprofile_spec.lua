-- spec/mycelium/jitprofile_spec.lua -- MYC_JIT_PROFILE: LuaJIT's sampling
-- profiler in the service MYC_JIT_PROFILE_SERVICE names, its samples by
-- function and line in <dir>/<service>.prof (docs/TUNING.md).
local testing = require "mycelium.testing"
local env = require "support.env"

describe("MYC_JIT_PROFILE", function()
  local dir
  after_each(function()
    env.unset("MYC_JIT_PROFILE")
    env.unset("MYC_JIT_PROFILE_SERVICE")
    if dir then os.execute("rm -rf '" .. dir .. "'") end
    testing.cleanup()
  end)

  local function profile(service)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir '" .. dir .. "'") == 0)
    env.set("MYC_JIT_PROFILE", dir)
    env.set("MYC_JIT_PROFILE_SERVICE", service)
    local eng = testing.engine { services = {
      { name = "busy", module = "spec/support/jit_busy.lua" },
      { name = "idle", module = testing.module [[
        return { subscribe = { "prof.go" }, on_message = function() end }]] },
    } }
    local done = eng:collect("prof.done")
    eng:publish("prof.go", {})
    eng:run()
    assert.are.equal(1, #done:messages())
    eng:close()
  end

  it("writes the named service's samples, its busy function first", function()
    profile("busy")
    local f = assert(io.open(dir .. "/busy.prof"))
    local text = f:read("*a")
    f:close()
    local total, own =
      text:match("^# samples (%d+) [^\n]*own %(N, I, G, J%) (%d+)\n")
    assert.is_truthy(total, text)
    -- 300 ms of CPU: 75 samples at the kernel's 4 ms tick (HZ = 250),
    -- up to 300 at 1 ms; nearly all in this state's own code.
    assert.is_true(tonumber(own) >= 20, text)
    assert.is_true(tonumber(own) <= tonumber(total), text)
    local first = text:match("## self, by function\n([^\n]+)")
    assert.matches("jit_busy%.lua:busy_loop", first)
    assert.matches("## inclusive, by function\n", text)
    assert.is_truthy(text:find("## self, by line\n[^#]*jit_busy%.lua:7 "), text)
  end)

  it("profiles no other service", function()
    profile("busy")
    local f = io.open(dir .. "/idle.prof")
    assert.is_nil(f)
  end)
end)
