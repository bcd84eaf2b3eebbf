local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

-- A capture's lines as the node sent them, whatever bytes they hold.
local capture = require "bandit.capture"

describe("bandit.capture", function()
  it("splits at \\n only, keeping \\r, empty lines and a last line without \\n",
     function()
    assert.same({ "a", "b\r", "", "c" }, capture.split("a\nb\r\n\nc"))
    assert.same({ "a", "" }, capture.split("a\n\n"))
    assert.same({ "a" }, capture.split("a\n"))
    assert.same({}, capture.split(""))
    assert.same({ "" }, capture.split("\n"))
  end)

  it("keeps NUL bytes and every line after one (file:lines() does not)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write("one\0two\nthree\n\0\nfour")
    f:close()
    local lines = assert(capture.read(path))
    os.remove(path)
    assert.same({ "one\0two", "three", "\0", "four" }, lines)
  end)

  it("says why a file cannot be read", function()
    local none, err = capture.read("/nonexistent/capture.jsonl")
    assert.is_nil(none)
    assert.matches("/nonexistent/capture.jsonl", err, 1, true)
  end)
end)
