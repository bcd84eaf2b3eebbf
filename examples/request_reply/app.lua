-- Both services in one engine: `mycelium run app.lua`.
return {
  workers = 2,
  log = { level = "warn" },
  services = {
    { name = "pricer", module = "pricer.lua", worker = 0,
      restart = "permanent" },
    { name = "client", module = "client.lua", worker = 1,
      opts = { rounds = tonumber(os.getenv("ROUNDS") or "3"),
               interval_ms = 100 } },
  },
}
