-- spec/hostile/names_spec.lua -- service and group names a hostile config
-- gives (issue 11, item 8): a space made a service unreloadable, a quote
-- broke the control socket's JSON, a newline forged log lines, and a name
-- over 255 bytes was silently cut.  Names are checked when the config is
-- read (mycelium.config) and again by the engine (myc_engine_add_service),
-- with the same rule.
local testing = require "mycelium.testing"
local cli = require "support.cli"
package.loaded["mycelium.core"] = package.loaded["mycelium.core"] or testing.core
local config = require "mycelium.config"

local quitter = [[
return { init = function(ctx) ctx:after(0, function(c) c:shutdown(0) end) end }]]

local BAD = {
  ["with space"] = "letters, digits",
  ['quo"te'] = "letters, digits",
  ["new\nline"] = "letters, digits",
  ["nul\0byte"] = "letters, digits",
  ["-dash-first"] = "starting with",
  [string.rep("n", 256)] = "1 to 255 bytes",
}

describe("service names", function()
  local dir
  before_each(function() dir = cli.tmpdir() end)
  after_each(function()
    dir:remove()
    testing.cleanup()
  end)

  it("mycelium check refuses each bad name, naming the key", function()
    dir:write("q.lua", quitter)
    for name, why in pairs(BAD) do
      dir:write("mycelium.lua", string.format(
        "return { services = { { name = %q, module = 'q.lua' } } }", name))
      local rc, _, err = dir:mycelium("check " .. dir.path .. "/mycelium.lua")
      assert.are.equal(1, rc, name)
      assert.matches("'services[1].name': service name \"", err, 1, true)
      assert.matches(why, err, 1, true)
      -- The message is one line whatever the name holds.
      assert.are.equal(1, select(2, err:gsub("\n", "")), err)
      assert.is_nil(err:find("\0", 1, true))
    end
  end)

  it("says where a bad name came from when it is the file's", function()
    local path = dir:write("my service.lua", quitter)
    local rc, _, err = dir:mycelium("check '" .. path .. "'")
    assert.are.equal(1, rc)
    assert.matches('service name "my service" is invalid', err, 1, true)
    assert.matches("give the service a 'name'", err, 1, true)
  end)

  it("a name of 255 bytes is whole, one of 256 is refused, never cut", function()
    dir:write("q.lua", quitter)
    local long = string.rep("n", 255)
    dir:write("mycelium.lua", string.format(
      "return { services = { { name = %q, module = 'q.lua' } } }", long))
    local rc, out, err = dir:mycelium("check " .. dir.path .. "/mycelium.lua")
    assert.are.equal(0, rc, err)
    assert.matches(long .. " (worker", out, 1, true)
  end)

  it("the engine refuses the same names, quoted escaped", function()
    for name, why in pairs(BAD) do
      local ok, err = pcall(testing.engine, { services = { {
        name = name, module = testing.module(quitter) } } })
      assert.is_false(ok, name)
      assert.matches('service name "', err, 1, true)
      assert.matches(why, err, 1, true)
      assert.is_nil(err:find("\n", 1, true))
      assert.is_nil(err:find("\0", 1, true))
    end
    local ok, err = pcall(testing.engine, { services = { {
      name = "new\nline", module = testing.module(quitter) } } })
    assert.is_false(ok)
    assert.matches('"new\\nline"', err, 1, true)
  end)

  it("config and engine agree on which names are valid", function()
    local names = { "a", "A_b-c.d:e", "_x", "0svc", "collector-1", "svc.v2",
                    "a/b", "a b", "a\tb", "é", ".hidden", ":x", "x y", "a'b",
                    "a\\b", "a;b", string.rep("z", 255), "" }
    for _, name in ipairs(names) do
      local lua_ok = config.name_problem(name) == nil
      local eng_ok, eng = pcall(testing.engine, { services = { {
        name = name, module = testing.module(quitter) } } })
      if eng_ok then eng:close() end
      assert.are.equal(lua_ok, eng_ok, string.format("%q", name))
    end
  end)

  it("group names follow the same rule", function()
    dir:write("q.lua", quitter)
    dir:write("mycelium.lua", [[return { supervisors = { ['a "b"'] = {} },
      services = { { module = 'q.lua' } } }]])
    local rc, _, err = dir:mycelium("check " .. dir.path .. "/mycelium.lua")
    assert.are.equal(1, rc)
    assert.matches([['supervisors': group name "a "b"" is invalid]], err, 1, true)
    local ok, gerr = pcall(testing.engine, { supervisors = { ["a b"] = {} },
      services = { { name = "s", module = testing.module(quitter) } } })
    assert.is_false(ok)
    assert.matches([['supervisors': group name "a b" is invalid]], gerr, 1, true)
  end)
end)
