-- Node "arb": the ArbitrageDetector and the recorder, which prints each
-- signal and the summary, writes the files asked for and stops its node.
local c = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or ".") .. "/common.lua")
local env = os.getenv
local function opt(name) local v = env(name) return v ~= "" and v or nil end
return c.node("arb", {
  { name = "arb", module = c.services .. "/arbitrage_detector.lua" },
  { name = "recorder", module = c.bandit .. "/recorder.lua",
    opts = { events = opt("BANDIT_EVENTS"), skipped = opt("BANDIT_SKIPPED"),
             signals = opt("BANDIT_SIGNALS"), summary = opt("BANDIT_SUMMARY"),
             pools = c.data .. "pools.json", tokens = c.data .. "tokens.json",
             print = env("BANDIT_QUIET") ~= "1" } },
})
