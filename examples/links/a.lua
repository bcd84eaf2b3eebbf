-- Node "a": the producer.  It listens; node "b" connects to it.
-- LINK_URL picks the transport (default: a Unix socket in /tmp), LINK_KEY
-- a pre-shared key file for TCP, LINK_TLS a directory with ca.crt and
-- srv.crt/.key for tls+tcp:// (spec/support/certs.sh makes one).
local url = os.getenv("LINK_URL") or "unix:///tmp/mycelium-links-example.sock"
local tls = os.getenv("LINK_TLS")
return {
  node = "a",
  workers = 1,
  listen = { url },
  -- LINK_KEY: a key file both nodes share; TCP links then require it.
  -- LINK_WORKER=0 runs the links on worker 0's loop (link.worker).
  link = { psk_file = os.getenv("LINK_KEY"),
           worker = tonumber(os.getenv("LINK_WORKER") or ""),
           -- mutual TLS: b must show a certificate ca.crt signed
           tls = tls and { cert = tls .. "/srv.crt", key = tls .. "/srv.key",
                           ca = tls .. "/ca.crt", verify_client = true } },
  control = os.getenv("CONTROL") or "unix:///tmp/mycelium-links-a.ctl",
  log = { level = "info", format = os.getenv("LOG_FORMAT") or "text" },
  -- METRICS=127.0.0.1:9464 serves /metrics (the links' families too).
  metrics = os.getenv("METRICS") and { listen = os.getenv("METRICS") },
  services = {
    { name = "producer", module = "producer.lua",
      opts = { interval_ms = tonumber(os.getenv("INTERVAL_MS") or "200") } },
  },
}
