-- spec/engine/metrics_spec.lua -- the `metrics` config key end to end:
-- `mycelium run` serving /metrics, promtool's check of what it serves,
-- Debian's Prometheus server scraping it and answering a query for one of
-- its counters, and the errors of a bad key.
local proc = require "spec.support.proc"

local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

local tmpdir
local function write(name, text)
  local path = tmpdir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out:gsub("rc=%d+%s*$", "")
end

-- promtool and prometheus come with Debian's `prometheus` package
-- (scripts/deps.sh); a CI run without them fails instead of skipping.
local function have(cmd)
  local ok = sh("command -v " .. cmd .. " >/dev/null") == 0
  if not ok and os.getenv("CI") then
    error(cmd .. " is not installed: apt-get install prometheus (scripts/deps.sh)")
  end
  return ok
end

-- Custom metrics too, so that promtool checks their families.
local ticker = [[
local ticks, gap
return {
  subscribe = { "tick" },
  init = function(ctx)
    ticks = ctx.metrics:counter("ticks_total", "Ticks \\ seen.", { "kind" })
    gap = ctx.metrics:histogram("tick_gap_seconds", "Between ticks.")
    ctx:every(20, function(c) c:emit("tick", "x") end)
  end,
  on_message = function() ticks:inc({ kind = 'a"b' }) gap:observe(0.02) end,
}]]

describe("metrics", function()
  before_each(function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p " .. tmpdir) == 0)
  end)
  after_each(function()
    os.execute("rm -rf " .. tmpdir)
  end)

  it("refuses a listen address that is no numeric host:port, naming the key", function()
    write("t.lua", ticker)
    for _, bad in ipairs({ '"localhost:9464"', '"127.0.0.1"', '"127.0.0.1:99999"', "9464" }) do
      local cfg = write("m.lua", "return { metrics = { listen = " .. bad
        .. " }, services = { { module = 't.lua' } } }")
      local rc, out = sh(bin .. " check " .. cfg)
      assert.are_not.equal(0, rc)
      assert.matches("m.lua: 'metrics.listen' must be \"host:port\" with a numeric address",
                     out, 1, true)
    end
    local cfg = write("m.lua", "return { metrics = { port = 1 }, services = { { module = 't.lua' } } }")
    local rc, out = sh(bin .. " check " .. cfg)
    assert.are_not.equal(0, rc)
    assert.matches("unknown key 'metrics.port'", out, 1, true)
  end)

  it("a port in use fails the start, naming the key, before the engine says it started",
     function()
    write("t.lua", ticker)
    local holder = proc.spawn("exec python3 -c \"import socket,time\n"
      .. "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
      .. "print('port', s.getsockname()[1], flush=True); time.sleep(60)\"",
      "port (%d+)")
    finally(holder.stop)
    local port = holder.ready[1]
    local cfg = write("m.lua", "return { metrics = { listen = '127.0.0.1:" .. port
      .. "' }, services = { { module = 't.lua' } } }")
    local rc, out = sh("timeout 20 " .. bin .. " run " .. cfg)
    assert.equal(1, rc, out)
    assert.matches("metrics.listen '127.0.0.1:" .. port .. "': cannot listen: address "
                   .. "already in use", out, 1, true)
    assert.is_nil(out:find("started:", 1, true), out)
  end)

  it("serves /metrics that promtool accepts and Prometheus scrapes", function()
    write("t.lua", ticker)
    local cfg = write("m.lua", [[return { workers = 2,
      metrics = { listen = "127.0.0.1:0" },
      services = { { name = "ticker", module = "t.lua" } } }]])
    local eng = proc.spawn("exec timeout 60 " .. bin .. " run " .. cfg,
                           "metrics: serving http://127%.0%.0%.1:(%d+)/metrics", 20)
    local port = eng.ready[1]
    local ok, err = pcall(function()
      proc.sleep(0.3)
      local rc, body = sh("curl -sf -m 5 http://127.0.0.1:" .. port .. "/metrics")
      assert.are.equal(0, rc)
      local handled = tonumber(body:match('\nmycelium_messages_handled_total{service="ticker"} (%d+)'))
      assert.is_true(handled > 0)
      assert.matches('\nticks_total{service="ticker",kind="a\\"b"} %d+\n', body)
      if have("promtool") then
        write("scrape.txt", body)
        local prc, pout = sh("promtool check metrics < " .. tmpdir .. "/scrape.txt")
        assert.are.equal(0, prc, pout)
      end
      if not have("prometheus") then return end
      -- A free port for Prometheus' own listener: ports are tried until
      -- one is not taken.
      local prom, pport
      write("prometheus.yml", string.format([[
global: { scrape_interval: 1s }
scrape_configs:
  - job_name: mycelium
    static_configs: [ { targets: [ "127.0.0.1:%s" ] } ]
]], port))
      for _ = 1, 5 do
        pport = tostring(20000 + math.random(0, 30000))
        local started
        started, prom = pcall(proc.spawn, string.format(
          "exec timeout 60 prometheus --config.file=%s/prometheus.yml "
          .. "--storage.tsdb.path=%s/tsdb --web.listen-address=127.0.0.1:%s",
          tmpdir, tmpdir, pport), "Server is ready to receive web requests", 30)
        if started then break end
        prom = nil
      end
      assert.is_not_nil(prom, "prometheus did not start")
      local value
      for _ = 1, 150 do
        local _, q = sh(string.format("curl -sf -m 2 'http://127.0.0.1:%s/api/v1/query?"
          .. "query=mycelium_messages_handled_total%%7Bservice%%3D%%22ticker%%22%%7D'", pport))
        value = tonumber(q:match('"value":%[[%d.]+,"(%d+)"%]'))
        if value and value > 0 then break end
        proc.sleep(0.2)
      end
      prom.stop()
      assert.is_true(value ~= nil and value > 0, "Prometheus never read the counter")
    end)
    eng.stop()
    assert(ok, err)
  end)
end)
