-- The load test's baseline (./run --single): the same three services and
-- collector in one process, placed as examples/bandit/mycelium.lua places
-- them (adapter, metadata and the detector on worker 0, the collector on
-- worker 1), fed by the same replay server.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local top = dofile(here .. "/topology.lua")
local env, opt = os.getenv, top.opt

local collector = top.collector { "polygon", "metadata", "arb" }
collector.worker = 1

return top.node("single", {
  workers = 2,
  services = {
    { name = "polygon", module = "../../services/polygon_adapter.lua",
      worker = 0,
      opts = { source = "ws", url = env("BANDIT_URL"), pools = top.pools,
               tokens = top.tokens,
               end_after = tonumber(env("BANDIT_LINES") or ""),
               idle_end_ms = tonumber(env("BANDIT_IDLE_MS") or "3000") } },
    { name = "metadata", module = "../../services/metadata_service.lua",
      worker = 0,
      opts = { pools = top.pools, tokens = top.tokens,
               redis = opt("BANDIT_REDIS"), rpc = opt("BANDIT_RPC") } },
    { name = "arb", module = "../../services/arbitrage_detector.lua",
      worker = 0 },
    collector,
  },
})
