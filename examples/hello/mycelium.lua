-- The hello pipeline: ticker -> transformer -> sink.
return {
  node = "hello",
  workers = 1,
  log = { level = "info", format = "text" },
  services = {
    { name = "sink", module = "sink.lua", opts = { expect = 10 } },
    { name = "transformer", module = "transformer.lua" },
    { name = "ticker", module = "ticker.lua", opts = { count = 10, interval_ms = 50 } },
  },
}
