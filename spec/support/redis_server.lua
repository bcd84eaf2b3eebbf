-- spec/support/redis_server.lua -- a real redis-server for specs, on a free
-- 127.0.0.1 port, without persistence.  It runs under `timeout`, so it
-- cannot outlive a spec that crashes by more than 'lifetime' seconds.
--
--   local server = require("support.redis_server").start()
--   ... server.url ...
--   server:kill()          -- SIGKILL, as a crash would
--   server:restart()       -- same port
--   server:stop()
local ffi = require "ffi"

ffi.cdef [[
struct myc_spec_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, uint32_t len);
int connect(int fd, const void *addr, uint32_t len);
int getsockname(int fd, void *addr, uint32_t *len);
int close(int fd);
int usleep(unsigned int usec);
]]

local C = ffi.C
local AF_INET, SOCK_STREAM = 2, 1

local M = {}

local function sockaddr(port)
  local a = ffi.new("struct myc_spec_sockaddr_in")
  a.family = AF_INET
  a.port = bit.bor(bit.rshift(port, 8), bit.lshift(bit.band(port, 0xff), 8))
  a.addr = 0x0100007f -- 127.0.0.1, network order
  return a
end

-- A port nothing listens on (the kernel picks it).
function M.free_port()
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  local a = sockaddr(0)
  local len = ffi.new("uint32_t[1]", ffi.sizeof(a))
  assert(C.bind(fd, a, ffi.sizeof(a)) == 0 and C.getsockname(fd, a, len) == 0)
  C.close(fd)
  local p = a.port
  return bit.bor(bit.rshift(p, 8), bit.lshift(bit.band(p, 0xff), 8))
end

-- A port that refuses connections for as long as the caller holds it: a
-- socket bound and never listening (a port merely found free may be taken
-- by a parallel test before the connect).  Returns the port and a function
-- that lets it go.
function M.refusing_port()
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  local a = sockaddr(0)
  local len = ffi.new("uint32_t[1]", ffi.sizeof(a))
  assert(C.bind(fd, a, ffi.sizeof(a)) == 0 and C.getsockname(fd, a, len) == 0)
  local p = a.port
  return bit.bor(bit.rshift(p, 8), bit.lshift(bit.band(p, 0xff), 8)),
         function() C.close(fd) end
end

local function accepts(port)
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  local a = sockaddr(port)
  local ok = C.connect(fd, a, ffi.sizeof(a)) == 0
  C.close(fd)
  return ok
end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local Server = {}
Server.__index = Server

local function launch(self)
  os.remove(self.pidfile)
  local extra = self.password and ("--requirepass " .. self.password) or ""
  self.wrapper = tonumber(sh(string.format(
    "timeout %d redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
      .. "--dir %s --pidfile %s %s >%s/log 2>&1 & echo $!",
    self.lifetime, self.port, self.dir, self.pidfile, extra, self.dir)))
  for _ = 1, 500 do
    local f = io.open(self.pidfile)
    if f then
      self.pid = tonumber(f:read("*a"))
      f:close()
      if self.pid and accepts(self.port) then return self end
    end
    C.usleep(10000)
  end
  error("redis-server did not start on port " .. self.port .. ": "
        .. sh("cat " .. self.dir .. "/log"))
end

-- Starts a server.  opts: password, port, lifetime (seconds, default 120).
function M.start(opts)
  opts = opts or {}
  if sh("command -v redis-server") == "" then
    error("redis-server not found: run scripts/deps.sh")
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  local self = setmetatable({ dir = dir, pidfile = dir .. "/redis.pid",
                              port = opts.port or M.free_port(),
                              password = opts.password,
                              lifetime = opts.lifetime or 120 }, Server)
  self.url = "redis://127.0.0.1:" .. self.port
  return launch(self)
end

-- SIGKILL, then waits until the port is closed.
function Server:kill()
  if self.pid then
    os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
    self.pid = nil
    for _ = 1, 500 do
      if not accepts(self.port) then break end
      C.usleep(10000)
    end
  end
end

function Server:restart()
  self:kill()
  return launch(self)
end

function Server:stop()
  self:kill()
  os.execute("rm -rf " .. self.dir)
end

return M
