-- spec/support/nats_cluster.lua -- a real NATS cluster for specs: n
-- nats-server processes on free 127.0.0.1 ports, routed to each other,
-- their config files generated in a temporary directory.  Each runs under
-- `timeout`, so none outlives a spec that crashes by more than 'lifetime'
-- seconds.
--
--   local cluster = require("support.nats_cluster").start(3)
--   cluster.urls[1]          -- "nats://127.0.0.1:PORT"
--   cluster:kill(3)          -- SIGKILL of node 3, as a crash would
--   cluster:stop()
-- opts.ports: the client ports to use (default: free ones); opts.conf:
-- more of every node's config (a tls or authorization block), opts.scheme:
-- the URLs' ("tls" for a server that requires TLS; default "nats").
local free_port = require("support.redis_server").free_port
local proc = require "support.proc"

local M = {}

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local Cluster = {}
Cluster.__index = Cluster

-- Routes each node saw come up (its log's "Route connection created").
local function routes(self, i)
  local n = 0
  for _ in proc.slurp(self.dir .. "/n" .. i .. ".log"):gmatch("Route connection created") do
    n = n + 1
  end
  return n
end

function M.start(n, opts)
  opts = opts or {}
  if sh("command -v nats-server") == "" then
    error("nats-server not found: run scripts/deps.sh")
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  local self = setmetatable({ dir = dir, n = n, urls = {}, pids = {},
                              lifetime = opts.lifetime or 120 }, Cluster)
  local client, cluster = {}, {}
  for i = 1, n do
    client[i], cluster[i] = opts.ports and opts.ports[i] or free_port(), free_port()
    self.urls[i] = (opts.scheme or "nats") .. "://127.0.0.1:" .. client[i]
  end
  for i = 1, n do
    local rs = {}
    for j = 1, n do
      if j ~= i then rs[#rs + 1] = "nats-route://127.0.0.1:" .. cluster[j] end
    end
    local conf = string.format([[
server_name: n%d
listen: 127.0.0.1:%d
cluster {
  name: myc
  listen: 127.0.0.1:%d
  routes: [ %s ]
}
%s
]], i, client[i], cluster[i], table.concat(rs, ", "), opts.conf or "")
    local f = assert(io.open(dir .. "/n" .. i .. ".conf", "w"))
    f:write(conf)
    f:close()
  end
  for i = 1, n do
    self.pids[i] = tonumber(sh(string.format(
      "timeout %d nats-server -c %s/n%d.conf >%s/n%d.log 2>&1 & echo $!",
      self.lifetime, dir, i, dir, i)))
  end
  -- Every node routed to every other before anyone publishes.
  local deadline = os.time() + 10
  repeat
    local full = true
    for i = 1, n do
      if routes(self, i) < n - 1 or
         not proc.slurp(dir .. "/n" .. i .. ".log"):find("Server is ready", 1, true) then
        full = false
      end
    end
    if full then return self end
    proc.sleep(0.05)
  until os.time() > deadline
  local logs = sh("tail -n 20 " .. dir .. "/*.log")
  self:stop()
  error("the NATS cluster did not form:\n" .. logs)
end

-- SIGKILL of node i (the nats-server under its `timeout`).
function Cluster:kill(i)
  local pid = self.pids[i]
  if pid then
    os.execute("pkill -9 -P " .. pid .. " 2>/dev/null; kill -9 " .. pid .. " 2>/dev/null")
    self.pids[i] = nil
  end
end

-- A node that ended before stop() (its `timeout` ran out, it crashed, it
-- could not bind) leaves a spec failing with "No server available": its
-- log's end goes to stderr before the directory is removed, to say why.
local function report_gone(self)
  for i = 1, self.n do
    local pid = self.pids[i]
    if pid and proc.gone(pid) then
      io.stderr:write(string.format("nats_cluster: node %d (%s) ended before stop(); "
                                    .. "the end of its log:\n%s\n", i, self.urls[i],
                                    sh("tail -n 30 " .. self.dir .. "/n" .. i .. ".log")))
    end
  end
end

function Cluster:stop()
  report_gone(self)
  for i = 1, self.n do self:kill(i) end
  os.execute("rm -rf '" .. self.dir .. "'")
end

return M
