-- spec/engine/nats_spec.lua -- three `mycelium run` processes exchanging
-- topics through a real three-node NATS cluster (nats-server on loopback
-- ports), each engine on a different node:
--   * every engine produces t.<node> and tallies the other two's;
--   * node 3 is killed mid-stream: traffic between the engines on nodes 1
--     and 2 goes on without a loss, the engine on node 3 reconnects to
--     another node and goes on too; for every engine, received + dropped
--     by reason = sent, and no producer's message arrives twice;
--   * a's tracer -> b's relay -> c's sink: the trace id crosses NATS twice
--     and c's message has b's handled span as its parent;
--   * an independent client (npm nats) decodes what a publishes from
--     docs/WIRE.md alone.
local cli = require "support.cli"
local proc = require "support.proc"
local nats_cluster = require "support.nats_cluster"

local bin = cli.bin
local K = 6000       -- messages per producer
local BURST = 6      -- per 2 ms tick: about 3000 messages a second each

local PRODUCER = [[
-- Emits t.<node> {n = 1..K}, BURST per tick once 'delay_ms' passed.
local M = {}
function M.init(ctx, o)
  local n = 0
  ctx:after(o.delay_ms, function()
    ctx:every(2, function()
      if n >= o.total then return end
      for _ = 1, o.burst do
        n = n + 1
        ctx:emit("t." .. o.node, { n = n, from = o.node })
        if n >= o.total then ctx.log:info("done", { n = n }) break end
      end
    end)
  end)
end
return M
]]

local TALLY = [[
-- Counts, per producer, what arrives on t.*: the first n seen, the last,
-- how many distinct and how many twice; logs a line per producer every
-- 200 ms.
local M = { subscribe = { "t.*" } }
local seen, by, me = {}, {}, nil
function M.init(ctx, o)
  me = o.node
  ctx:every(200, function()
    for from, t in pairs(by) do
      ctx.log:info("tally", { from = from, first = t.first, last = t.last,
                              count = t.count, dup = t.dup })
    end
  end)
end
function M.on_message(ctx, msg)
  local from, n = msg.data.from, msg.data.n
  if from == me then return end
  local t = by[from]
  if t == nil then
    t = { first = n, last = n, count = 0, dup = 0 }
    by[from] = t
    seen[from] = {}
  end
  if seen[from][n] then
    t.dup = t.dup + 1
  else
    seen[from][n] = true
    t.count = t.count + 1
  end
  if n > t.last then t.last = n end
  if n < t.first then t.first = n end
end
return M
]]

local TRACES = 25    -- tracer messages, one every 100 ms: the outage falls among them

local TRACER = [[
local M = {}
function M.init(ctx)
  local n = 0
  ctx:every(100, function()
    if n >= ]] .. TRACES .. [[ then return end
    n = n + 1
    ctx:emit("tr.ab", { n = n })
    ctx:emit("raw.a", "hello-" .. n)
  end)
end
return M
]]

local RELAY = [[
local M = { subscribe = { "tr.ab" } }
function M.on_message(ctx, msg)
  ctx.log:info("relay", { n = msg.data.n, trace = msg.trace_id, span = msg.span_id })
  ctx:emit("tr.bc", { n = msg.data.n })
end
return M
]]

local SINK = [[
local M = { subscribe = { "tr.bc" } }
function M.on_message(ctx, msg)
  ctx.log:info("sink", { n = msg.data.n, trace = msg.trace_id, parent = msg.parent_span_id })
end
return M
]]

local function node_config(dir, name, urls, extra)
  local services = {
    string.format([[{ name = "producer", module = "producer.lua",
        opts = { node = %q, total = %d, burst = %d, delay_ms = 800 } }]],
      name, K, BURST),
    string.format([[{ name = "tally", module = "tally.lua", opts = { node = %q } }]], name),
  }
  for _, s in ipairs(extra) do services[#services + 1] = s end
  local quoted = {}
  for i, u in ipairs(urls) do quoted[i] = string.format("%q", u) end
  return dir:write(name .. ".lua", string.format([[
return {
  node = %q, workers = 2,
  connect = { %s },
  nats = { randomize = false, reconnect_wait_ms = 50 },
  control = "unix://%s/%s.ctl",
  services = { %s },
}]], name, table.concat(quoted, ", "), dir.path, name,
    table.concat(services, ",\n    ")))
end

local wait_for = proc.wait_for

-- The last tally line per producer in 'text'.
local function tallies(text)
  local t = {}
  for line in text:gmatch("[^\n]*%[tally%] tally[^\n]*") do
    local from = line:match("from=(%w+)")
    t[from] = {
      first = tonumber(line:match("first=(%d+)")),
      last = tonumber(line:match("last=(%d+)")),
      count = tonumber(line:match("count=(%d+)")),
      dup = tonumber(line:match("dup=(%d+)")),
    }
  end
  return t
end

local function status(dir, name)
  local rc, out = dir:sh(string.format("timeout 10 %s status --socket %s/%s.ctl --json",
                                       bin, dir.path, name))
  assert.equal(0, rc, out)
  return out
end

local function num(json, path)
  return tonumber(json:match(path))
end

-- The NATS counters of a status --json.
local function nats_of(json)
  local n = json:match('"nats":(%b{})')
  assert.truthy(n, json)
  local d = n:match('"dropped":(%b{})')
  return {
    state = n:match('"state":"(%w+)"'),
    msgs_in = num(n, '"msgs_in":(%d+)'),
    msgs_out = num(n, '"msgs_out":(%d+)'),
    msgs_direct = num(n, '"msgs_direct":(%d+)'),
    writes_direct = num(n, '"writes_direct":(%d+)'),
    reconnects = num(n, '"reconnects":(%d+)'),
    frame_errors = num(n, '"frame_errors":(%d+)'),
    queue_full = num(d, '"queue_full":(%d+)'),
    disconnect = num(d, '"disconnect":(%d+)'),
    shutdown = num(d, '"shutdown":(%d+)'),
    pending_limit = num(d, '"pending_limit":(%d+)'),
    lost = num(d, '"lost":(%d+)'),
    schema = num(d, '"schema_mismatch":(%d+)'),
    unknown = num(d, '"unknown_type":(%d+)'),
    duplicate = num(d, '"duplicate":(%d+)'),
  }
end

-- What the tally service itself dropped (its mailbox).
local function tally_dropped(json)
  local svc = json:match('{"name":"tally".-"dropped":(%d+)')
  return tonumber(svc)
end

describe("NATS transport across a three-node nats-server cluster", function()
  it("keeps traffic and its accounting through a node's death, with traces, "
     .. "and publishes frames an independent client decodes", function()
    local dir = cli.tmpdir()
    local cluster = nats_cluster.start(3)
    local engines, peer = {}, nil
    finally(function()
      if peer then peer.stop() end
      for _, e in pairs(engines) do e.stop() end
      cluster:stop()
      dir:remove()
    end)
    dir:write("producer.lua", PRODUCER)
    dir:write("tally.lua", TALLY)
    dir:write("tracer.lua", TRACER)
    dir:write("relay.lua", RELAY)
    dir:write("sink.lua", SINK)
    local u = cluster.urls
    -- Each engine dials its own node first, the others as seeds.
    local cfg = {
      a = node_config(dir, "a", { u[1], u[2], u[3] },
                      { [[{ name = "tracer", module = "tracer.lua" }]] }),
      b = node_config(dir, "b", { u[2], u[1], u[3] },
                      { [[{ name = "relay", module = "relay.lua" }]] }),
      c = node_config(dir, "c", { u[3], u[1], u[2] },
                      { [[{ name = "sink", module = "sink.lua" }]] }),
    }
    -- The independent client reads a's raw messages on node 2; it is
    -- subscribed before a starts, so a slow start of node cannot make it
    -- miss the tracer's few messages.
    local peers_dir = proc.node_peers()
    peer = proc.spawn(string.format("cd %s && exec timeout 60 node nats_peer.js %s 'mycelium.raw.>' 3 50",
                                    peers_dir, u[2]), '"ready":true', 20)
    for _, name in ipairs({ "a", "b", "c" }) do
      engines[name] = proc.spawn(string.format("exec timeout 60 %s run %s", bin, cfg[name]),
                                 "nats: connected to", 10)
    end
    -- Mid-stream: every producer past its first messages, node 3 dies.
    assert.truthy(wait_for(function()
      local t = tallies(engines.a.output())
      return t.c and t.c.count > 500
    end, 10), engines.a.output())
    cluster:kill(3)
    -- The producers finish; the tallies settle.
    for name, e in pairs(engines) do
      assert.truthy(wait_for(function()
        return e.output():find("%[producer%] done")
      end, 20), name .. ": " .. e.output())
    end
    -- The sink sees the last trace (sent after the outage).
    assert.truthy(wait_for(function()
      return engines.c.output():find("%[sink%] sink n=" .. TRACES .. " ")
    end, 10), engines.c.output())
    local final = {}
    for name, e in pairs(engines) do
      final[name] = wait_for(function()
        local t = tallies(e.output())
        for from, x in pairs(t) do
          if from ~= name and x.last ~= K then return nil end
        end
        proc.sleep(0.5) -- one more tally period: nothing moves any more
        local again = tallies(e.output())
        for from, x in pairs(t) do
          if again[from].count ~= x.count then return nil end
        end
        return again
      end, 15)
      assert.truthy(final[name], name .. ": " .. e.output())
    end
    -- c lost node 3 and came back through another node.
    assert.truthy(engines.c.output():find("nats: reconnected to nats://127%.0%.0%.1:%d+"),
                  engines.c.output())
    for name in pairs(engines) do
      local json = status(dir, name)
      local n = nats_of(json)
      if os.getenv("NATS_SPEC_DEBUG") then io.stderr:write(name, " ", json:match('"nats":.*'), "\n") ; for f, x in pairs(final[name]) do io.stderr:write("  ", f, " first=", x.first, " count=", x.count, "\n") end end
      local t = final[name]
      assert.equal("up", n.state)
      -- Sending: nothing dropped on the way out.
      assert.equal(0, n.queue_full + n.disconnect + n.shutdown, json)
      -- No message twice, neither seen by the engine nor by the service.
      assert.equal(0, n.duplicate)
      assert.equal(0, n.frame_errors + n.schema + n.unknown)
      local sent, received = 0, 0
      for from, x in pairs(t) do
        if from ~= name then
          assert.equal(0, x.dup, name .. " got a message of " .. from .. " twice")
          sent = sent + (K - x.first + 1)
          received = received + x.count
        end
      end
      if name == "c" then
        -- c also receives tr.bc: what its sink got, from the first seen.
        local first, count = nil, 0
        for n in engines.c.output():gmatch("%[sink%] sink n=(%d+)") do
          n = tonumber(n)
          first = first and math.min(first, n) or n
          count = count + 1
        end
        sent = sent + (TRACES - first + 1)
        received = received + count
      end
      -- received + dropped by reason = sent, from the first message seen
      -- (drops are the engine's: every subject it receives).
      assert.equal(sent, received + n.lost + n.pending_limit + tally_dropped(json),
                   name .. ": " .. json)
      if name == "c" then
        assert.is_true(n.reconnects >= 1)
      end
      -- The producer's worker published and wrote most of it itself
      -- (docs/NATS.md, Threads), on both sides of c's reconnect: the
      -- counts above hold for that path.
      assert.is_true(n.msgs_direct > K / 2 and n.msgs_direct <= n.msgs_out, json)
      assert.is_true(n.writes_direct > 0, json)
    end
    -- a and b never went through node 3: not one message lost between
    -- them.
    assert.equal(K - final.a.b.first + 1, final.a.b.count)
    assert.equal(K - final.b.a.first + 1, final.b.a.count)

    -- Trace context: a's tracer -> b's relay -> c's sink.
    local relayed = {}
    -- Log fields print sorted: n, span, trace.
    for n, span, trace in engines.b.output():gmatch("%[relay%] relay n=(%d+) span=(%x+) trace=(%x+)") do
      relayed[n] = { trace = trace, span = span }
    end
    local checked = 0
    for n, parent, trace in engines.c.output():gmatch("%[sink%] sink n=(%d+) parent=(%x+) trace=(%x+)") do
      local r = relayed[n]
      if r then
        assert.equal(r.trace, trace)
        assert.equal(r.span, parent)
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 3, engines.b.output() .. engines.c.output())

    -- The independent client decoded a's frames from the wire format.
    local lines = wait_for(function()
      local out = peer.output()
      local got = {}
      for l in out:gmatch("[^\n]+") do
        if l:find('"subject"') then got[#got + 1] = l end
      end
      return #got >= 3 and got
    end, 10)
    assert.truthy(lines, peer.output())
    for _, l in ipairs(lines) do
      assert.falsy(l:find('"error"'), l)
      assert.truthy(l:find('"kind":1,', 1, true), l)
      assert.truthy(l:find('"version":2,', 1, true), l)
      assert.truthy(l:find('"padding_zero":true', 1, true), l)
      assert.truthy(l:find('"topic":"raw.a","source":"tracer","subject":"mycelium.raw.a"', 1, true), l)
      assert.truthy(l:match('"payload":"hello%-%d+"'), l)
      local trace, span = l:match('"trace_id":"(%x+)","span_id":"(%x+)"')
      assert.truthy(l:find('"traceparent":"00-' .. trace .. '-' .. span .. '-01"', 1, true), l)
      assert.truthy(l:match('"myc_seq":"%x+%-%d+"'), l)
    end
  end)

  it("checks the schema digest of typed messages: dropped and counted, or "
     .. "the connection fails, by policy; an equal digest passes", function()
    local dir = cli.tmpdir()
    local server = nats_cluster.start(1)
    local engines = {}
    finally(function()
      for _, e in pairs(engines) do e.stop() end
      server:stop()
      dir:remove()
    end)
    local function contracts(name, field_type)
      dir:write(name .. ".yaml", string.format([[
schema: { id: 7, version: 1 }
messages:
  Swap: { tlv_type: 1000, fields: { amount: { type: %s } } }
]], field_type))
    end
    contracts("wide", "u64")
    contracts("narrow", "u32")
    dir:write("emitter.lua", [[
local M = {}
function M.init(ctx)
  local n = 0
  ctx:after(600, function()
    ctx:every(20, function()
      n = n + 1
      if n <= 20 then ctx:emit("sw.x", ctx:new("Swap", { amount = n })) end
    end)
  end)
end
return M]])
    dir:write("got.lua", [[
local M = { subscribe = { "sw.*" } }
function M.on_message(ctx, msg) ctx.log:info("got", { amount = tonumber(msg.data.amount) }) end
return M]])
    local function node(name, yaml, module, policy)
      return dir:write(name .. ".lua", string.format([[
return { node = %q, workers = 1, contracts = %q, connect = { %q },
         nats = { schema_mismatch = %q }, control = "unix://%s/%s.ctl",
         services = { { name = "svc", module = %q } } }]],
        name, yaml .. ".yaml", server.urls[1], policy, dir.path, name, module))
    end
    local cfg = {
      same = node("same", "wide", "got.lua", "drop"),
      drop = node("drop", "narrow", "got.lua", "drop"),
      fail = node("fail", "narrow", "got.lua", "fail"),
    }
    for name, path in pairs(cfg) do
      engines[name] = proc.spawn(string.format("exec timeout 30 %s run %s", bin, path),
                                 "nats: connected to", 10)
    end
    engines.src = proc.spawn(string.format("exec timeout 30 %s run %s", bin,
                                           node("src", "wide", "emitter.lua", "drop")),
                             "nats: connected to", 10)
    -- The node with the same contract gets all 20.
    assert.truthy(wait_for(function()
      return engines.same.output():find("amount=20", 1, true)
    end, 10), engines.same.output())
    -- "drop": each message counted, none handled, one warning naming the type.
    local json = wait_for(function()
      local j = status(dir, "drop")
      return nats_of(j).schema == 20 and j
    end, 10)
    assert.truthy(json, status(dir, "drop"))
    assert.equal("up", nats_of(json).state)
    assert.falsy(engines.drop.output():find("[svc] got", 1, true))
    assert.truthy(engines.drop.output():find(
      "type Swap (tag 1000) on 'mycelium.sw.x' differs", 1, true), engines.drop.output())
    -- "fail": an error, and the NATS link is closed.
    assert.truthy(wait_for(function()
      return nats_of(status(dir, "fail")).state == "failed"
    end, 10), engines.fail.output())
    assert.truthy(engines.fail.output():find(
      "ERROR [_nats] nats: type Swap (tag 1000) on 'mycelium.sw.x' differs", 1, true),
      engines.fail.output())
    assert.falsy(engines.fail.output():find("[svc] got", 1, true))
  end)

  it("keeps a producer's order across subjects that two subscriptions take; "
     .. "an engine started before its server connects when it comes", function()
    local dir = cli.tmpdir()
    local port = require("support.redis_server").free_port()
    local server = { urls = { "nats://127.0.0.1:" .. port }, stop = function() end }
    local engines = {}
    finally(function()
      for _, e in pairs(engines) do e.stop() end
      server:stop()
      dir:remove()
    end)
    dir:write("alt.lua", [[
local M = {}
function M.init(ctx)
  local n = 0
  ctx:after(500, function()
    ctx:every(2, function()
      for _ = 1, 20 do
        if n >= 4000 then return end
        n = n + 1
        ctx:emit(n % 3 == 0 and "ord.y" or "ord.x", tostring(n))
      end
    end)
  end)
end
return M]])
    dir:write("check.lua", [[
local M = { subscribe = { "ord.x", "ord.y" } }
local last, bad, count = 0, 0, 0
function M.on_message(ctx, msg)
  local n = tonumber(msg.data)
  if n <= last then bad = bad + 1 end
  last, count = n, count + 1
  if n == 4000 then ctx.log:info("order", { count = count, bad = bad }) end
end
return M]])
    local function node(name, module)
      return dir:write("node_" .. name .. ".lua", string.format([[
return { node = %q, workers = 1, connect = { %q },
         services = { { name = "svc", module = %q } } }]], name, server.urls[1], module))
    end
    engines.check = proc.spawn(string.format("exec timeout 30 %s run %s", bin,
                                             node("check", "check.lua")),
                               "nats: no server answered yet", 10)
    server = nats_cluster.start(1, { ports = { port } })
    assert.truthy(wait_for(function()
      return engines.check.output():find("nats: connected to", 1, true)
    end, 10), engines.check.output())
    engines.alt = proc.spawn(string.format("exec timeout 30 %s run %s", bin,
                                           node("alt", "alt.lua")), "nats: connected to", 10)
    local line = wait_for(function()
      return engines.check.output():match("%[svc%] order bad=(%d+) count=(%d+)")
    end, 15)
    assert.truthy(line, engines.check.output())
    local bad, count = engines.check.output():match("%[svc%] order bad=(%d+) count=(%d+)")
    assert.equal("0", bad)
    assert.equal("4000", count)
  end)
end)
