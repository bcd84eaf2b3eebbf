-- Node "a": the pricer, listening for node "b".
local url = os.getenv("LINK_URL") or "unix:///tmp/mycelium-request-reply.sock"
-- LINK_TLS: a directory with ca.crt and srv.crt/.key (tls+tcp://).
local tls = os.getenv("LINK_TLS")
return {
  node = "a",
  workers = 1,
  listen = { url },
  link = { tls = tls and { cert = tls .. "/srv.crt", key = tls .. "/srv.key" } },
  log = { level = "info" },
  services = { { name = "pricer", module = "pricer.lua" } },
}
