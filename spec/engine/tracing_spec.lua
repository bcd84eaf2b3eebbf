-- spec/engine/tracing_spec.lua -- the `tracing` config key end to end:
-- `mycelium run` exporting the spans of three services on two workers to
-- an independent collector on loopback (spec/peers/trace_peer.js: OTLP
-- JSON decoded with protobufjs and the OpenTelemetry protos, Zipkin v2
-- JSON rebuilt with zipkin-js), the parent/child relations it reads back,
-- head sampling from the trace id, and a collector that is down and comes
-- back losing only the spans the engine counts as dropped.
local ffi = require "ffi"
local proc = require "support.proc"

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

-- a (worker 0) starts a trace from a timer with "t.a"; b (worker 1)
-- answers with "t.b"; c (worker 0) with "t.c", which a handles last.
-- 'limit' caps the traces a starts.
local A = [[
local n = 0
return {
  subscribe = { "t.c" },
  init = function(ctx, opts)
    local function tick(c)
      n = n + 1
      c:emit("t.a", "x")
      if n < opts.limit then c:after(opts.every_ms, tick) end
    end
    ctx:after(opts.every_ms, tick)
  end,
  on_message = function() end,
}]]
local B = [[return { subscribe = { "t.a" },
  on_message = function(ctx) ctx.log:info("got t.a") ctx:emit("t.b", "y") end }]]
local C = [[return { subscribe = { "t.b" },
  on_message = function(ctx) ctx:emit("t.c", "z") end }]]

local function config(tracing, every_ms, limit, extra)
  write("a.lua", A)
  write("b.lua", B)
  write("c.lua", C)
  return write("m.lua", string.format([[return { workers = 2, %s
  tracing = %s,
  services = {
    { name = "a", module = "a.lua", worker = 0, opts = { every_ms = %d, limit = %d } },
    { name = "b", module = "b.lua", worker = 1 },
    { name = "c", module = "c.lua", worker = 0 },
  } }]], extra or "", tracing, every_ms, limit))
end

local function collector(format, port)
  local dir = proc.node_peers()
  local out = tmpdir .. "/spans-" .. format .. ".txt"
  local raw = tmpdir .. "/raw-" .. format .. ".txt"
  local p = proc.spawn(string.format("exec node %s/trace_peer.js --format %s --out %s "
    .. "--raw %s --port %d --ttl 60", dir, format, out, raw, port or 0), "READY (%d+)", 20)
  p.raw = raw
  p.port = tonumber(p.ready[1])
  function p.spans()
    local spans, invalid = {}, {}
    for line in proc.slurp(out):gmatch("[^\n]+") do
      if line:match("^INVALID") then invalid[#invalid + 1] = line end
      local s = {}
      for k, v in line:gmatch("(%w+)=(%S+)") do s[k] = v end
      if line:match("^SPAN") then spans[#spans + 1] = s end
    end
    return spans, invalid
  end
  return p
end

local function run(cfg, ready)
  return proc.spawn("exec timeout 60 " .. bin .. " run " .. cfg, ready or "started", 20)
end

-- SIGTERM, then waits for the exit (the last spans are posted on the way):
-- up to 30 s, for a loaded machine.
local function stop(eng)
  local pid = eng.pid
  eng.stop()
  for _ = 1, 1500 do
    if ffi.C.kill(pid, 0) ~= 0 then return end
    proc.sleep(0.02)
  end
  error("mycelium run did not exit")
end

local function metric(body, pattern)
  return tonumber(body:match("\n" .. pattern .. " (%d+)"))
end

describe("tracing", function()
  before_each(function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p " .. tmpdir) == 0)
  end)
  after_each(function()
    os.execute("rm -rf " .. tmpdir)
  end)

  for _, format in ipairs { "zipkin", "otlp" } do
    it("exports " .. format .. " spans an independent decoder reads as one tree per trace "
       .. "across three services on two workers", function()
      local col = collector(format)
      local path = format == "zipkin" and "/api/v2/spans" or "/v1/traces"
      local cfg = config(string.format('{ export = "%s", endpoint = "http://127.0.0.1:%d%s" }',
                                       format, col.port, path), 20, 10,
                         'log = { format = "json" },')
      local eng = run(cfg)
      local ok, err = pcall(function()
        local spans
        for _ = 1, 200 do
          spans = col.spans()
          if #spans >= 10 * 4 + 3 then break end
          proc.sleep(0.05)
        end
        local logs = eng.output()
        stop(eng)
        local invalid
        spans, invalid = col.spans()
        assert.same({}, invalid)
        local by_id, traces = {}, {}
        for _, s in ipairs(spans) do
          assert.is_nil(by_id[s.id], "span " .. s.id .. " twice")
          by_id[s.id] = s
          traces[s.trace] = traces[s.trace] or {}
          table.insert(traces[s.trace], s)
        end
        -- Each trace a's timer started: timer (a) -> t.a (b, worker 1)
        -- -> t.b (c, worker 0) -> t.c (a, worker 0), each the child of the
        -- one before, all in one trace.
        local complete, one = 0, nil
        for id, list in pairs(traces) do
          local names = {}
          for _, s in ipairs(list) do names[s.name] = s end
          if names["t.a"] then
            local root, sa, sb, sc = names.timer, names["t.a"], names["t.b"], names["t.c"]
            assert.is_not_nil(root, "a trace without its root")
            assert.are.equal("-", root.parent)
            assert.are.same({ "a", "0" }, { root.service, root.worker })
            assert.are.same({ "b", "1", root.id }, { sa.service, sa.worker, sa.parent })
            assert.are.same({ "c", "0", sa.id }, { sb.service, sb.worker, sb.parent })
            assert.are.same({ "a", "0", sb.id }, { sc.service, sc.worker, sc.parent })
            assert.are.equal(4, #list)
            complete = complete + 1
            one = id
          end
        end
        assert.are.equal(10, complete)
        -- `mycelium trace` prints the same tree from the exported spans,
        -- with the trace's log lines under their span, and (Zipkin) from
        -- the collector's GET /api/v2/trace/ID.
        local tree = "^trace " .. one .. ": 4 spans, 3 services, [^\n]+\n"
          .. "timer a@mycelium worker 0 [^\n]+\n"
          .. "`%- t%.a b@mycelium worker 1  wait %d[^\n]+\n"
          .. "     %. info b: got t%.a\n"
          .. "   `%- t%.b c@mycelium worker 0  wait [^\n]+\n"
          .. "      `%- t%.c a@mycelium worker 0  wait [^\n]+\n$"
        local both = write("both.txt", proc.slurp(col.raw) .. logs)
        local rc, text = sh(bin .. " trace " .. one .. " --from " .. both)
        assert.are.equal(0, rc, text)
        assert.matches(tree, text)
        if format == "zipkin" then
          rc, text = sh(bin .. " trace " .. one .. " --zipkin http://127.0.0.1:" .. col.port)
          assert.are.equal(0, rc, text)
          assert.matches((tree:gsub("     %%%. info b: got t%%%.a\n", "")), text)
        end
      end)
      col.stop()
      if eng.pid then stop(eng) end
      assert(ok, err)
    end)
  end

  it("mycelium trace: JSON logs alone, and errors that say what to give", function()
    local id = "0af7651916cd43dd8448eb211c80319c"
    local logs = write("logs.txt", table.concat({
      '{"ts":"2026-01-01T00:00:00Z","level":"info","node":"n1","service":"b",'
        .. '"msg":"got it","trace_id":"' .. id .. '","span_id":"b7ad6b7169203331"}',
      "not json, a text log line",
      '{"level":"info","service":"c","msg":"other","trace_id":"' .. ("1"):rep(32)
        .. '","span_id":"' .. ("2"):rep(16) .. '"}',
    }, "\n"))
    local rc, text = sh(bin .. " trace " .. id .. " --from " .. logs)
    assert.are.equal(0, rc, text)
    assert.matches("logs of the trace without a span here:\n  . info b: got it\n", text, 1, true)
    assert.is_nil(text:find("other", 1, true))
    rc, text = sh(bin .. " trace " .. ("3"):rep(32) .. " --from " .. logs)
    assert.are.equal(1, rc)
    assert.matches("no span or log line of trace " .. ("3"):rep(32), text, 1, true)
    rc, text = sh(bin .. " trace xyz --from " .. logs)
    assert.are.equal(2, rc)
    assert.matches("'xyz' is no trace id (32 hex digits", text, 1, true)
    rc, text = sh(bin .. " trace " .. id)
    assert.are.equal(2, rc)
    assert.matches("give a trace id and one of --from or --zipkin", text, 1, true)
    rc, text = sh(bin .. " trace " .. id .. " --from " .. tmpdir .. "/none.json")
    assert.are.equal(1, rc)
    assert.matches("cannot read", text, 1, true)
    rc, text = sh(bin .. " trace " .. id .. " --zipkin http://127.0.0.1:1")
    assert.are.equal(1, rc)
    assert.matches("GET http://127.0.0.1:1/api/v2/trace/" .. id, text, 1, true)
  end)

  it("posts, as it stops, the spans queued since the exporter's last look", function()
    -- a ticks every 3 ms until SIGTERM and writes how many ticks it made;
    -- each tick's span must reach the collector, the last ones included
    -- (they are queued while the exporter naps between drains).
    local col = collector("zipkin")
    local count = tmpdir .. "/ticks"
    write("tick.lua", string.format([[
local n = 0
return {
  init = function(ctx)
    local function tick(c) n = n + 1 c:emit("t.a", "x") c:after(3, tick) end
    ctx:after(3, tick)
  end,
  stop = function() local f = io.open(%q, "w") f:write(n) f:close() end,
}]], count))
    write("b.lua", B)
    local cfg = write("m.lua", string.format([[return { workers = 2,
  tracing = { export = "zipkin", endpoint = "http://127.0.0.1:%d/api/v2/spans" },
  services = {
    { name = "a", module = "tick.lua", worker = 0 },
    { name = "b", module = "b.lua", worker = 1 },
  } }]], col.port))
    local eng = run(cfg)
    local function timer_spans(spans)
      local n = 0
      for _, sp in ipairs(spans) do
        if sp.name == "timer" and sp.service == "a" then n = n + 1 end
      end
      return n
    end
    local ok, err = pcall(function()
      -- Some spans reach the collector while a runs (a loaded machine may
      -- take far longer than the 0.1 s that is usual for that).
      proc.wait_for(function() return timer_spans((col.spans())) > 20 end, 30)
      stop(eng)
      local ticks = tonumber(proc.slurp(count))
      assert.is_true(ticks ~= nil and ticks > 20, tostring(ticks))
      local spans, invalid = col.spans()
      assert.same({}, invalid)
      assert.are.equal(ticks, timer_spans(spans))
    end)
    col.stop()
    if eng.pid then stop(eng) end
    assert(ok, err)
  end)

  it("keeps or drops whole traces, from the trace id alone", function()
    local col = collector("otlp")
    local cfg = config(string.format('{ export = "otlp", sample = 0.5, '
      .. 'endpoint = "http://127.0.0.1:%d/v1/traces" }', col.port), 5, 60)
    local eng = run(cfg)
    local function complete_traces()
      local traces, n = {}, 0
      for _, s in ipairs((col.spans())) do
        traces[s.trace] = (traces[s.trace] or 0) + 1
        if traces[s.trace] == 4 then n = n + 1 end
      end
      return n
    end
    local ok, err = pcall(function()
      -- 60 ticks every 5 ms take 0.3 s; a loaded machine may need longer
      -- before 10 kept traces have reached the collector.
      proc.sleep(0.9)
      proc.wait_for(function() return complete_traces() >= 10 end, 30)
      stop(eng)
      local spans, invalid = col.spans()
      assert.same({}, invalid)
      local traces, kept = {}, 0
      for _, s in ipairs(spans) do
        traces[s.trace] = (traces[s.trace] or 0) + 1
        -- The last 7 bytes of the id, as a number, are below 0.5 * 2^56:
        -- the 19th hex digit is below 8.
        assert.is_true(tonumber(s.trace:sub(19, 19), 16) < 8, s.trace)
      end
      for _, n in pairs(traces) do
        if n > 1 then
          assert.are.equal(4, n) -- timer, t.a, t.b, t.c: all or nothing
          kept = kept + 1
        end
      end
      -- 60 traces, half kept on average: far from none and from all.
      assert.is_true(kept >= 10 and kept <= 50, "kept " .. kept .. " of 60")
    end)
    col.stop()
    if eng.pid then stop(eng) end
    assert(ok, err)
  end)

  it("loses only counted spans while the collector is down, and exports again once it is back", function()
    -- A port nobody listens on yet: the collector's, once it starts.
    local probe = collector("zipkin")
    local port = probe.port
    probe.stop()
    local cfg = config(string.format('{ export = "zipkin", queue = 32, '
      .. 'endpoint = "http://127.0.0.1:%d/api/v2/spans" }', port), 2, 250,
      'metrics = { listen = "127.0.0.1:0" },')
    local eng = run(cfg, "metrics: serving http://127%.0%.0%.1:(%d+)/metrics")
    local mport = eng.ready[1]
    local col
    local ok, err = pcall(function()
      local function scrape()
        local rc, body = sh("curl -sf -m 5 http://127.0.0.1:" .. mport .. "/metrics")
        assert.are.equal(0, rc)
        return body
      end
      -- Down: every post fails; the queues fill and drop.
      local body
      for _ = 1, 100 do
        body = scrape()
        if (metric(body, 'mycelium_trace_spans_dropped_total{reason="queue_full"}') or 0) > 0
           and (metric(body, 'mycelium_trace_export_requests_total{result="failed"}') or 0) > 0 then
          break
        end
        proc.sleep(0.05)
      end
      assert.are.equal(0, metric(body, "mycelium_trace_spans_exported_total"))
      assert.is_true(metric(body, 'mycelium_trace_spans_dropped_total{reason="queue_full"}') > 0)
      -- Back: what was kept is sent; the counts add up once a's traces end.
      col = collector("zipkin", port)
      local sampled, exported, dropped, handled
      for _ = 1, 300 do
        body = scrape()
        sampled = metric(body, "mycelium_trace_spans_sampled_total")
        exported = metric(body, "mycelium_trace_spans_exported_total")
        dropped = metric(body, 'mycelium_trace_spans_dropped_total{reason="queue_full"}')
        handled = metric(body, 'mycelium_messages_handled_total{service="b"}')
        if handled == 250 and metric(body, "mycelium_trace_queue_spans") == 0
           and sampled == exported + dropped and #col.spans() == exported then
          break
        end
        proc.sleep(0.05)
      end
      assert.are.equal(250, handled)
      local spans, invalid = col.spans()
      assert.same({}, invalid)
      assert.is_true(exported > 0)
      assert.are.equal(exported, #spans)
      assert.are.equal(0, metric(body, 'mycelium_trace_spans_dropped_total{reason="rejected"}'))
      -- Nothing lost that is not counted: three inits, 250 timers and
      -- their 750 messages were recorded, and each span was either
      -- exported or dropped at a full queue.
      assert.are.equal(3 + 250 * 4, sampled)
      assert.are.equal(sampled, exported + dropped)
    end)
    if col then col.stop() end
    if eng.pid then stop(eng) end
    assert(ok, err)
  end)
end)
