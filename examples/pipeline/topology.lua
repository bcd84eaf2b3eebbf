-- topology.lua -- how the three processes of the pipeline find each other,
-- shared by polygon.lua, metadata.lua and arb.lua (each loads it with
-- dofile). Downstream listens, upstream connects: a `connect` link keeps
-- its peer's subscriptions and queues for it (up to link.queue_frames)
-- while the peer is down, so a restarted stage gets what was sent
-- meanwhile (docs/LINKS.md, Guarantees and losses).
--
--   polygon --connect--> metadata --connect--> arb (+ recorder)
--      \________________connect_______________/
--
-- The adapter's skipped records and end go straight to arb; links carry
-- one hop, so everything arb needs comes from the stage that emits it.
--
-- Environment (set by ./run): PIPELINE_TRANSPORT unix (default) or tcp;
-- PIPELINE_DIR, the directory of the sockets (default /tmp/mycelium-
-- pipeline); PIPELINE_PORT_METADATA and PIPELINE_PORT_ARB, the TCP
-- ports; PIPELINE_QUEUE_FRAMES, the links' queue bound; PIPELINE_TRACE,
-- a Zipkin v2 endpoint every process exports its spans to.
local env = os.getenv
local M = {}

local transport = env("PIPELINE_TRANSPORT") or "unix"
local dir = env("PIPELINE_DIR") or "/tmp/mycelium-pipeline"

local function url(node, port_var)
  if transport == "tcp" then
    local port = env(port_var)
    if not port or not port:match("^%d+$") then
      error("topology.lua: PIPELINE_TRANSPORT=tcp needs " .. port_var
            .. " (a port number)", 0)
    end
    return "tcp://127.0.0.1:" .. port
  elseif transport == "unix" then
    return "unix://" .. dir .. "/" .. node .. ".sock"
  end
  error("topology.lua: PIPELINE_TRANSPORT must be unix or tcp, got "
        .. transport, 0)
end

M.url = { metadata = url("metadata", "PIPELINE_PORT_METADATA"),
          arb = url("arb", "PIPELINE_PORT_ARB") }

local function opt(name) local v = env(name) return v ~= "" and v or nil end
M.opt = opt

-- The Bandit files (the same BANDIT_* variables as examples/bandit/run).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local data = here .. "/../bandit/data/"
M.pools = env("BANDIT_POOLS") or data .. "pools.json"
M.tokens = env("BANDIT_TOKENS") or data .. "tokens.json"

-- What every process of the pipeline shares: the contracts, the mailbox
-- rule of the single-process Bandit (nothing may be lost: refuse, never
-- evict), the link settings, a control socket for `mycelium status`.
function M.node(name, t)
  t.node = name
  t.contracts = "../../services/contracts.yaml"
  t.mailbox = { capacity = 65536, policy = "reject", threshold = 0.8 }
  t.link = { reconnect_initial_ms = 20, reconnect_max_ms = 200,
             queue_frames = tonumber(opt("PIPELINE_QUEUE_FRAMES") or "65536") }
  t.control = "unix://" .. dir .. "/" .. name .. ".ctl"
  t.log = { level = env("BANDIT_LOG") or "warn", format = "text" }
  -- ./run --trace: every process posts its spans to the same collector;
  -- the trace ids crossing the links join them into one tree per log.
  local trace = opt("PIPELINE_TRACE")
  if trace then t.tracing = { export = "zipkin", endpoint = trace } end
  return t
end

-- The service at the end of the pipeline: the recorder of examples/bandit
-- (files and summary), or with PIPELINE_COLLECTOR=bench the load test's
-- bench_result.lua. `services`: those whose drops it counts.
function M.collector(services)
  if env("PIPELINE_COLLECTOR") == "bench" then
    return { name = "collector", module = "bench_result.lua", worker = 0,
             opts = { services = services,
                      warmup_ms = tonumber(opt("PIPELINE_WARMUP_MS") or "0") } }
  end
  services[#services + 1] = "recorder"
  return { name = "recorder", module = "../bandit/recorder.lua", worker = 0,
    opts = { events = opt("BANDIT_EVENTS"), skipped = opt("BANDIT_SKIPPED"),
             signals = opt("BANDIT_SIGNALS"), summary = opt("BANDIT_SUMMARY"),
             pools = M.pools, tokens = M.tokens,
             print = env("BANDIT_QUIET") ~= "1", services = services } }
end


return M
