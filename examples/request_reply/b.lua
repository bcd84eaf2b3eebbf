-- Node "b": the client, the same code as in one process, asking node
-- "a"'s pricer over the link.
local url = os.getenv("LINK_URL") or "unix:///tmp/mycelium-request-reply.sock"
-- LINK_TLS: a directory with the ca.crt that signed a's certificate.
local tls = os.getenv("LINK_TLS")
return {
  node = "b",
  workers = 1,
  connect = { url },
  link = { reconnect_initial_ms = 50, reconnect_max_ms = 500,
           tls = tls and { ca = tls .. "/ca.crt" } },
  log = { level = "info" },
  services = {
    { name = "client", module = "client.lua",
      opts = { rounds = tonumber(os.getenv("ROUNDS") or "3"),
               interval_ms = 100 } },
  },
}
