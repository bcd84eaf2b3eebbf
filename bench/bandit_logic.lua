-- bandit_logic.lua -- throughput of the Bandit domain logic alone (no
-- engine): the sample capture looped through classify + decode + detector.
--
--   luajit bench/bandit_logic.lua [RESULTS.jsonl] [SECONDS]
--
-- Prints a table; with RESULTS, appends one JSON line per metric:
-- {"bench":"bandit_logic","metric":...,"value":...,"unit":...}.
-- Baseline measured in the same run: cjson.decode alone on the same lines,
-- the floor any JSON-based adapter pays before doing anything useful.
local dir = (arg and arg[0] and arg[0]:match("^(.*)/bench/[^/]*$")) or "."
package.path = table.concat({ dir .. "/lua/?.lua", dir .. "/lua/?/init.lua",
  dir .. "/services/?.lua", package.path }, ";")

local cjson = require "cjson"
local abi = require "bandit.abi"
local registry = require "bandit.registry"
local detector = require "bandit.detector"
local pipeline = require "bandit.pipeline"
local report = require "bandit.report"

local clock, format = os.clock, string.format
local data = dir .. "/examples/bandit/data/"

local function load_lines()
  local lines = {}
  for l in io.lines(data .. "sample_capture.jsonl") do lines[#lines + 1] = l end
  local sub_id = abi.subscription_reply(lines[1])
  table.remove(lines, 1)
  return lines, sub_id
end

local lines, sub_id = load_lines()
local reg = assert(registry.load(data .. "pools.json", data .. "tokens.json"))
local budget = tonumber(arg[2]) or 1.0

-- Runs body(line) over the looped capture for about `budget` seconds;
-- returns messages per second.
local function measure(body)
  local n, nl = 0, #lines
  for i = 1, 20000 do body(lines[(i - 1) % nl + 1]) end   -- warm up the JIT
  collectgarbage()
  local t0 = clock()
  local t = t0
  while t - t0 < budget do
    for i = 1, 10000 do body(lines[(n + i - 1) % nl + 1]) end
    n = n + 10000
    t = clock()
  end
  return n / (t - t0)
end

local scenarios = {}
local function scenario(name, fn) scenarios[#scenarios + 1] = { name, fn } end

scenario("cjson_decode_baseline", function()
  local decode = cjson.new().decode
  return function(l) pcall(decode, l) end
end)

scenario("classify", function()
  local envelope = abi.envelope
  return function(l) envelope(l, sub_id) end
end)

scenario("classify_decode", function()
  local envelope, decode = abi.envelope, abi.decode
  return function(l)
    local v = envelope(l, sub_id)
    if v and v.removed ~= true then decode(v, reg) end
  end
end)

-- What a detector service does per message: decode, apply or retract,
-- evaluate; history bounded as an engine would run it.
scenario("decode_evaluate", function()
  local envelope, decode, log_key = abi.envelope, abi.decode, abi.log_key
  local det = detector.new(reg, { reorg_window = 4096 })
  return function(l)
    local v = envelope(l, sub_id)
    if not v then return end
    if v.removed == true then
      local bh, th, li = log_key(v)
      local ev = bh and det:find(bh, th, li)
      if ev then det:retract(ev) end
      return
    end
    local ev = decode(v, reg)
    if ev then det:accept(ev) end
  end
end)

-- The oracle's full work, including one output record per message.
scenario("pipeline_with_records", function()
  local p
  local function fresh()
    p = pipeline.new(reg, { subscription = sub_id, reorg_window = 4096,
                            keep_events = false })
  end
  fresh()
  return function(l)
    local kind, ev = p:feed(l)
    if kind == "event" then report.event_json(ev) end
    if #p.skipped > 4096 then fresh() end
  end
end)

local results = {}
print(format("%-24s %14s %10s", "scenario", "msgs/s", "us/msg"))
for _, s in ipairs(scenarios) do
  local rate = measure(s[2]())
  results[#results + 1] = { s[1], rate }
  print(format("%-24s %14.0f %10.3f", s[1], rate, 1e6 / rate))
end

if arg[1] then
  local f = assert(io.open(arg[1], "a"))
  for _, r in ipairs(results) do
    f:write(format('{"bench":"bandit_logic","metric":"%s","value":%.0f,' ..
                   '"unit":"msgs/s"}\n', r[1], r[2]))
  end
  f:close()
end
