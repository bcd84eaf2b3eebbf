local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "spec/?.lua", root .. "?.lua",
  package.path }, ";")

-- PolygonAdapter's handler stays compiled over a WebSocket flood: a
-- read's messages are delivered by one Lua loop (mycelium.net.ws), so the
-- trace that leaves the last loop of one message's fill runs on into the
-- next message, and with nothing to link to there it grew too long for
-- LuaJIT ("trace too long") until that exit went to the interpreter for
-- good (docs/TUNING.md). The adapter breaks each message's trace.
local H = require "spec.services.bandit.helper"
local testing = require "mycelium.testing"
local proc = require "support.proc"
local env = require "support.env"

local REPLAY = (os.getenv("MYCELIUM_BIN") or H.ROOT .. "build/mycelium")
               :gsub("mycelium$", "myc-replay")
local PLAYS = 4000

describe("PolygonAdapter over a WebSocket flood", function()
  local server, dir
  after_each(function()
    if server then server.stop() server = nil end
    env.unset("MYC_JIT_LOG")
    if dir then H.rmdir(dir) end
    testing.cleanup()
  end)

  it("records no trace too long after its warm-up", function()
    local capture = H.DATA .. "sample_capture.jsonl"
    server = proc.spawn(string.format("%s -q --ttl 120 --fast --loop %d %s",
                                      REPLAY, PLAYS, capture),
                        "listening on ws://127%.0%.0%.1:(%d+)/")
    dir = H.tmpdir()
    env.set("MYC_JIT_LOG", dir)
    local lines = #H.lines(capture)
    -- The pipeline on one worker, as in the bench's WebSocket flood: the
    -- slower the worker, the more messages one read brings.
    local eng = testing.engine {
      contracts = H.ROOT .. "services/contracts.yaml", start = false,
      workers = 1,
      services = {
        { name = "polygon", module = H.ROOT .. "services/polygon_adapter.lua",
          opts = { source = "ws", url = "ws://127.0.0.1:" .. server.ready[1] .. "/",
                   end_after = lines + (lines - 1) * (PLAYS - 1) } },
        { name = "metadata", module = H.ROOT .. "services/metadata_service.lua" },
        { name = "arb", module = H.ROOT .. "services/arbitrage_detector.lua" },
      },
    }
    local ends = eng:collect("bandit.end.adapter")
    eng:start()
    assert.is_true(eng:run_for(60, function() return #ends:messages() > 0 end),
                   "the adapter did not reach the end of the replay")
    eng:close()
    local text = H.read(dir .. "/polygon.jitv")
    local traffic = text:match("%[MARK traffic%](.*)$")
    assert.is_truthy(traffic, text)
    assert.is_falsy(traffic:find("trace too long", 1, true), traffic)
  end)
end)
