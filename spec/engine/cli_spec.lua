-- spec/engine/cli_spec.lua -- the `mycelium` command: run, check, config
-- errors, signals.  Runs the real binary from the build tree.
local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

local tmpdir
local function write(name, text)
  local path = tmpdir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- Runs a shell command; returns exit code, stdout and stderr.
local function sh(cmd)
  local out, err = tmpdir .. "/stdout", tmpdir .. "/stderr"
  local p = io.popen(string.format("(%s) >%s 2>%s; echo $?", cmd, out, err))
  local rc = tonumber(p:read("*a"))
  p:close()
  local function slurp(f)
    local h = io.open(f)
    local s = h:read("*a")
    h:close()
    return s
  end
  return rc, slurp(out), slurp(err)
end

local function mycelium(args)
  return sh("timeout 20 " .. bin .. " " .. args)
end

-- Waits on a loaded machine: polls 'ready' (a function) every 20 ms for
-- up to 30 s, and fails naming 'what' if it never holds.
local DEADLINE_S = 30
local function wait_for(what, ready)
  local sleep = require("support.proc").sleep
  local deadline = os.time() + DEADLINE_S
  repeat
    if ready() then return end
    sleep(0.02)
  until os.time() > deadline
  error("still waiting after " .. DEADLINE_S .. " s for " .. what, 2)
end

-- Waits until the engine's log (run.log in the test's directory) holds
-- 'text'.
local function wait_log(text)
  wait_for("'" .. text .. "' in the log", function()
    return require("support.proc").slurp(tmpdir .. "/run.log"):find(text, 1, true) ~= nil
  end)
end

-- A shell loop that waits (up to 30 s) until process $pid handles SIGHUP,
-- SIGINT and SIGTERM: myc_engine_run() installs the handlers, and a
-- signal sent before is ignored (HUP) or kills the process (INT, TERM).
-- /proc/PID/status lists caught signals as a hex mask: bits 0, 1, 14.
local SIGNALS_READY = "for i in $(seq 1500); do "
  .. "c=$(awk '/^SigCgt/ { print substr($2, length($2) - 3) }' /proc/$pid/status "
  .. "2>/dev/null); [ -n \"$c\" ] && [ $((0x$c & 0x4003)) -eq 16387 ] && break; "
  .. "sleep 0.02; done"

local quitter = [[
return { init = function(ctx) ctx:after(0, function(c) c:shutdown(c.opts.code or 0) end) end,
         stop = function(ctx) ctx.log:info("stopped " .. ctx.name) end }]]

describe("mycelium command", function()
  before_each(function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p " .. tmpdir) == 0)
  end)
  after_each(function()
    os.execute("rm -rf " .. tmpdir)
  end)

  it("prints its version and help", function()
    local rc, out = mycelium("--version")
    assert.are.equal(0, rc)
    assert.matches("^mycelium %d+%.%d+%.%d+", out)
    rc, out = mycelium("--help")
    assert.are.equal(0, rc)
    assert.matches("mycelium run CONFIG.lua", out, 1, true)
    -- the config keys, briefly, and where they are described
    assert.matches("docs/CONFIG.md", out, 1, true)
    for _, key in ipairs { "services", "node", "workers", "log", "mailbox", "contracts",
                           "validate", "supervisor", "supervisors", "reload", "control",
                           "memory_limit_mb", "handler_timeout_ms", "max_message_bytes" } do
      assert.matches("%f[%w_]" .. key .. "%f[^%w_]", out)
    end
    rc = mycelium("frobnicate")
    assert.are.equal(2, rc)
  end)

  it("runs service files with the default config", function()
    write("quit.lua", quitter)
    local rc, _, err = mycelium("run " .. tmpdir .. "/quit.lua")
    assert.are.equal(0, rc)
    assert.matches("[quit] stopped quit", err, 1, true)
  end)

  it("runs a config and exits with the code given to shutdown", function()
    write("quit.lua", quitter)
    write("mycelium.lua", [[return { node = "n1", services = {
      { name = "q", module = "quit.lua", opts = { code = 7 } } } }]])
    local rc, _, err = mycelium("run " .. tmpdir .. "/mycelium.lua")
    assert.are.equal(7, rc)
    assert.matches("[q] stopped q", err, 1, true)
    -- one line at the start, one at the stop
    assert.matches("INFO  started: node n1, %d+ workers?, 1 service: q %(worker 0%); "
                   .. "control none; reload signal\n", err)
    assert.matches("INFO  stopped (service 'q' called ctx:shutdown(7)): 0 messages handled, "
                   .. "0 dropped, 0 unrouted, 0 handler errors; exit code 7", err, 1, true)
  end)

  it("says at the stop that a signal ended it, and what was handled", function()
    write("echo.lua", [[local seen = false
      return { subscribe = { "tick" }, init = function(ctx)
      ctx:every(5, function(c) c:emit("tick", "x") end) end, on_message = function(ctx)
        if not seen then seen = true; ctx.log:info("first message") end end }]])
    write("mycelium.lua", [[return { control = "unix://ctl.sock", reload = "off", workers = 2,
      services = { { name = "echo", module = "echo.lua", worker = 1 } } }]])
    -- The signal goes once the engine handles it and has handled a message
    -- (a SIGINT sent before is ignored: the shell starts it in the background).
    local rc, _, err = sh(string.format("cd %s && (%s run mycelium.lua 2>err & pid=$!; %s; "
      .. "for i in $(seq 1500); do grep -q 'first message' err && break; sleep 0.02; done; "
      .. "kill -INT $pid; wait $pid; rc=$?; cat err >&2; exit $rc)", tmpdir, bin, SIGNALS_READY))
    assert.are.equal(0, rc)
    assert.matches("started: node mycelium, 2 workers, 1 service: echo (worker 1); control "
                   .. "unix://ctl.sock; reload off", err, 1, true)
    local handled = tonumber(err:match("stopped %(SIGINT%): (%d+) messages handled, 0 dropped, "
                                       .. "0 unrouted, 0 handler errors; exit code 0"))
    assert.is_true(handled > 0, err)
  end)

  it("check validates without running", function()
    write("quit.lua", quitter)
    write("mycelium.lua", [[return { workers = 2, services = {
      { name = "a", module = "quit.lua" }, { name = "b", module = "quit.lua", worker = 0 } } }]])
    local rc, out, err = mycelium("check " .. tmpdir .. "/mycelium.lua")
    assert.are.equal(0, rc, err)
    assert.matches("ok: 2 services: a (worker 0) b (worker 0)", out, 1, true)
    assert.is_nil(err:find("stopped", 1, true))
  end)

  it("check says a YAML file beside services is not a service", function()
    write("quit.lua", quitter)
    write("c.yaml", "schema: {id: 1, version: 1}\nmessages: {}\n")
    local rc, out, err = mycelium("check " .. tmpdir .. "/c.yaml " .. tmpdir .. "/quit.lua")
    assert.are.equal(1, rc, out)
    assert.matches(tmpdir .. "/c.yaml: a YAML file is not a service", err, 1, true)
    assert.matches('contracts = "' .. tmpdir .. '/c.yaml"', err, 1, true)
  end)

  it("check and run point at the service's file, not the engine's", function()
    write("bad.lua", [[return { subscribe = { "a b" }, on_message = function() end }]])
    for _, cmd in ipairs { "check", "run" } do
      local rc, _, err = mycelium(cmd .. " " .. tmpdir .. "/bad.lua")
      assert.are.equal(1, rc)
      assert.matches("mycelium: " .. tmpdir .. "/bad.lua: service 'bad': subscribe: "
                     .. "invalid topic 'a b'", err, 1, true)
      assert.is_nil(err:find("host.lua", 1, true))
    end
    -- an init that fails: the message and its traceback name the service's
    -- lines, not the host's
    write("boom.lua", "return { init = function(ctx)\n  local t = nil\n  return t.x\nend }\n")
    local rc, _, err = mycelium("run " .. tmpdir .. "/boom.lua")
    assert.are.equal(1, rc)
    assert.matches(tmpdir .. "/boom.lua:3: attempt to index local 't'", err, 1, true)
    assert.matches("traceback=stack traceback:\\n\\t" .. tmpdir .. "/boom.lua:3: in function 'init'",
                   err, 1, true)
    assert.is_nil(err:find("host.lua", 1, true))
  end)

  it("check validates the contracts a config names and prints the digest", function()
    write("quit.lua", quitter)
    local root = os.getenv("MYCELIUM_SOURCE_DIR") or "."
    local yaml = io.open(root .. "/services/contracts.yaml"):read("*a")
    assert(os.execute("mkdir -p " .. tmpdir .. "/conf") == 0)
    write("conf/c.yaml", yaml)
    write("conf/mycelium.lua", [[return { contracts = "c.yaml", validate = false,
      services = { { module = "../quit.lua" } } }]])
    local rc, expected = mycelium("check " .. tmpdir .. "/conf/c.yaml")
    assert.are.equal(0, rc)
    local digest = expected:match("digest (%x+)")
    assert.are.equal(64, #digest)
    local out, err
    rc, out, err = mycelium("check " .. tmpdir .. "/conf/mycelium.lua")
    assert.are.equal(0, rc, err)
    assert.matches("ok: 1 service: quit (worker 0)", out, 1, true)
    assert.matches("ok: " .. tmpdir .. "/conf/c.yaml: schema 0x42414e44 version 2, "
                   .. "7 types, digest " .. digest, out, 1, true)
  end)

  it("refuses a config whose contracts have errors, listing all of them", function()
    write("quit.lua", quitter)
    write("c.yaml", "schema: {id: 1, version: 1}\nmessages:\n"
      .. "  A: {tlv_type: 1000, fields: {x: {type: U512}}}\n"
      .. "  B: {tlv_type: 1000, fields: {}}\n")
    write("mycelium.lua", [[return { contracts = "c.yaml", services = { { module = "quit.lua" } } }]])
    local rc, _, err = mycelium("check " .. tmpdir .. "/mycelium.lua")
    assert.are.equal(1, rc)
    assert.matches("contracts '" .. tmpdir .. "/c.yaml': 2 errors:", err, 1, true)
    assert.matches(tmpdir .. "/c.yaml:3: A.x: unknown field type 'U512'", err, 1, true)
    assert.matches(tmpdir .. "/c.yaml:4: B: tlv_type 1000 is also used by A", err, 1, true)
    write("mycelium.lua", [[return { contracts = "absent.yaml", services = { { module = "quit.lua" } } }]])
    rc, _, err = mycelium("run " .. tmpdir .. "/mycelium.lua")
    assert.are.equal(1, rc)
    assert.matches(tmpdir .. "/absent.yaml: cannot read", err, 1, true)
  end)

  describe("refuses bad input with a clear message", function()
    local function expect_error(config, pattern)
      local path = write("mycelium.lua", config)
      write("quit.lua", quitter)
      local rc, _, err = mycelium("run " .. path)
      assert.are.equal(1, rc)
      assert.matches(pattern, err, 1, true)
      return err
    end

    it("a missing file", function()
      local rc, _, err = mycelium("run " .. tmpdir .. "/nope.lua")
      assert.are.equal(1, rc)
      assert.matches("cannot read '" .. tmpdir .. "/nope.lua'", err, 1, true)
    end)

    it("a config syntax error, with its line", function()
      expect_error("return {\n  workers = 2\n  node = 'x' }", "mycelium.lua:3:")
    end)

    it("an unknown key, suggesting the nearest", function()
      expect_error("return { worker = 2, services = { 'quit.lua' } }",
                   "unknown key 'worker' (did you mean 'workers'?)")
      expect_error("return { mailbox = { capcity = 8 }, services = { { module = 'quit.lua' } } }",
                   "unknown key 'mailbox.capcity' (did you mean 'mailbox.capacity'?)")
      expect_error("return { services = { { module = 'quit.lua', optz = {} } } }",
                   "unknown key 'services[1].optz' (did you mean 'services[1].opts'?)")
    end)

    it("a value of the wrong type, naming the key", function()
      expect_error("return { workers = 'two', services = { { module = 'quit.lua' } } }",
                   "'workers' must be an integer from 1 to 128, got string \"two\"")
      expect_error("return { mailbox = { policy = 'drop_all' }, services = { { module = 'quit.lua' } } }",
                   "'mailbox.policy' must be one of drop_newest, drop_oldest, reject")
      expect_error("return { mailbox = { threshold = 0 }, services = { { module = 'quit.lua' } } }",
                   "'mailbox.threshold' must be a number in (0, 1]")
      expect_error("return { workers = 1, services = { { module = 'quit.lua', worker = 3 } } }",
                   "'services[1].worker' is 3 but there are only 1 workers")
    end)

    it("supervision settings", function()
      expect_error("return { services = { { module = 'quit.lua', group = 'nope' } } }",
                   "'services[1].group': no supervisor group 'nope' (declare it under "
                   .. "'supervisors')")
      expect_error("return { supervisors = { p = { strategy = 'all_for_one' } }, "
                   .. "services = { 'quit.lua' } }",
                   "'supervisors.p.strategy' must be one of one_for_all, one_for_one, "
                   .. "rest_for_one")
      expect_error("return { supervisor = { max_restart = 3 }, services = { 'quit.lua' } }",
                   "unknown key 'supervisor.max_restart' (did you mean "
                   .. "'supervisor.max_restarts'?)")
      expect_error("return { services = { { module = 'quit.lua', restart = 'always' } } }",
                   "'services[1].restart' must be one of permanent, temporary, transient")
      expect_error("return { control = '/tmp/x.sock', services = { 'quit.lua' } }",
                   "'control' must be \"unix:///path\"")
    end)

    it("a missing service module", function()
      expect_error("return { services = { { module = 'absent.lua' } } }",
                   "'services[1].module': cannot read '" .. tmpdir .. "/absent.lua'")
    end)

    it("opts that cannot be passed to a service", function()
      expect_error("return { services = { { module = 'quit.lua', opts = { cb = print } } } }",
                   "'services[1].opts': cannot encode field 'cb': unsupported type function")
    end)

    it("a service that does not load", function()
      write("bad.lua", "return {")
      local rc, _, err = mycelium("run " .. tmpdir .. "/bad.lua")
      assert.are.equal(1, rc)
      assert.matches("mycelium: " .. tmpdir .. "/bad.lua:1: unexpected symbol", err, 1, true)
      write("good.lua", quitter)
      rc, _, err = mycelium("run " .. tmpdir .. "/good.lua " .. tmpdir .. "/bad.lua")
      assert.are.equal(1, rc)
      assert.matches(tmpdir .. "/bad.lua:1: unexpected symbol", err, 1, true)
    end)

    it("an init that fails, after stopping the services already started", function()
      write("quit.lua", quitter)
      write("boom.lua", "return { init = function() error('no database') end }")
      write("mycelium.lua", [[return { services = {
        { name = "first", module = "quit.lua" }, { name = "boom", module = "boom.lua" } } }]])
      local rc, _, err = mycelium("run " .. tmpdir .. "/mycelium.lua")
      assert.are.equal(1, rc)
      assert.matches("service 'boom': ", err, 1, true)
      assert.matches("no database", err, 1, true)
      assert.matches("[first] stopped first", err, 1, true)
    end)
  end)

  it("refuses a tracing key it does not know, naming it", function()
    write("quit.lua", quitter)
    local path = write("mycelium.lua", [[return { tracing = { zipkin = "x" },
      services = { { module = "quit.lua" } } }]])
    local rc, _, err = mycelium("run " .. path)
    assert.are_not.equal(0, rc)
    assert.matches("unknown key 'tracing.zipkin'", err, 1, true)
  end)

  describe("control channel", function()
    -- A counter whose state survives reloads; "tag" marks the version.
    local function counter(tag)
      return string.format([[
        local n = 0
        return { subscribe = { "tick" },
          init = function(ctx, o, st)
            n = st and st.n or 0
            ctx:every(20, function() ctx:emit("tick", "") end)
            ctx.log:info("init %s", { n = n })
          end,
          on_message = function() n = n + 1 end,
          snapshot = function() return { n = n } end }]], tag)
    end

    -- Starts `mycelium run` in the background; returns a function that
    -- runs a shell command with $PID set, and one that stops the engine
    -- and returns its log.
    local function start(reload)
      write("svc.lua", counter("v1"))
      write("mycelium.lua", string.format([[return { control = "unix://ctl.sock",
        reload = %q, services = { { name = "svc", module = "svc.lua",
        memory_limit_mb = 32 } } }]], reload or "signal"))
      local pidfile = tmpdir .. "/pid"
      os.execute(string.format("cd %s && (%s run mycelium.lua >/dev/null 2>run.log "
                               .. "</dev/null & echo $! >%s)", tmpdir, bin, pidfile))
      local f = io.open(pidfile)
      local pid = f:read("*l")
      f:close()
      local sock = tmpdir .. "/ctl.sock"
      -- the socket is up during the start; signals are handled right after
      sh("pid=" .. pid .. "; " .. SIGNALS_READY)
      wait_for("the control socket", function()
        return sh("test -S " .. sock) == 0
      end)
      local stopped = false
      local function stop()
        stopped = true
        -- gone, or a zombie nobody reaps (the engine is not our child)
        sh(string.format("kill %s; for i in $(seq 250); do s=$(ps -o stat= -p %s); "
                         .. "case \"$s\" in ''|Z*) break;; esac; sleep 0.02; done", pid, pid))
        local h = io.open(tmpdir .. "/run.log")
        local log = h:read("*a")
        h:close()
        return log
      end
      -- never leave an engine behind, even when an assertion fails
      finally(function() if not stopped then stop() end end)
      return sock, pid, stop
    end

    it("status lists the services; --json gives the protocol's reply", function()
      local sock, _, stop = start()
      local rc, out = mycelium("status --socket " .. sock)
      assert.are.equal(0, rc)
      assert.matches("SERVICE", out, 1, true)
      assert.matches("svc%s+0 running%s+1", out)
      rc, out = mycelium("status --json --socket unix://" .. sock)
      assert.are.equal(0, rc)
      assert.matches('^{"ok":true,"protocol":1,', out)
      assert.matches('"memory_limit":33554432', out, 1, true)
      stop()
    end)

    it("status shows losses by service, topic and reason, and unrouted emits", function()
      write("flood.lua", [[return { init = function(ctx)
        ctx:every(10, function() for _ = 1, 50 do ctx:emit("burst", "x") end
          ctx:emit("nowhere", "x") end) end }]])
      write("slow.lua", [[return { subscribe = { "burst" }, on_message = function() end }]])
      write("mycelium.lua", [[return { control = "unix://ctl.sock", workers = 1, services = {
        { name = "flood", module = "flood.lua" },
        { name = "slow", module = "slow.lua", mailbox = { capacity = 10, policy = "reject" } } } }]])
      local sock = tmpdir .. "/ctl.sock"
      -- Polls until the first rejections are counted (the first burst).
      local rc, out = sh(string.format(
        "cd %s && (%s run mycelium.lua >/dev/null 2>&1 & pid=$!; %s; "
        .. "for i in $(seq 1500); do %s status --socket %s >st 2>&1 && "
        .. "grep -q 'rejected [1-9]' st && break; sleep 0.02; done; cat st; "
        .. "%s status --json --socket %s; kill $pid; wait $pid)",
        tmpdir, bin, SIGNALS_READY, bin, sock, bin, sock))
      assert.are.equal(0, rc)
      assert.matches("slow%s+dropped on burst: oldest 0, newest 0, rejected [1-9]%d*, at shutdown 0", out)
      assert.matches('"drops":%[{"topic":"burst","dropped_oldest":0,"dropped_newest":0,"rejected":[1-9]', out)
      assert.matches('"name":"flood".-"drops":%[%]', out)
      -- what reached no one is shown too
      assert.matches("flood%s+emitted %d+ messages? on topics no service subscribes to", out)
      assert.matches('"name":"flood".-"unrouted":[1-9]', out)
      assert.matches('"name":"slow".-"unrouted":0', out)
    end)

    it("status and /metrics show requests dropped by a restart and late replies", function()
      -- Every 5th tick the client crashes with a request pending (dropped
      -- by the restart); the others time out after 5 ms, and the server
      -- answers everything 30 ms late.
      write("client.lua", [[local n = 0
return { subscribe = { "tick" },
  init = function(ctx) ctx:every(10, function(c) c:emit("tick", "") end) end,
  on_message = function(ctx)
    n = n + 1
    if n % 5 == 0 then
      ctx:request("slow.q", "x", { timeout_ms = 60000 }, function() end)
      error("crash with a request pending")
    end
    ctx:request("slow.q", "x", { timeout_ms = 5 }, function() end)
  end }]])
      write("server.lua", [[return { subscribe = { "slow.q" }, on_message = function(ctx, msg)
  local m = msg:copy()
  ctx:after(30, function(c) c:reply(m, "late") end) end }]])
      write("mycelium.lua", [[return { control = "unix://ctl.sock", workers = 1,
        metrics = { listen = "127.0.0.1:0" },
        supervisor = { max_restarts = 1000, window_s = 1 }, services = {
        { name = "client", module = "client.lua" },
        { name = "server", module = "server.lua" } } }]])
      local sock = tmpdir .. "/ctl.sock"
      local rc, out = sh(string.format(
        "cd %s && (%s run mycelium.lua >/dev/null 2>log & pid=$!; %s; "
        .. "for i in $(seq 1500); do timeout 10 %s status --socket %s >st 2>&1 && "
        .. "grep -q 'dropped by a restart or reload [1-9].*late [1-9]' st && break; "
        .. "sleep 0.02; done; cat st; timeout 10 %s status --json --socket %s; "
        .. "port=$(sed -n 's/.*metrics: serving http:\\/\\/127.0.0.1:\\([0-9]*\\).*/\\1/p' log); "
        .. "curl -s -m 10 http://127.0.0.1:$port/metrics | grep -E 'requests_dropped|replies_late'; "
        .. "kill $pid; wait $pid)",
        tmpdir, bin, SIGNALS_READY, bin, sock, bin, sock))
      assert.are.equal(0, rc, out)
      assert.matches("client%s+requests dropped by a restart or reload [1-9]%d*, replies late [1-9]", out)
      assert.matches('"name":"client".-"requests_dropped":[1-9]%d*,"replies_late":[1-9]', out)
      assert.matches('"name":"server".-"requests_dropped":0,"replies_late":0', out)
      assert.matches('mycelium_requests_dropped_total{service="client"[^}]*} [1-9]', out)
      assert.matches('mycelium_replies_late_total{service="client"[^}]*} [1-9]', out)
    end)

    it("reload swaps the code, keeps the state, and refuses a syntax error", function()
      local sock, _, stop = start()
      wait_for("a few ticks counted", function()
        local _, out = mycelium("status --json --socket " .. sock)
        return tonumber(out:match('"name":"svc".-"in":(%d+)') or 0) >= 3
      end)
      write("svc.lua", counter("v2"))
      local rc, out, err = mycelium("reload --socket " .. sock .. " svc")
      assert.are.equal(0, rc, err)
      assert.matches("reloaded svc: version 2 (swap ", out, 1, true)
      write("broken.lua", "return {\n  on_message = function( end }\n")
      rc, _, err = mycelium("reload --socket " .. sock .. " svc " .. tmpdir .. "/broken.lua")
      assert.are.equal(1, rc)
      assert.matches("reload refused: service 'svc': " .. tmpdir .. "/broken.lua:2:", err, 1, true)
      rc, _, err = mycelium("reload --socket " .. sock .. " nope")
      assert.are.equal(1, rc)
      assert.matches("no service named 'nope'", err, 1, true)
      local log = stop()
      assert.matches("init v2", log, 1, true)
      assert.is_nil(log:find("init v2 n=0", 1, true)) -- the count went on
    end)

    it("SIGHUP reloads the services whose file changed", function()
      local _, pid, stop = start("signal")
      write("svc.lua", counter("v3"))
      sh("kill -HUP " .. pid)
      wait_log("reloaded svc.lua (version 2")
      local log = stop()
      assert.matches("reloaded svc.lua (version 2", log, 1, true)
      assert.matches("init v3", log, 1, true)
    end)

    -- A service whose behaviour lives in a module it requires; the module
    -- says which version runs.
    local function start_with_module(reload, dir)
      assert(os.execute("mkdir -p " .. tmpdir .. "/" .. dir) == 0)
      write(dir .. "/part.lua", [[return { tag = "p1" }]])
      write("svc.lua", [[local part = require "]] .. (dir == "." and "" or dir .. ".")
        .. [[part"
        return { init = function(ctx) ctx.log:info("init " .. part.tag)
          ctx:every(20, function() end) end }]])
      write("mycelium.lua", string.format([[return { reload = %q,
        services = { { name = "svc", module = "svc.lua" } } }]], reload))
      local pidfile = tmpdir .. "/pid"
      os.execute(string.format("cd %s && (%s run mycelium.lua >/dev/null 2>run.log "
                               .. "</dev/null & echo $! >%s)", tmpdir, bin, pidfile))
      local f = io.open(pidfile)
      local pid = f:read("*l")
      f:close()
      wait_log("init p1")
      sh("pid=" .. pid .. "; " .. SIGNALS_READY)
      local function stop()
        sh(string.format("kill %s; for i in $(seq 250); do s=$(ps -o stat= -p %s); "
                         .. "case \"$s\" in ''|Z*) break;; esac; sleep 0.02; done", pid, pid))
        local h = io.open(tmpdir .. "/run.log")
        local log = h:read("*a")
        h:close()
        return log
      end
      finally(stop)
      return pid, stop
    end

    it("after reload SVC other.lua, SIGHUP compares other.lua", function()
      local sock, pid, stop = start("signal")
      write("other.lua", counter("o1"))
      local rc, _, err = mycelium("reload --socket " .. sock .. " svc " .. tmpdir .. "/other.lua")
      assert.are.equal(0, rc, err)
      write("svc.lua", counter("s2")) -- the config's file: no longer the service's
      write("other.lua", counter("o2"))
      sh("kill -HUP " .. pid)
      wait_log("(version 3")
      local _, out = mycelium("status --json --socket " .. sock)
      local log = stop()
      assert.matches("init o2", log, 1, true)
      assert.is_nil(log:find("init s2", 1, true))
      assert.matches('"module":"' .. tmpdir .. '/other.lua"', out, 1, true)
      assert.matches('"version":3', out, 1, true)
    end)

    it("SIGHUP reloads a service when a module it required changed", function()
      local pid, stop = start_with_module("signal", "lib")
      write("lib/part.lua", [[return { tag = "p2" }]])
      sh("kill -HUP " .. pid)
      wait_log("init p2")
      local log = stop()
      assert.matches("reloaded svc.lua (version 2", log, 1, true)
      assert.matches("init p2", log, 1, true)
    end)

    it("reload = \"watch\" reloads when a module it required changes", function()
      local _, stop = start_with_module("watch", "lib")
      -- The watcher takes up the module's directory once the engine runs;
      -- a change written before it watches is not seen, so the change is
      -- written again each second until the reload shows.
      local last = 0
      wait_for("'init p3' in the log", function()
        if os.time() > last then
          write("lib/part.lua", [[return { tag = "p3" }]])
          last = os.time()
        end
        return require("support.proc").slurp(tmpdir .. "/run.log"):find("init p3", 1, true)
      end)
      local log = stop()
      assert.matches("reloaded svc.lua (version 2", log, 1, true)
      assert.matches("init p3", log, 1, true)
    end)

    it("reload = \"watch\" reloads when the file changes", function()
      local _, _, stop = start("watch")
      write("svc.lua", counter("v4"))
      wait_log("reloaded svc.lua (version 2")
      local log = stop()
      assert.matches("reloaded svc.lua (version 2", log, 1, true)
      assert.matches("init v4", log, 1, true)
    end)

    it("says where it looked when no engine listens", function()
      local rc, _, err = mycelium("status --socket " .. tmpdir .. "/none.sock")
      assert.are.equal(1, rc)
      assert.matches("cannot connect to the control socket " .. tmpdir .. "/none.sock", err,
                     1, true)
    end)
  end)

  it("stops cleanly on SIGTERM and SIGINT, calling every stop", function()
    write("tick.lua", [[
      local n = 0
      return { init = function(ctx) ctx:every(5, function()
                 n = n + 1
                 if n == 1 then ctx.log:info("first tick") end
               end) end,
               stop = function(ctx) ctx.log:info("stopped after ticks", { ok = n > 0 }) end }]])
    for _, sig in ipairs { "TERM", "INT" } do
      -- The signal goes once the engine handles it and has ticked.
      local rc, _, err = sh(string.format(
        "%s run %s/tick.lua 2>%s/err & pid=$!; %s; for i in $(seq 1500); do "
        .. "grep -q 'first tick' %s/err && break; sleep 0.02; done; "
        .. "kill -%s $pid; wait $pid; rc=$?; cat %s/err >&2; exit $rc",
        bin, tmpdir, tmpdir, SIGNALS_READY, tmpdir, sig, tmpdir))
      assert.are.equal(0, rc, err)
      assert.matches("[tick] stopped after ticks ok=true", err, 1, true)
    end
  end)
end)
