-- Node "polygon": the feeder plays the capture into bandit.raw, the
-- PolygonAdapter decodes it; what it emits leaves through NATS.
local c = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or ".") .. "/common.lua")
local env = os.getenv
return c.node("polygon", {
  { name = "feeder", module = c.bandit .. "/feeder.lua",
    opts = { capture = env("BANDIT_CAPTURE") or c.data .. "sample_capture.jsonl",
             rate = tonumber(env("BANDIT_RATE") or ""),
             -- the other nodes' subscriptions reach NATS first
             start_after_ms = tonumber(env("BANDIT_DELAY_MS") or "1000") } },
  { name = "polygon", module = c.services .. "/polygon_adapter.lua",
    opts = { source = "topic", pools = c.data .. "pools.json",
             tokens = c.data .. "tokens.json" } },
})
