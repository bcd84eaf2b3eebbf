-- spec/examples/hello_spec.lua -- examples/hello/run as a user runs it
-- (the binary from the build tree): ten greetings in order, each with a
-- trace and span id, a summary, and a clean exit.
local cli = require "support.cli"
local root = require("support.proc").root

describe("examples/hello", function()
  it("prints ten greetings in order, then a summary, and exits 0", function()
    local dir = cli.tmpdir()
    finally(function() dir:remove() end)
    local rc, out, err = dir:sh(string.format("MYCELIUM_BIN=%s timeout 60 %s/examples/hello/run",
                                              cli.bin, root))
    assert.equal(0, rc, err)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      if line:find("^hello") then
        n = n + 1
        local i, trace, span, seq = line:match(
          "^hello #(%d+) from ticker%s+trace=(%x+) span=(%x+) seq=(%d+)$")
        assert.equal(tostring(n), i, line)
        assert.equal(32, #trace, line)
        assert.equal(16, #span, line)
        assert.equal(tostring(n), seq, line)
      end
    end
    assert.equal(10, n, out)
    assert.matches("\nsummary: 10 greetings in %d+%.%d+ s\n$", out)
  end)
end)
