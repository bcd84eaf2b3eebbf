-- spec/hostile/log_overload_spec.lua -- logging must never wedge or slow
-- the engine: a stderr that is a pipe nobody reads (a stalled supervisor,
-- a paused pager) and a service that logs in a loop.  Records go through
-- a bounded buffer written by a log thread (dropped and counted when it is
-- full) and through a per-service token bucket.
local cjson = require "cjson"
local testing = require "mycelium.testing"

local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), (out:gsub("rc=%d+%s*$", ""))
end

local slurp = require("support.proc").slurp

local function ticks(dir)
  return tonumber(slurp(dir .. "/ticks"):match("%d+")) or 0
end

-- Ticks every 10 ms, writing its count to a file and logging a line.
-- The count is written aside and renamed over the file: a reader never
-- sees it truncated (read as 0 ticks, a stall, when the ticker was
-- preempted between the truncation and the write on a loaded machine).
local TICKER = [[
return { init = function(ctx)
  local n = 0
  ctx:every(10, function(c)
    n = n + 1
    local f = io.open("ticks.new", "w"); f:write(n); f:close()
    os.rename("ticks.new", "ticks")
    c.log:info("tick " .. n)
  end)
end }]]

-- Starts `mycelium run` in 'dir' with stderr a FIFO it holds open for
-- reading and writing: a pipe nobody reads.  Returns its pid.
local function start(dir, config, flood)
  local f = assert(io.open(dir .. "/mycelium.lua", "w"))
  f:write(config)
  f:close()
  f = assert(io.open(dir .. "/flood.lua", "w"))
  f:write(flood)
  f:close()
  f = assert(io.open(dir .. "/ticker.lua", "w"))
  f:write(TICKER)
  f:close()
  local _, out = sh(string.format("cd %s && mkfifo log.fifo && (timeout 60 %s run "
                                  .. "mycelium.lua >/dev/null 2<>log.fifo </dev/null & echo $!)",
                                  dir, bin))
  local pid = assert(out:match("%d+"), out)
  sh(string.format("for i in $(seq 200); do [ -S %s/ctl.sock ] && break; sleep 0.05; done", dir))
  return pid
end

local function status(dir)
  local rc, out = sh(string.format("timeout 10 %s status --json --socket %s/ctl.sock", bin, dir))
  assert.are.equal(0, rc, out)
  return cjson.decode(out)
end

-- Ticks of the ticker over 'seconds' (it ticks 100 times a second).
local function tick_rate(dir, seconds)
  local t0 = ticks(dir)
  sh("sleep " .. seconds)
  return (ticks(dir) - t0) / seconds
end

describe("a stderr that is a pipe nobody reads", function()
  local dir, pid
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
  end)
  after_each(function()
    -- 'pid' is timeout's: killed alone, it would leave its mycelium
    -- running, blocked on the FIFO, past its own 60 s.
    if pid then
      os.execute(string.format("kill -9 $(pgrep -P %s) %s 2>/dev/null", pid, pid))
    end
    os.execute("rm -rf " .. dir)
    pid = nil
  end)

  it("stops no service; records are dropped, counted and reported once it drains", function()
    pid = start(dir, [[return { control = "unix://ctl.sock", workers = 2,
      log = { rate = 0 },
      services = { { name = "flood", module = "flood.lua" },
                   { name = "ticker", module = "ticker.lua" } } }]], [[
return { init = function(ctx)
  ctx:after(100, function(c)
    for i = 1, 100000 do c.log:info("flood line " .. i) end
  end)
end }]])
    sh("sleep 1.5")
    -- 100 000 lines are ~9 MB: far past the pipe and the log buffer.
    -- 100 a second when idle; a loaded machine (tests run in parallel)
    -- may take some, the old sink took all.
    assert.is_true(tick_rate(dir, 2) >= 10, "the ticker stalled")
    local st = require("support.proc").wait_for(function()
      local s = status(dir)
      return s.log.dropped > 0 and s
    end)
    assert.is_truthy(st, "no dropped records counted")
    -- The reader comes back: what was buffered comes out, then the count.
    sh(string.format("cd %s && timeout 5 cat log.fifo > drained.txt; true", dir))
    local drained = slurp(dir .. "/drained.txt")
    local n = drained:match("(%d+) log records dropped %(log output not keeping up%)")
    assert.is_not_nil(n, drained:sub(-2000))
    assert.is_true(tonumber(n) > 0)
    assert.matches("[flood] flood line 1 ", drained, 1, true)
  end)

  it("keeps a second service on time while one logs in a loop, and stops on SIGTERM", function()
    pid = start(dir, [[return { control = "unix://ctl.sock", workers = 2,
      services = { { name = "flood", module = "flood.lua" },
                   { name = "ticker", module = "ticker.lua" } } }]], [[
return { init = function(ctx)
  ctx:every(1, function(c)
    for i = 1, 2000 do c.log:info("flood line " .. i) end
  end)
end }]])
    sh("sleep 1")
    assert.is_true(tick_rate(dir, 2) >= 10, "the ticker was slowed")
    local st = status(dir)
    local flood
    for _, s in ipairs(st.services) do
      if s.name == "flood" then flood = s end
    end
    assert.is_true(flood.logs_suppressed > 0, cjson.encode(flood))
    -- One reply reads the engine-wide total before the services' counts,
    -- and the flood goes on: compare with a total read afterwards.
    assert.is_true(status(dir).log.suppressed >= flood.logs_suppressed)
    -- Stderr is still stuck: the engine gives up on it after 2 s.
    local t0 = os.time()
    os.execute("kill -TERM " .. pid)
    local rc = sh(string.format("for i in $(seq 100); do kill -0 %s 2>/dev/null || exit 0; "
                                .. "sleep 0.1; done; exit 1", pid))
    assert.are.equal(0, rc, "still running 10 s after SIGTERM")
    assert.is_true(os.time() - t0 <= 10)
    pid = nil
  end)
end)

describe("a service's log rate", function()
  after_each(function() testing.cleanup() end)

  it("lets through the burst, then the rate, and counts the rest exactly", function()
    local eng = testing.engine { log = { format = "text", rate = 10, burst = 20 },
      services = { { name = "svc", module = testing.module [[
return { init = function(ctx)
  for i = 1, 100 do ctx.log:info("first " .. i) end
  ctx:after(1000, function(c)
    for i = 1, 100 do c.log:info("second " .. i) end
  end)
end }]] } } }
    eng:advance(1)
    local first, second, summary = 0, 0, nil
    for _, l in ipairs(eng:logs()) do
      if l:find("] first %d+") then first = first + 1 end
      if l:find("] second %d+") then second = second + 1 end
      summary = summary or l:match("(%d+) log records of this service suppressed")
    end
    local st = eng:stats("svc")
    eng:close()
    -- 20 of the burst; 1 s later 10 tokens (the summary line takes none).
    assert.are.equal(20, first)
    assert.are.equal(10, second)
    assert.are.equal("80", summary)
    assert.is_not_nil(st)
  end)
end)

describe("a service's own log rate", function()
  after_each(function() testing.cleanup() end)

  -- Logs 'n' lines when told, then nothing more.
  local LOGGER = [[
return { subscribe = { "go" }, on_message = function(ctx, msg)
  for i = 1, tonumber(msg.data) do ctx.log:info(ctx.name .. " line " .. i) end
end }]]

  it("overrides the engine's, counts in myc_service_stats, and sums up a "
     .. "service that went quiet", function()
    local eng = testing.engine { log = { format = "text", rate = 1000, burst = 1000 },
      services = {
        { name = "chatty", module = testing.module(LOGGER),
          log = { rate = 2, burst = 3 } },
        { name = "free", module = testing.module(LOGGER), log = { rate = 0 } },
        { name = "plain", module = testing.module(LOGGER) } } }
    eng:publish("go", "50")
    eng:run()
    local function count(lines, who)
      local n, summary = 0, nil
      for _, l in ipairs(lines) do
        if l:find(who .. " line %d+") then n = n + 1 end
        if l:find("[" .. who .. "]", 1, true) then
          summary = summary or l:match("(%d+ log records of this service "
                                       .. "suppressed %b())")
        end
      end
      return n, summary
    end
    local lines = eng:logs()
    local n, summary = count(lines, "chatty")
    assert.are.equal(3, n)
    -- Nothing more is logged: no record comes to carry the summary.
    assert.is_nil(summary)
    assert.are.equal(47, eng:stats("chatty").logs_suppressed)
    assert.are.equal(50, (count(lines, "free")))
    assert.are.equal(0, eng:stats("free").logs_suppressed)
    assert.are.equal(50, (count(lines, "plain")))
    -- Half a second at 2/s gives a token back: the summary comes then,
    -- without the service logging again, and only once.
    eng:advance(0.6)
    n, summary = count(eng:logs(), "chatty")
    assert.are.equal(0, n)
    assert.are.equal("47 log records of this service suppressed (over its "
                     .. "log rate of 2 records/s, burst 3)", summary)
    eng:advance(5)
    assert.is_nil(select(2, count(eng:logs(), "chatty")))
    -- Refilled to its burst meanwhile: 3 of 10 more, the rest counted.
    eng:publish("go", "10")
    eng:run()
    assert.are.equal(3, (count(eng:logs(), "chatty")))
    assert.are.equal(54, eng:stats("chatty").logs_suppressed)
    eng:close()
  end)

  it("is checked in the config", function()
    for _, bad in ipairs { { rate = -1 }, { burst = 0 }, { rate = "x" },
                           { burst = 2e9 }, { level = "info" } } do
      local ok, err = pcall(testing.engine, { services = {
        { name = "a", module = testing.module(LOGGER), log = bad } } })
      assert.is_false(ok)
      assert.matches("services[1].log.", err, 1, true)
    end
  end)
end)
