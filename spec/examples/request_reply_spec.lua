-- spec/examples/request_reply_spec.lua -- examples/request_reply as a
-- user runs it: the client's quotes answered by the pricer, and "failed"
-- at once for the quote that crashes it, first in one process (two
-- workers), then across two `mycelium run` processes linked over a Unix
-- socket (the same Lua code).
local cli = require "support.cli"
local proc = require "support.proc"

local example = proc.root .. "/examples/request_reply"

-- Checks the client's output: 'rounds' rounds of AAPL, MSFT answered and
-- BOOM failed.
local function check(out, rounds)
  local n = { AAPL = 0, MSFT = 0, BOOM = 0 }
  for sym, total in out:gmatch("%[client%] (%u+) x 10 = ([%d.]+) from pricer") do
    assert.equal(sym == "AAPL" and "1895.00" or "4112.50", total)
    n[sym] = n[sym] + 1
  end
  for _ in out:gmatch("%[client%] BOOM: failed %([^\n]*no price for BOOM%)") do
    n.BOOM = n.BOOM + 1
  end
  assert.same({ AAPL = rounds, MSFT = rounds, BOOM = rounds }, n, out)
end

describe("examples/request_reply", function()
  it("answers quotes in one process and fails the crashing one at once", function()
    local dir = cli.tmpdir()
    finally(function() dir:remove() end)
    local rc, out, err = dir:sh(string.format(
      "cd %s && ROUNDS=3 timeout 60 %s run app.lua", example, cli.bin))
    assert.equal(0, rc, err)
    check(out, 3)
  end)

  it("does the same across two processes linked over a Unix socket", function()
    local dir = cli.tmpdir()
    local a
    finally(function()
      if a then a.stop() end
      dir:remove()
    end)
    local url = "unix://" .. dir.path .. "/rr.sock"
    a = proc.spawn(string.format("cd %s && LINK_URL='%s' exec timeout 60 %s run a.lua",
                                 example, url, cli.bin), "link listening on (%S+)", 10)
    local rc, out, err = dir:sh(string.format(
      "cd %s && ROUNDS=3 LINK_URL='%s' timeout 60 %s run b.lua", example, url, cli.bin))
    assert.equal(0, rc, err)
    check(out, 3)
    -- The pricer in a logged its crashes, with the trace of b's requests.
    assert.matches("%[pricer%] handler failed: pricer.lua:%d+: no price for BOOM", a.output())
  end)
end)
