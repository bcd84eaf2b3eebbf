-- spec/mycelium/jitlog_spec.lua -- MYC_JIT_LOG: each service's trace
-- events, timed, in <dir>/<service>.jitv (docs/TUNING.md).
local ffi = require "ffi"
local testing = require "mycelium.testing"

ffi.cdef [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]]

describe("MYC_JIT_LOG", function()
  local dir
  after_each(function()
    ffi.C.unsetenv("MYC_JIT_LOG")
    if dir then os.execute("rm -rf '" .. dir .. "'") end
    testing.cleanup()
  end)

  it("writes a service's compiled traces and aborts with their times",
     function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir '" .. dir .. "'") == 0)
    ffi.C.setenv("MYC_JIT_LOG", dir, 1)
    local eng = testing.engine { services = {
      { name = "hot", module = "spec/support/jit_hot.lua" } } }
    local done = eng:collect("jit.done")
    eng:publish("jit.go", {})
    eng:run()
    assert.are.equal(1, #done:messages())
    eng:close()
    local f = assert(io.open(dir .. "/hot.jitv"))
    local text = f:read("*a")
    f:close()
    -- "+<ms> ms [TRACE   1 jit_hot.lua:8 loop]" and an abort with its reason.
    assert.is_truthy(text:find("^%+%d+ ms %[TRACE +%d+ jit_hot%.lua:%d+ loop%]"),
                     text)
    assert.is_truthy(text:find("%+%d+ ms %[TRACE %-%-%- [^\n]*jit_hot%.lua:%d+ "
                               .. "%-%- NYI: [^\n]* at jit_hot%.lua:%d+%]"), text)
  end)
end)
