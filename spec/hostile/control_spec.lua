-- spec/hostile/control_spec.lua -- the control socket of a running
-- `mycelium run` (docs/CONTROL.md) against careless and hostile clients:
-- malformed lines, bytes that are not UTF-8, files that are not Lua,
-- paths with spaces, floods of idle connections.  Every reply must be one
-- JSON object naming what was wrong, and the engine must keep answering.
local ffi = require "ffi"
local cjson = require "cjson"

ffi.cdef [[
struct myc_spec_sockaddr_un { uint16_t family; char path[108]; };
struct myc_spec_pollfd { int fd; short events, revents; };
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, uint32_t len);
long write(int fd, const void *buf, size_t n);
long read(int fd, void *buf, size_t n);
int shutdown(int fd, int how);
int close(int fd);
int poll(struct myc_spec_pollfd *fds, unsigned long n, int timeout);
]]
local C = ffi.C
local AF_UNIX, SOCK_STREAM, SHUT_WR, POLLIN = 1, 1, 1, 1

local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"
local tmpdir, sock

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

local function write(name, text)
  local f = assert(io.open(tmpdir .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return tmpdir .. "/" .. name
end

local function connect()
  local fd = C.socket(AF_UNIX, SOCK_STREAM, 0)
  local a = ffi.new("struct myc_spec_sockaddr_un")
  a.family = AF_UNIX
  ffi.copy(a.path, sock)
  assert(fd >= 0 and C.connect(fd, a, ffi.sizeof(a)) == 0, "cannot connect to " .. sock)
  return fd
end

-- Sends 'line' (closing our side after it) and returns the reply, read
-- until the engine closes (5 s at most).
local function request(line)
  local fd = connect()
  assert(C.write(fd, line, #line) == #line)
  C.shutdown(fd, SHUT_WR)
  local buf, parts = ffi.new("char[65536]"), {}
  local p = ffi.new("struct myc_spec_pollfd[1]", { { fd, POLLIN, 0 } })
  while C.poll(p, 1, 5000) == 1 do
    local n = tonumber(C.read(fd, buf, 65536))
    if n <= 0 then break end
    parts[#parts + 1] = ffi.string(buf, n)
  end
  C.close(fd)
  return table.concat(parts)
end

local function json_request(line)
  local reply = request(line)
  local ok, v = pcall(cjson.decode, reply)
  assert(ok and type(v) == "table", "not one JSON object: " .. reply)
  assert.are.equal("\n", reply:sub(-1))
  return v
end

describe("the control socket", function()
  local pid

  setup(function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p '" .. tmpdir .. "/my mods'") == 0)
    sock = tmpdir .. "/ctl.sock"
    write("svc.lua", "return { subscribe = { 'in' }, on_message = function() end }")
    write("mycelium.lua", [[return { control = "unix://ctl.sock",
      services = { { name = "svc", module = "svc.lua" } } }]])
    -- 256 descriptors: 400 idle clients would take them all without a cap.
    local _, out = sh(string.format("cd %s && (ulimit -n 256; timeout 120 %s run mycelium.lua "
                                    .. ">/dev/null 2>run.log </dev/null & echo $!)", tmpdir, bin))
    pid = out:match("%d+")
    sh(string.format("for i in $(seq 100); do [ -S %s ] && break; sleep 0.05; done", sock))
  end)
  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.execute("sleep 0.2; rm -rf " .. tmpdir)
  end)

  it("answers every malformed line with an error saying what was wrong", function()
    local USAGE = "(requests: ping, status [json|text], reload SERVICE [MODULE])"
    local cases = {
      { "\n", "EINVAL", "empty request " .. USAGE },
      { " \t \r\n", "EINVAL", "empty request " .. USAGE },
      { "frobnicate\n", "EINVAL", "unknown request 'frobnicate' " .. USAGE },
      { "STATUS\n", "EINVAL", "unknown request 'STATUS' " .. USAGE },
      { "status yaml\n", "EINVAL", "status takes json or text, not 'yaml'" },
      { "status text json\n", "EINVAL", "status takes one word at most " .. USAGE },
      { "ping now\n", "EINVAL", "ping takes no argument " .. USAGE },
      { "reload\n", "EINVAL", "reload takes SERVICE [MODULE] " .. USAGE },
      { "reload nope\n", "ENOENT", "no service named 'nope'" },
      { "reload svc /nonexistent/x.lua\n", "ENOENT",
        "service 'svc': cannot open /nonexistent/x.lua: No such file or directory" },
      { "reload svc\0/etc/passwd\n", "EINVAL", "the request holds a NUL byte " .. USAGE },
      { ("x"):rep(5000), "ETOOBIG", "request line longer than 4096 bytes" },
      { ("reload " .. ("s"):rep(4100)), "ETOOBIG", "request line longer than 4096 bytes" },
      { "\255\254 status\n", "EINVAL", "unknown request '\239\191\189\239\191\189' " .. USAGE },
      { "reload \192\175\n", "ENOENT", "no service named '\239\191\189\239\191\189'" },
      { "reload \"svc\"\n", "ENOENT", "no service named '\"svc\"'" },
      { "status \27[2J\n", "EINVAL", "status takes json or text, not '\27[2J'" },
    }
    for _, c in ipairs(cases) do
      local v = json_request(c[1])
      assert.are.same({ ok = false, code = c[2], error = c[3] }, v)
    end
  end)

  it("takes a request ended by closing instead of a newline, and \\r\\n", function()
    assert.are.same({ ok = true, protocol = 1 }, json_request("ping"))
    assert.are.same({ ok = true, protocol = 1 }, json_request("ping\r\n"))
    assert.is_true(json_request("status json").ok)
  end)

  it("never echoes what a file that is not Lua holds", function()
    local secret = write("shadow", "root:$6$s3cr3tSalt$hash:19000:0:99999:7:::\n")
    local names = write("names", "alice hunter2\n")
    local number = write("number", "12345678 secret\n")
    for _, path in ipairs { secret, names, number } do
      local v = json_request("reload svc " .. path .. "\n")
      assert.are.equal("ELUA", v.code)
      assert.matches("service 'svc': " .. path .. ":1: ", v.error, 1, true)
      assert.matches("near a token not shown$", v.error)
      for _, word in ipairs { "root", "s3cr3t", "$6$", "alice", "hunter2", "12345678", "secret" } do
        assert.is_nil(v.error:find(word, 1, true), v.error)
      end
    end
    -- A Lua error keeps its keyword: it says where, not what.
    local broken = write("broken.lua", "return {\n  on_message = function( end }\n")
    local v = json_request("reload svc " .. broken .. "\n")
    assert.matches("broken.lua:2: .* expected near 'end'$", v.error)
  end)

  it("reloads from a path with spaces, by the protocol and by the CLI", function()
    local path = write("my mods/svc v2.lua",
                       "return { subscribe = { 'in' }, on_message = function() end }")
    local v = json_request("reload svc " .. path .. "\n")
    assert.are.same({ true, "svc", 2 }, { v.ok, v.service, v.version })
    local rc, out = sh(string.format("cd '%s/my mods' && timeout 20 %s reload --socket %s svc 'svc v2.lua'",
                                     tmpdir, bin, sock))
    assert.are.equal(0, rc, out)
    assert.matches("reloaded svc: version 3", out, 1, true)
    rc, out = sh(string.format("timeout 20 %s reload --socket %s 'svc x' a.lua", bin, sock))
    assert.are.equal(2, rc)
    assert.matches("a service name cannot hold spaces", out, 1, true)
  end)

  it("keeps answering while 400 clients hold connections and say nothing", function()
    local fds = {}
    for i = 1, 400 do fds[i] = connect() end
    local rc, out = sh(string.format("timeout 20 %s status --socket %s", bin, sock))
    for _, fd in ipairs(fds) do C.close(fd) end
    assert.are.equal(0, rc, out)
    assert.matches("svc%s+0 running", out)
    assert.are.same({ ok = true, protocol = 1 }, json_request("ping\n"))
  end)
end)

describe("a control socket in a missing directory", function()
  it("is refused at start, naming the directory", function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p " .. tmpdir) == 0)
    write("svc.lua", "return { on_message = function() end, subscribe = { 'x' } }")
    write("mycelium.lua", [[return { control = "unix://no/such/dir/ctl.sock",
      services = { { name = "svc", module = "svc.lua" } } }]])
    local rc, out = sh(string.format("cd %s && timeout 20 %s run mycelium.lua", tmpdir, bin))
    os.execute("rm -rf " .. tmpdir)
    assert.are_not.equal(0, rc)
    assert.matches("cannot listen on no/such/dir/ctl.sock: directory no/such/dir does not "
                   .. "exist (create it, or set control to a path in one that does)", out, 1, true)
    assert.is_nil(out:find("permission denied", 1, true))
  end)
end)
