-- Process 3 of the pipeline: ArbitrageDetector, and the recorder of
-- examples/bandit that writes the files and prints the summary. Both
-- upstream processes connect to it. The recorder ends this process when
-- it has written everything (./run then stops the other two).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local top = dofile(here .. "/topology.lua")
local env, opt = os.getenv, top.opt

return top.node("arb", {
  workers = 2,
  listen = { top.url.arb },
  services = {
    { name = "arb", module = "../../services/arbitrage_detector.lua",
      worker = 1 },
    { name = "recorder", module = "../bandit/recorder.lua", worker = 0,
      opts = { events = opt("BANDIT_EVENTS"), skipped = opt("BANDIT_SKIPPED"),
               signals = opt("BANDIT_SIGNALS"), summary = opt("BANDIT_SUMMARY"),
               pools = top.pools, tokens = top.tokens,
               print = env("BANDIT_QUIET") ~= "1",
               services = { "arb", "recorder" } } },
  },
})
