-- Node "a": the pricer, listening for node "b".
local url = os.getenv("LINK_URL") or "unix:///tmp/mycelium-request-reply.sock"
return {
  node = "a",
  workers = 1,
  listen = { url },
  log = { level = "info" },
  services = { { name = "pricer", module = "pricer.lua" } },
}
