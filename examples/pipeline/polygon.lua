-- Process 1 of the pipeline: PolygonAdapter alone. It subscribes to the
-- node (BANDIT_URL, the replay server) and sends what it decodes to the
-- processes that subscribe to it: metadata (logs, the end) and arb
-- (skipped records). Same service and options as examples/bandit.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local top = dofile(here .. "/topology.lua")
local env = os.getenv

return top.node("polygon", {
  workers = 1,
  connect = { top.url.metadata, top.url.arb },
  services = {
    { name = "polygon", module = "../../services/polygon_adapter.lua",
      opts = { source = "ws", url = env("BANDIT_URL"), pools = top.pools,
               tokens = top.tokens,
               end_after = tonumber(env("BANDIT_LINES") or ""),
               idle_end_ms = tonumber(env("BANDIT_IDLE_MS") or "3000") } },
  },
})
