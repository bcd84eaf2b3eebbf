-- Bandit end to end: PolygonAdapter -> MetadataService -> ArbitrageDetector,
-- and a recorder that writes the README §5 files and prints a summary.
-- examples/bandit/run sets the BANDIT_* variables; without them this runs
-- the bundled sample (examples/bandit/data/) fed by the feeder.
--
-- Source of the log lines: with BANDIT_URL (the replay server, or a
-- node) the adapter subscribes over WebSocket; otherwise the feeder plays
-- BANDIT_CAPTURE into bandit.raw.
local env = os.getenv
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local data = here .. "/data/"

local capture = env("BANDIT_CAPTURE") or data .. "sample_capture.jsonl"
local pools = env("BANDIT_POOLS") or data .. "pools.json"
local tokens = env("BANDIT_TOKENS") or data .. "tokens.json"
local url = env("BANDIT_URL")
local function opt(name) local v = env(name) return v ~= "" and v or nil end

local services = {}
if not url then
  services[#services + 1] = { name = "feeder", module = "feeder.lua",
    worker = 0, opts = { capture = capture,
                         rate = tonumber(env("BANDIT_RATE") or "") } }
end
services[#services + 1] = { name = "polygon",
  module = "../../services/polygon_adapter.lua", worker = 0,
  opts = { source = url and "ws" or "topic", url = url, pools = pools,
           tokens = tokens, end_after = tonumber(env("BANDIT_LINES") or ""),
           idle_end_ms = url and tonumber(env("BANDIT_IDLE_MS") or "3000") or nil } }
services[#services + 1] = { name = "metadata",
  module = "../../services/metadata_service.lua", worker = 0,
  opts = { pools = pools, tokens = tokens, redis = opt("BANDIT_REDIS"),
           rpc = opt("BANDIT_RPC") } }
-- The pipeline (adapter, metadata, detector) shares worker 0: its
-- services talk mostly to each other, and on one worker a log goes from
-- one to the next without a hand-over or a wake-up of another thread
-- (docs/TUNING.md, "Workers and placement", has the measurement).
services[#services + 1] = { name = "arb",
  module = "../../services/arbitrage_detector.lua", worker = 0 }
-- The recorder renders every event (decimal strings, checksums): keep it
-- off the pipeline's worker, whose latency the summary reports.
services[#services + 1] = { name = "recorder", module = "recorder.lua",
  worker = 1, opts = {
    events = opt("BANDIT_EVENTS"), skipped = opt("BANDIT_SKIPPED"),
    signals = opt("BANDIT_SIGNALS"), summary = opt("BANDIT_SUMMARY"),
    pools = pools, tokens = tokens, print = env("BANDIT_QUIET") ~= "1",
    services = url and { "polygon", "metadata", "arb", "recorder" } or nil,
  } }

return {
  node = "bandit",
  workers = 2,
  contracts = "../../services/contracts.yaml",
  -- Nothing may be lost: the producers slow down on pressure, and a full
  -- mailbox refuses rather than silently dropping the oldest log.
  mailbox = { capacity = 65536, policy = "reject", threshold = 0.8 },
  log = { level = env("BANDIT_LOG") or "warn", format = "text" },
  metrics = opt("BANDIT_METRICS") and { listen = opt("BANDIT_METRICS") },
  tracing = opt("BANDIT_TRACE") and { export = "zipkin", endpoint = opt("BANDIT_TRACE") },
  -- About a thousand traces compile in the first second; switching
  -- LuaJIT's code between writable and executable for each cost a third
  -- of the workers' time then (docs/TUNING.md, "LuaJIT's code
  -- protection"). The services are our own code: trade W^X for warm-up.
  jit = { mcode_protect = false },
  services = services,
}
