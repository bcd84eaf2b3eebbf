-- Backpressure demo: one fast producer, two slow consumers each on its
-- own worker, and a monitor.  Run: examples/backpressure/run
local seconds = tonumber(os.getenv("SECONDS_TO_RUN") or "6")
return {
  node = "backpressure",
  workers = 3,
  mailbox = { capacity = 65536, policy = "drop_oldest", threshold = 0.8 },
  log = { level = "warn" },
  services = {
    { name = "producer", module = "producer.lua", worker = 0,
      opts = { burst = 10000, seconds = seconds, pause_at = 0.5 } },
    { name = "sampler", module = "sampler.lua", worker = 1,
      opts = { work_us = 2, keep_one_in = 10 }, mailbox = { threshold = 0.1 } },
    { name = "dropper", module = "dropper.lua", worker = 2,
      opts = { work_us = 2 }, mailbox = { capacity = 16384 } },
    { name = "monitor", module = "monitor.lua", worker = 0,
      opts = { seconds = seconds, watch = { "sampler", "dropper" } } },
  },
}
