-- spec/examples/backpressure_spec.lua -- examples/backpressure/run as a
-- user runs it, shortened to 2 s: a table a second, the dropper loses
-- messages (its mailbox overflows), and the engine stops by itself.
local cli = require "support.cli"
local root = require("support.proc").root

describe("examples/backpressure", function()
  it("prints a table each second with the dropper's losses, and exits 0", function()
    local dir = cli.tmpdir()
    finally(function() dir:remove() end)
    local rc, out, err = dir:sh(string.format(
      "SECONDS_TO_RUN=2 MYCELIUM_BIN=%s timeout 120 %s/examples/backpressure/run",
      cli.bin, root))
    assert.equal(0, rc, err)
    assert.matches("^service%s+depth/capacity%s+handled/s%s+handled%s+dropped\n", out)
    assert.matches("-- t = 1 s (", out, 1, true)
    assert.matches("-- t = 2 s (", out, 1, true)
    -- the last table: both consumers handled messages, the dropper lost some
    local sampler = { out:match(".*\nsampler%s+(%d+)/65536%s+(%d+)%s+(%d+)%s+(%d+)\n") }
    local dropper = { out:match(".*\ndropper%s+(%d+)/16384%s+(%d+)%s+(%d+)%s+(%d+)\n") }
    assert.equal(4, #sampler, out)
    assert.equal(4, #dropper, out)
    assert.is_true(tonumber(sampler[3]) > 0, out)
    assert.is_true(tonumber(dropper[3]) > 0, out)
    assert.is_true(tonumber(dropper[4]) > 0, out)
  end)
end)
