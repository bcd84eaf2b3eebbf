-- spec/examples/nats_spec.lua -- examples/nats/run as a user runs it:
-- Bandit's three services in three engines that talk only through a
-- nats-server decide the bundled sample exactly as the expected files say.
local cli = require "support.cli"
local root = require("support.proc").root

describe("examples/nats", function()
  it("runs Bandit across three engines through NATS with the expected results", function()
    local dir = cli.tmpdir()
    finally(function() dir:remove() end)
    local rc, out, err = dir:sh(string.format(
      "BANDIT_QUIET=1 BANDIT_DELAY_MS=500 MYCELIUM_BIN=%s timeout 120 %s/examples/nats/run",
      cli.bin, root))
    assert.equal(0, rc, out .. err)
    assert.matches("arb exited 0", out, 1, true)
    for _, f in ipairs({ "events", "skipped", "signals" }) do
      assert.matches(f .. ": identical to sample_expected_" .. f .. ".jsonl", out, 1, true)
    end
  end)
end)
