-- Node "metadata": the MetadataService, fed by the adapter through NATS.
local c = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or ".") .. "/common.lua")
return c.node("metadata", {
  { name = "metadata", module = c.services .. "/metadata_service.lua",
    opts = { pools = c.data .. "pools.json", tokens = c.data .. "tokens.json" } },
})
