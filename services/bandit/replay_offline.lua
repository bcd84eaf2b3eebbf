-- replay_offline.lua -- the reference driver: a capture file in, the four
-- expected-style files out (events.jsonl, skipped.jsonl, signals.jsonl,
-- summary.json). It is the oracle the engine pipeline tests compare to.
local registry = require "bandit.registry"
local pipeline = require "bandit.pipeline"
local report = require "bandit.report"
local capture = require "bandit.capture"

local open, stderr = io.open, io.stderr
local concat, type, pairs, ipairs, tostring, error =
  table.concat, type, pairs, ipairs, tostring, error

local M = {}

local function write_file(path, text)
  local f, err = open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  if not ok then return nil, werr end
  return true
end

local function jsonl(records)
  local out = {}
  for i, r in ipairs(records) do out[i] = report.encode(r) .. "\n" end
  return concat(out)
end

--- Run a capture through the pipeline. opts: capture, pools, tokens
--- (paths), reorg_window. Returns the finished pipeline, or nil, message.
function M.run(opts)
  if type(opts) ~= "table" or type(opts.capture) ~= "string" or
     type(opts.pools) ~= "string" then
    error("replay_offline.run: opts.capture and opts.pools are required", 2)
  end
  local reg, err = registry.load(opts.pools, opts.tokens)
  if not reg then return nil, err end
  local lines
  lines, err = capture.read(opts.capture)
  if not lines then return nil, err end
  local p = pipeline.new(reg, { reorg_window = opts.reorg_window })
  for _, line in ipairs(lines) do p:feed(line) end
  return p
end

local function events_jsonl(p)
  local out = {}
  for i, ev in ipairs(p.events) do out[i] = report.event_json(ev) .. "\n" end
  return concat(out)
end

--- The four output texts of a finished pipeline, keyed by file name.
function M.outputs(p)
  return {
    ["events.jsonl"] = events_jsonl(p),
    ["skipped.jsonl"] = jsonl(p.skipped),
    ["signals.jsonl"] = jsonl(p.signals),
    ["summary.json"] = report.encode(p:summary(), 2) .. "\n",
  }
end

--- Write the outputs into directory out_dir (which must exist).
function M.write(p, out_dir)
  for name, text in pairs(M.outputs(p)) do
    local ok, err = write_file(out_dir .. "/" .. name, text)
    if not ok then return nil, err end
  end
  return true
end

local USAGE = [[
usage: offline CAPTURE POOLS TOKENS OUT_DIR
  Replays a Polygon websocket capture (one message per line) through the
  Bandit rules and writes events.jsonl, skipped.jsonl, signals.jsonl and
  summary.json into OUT_DIR (made if missing).]]

--- Command-line entry: returns the process exit code. Messages go to
--- `errout` (default io.stderr).
function M.main(argv, errout)
  errout = errout or stderr
  if #argv ~= 4 then errout:write(USAGE, "\n") return 2 end
  local p, err = M.run { capture = argv[1], pools = argv[2], tokens = argv[3] }
  local ok = p and true
  if p then
    -- OUT_DIR is made if missing, as `mkdir -p` would.
    local q = "'" .. argv[4]:gsub("'", [['\'']]) .. "'"
    os.execute("mkdir -p -- " .. q .. " 2>/dev/null")
    ok, err = M.write(p, argv[4])
  end
  if not ok then errout:write("offline: ", tostring(err), "\n") return 1 end
  return 0
end

return M
