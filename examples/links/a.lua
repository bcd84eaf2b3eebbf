-- Node "a": the producer.  It listens; node "b" connects to it.
-- LINK_URL picks the transport (default: a Unix socket in /tmp), LINK_KEY
-- a pre-shared key file for TCP.
local url = os.getenv("LINK_URL") or "unix:///tmp/mycelium-links-example.sock"
return {
  node = "a",
  workers = 1,
  listen = { url },
  -- LINK_KEY: a key file both nodes share; TCP links then require it.
  link = { psk_file = os.getenv("LINK_KEY") },
  control = os.getenv("CONTROL") or "unix:///tmp/mycelium-links-a.ctl",
  log = { level = "info", format = os.getenv("LOG_FORMAT") or "text" },
  -- METRICS=127.0.0.1:9464 serves /metrics (the links' families too).
  metrics = os.getenv("METRICS") and { listen = os.getenv("METRICS") },
  services = {
    { name = "producer", module = "producer.lua",
      opts = { interval_ms = tonumber(os.getenv("INTERVAL_MS") or "200") } },
  },
}
