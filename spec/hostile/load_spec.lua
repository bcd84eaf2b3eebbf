-- spec/hostile/load_spec.lua -- new code that never finishes loading:
-- a module whose top level or init loops forever, or a module path that
-- is not a regular file (a FIFO, a directory, a device).  Loading and
-- init get a time budget (load_timeout_ms, else handler_timeout_ms, else
-- 5 s) and run interpreted, so that it can always interrupt them; reloads
-- load off the monitor thread, so status, ping, the watchdog and signals
-- keep working meanwhile (docs/SUPERVISION.md).  Before, each of these
-- hung `mycelium run`, `mycelium check` or the running engine.
local testing = require "mycelium.testing"
local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

local LOOP_TOP = "while true do end\n"
local LOOP_INIT = [[
return { subscribe = { "in" }, on_message = function() end,
         init = function() while true do end end }]]
local WORKER = [[
return { subscribe = { "in" },
         on_message = function(ctx, msg) ctx:emit("out", "v1 " .. msg.data) end }]]

local function datas(c)
  local t = {}
  for _, m in ipairs(c:messages()) do t[#t + 1] = m.data end
  return t
end

local function fails_within(seconds, spec)
  local t0 = testing.monotonic()
  local ok, err = pcall(testing.engine, spec)
  local took = testing.monotonic() - t0
  assert.is_false(ok)
  assert.is_true(took < seconds, "took " .. took .. " s")
  return err
end

describe("loading within a budget", function()
  after_each(testing.cleanup)

  it("a top level that loops forever fails the start after its budget", function()
    local err = fails_within(3, { services = {
      { name = "spin", load_timeout_ms = 200, module = testing.module(LOOP_TOP) } } })
    assert.matches("service 'spin': loading .-: its top level was still running "
                   .. "after its load budget of 200 ms, interrupted", err)
  end)

  it("so does one that turns the JIT on first (the request waits for init)", function()
    local err = fails_within(3, { services = {
      { name = "spin", load_timeout_ms = 200,
        module = testing.module("jit.on()\n" .. LOOP_TOP) } } })
    assert.matches("load budget of 200 ms", err, 1, true)
  end)

  it("an init that loops forever fails the start, naming the service and the budget", function()
    local err = fails_within(3, { services = {
      { name = "spin", load_timeout_ms = 200, module = testing.module(LOOP_INIT) } } })
    assert.matches("service 'spin': init timeout: still running after its budget of "
                   .. "200 ms, interrupted", err, 1, true)
  end)

  it("without load_timeout_ms the budget is handler_timeout_ms", function()
    local err = fails_within(3, { services = {
      { name = "spin", handler_timeout_ms = 150, module = testing.module(LOOP_INIT) } } })
    assert.matches("budget of 150 ms", err, 1, true)
  end)

  it("handlers run JIT-compiled after init, unless the module turned the JIT off", function()
    local probe = [[
      %s
      return { subscribe = { "in" },
               on_message = function(ctx) ctx:emit("out", tostring((jit.status()))) end }]]
    local eng = testing.engine { services = {
      { name = "on", module = testing.module(probe:format("")) },
      { name = "off", module = testing.module(probe:format("jit.off()")) } } }
    local out = eng:collect("out")
    eng:publish("in", "x")
    eng:run()
    local got = {}
    for _, m in ipairs(out:messages()) do got[m.source] = m.data end
    assert.are.same({ on = "true", off = "false" }, got)
    eng:close()
  end)

  it("a reload whose top level or init loops is refused; the old version goes on", function()
    local eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = { { name = "w", load_timeout_ms = 200, module = testing.module(WORKER) } },
    }
    local out = eng:collect("out")
    for _, src in ipairs { LOOP_TOP, LOOP_INIT } do
      local t0 = testing.monotonic()
      local ok, err = eng:reload("w", testing.module(src))
      assert.is_true(testing.monotonic() - t0 < 3)
      assert.is_nil(ok)
      assert.matches("200 ms", err, 1, true)
    end
    eng:publish("in", "still")
    eng:run()
    assert.are.same({ "v1 still" }, datas(out))
    local st = eng:stats("w")
    assert.are.equal(1, st.version)
    assert.are.equal(2, st.reload_failures)
    assert.are.equal("running", st.state)
    eng:close()
  end)

  it("an init that loops at a restart is a crash; the service recovers", function()
    local mark = os.tmpname()
    os.remove(mark)
    local eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = { { name = "w", load_timeout_ms = 200, opts = { mark = mark },
                     module = testing.module [[
        return { subscribe = { "in" },
          init = function(ctx, opts)
            local f = io.open(opts.mark)
            if f then f:close() while true do end end
          end,
          on_message = function(ctx, msg)
            if msg.data == "crash" then error("crash requested") end
            ctx:emit("out", msg.data)
          end }]] } },
    }
    local out = eng:collect("out")
    io.open(mark, "w"):close()
    eng:publish("in", "crash")
    eng:run()
    eng:advance(0.015) -- the restart's init loops: interrupted
    os.remove(mark)
    eng:advance(0.1)
    eng:publish("in", "back")
    eng:run()
    assert.are.same({ "back" }, datas(out))
    local said = false
    for _, l in ipairs(eng:logs(true)) do
      if l.msg:find("init failed: init timeout", 1, true) then said = true end
    end
    assert.is_true(said)
    eng:close()
  end)
end)

describe("only regular files are loaded", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/d.lua && mkfifo " .. dir .. "/f.lua") == 0)
  end)
  after_each(function()
    os.execute("rm -rf " .. dir)
    testing.cleanup()
  end)

  it("a directory, a FIFO or a device as a module is refused, naming it", function()
    for path, kind in pairs { [dir .. "/d.lua"] = "a directory",
                              [dir .. "/f.lua"] = "a FIFO",
                              ["/dev/null"] = "a device" } do
      local err = fails_within(3, { services = { { name = "x", module = path } } })
      assert.matches("cannot read " .. path .. ": it is " .. kind
                     .. ", not a regular file", err, 1, true)
    end
  end)

  it("a reload from one is refused at once; the old version goes on", function()
    local eng = testing.engine { services = { { name = "w", module = testing.module(WORKER) } } }
    local ok, err = eng:reload("w", dir .. "/f.lua")
    assert.is_nil(ok)
    assert.matches("it is a FIFO, not a regular file", err, 1, true)
    assert.are.equal("running", eng:stats("w").state)
    eng:close()
  end)
end)

-- The binary: `run` and `check` fail instead of hanging, and a running
-- engine keeps answering while a reload loads code that loops.
describe("mycelium run, check and reload", function()
  local tmpdir

  local function write(name, text)
    local f = assert(io.open(tmpdir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return tmpdir .. "/" .. name
  end

  -- Runs a shell command in tmpdir; returns exit code, stdout, stderr and
  -- the seconds it took.
  local function sh(cmd)
    local t0 = testing.monotonic()
    local p = io.popen(string.format("cd %s && (%s) >out 2>err; echo $?", tmpdir, cmd))
    local rc = tonumber(p:read("*a"))
    p:close()
    local function slurp(f)
      local h = io.open(tmpdir .. "/" .. f)
      local s = h and h:read("*a") or ""
      if h then h:close() end
      return s
    end
    return rc, slurp("out"), slurp("err"), testing.monotonic() - t0
  end

  before_each(function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p " .. tmpdir) == 0)
  end)
  after_each(function()
    os.execute("rm -rf " .. tmpdir)
  end)

  it("check of a service file whose top level loops fails after the default 5 s", function()
    write("spin.lua", LOOP_TOP)
    local rc, _, err, took = sh("timeout 30 " .. bin .. " check spin.lua")
    assert.are.equal(1, rc)
    assert.is_true(took < 10, "took " .. took .. " s")
    assert.matches("spin.lua: its top level was still running after the load budget "
                   .. "of 5000 ms", err, 1, true)
  end)

  it("run fails when a service's top level or init loops, naming it and the budget", function()
    write("spin.lua", LOOP_TOP)
    write("init.lua", LOOP_INIT)
    write("a.lua", [[return { services = {
      { name = "spin", module = "spin.lua", load_timeout_ms = 300 } } }]])
    write("b.lua", [[return { services = {
      { name = "init", module = "init.lua", load_timeout_ms = 300 } } }]])
    local rc, _, err, took = sh("timeout 30 " .. bin .. " run a.lua")
    assert.are.equal(1, rc)
    assert.is_true(took < 5, "took " .. took .. " s")
    assert.matches("service 'spin': loading spin.lua: its top level was still running "
                   .. "after its load budget of 300 ms", err, 1, true)
    rc, _, err = sh("timeout 30 " .. bin .. " run b.lua")
    assert.are.equal(1, rc)
    assert.matches("service 'init': init timeout: still running after its budget of "
                   .. "300 ms", err, 1, true)
  end)

  it("run and check refuse a FIFO at once", function()
    assert(os.execute("mkfifo " .. tmpdir .. "/f.lua") == 0)
    for _, cmd in ipairs { "run", "check" } do
      local rc, _, err = sh("timeout 30 " .. bin .. " " .. cmd .. " f.lua")
      assert.are.equal(1, rc)
      assert.matches("cannot read f.lua: it is a FIFO, not a regular file", err, 1, true)
    end
  end)

  it("run and check refuse at once a config naming a FIFO as a module", function()
    assert(os.execute("mkfifo " .. tmpdir .. "/f.lua") == 0)
    local f = assert(io.open(tmpdir .. "/mycelium.lua", "w"))
    f:write([[return { services = { { name = "f", module = "f.lua" } } }]])
    f:close()
    for _, cmd in ipairs { "run", "check" } do
      local rc, _, err = sh("timeout 30 " .. bin .. " " .. cmd .. " mycelium.lua")
      assert.are.equal(1, rc)
      assert.matches("mycelium.lua: 'services[1].module': cannot read f.lua: it is a FIFO, "
                     .. "not a regular file", err, 1, true)
    end
  end)

  it("a reload that loops: status answers meanwhile, the reload is refused, "
     .. "the old version goes on, SIGTERM stops the engine", function()
    write("svc.lua", [[
      return { init = function(ctx) ctx:every(20, function() end) end }]])
    write("spin.lua", LOOP_TOP)
    -- A load budget of 5 s (the control channel waits 10 s for a swap),
    -- and bounds of 3 s below it: generous for a loaded machine.
    write("mycelium.lua", [[return { control = "unix://ctl.sock", reload = "signal",
      services = { { name = "svc", module = "svc.lua", load_timeout_ms = 5000 } } }]])
    local rc, out, err = sh(string.format([[
      %s run mycelium.lua 2>run.log & pid=$!
      for i in $(seq 600); do [ -S ctl.sock ] && break; sleep 0.05; done
      %s reload --socket ctl.sock svc spin.lua >reload.out 2>&1 & rpid=$!
      sleep 0.3
      t0=$(date +%%s%%N)
      %s status --socket ctl.sock >/dev/null || echo "status failed"
      t1=$(date +%%s%%N)
      echo "status_ms=$(( (t1 - t0) / 1000000 ))"
      wait $rpid; echo "reload_rc=$?"
      cp svc.lua svc.bak; cp spin.lua svc.lua; kill -HUP $pid; sleep 0.3
      t0=$(date +%%s%%N)
      %s status --socket ctl.sock | grep -c "svc .*running" || echo "status failed"
      t1=$(date +%%s%%N)
      echo "status_ms=$(( (t1 - t0) / 1000000 ))"
      t0=$(date +%%s%%N)
      kill $pid; wait $pid; echo "run_rc=$?"
      t1=$(date +%%s%%N)
      echo "stop_ms=$(( (t1 - t0) / 1000000 ))"]], bin, bin, bin, bin))
    assert.are.equal(0, rc, err)
    assert.is_nil(out:find("status failed", 1, true), out)
    for ms in out:gmatch("status_ms=(%d+)") do
      assert.is_true(tonumber(ms) < 3000, "status took " .. ms .. " ms")
    end
    assert.matches("reload_rc=1", out, 1, true)
    assert.matches("run_rc=0", out, 1, true)
    -- SIGTERM came while SIGHUP's reload was loading: it stops that load
    local stop_ms = tonumber(out:match("stop_ms=(%d+)"))
    assert.is_true(stop_ms < 3000, "stopped after " .. stop_ms .. " ms")
    local h = io.open(tmpdir .. "/reload.out")
    local reply = h:read("*a")
    h:close()
    assert.matches("its top level was still running after its load budget of 5000 ms",
                   reply, 1, true)
    h = io.open(tmpdir .. "/run.log")
    local log = h:read("*a")
    h:close()
    local refused = 0
    for _ in log:gmatch("reload refused, the running version goes on: [^\n]*5000 ms") do
      refused = refused + 1
    end
    assert.are.equal(2, refused, log) -- the control's and SIGHUP's
  end)

  it("reload = \"watch\": a file rewritten to loop is refused; status answers", function()
    write("svc.lua", [[return { init = function(ctx) ctx:every(20, function() end) end }]])
    -- A load budget of 5 s, a bound of 3 s on status, the refusal
    -- awaited for up to 60 s: generous for a loaded machine.
    write("mycelium.lua", [[return { control = "unix://ctl.sock", reload = "watch",
      services = { { name = "svc", module = "svc.lua", load_timeout_ms = 5000 } } }]])
    local rc, out, err = sh(string.format([[
      %s run mycelium.lua 2>run.log & pid=$!
      for i in $(seq 600); do [ -S ctl.sock ] && break; sleep 0.05; done
      printf 'while true do end\n' > svc.lua; sleep 0.4
      t0=$(date +%%s%%N)
      %s status --socket ctl.sock >/dev/null || echo "status failed"
      t1=$(date +%%s%%N)
      echo "status_ms=$(( (t1 - t0) / 1000000 ))"
      for i in $(seq 3000); do grep -q "reload refused" run.log && break; sleep 0.02; done
      kill $pid; wait $pid; echo "run_rc=$?"]], bin, bin))
    assert.are.equal(0, rc, err)
    assert.is_nil(out:find("status failed", 1, true), out)
    assert.is_true(tonumber(out:match("status_ms=(%d+)")) < 3000, out)
    assert.matches("run_rc=0", out, 1, true)
    local h = io.open(tmpdir .. "/run.log")
    local log = h:read("*a")
    h:close()
    assert.matches("reload refused, the running version goes on: service 'svc': loading "
                   .. "svc.lua: its top level was still running after its load budget "
                   .. "of 5000 ms", log, 1, true)
  end)
end)
