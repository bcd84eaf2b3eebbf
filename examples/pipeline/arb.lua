-- Process 3 of the pipeline: ArbitrageDetector, and the recorder of
-- examples/bandit that writes the files and prints the summary (or the
-- load test's collector). Both upstream processes connect to it. The
-- recorder ends this process when it has written everything (./run then
-- stops the other two).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local top = dofile(here .. "/topology.lua")

return top.node("arb", {
  workers = 2,
  listen = { top.url.arb },
  services = {
    { name = "arb", module = "../../services/arbitrage_detector.lua",
      worker = 1 },
    top.collector { "arb" },
  },
})
