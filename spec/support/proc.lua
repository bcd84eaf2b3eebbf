-- spec/support/proc.lua -- background processes for specs (peer servers):
-- started with their output in a temporary file, waited for until a line
-- matches, and killed by pid at the end.  Every process the specs start
-- also exits by itself (a --ttl of its own), so nothing outlives a run.
local ffi = require "ffi"

ffi.cdef [[
int usleep(unsigned int usec);
int kill(int pid, int sig);
]]

local M = {}
local peers = require "support.peers"

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
M.slurp = slurp

-- Whether process 'pid' has ended: no longer listed, or a zombie (PID 1
-- of a container may not reap it; it holds no socket).
function M.gone(pid)
  local st = slurp("/proc/" .. pid .. "/stat")
  return st == "" or st:match("^%d+ %b() [ZX]") ~= nil
end

function M.sleep(seconds)
  ffi.C.usleep(math.floor(seconds * 1e6))
end

-- fn()'s first true value, asked every 50 ms for up to 'seconds' (10),
-- or nil.
function M.wait_for(fn, seconds)
  local deadline = os.time() + (seconds or 10)
  repeat
    local v = fn()
    if v then return v end
    M.sleep(0.05)
  until os.time() > deadline
  return nil
end

-- Starts 'cmd' (a shell command line) in the background and waits up to
-- 'timeout' seconds for its output to match 'pattern'.  Returns a handle
-- with pid, the pattern's captures as 'ready', and stop().
function M.spawn(cmd, pattern, timeout)
  local out, pidf = os.tmpname(), os.tmpname()
  peers.run(string.format("%s > %s 2>&1 & echo $! > %s", cmd, out, pidf))
  local pid = tonumber(slurp(pidf):match("%d+"))
  os.remove(pidf)
  local p = { pid = pid, out = out }
  function p.output() return slurp(out) end
  function p.stop()
    if p.pid then
      ffi.C.kill(p.pid, 15)
      p.pid = nil
    end
    os.remove(out)
  end
  function p.alive() return p.pid ~= nil and ffi.C.kill(p.pid, 0) == 0 end
  -- Sends 'sig' and waits up to 5 s for the process to be gone (a zombie
  -- counts: it holds no socket), so that a successor can take its port.
  function p.kill(sig)
    local pid = assert(p.pid, "not running")
    ffi.C.kill(pid, sig)
    p.pid = nil
    return M.wait_for(function() return M.gone(pid) end, 5) ~= nil
  end
  local deadline = os.time() + (timeout or 10)
  repeat
    local caps = { slurp(out):match(pattern) }
    if caps[1] then
      p.ready = caps
      return p
    end
    M.sleep(0.02)
  until os.time() > deadline
  local text = slurp(out)
  p.stop()
  error("process did not start: " .. cmd .. "\n" .. text, 2)
end

-- The project root (ctest runs specs from it).
M.root = os.getenv("MYCELIUM_SOURCE_DIR") or "."

-- Makes sure spec/peers/node_modules has the committed dependencies (an
-- older install lacks the packages added since: each is checked).
local NODE_PEERS = { "ws", "nats", "protobufjs", "zipkin",
                     "@opentelemetry/otlp-grpc-exporter-base" }
local function node_peers_installed(dir)
  for _, p in ipairs(NODE_PEERS) do
    local f = io.open(dir .. "/node_modules/" .. p .. "/package.json")
    if not f then return false end
    f:close()
  end
  return true
end

function M.node_peers()
  local dir = M.root .. "/spec/peers"
  if node_peers_installed(dir) then return dir end
  local test = {}
  for _, p in ipairs(NODE_PEERS) do
    test[#test + 1] = "[ -f node_modules/" .. p .. "/package.json ]"
  end
  -- Specs run in parallel: one installs, the others wait on the lock.
  peers.have("node")
  if not peers.ok(string.format(
    "cd %s && flock .npm.lock sh -c '{ %s; } || "
    .. "npm ci --no-audit --no-fund --silent' >/dev/null 2>&1", dir,
    table.concat(test, " && "))) then
    error("npm ci failed in spec/peers: run scripts/deps.sh", 2)
  end
  return dir
end

return M
