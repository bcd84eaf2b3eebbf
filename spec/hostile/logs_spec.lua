-- spec/hostile/logs_spec.lua -- text logs fed control characters (issue
-- 11, item 8): a message, a field name or a field value with a newline
-- wrote a second, forged record; a NUL cut the line for most readers.
-- Text lines now escape them (\n, \r, \t, \xHH); JSON lines always did.
local testing = require "mycelium.testing"
local cli = require "support.cli"

local logger = [[
return { init = function(ctx)
  ctx.log:warn("first\nERROR [admin] forged\r\0end", {
    ["key\nERROR forged"] = "v\0al\27[31m", plain = "x\ty" })
  ctx:after(0, function(c) c:shutdown(0) end)
end }]]

describe("text logs", function()
  after_each(function() testing.cleanup() end)

  it("write one line per record, control characters escaped", function()
    local eng = testing.engine { log = { format = "text" },
      services = { { name = "svc", module = testing.module(logger) } } }
    local lines = eng:logs()
    eng:close()
    local rec
    for _, l in ipairs(lines) do
      if l:find("first", 1, true) then rec = l end
    end
    assert.is_not_nil(rec)
    assert.is_nil(rec:find("[%c]"), rec) -- no newline, NUL, ESC or CR
    assert.matches([[first\nERROR [admin] forged\r\x00end]], rec, 1, true)
    assert.matches([[key\nERROR forged=v\x00al\x1b[31m]], rec, 1, true)
    assert.matches([[plain=x\ty]], rec, 1, true)
  end)

  it("reach stderr as one line per record from the binary", function()
    local dir = cli.tmpdir()
    local path = dir:write("svc.lua", logger)
    local rc, _, err = dir:mycelium("run " .. path)
    dir:remove()
    assert.are.equal(0, rc, err)
    for line in err:gmatch("[^\n]+") do
      if line:find("forged", 1, true) then
        assert.truthy(line:find("first", 1, true), "a forged line: " .. line)
      end
    end
    assert.is_nil(err:find("\0", 1, true))
    assert.matches([[WARN  [svc] first\nERROR]], err, 1, true)
  end)

  it("keep JSON lines valid with the same input", function()
    local cjson = require "cjson"
    local eng = testing.engine { log = { format = "json" },
      services = { { name = "svc", module = testing.module(logger) } } }
    local found
    for _, l in ipairs(eng:logs()) do
      local rec = cjson.decode(l)
      if rec.level == "warn" then found = rec end
    end
    eng:close()
    assert.are.equal("first\nERROR [admin] forged\r\0end", found.msg)
    assert.are.equal("v\0al\27[31m", found["key\nERROR forged"])
  end)
end)
