-- Process 2 of the pipeline: MetadataService alone. The adapter connects
-- to it; it connects to arb. Same service and options as examples/bandit.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local top = dofile(here .. "/topology.lua")

return top.node("metadata", {
  workers = 1,
  listen = { top.url.metadata },
  connect = { top.url.arb },
  services = {
    { name = "metadata", module = "../../services/metadata_service.lua",
      opts = { pools = top.pools, tokens = top.tokens,
               redis = top.opt("BANDIT_REDIS"), rpc = top.opt("BANDIT_RPC") } },
  },
})
