-- spec/support/pg_server.lua -- a real PostgreSQL server for specs: initdb
-- in a temporary directory, postgres on a free 127.0.0.1 port, its Unix
-- socket in that directory, no fsync.  As root (CI) both run as the
-- unprivileged user 'nobody' (postgres refuses root), the directory given
-- to it.  The server runs under `timeout`, so it cannot outlive a spec
-- that crashes by more than 'lifetime' seconds.
--
--   local server = require("support.pg_server").start()
--   ... server.url ...    -- postgresql://mycelium@127.0.0.1:PORT/mycelium
--   server:psql("CREATE TABLE t (k text)")
--   server:kill()         -- SIGKILL, as a crash would
--   server:restart()      -- same port, same data
--   server:stop()
local redis_server = require "support.redis_server" -- free_port, the socket probe
local ffi = require "ffi"

local M = {}

local USER, DB = "mycelium", "mycelium"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

-- The directory of initdb/postgres/psql: the newest Debian cluster version
-- (/usr/lib/postgresql/N/bin), or PATH.
local function bindir()
  local d = sh("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1"):gsub("%s+$", "")
  if d ~= "" then return d .. "/" end
  if sh("command -v initdb") ~= "" then return "" end
  error("PostgreSQL (initdb, postgres) not found: run scripts/deps.sh")
end

local Server = {}
Server.__index = Server

-- Runs 'cmd' as the server's user.
function Server:as_owner(cmd)
  if self.runas then
    return string.format("runuser -u %s -- sh -c '%s'", self.runas, cmd)
  end
  return cmd
end

local function accepts(self)
  return os.execute(string.format("%spg_isready -q -h 127.0.0.1 -p %d -t 1", self.bin,
                                  self.port)) == 0
end

local function launch(self)
  os.remove(self.data .. "/postmaster.pid")
  self.wrapper = tonumber(sh(self:as_owner(string.format(
    "timeout %d %spostgres -D %s -p %d -c listen_addresses=127.0.0.1 "
      .. "-c unix_socket_directories=%s -c fsync=off -c full_page_writes=off "
      .. "-c synchronous_commit=off >%s/log 2>&1 & echo $!",
    self.lifetime, self.bin, self.data, self.port, self.dir, self.dir))))
  for _ = 1, 300 do
    local f = io.open(self.data .. "/postmaster.pid")
    if f then
      self.pid = tonumber(f:read("*l"))
      f:close()
      if self.pid and accepts(self) then return self end
    end
    ffi.C.usleep(20000)
  end
  error("postgres did not start on port " .. self.port .. ": " .. sh("cat " .. self.dir .. "/log"))
end

-- Starts a server.  opts: port, lifetime (seconds, default 120).
function M.start(opts)
  opts = opts or {}
  local self = setmetatable({ bin = bindir(), port = opts.port or redis_server.free_port(),
                              lifetime = opts.lifetime or 120 }, Server)
  self.dir = sh("mktemp -d /tmp/myc-pg.XXXXXX"):gsub("%s+$", "")
  self.data = self.dir .. "/data"
  if sh("id -u"):match("^0") then
    self.runas = "nobody"
    assert(os.execute("chown nobody " .. self.dir) == 0)
  end
  local out = sh(self:as_owner(string.format(
    "%sinitdb -D %s -U %s -A trust --no-sync -E UTF8 --locale=C 2>&1",
    self.bin, self.data, USER)))
  if not out:match("Success") then error("initdb failed: " .. out) end
  self.url = string.format("postgresql://%s@127.0.0.1:%d/%s", USER, self.port, DB)
  launch(self)
  self:psql("CREATE DATABASE " .. DB, "postgres")
  return self
end

-- Runs 'sql' with psql (stops at the first error); returns its output.
function Server:psql(sql, db)
  local f = io.open(self.dir .. "/q.sql", "w")
  f:write(sql)
  f:close()
  os.execute("chmod 644 " .. self.dir .. "/q.sql")
  local p = io.popen(string.format(
    "%spsql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U %s -d %s -f %s/q.sql 2>&1; echo \"rc=$?\"",
    self.bin, self.port, USER, db or DB, self.dir))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  if rc ~= "0" then error("psql failed: " .. out) end
  return body
end

-- SIGKILL, as a crash would; then waits until the port is closed.
-- (Its children, the backends, exit when they see the postmaster gone.)
function Server:kill()
  if self.pid then
    -- Its backends exit once they see the postmaster gone, but hold the
    -- shared memory until then: a restart waits for them.
    local children = sh("pgrep -P " .. self.pid):gsub("%s+", " ")
    os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
    self.pid = nil
    for _ = 1, 250 do
      if os.execute("for p in " .. children .. "; do kill -0 $p 2>/dev/null && exit 1; "
                    .. "done; exit 0") == 0 and not accepts(self) then
        break
      end
      ffi.C.usleep(20000)
    end
  end
end

function Server:restart()
  self:kill()
  return launch(self)
end

function Server:stop()
  if self.pid then
    os.execute("kill -INT " .. self.pid .. " 2>/dev/null")
    for _ = 1, 250 do
      if not accepts(self) then break end
      ffi.C.usleep(20000)
    end
    self.pid = nil
  end
  os.execute("rm -rf " .. self.dir)
end

return M
