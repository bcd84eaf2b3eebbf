-- spec/mycelium/emit_trace_spec.lua -- ctx:new, a typed emit and
-- ctx:pressure compile when interpreted code calls them: their root
-- traces must not end in a tail call to a builtin or C function, which
-- LuaJIT cannot follow back into the caller ("leaving loop in root
-- trace", "NYI: return to lower frame") and ends by blacklisting the
-- function, and every trace through it (docs/TUNING.md).
local testing = require "mycelium.testing"
local env = require "support.env"

local YAML = [[
schema: {id: 7, version: 1}
messages:
  Probe:
    tlv_type: 1001
    fields:
      self_addr: {type: u64}
      n: {type: u32}
]]

-- The handler is kept out of the JIT, so that the calls it makes start
-- root traces at the engine's functions, as interpreted handlers do;
-- such a trace that cannot return into it aborts with "JIT compilation
-- disabled" instead of "leaving loop in root trace".
local SERVICE = [[
  local jit = require "jit"
  local M = { subscribe = { "go" } }
  local pub
  function M.init(ctx) pub = ctx:publisher("out") end
  function M.on_message(ctx)
    local p = 0
    for i = 1, 4000 do
      local m = ctx:new("Probe")
      m.n = i
      pub(m)
      p = p + ctx:pressure("out")
    end
    ctx:emit("done", { p = p })
  end
  jit.off(M.on_message)
  return M
]]

describe("typed emits from interpreted code", function()
  local dir, yaml
  after_each(function()
    env.unset("MYC_JIT_LOG")
    if dir then os.execute("rm -rf '" .. dir .. "'") end
    testing.cleanup()
  end)

  it("compile ctx:new, emit and pressure without aborts", function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir '" .. dir .. "'") == 0)
    yaml = dir .. "/c.yaml"
    local f = assert(io.open(yaml, "w"))
    f:write(YAML)
    f:close()
    env.set("MYC_JIT_LOG", dir)
    local eng = testing.engine { contracts = yaml, services = {
      { name = "emitter", module = testing.module(SERVICE) } } }
    local done = eng:collect("done")
    eng:publish("go", "")
    eng:run()
    assert.are.equal(1, #done:messages())
    eng:close()
    f = assert(io.open(dir .. "/emitter.jitv"))
    local text = f:read("*a")
    f:close()
    for line in text:gmatch("[^\n]+") do
      local where = line:match("%[TRACE %-%-%- [^%]]-([%w_]+%.lua):%d+ %-%-")
      if where == "contract.lua" or where == "ctx.lua" then
        assert.is_falsy(line:find("leaving loop in root trace", 1, true), line)
        assert.is_falsy(line:find("return to lower frame", 1, true), line)
        assert.is_falsy(line:find("blacklisted", 1, true), line)
        -- What a tail call meets when its caller is not compiled.
        assert.is_falsy(line:find("JIT compilation disabled", 1, true), line)
      end
    end
  end)
end)
