-- Node "b": the consumer.  It connects to node "a" (and reconnects when
-- "a" goes away and comes back).
local url = os.getenv("LINK_URL") or "unix:///tmp/mycelium-links-example.sock"
-- LINK_TLS: a directory with ca.crt and client.crt/.key (tls+tcp://).
local tls = os.getenv("LINK_TLS")
return {
  node = "b",
  workers = 1,
  connect = { url },
  link = { reconnect_initial_ms = 50, reconnect_max_ms = 1000,
           psk_file = os.getenv("LINK_KEY"),
           worker = tonumber(os.getenv("LINK_WORKER") or ""),
           tls = tls and { cert = tls .. "/client.crt", key = tls .. "/client.key",
                           ca = tls .. "/ca.crt" } },
  log = { level = "info", format = os.getenv("LOG_FORMAT") or "text" },
  services = {
    { name = "consumer", module = "consumer.lua" },
  },
}
