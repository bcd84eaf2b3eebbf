-- spec/engine/links_spec.lua -- two `mycelium run` processes linked over
-- a Unix socket and over TCP (127.0.0.1), running examples/links: what
-- node a's producer emits on swaps.v2 reaches node b's consumer (the same
-- Lua code as in one process) with a's trace id; status lists the link;
-- kill -9 of either side leaves the other running, and they link again.
local cli = require "support.cli"
local proc = require "support.proc"

local bin = cli.bin
local example = proc.root .. "/examples/links"

-- The "n" of every "got" line of b's output, in order, with trace ids.
local function received(text)
  local got = {}
  for n, trace in text:gmatch("%[consumer%] got [^\n]-n=(%d+)[^\n]-trace_id=(%x+)") do
    got[#got + 1] = { n = tonumber(n), trace = trace }
  end
  return got
end

local function sent_traces(text)
  local t = {}
  for n, trace in text:gmatch("%[producer%] sent n=(%d+) trace_id=(%x+)") do
    t[tonumber(n)] = trace
  end
  return t
end

local wait_for = proc.wait_for

-- Starts node a (the producer) with 'url'; returns it once it listens.
-- 'env': more variables for both nodes ("LINK_WORKER=0 ").
local function start_a(dir, url, env)
  return proc.spawn(string.format(
    "cd %s && %sLINK_URL='%s' CONTROL='unix://%s/a.ctl' INTERVAL_MS=20 "
      .. "METRICS=127.0.0.1:0 exec timeout 60 %s run a.lua", example, env or "",
    url, dir.path, bin),
    "link listening on (%S+)", 10)
end

local function start_b(url, env)
  return proc.spawn(string.format(
    "cd %s && %sLINK_URL='%s' exec timeout 60 %s run b.lua", example, env or "",
    url, bin),
    "link up", 10)
end

local function status_json(dir)
  local rc, out = dir:sh(string.format("timeout 10 %s status --socket %s/a.ctl --json",
                                       bin, dir.path))
  assert.equal(0, rc)
  return out
end

-- kill -9 of the mycelium process itself (the child of 'timeout', which
-- then exits on its own).
local function kill9(p)
  local h = io.popen("pgrep -P " .. p.pid)
  local child = h:read("*l")
  h:close()
  assert.is_truthy(child, "no mycelium process under " .. p.pid)
  os.execute("kill -9 " .. child)
  p.pid = nil
  p.stop()
end

local function strictly_increasing(got)
  for i = 2, #got do
    if got[i].n ~= got[i - 1].n + 1 then return false, i end
  end
  return true
end

local function crosses(url_of)
  local dir = cli.tmpdir()
  local a, b
  finally(function()
    if b then b.stop() end
    if a then a.stop() end
    dir:remove()
  end)
  a = start_a(dir, url_of(dir))
  local url = a.ready[1]
  b = start_b(url)
  local got = wait_for(function()
    local g = received(b.output())
    return #g >= 10 and g
  end)
  assert.is_truthy(got, b.output())
  assert.is_true(strictly_increasing(got))
  -- The trace a's producer logged for n is the one b handled n in.
  -- a's log lines are written by its log thread, maybe after b has
  -- handled n: wait until a's output holds every n b got.
  local sent = wait_for(function()
    local s = sent_traces(a.output())
    for _, m in ipairs(got) do
      if s[m.n] == nil then return false end
    end
    return s
  end)
  assert.is_truthy(sent, a.output())
  for _, m in ipairs(got) do
    assert.equal(sent[m.n], m.trace)
  end
  local st = status_json(dir)
  assert.truthy(st:find('"links":[{"peer":"b"', 1, true), st)
  assert.truthy(st:find('"state":"up","wire":2,"patterns":1', 1, true), st)
  -- The same counters in /metrics, per link.
  local port = a.output():match("metrics: serving http://127%.0%.0%.1:(%d+)/metrics")
  local rc, body = dir:sh("curl -sf -m 5 http://127.0.0.1:" .. port .. "/metrics")
  assert.equal(0, rc)
  local frames = tonumber(body:match(
    '\nmycelium_link_frames_total{link="b",dir="accept",direction="out"} (%d+)\n'))
  assert.is_true(frames ~= nil and frames >= 10, body)
  local direct = tonumber(body:match(
    '\nmycelium_link_frames_direct_total{link="b",dir="accept"} (%d+)\n'))
  assert.is_true(direct ~= nil and direct <= frames, body)
  assert.truthy(body:find('\nmycelium_link_up{link="b",dir="accept"} 1\n', 1, true), body)
  assert.truthy(body:find('\nmycelium_link_dropped_total{link="b",dir="accept",'
                          .. 'reason="queue_full"} 0\n', 1, true), body)
  local prc, pout = dir:promtool_check(body)
  assert.equal(0, prc, pout)
  return dir, a, b
end

describe("links between two mycelium processes", function()
  it("carry swaps.v2 from a to b's swaps.* over a Unix socket, with the trace", function()
    crosses(function(dir) return "unix://" .. dir.path .. "/ab.sock" end)
  end)

  it("do the same over TCP on 127.0.0.1 (port chosen by the kernel)", function()
    crosses(function() return "tcp://127.0.0.1:0" end)
  end)

  it("are refused on both sides when the contracts disagree on a type", function()
    local dir = cli.tmpdir()
    local a, b
    finally(function()
      if b then b.stop() end
      if a then a.stop() end
      dir:remove()
    end)
    local function node(name, field_type, links)
      dir:write(name .. ".yaml", string.format([[
schema: { id: 7, version: 1 }
messages:
  Swap: { tlv_type: 1000, fields: { amount: { type: %s } } }
]], field_type))
      dir:write("noop.lua", "return { handlers = {} }")
      return dir:write(name .. ".lua", string.format([[
return { node = "%s", contracts = "%s.yaml", %s,
         services = { { name = "noop", module = "noop.lua" } } }]],
        name, name, links))
    end
    local url = "unix://" .. dir.path .. "/m.sock"
    local pa = node("a", "u64", string.format("listen = { %q }", url))
    local pb = node("b", "u32", string.format("connect = { %q }", url))
    a = proc.spawn(string.format("exec timeout 30 %s run %s", bin, pa), "listening", 10)
    b = proc.spawn(string.format("exec timeout 30 %s run %s", bin, pb),
                   "incompatible contracts", 10)
    local want = "incompatible contracts: type Swap %(tag 1000%) differs: digest %x+%.%.%. here, %x+%.%.%. at "
    assert.truthy(wait_for(function() return a.output():match(want .. "b") end), a.output())
    assert.truthy(wait_for(function() return b.output():match(want .. "a") end), b.output())
  end)

  it("talk with a second codec written from docs/WIRE.md (Python)", function()
    local dir = cli.tmpdir()
    local a
    finally(function()
      if a then a.stop() end
      dir:remove()
    end)
    dir:write("pyc.lua", [[
return { subscribe = { "py.*" }, on_message = function(ctx, msg)
  ctx.log:info("py says", { data = msg.data, from = msg.source })
end }]])
    local sock = dir.path .. "/py.sock"
    local cfg = dir:write("a.lua", string.format([[
return { node = "a", listen = { "unix://%s" },
  services = { { name = "producer", module = "%s/producer.lua", opts = { interval_ms = 20 } },
               { name = "pyc", module = "pyc.lua" } } }]], sock, example))
    a = proc.spawn(string.format("exec timeout 30 %s run %s", bin, cfg), "listening", 10)
    local rc, out, err = dir:sh(string.format("timeout 20 python3 %s/spec/peers/wire_peer.py %s 3",
                                              proc.root, sock))
    assert.equal(0, rc, err)
    assert.truthy(out:find("hello a 1..2", 1, true), out)
    assert.truthy(out:find("sub py.*", 1, true), out)
    local n = 0
    for kind in out:gmatch("msg swaps%.v2 producer (%d) %d+ %x+\n") do
      assert.equal("2", kind) -- a table: MessagePack
      n = n + 1
    end
    assert.equal(3, n, out)
    assert.truthy(out:find("sent", 1, true), out)
    assert.truthy(wait_for(function()
      return a.output():find("[pyc] py says data=hello from python from=pyproducer trace_id="
                             .. string.rep("01", 16), 1, true)
    end), a.output())
  end)

  local function survive_kill9(env)
    local dir = cli.tmpdir()
    local a, b
    finally(function()
      if b then b.stop() end
      if a then a.stop() end
      dir:remove()
    end)
    local url = "unix://" .. dir.path .. "/ab.sock"
    a = start_a(dir, url, env)
    b = start_b(url, env)
    assert.is_truthy(wait_for(function() return #received(b.output()) >= 5 end))
    -- b dies mid-stream: a keeps running and counts the link's end (once
    -- it has read the hang-up: a loaded machine may take a while).
    kill9(b)
    local st = wait_for(function()
      local s = status_json(dir)
      return s:find('"peer":"(closed links)"', 1, true) and s
    end) or status_json(dir)
    assert.truthy(st:find('"peer":"(closed links)"', 1, true), st)
    assert.is_true(a.alive())
    -- A new b links again and gets a's stream from where it is, in order.
    b = start_b(url, env)
    local got = wait_for(function()
      local g = received(b.output())
      return #g >= 5 and g
    end)
    assert.is_truthy(got)
    assert.is_true(strictly_increasing(got))
    -- a dies: b keeps running (past reading the hang-up), redials, and
    -- links with the next a.
    local _, hung = b.output():gsub("the peer hung up", "")
    kill9(a)
    assert.is_truthy(wait_for(function()
      local _, n = b.output():gsub("the peer hung up", "")
      return n > hung
    end), b.output())
    assert.is_true(b.alive())
    a = start_a(dir, url, env)
    assert.is_truthy(wait_for(function()
      local _, ups = b.output():gsub("link up", "")
      return ups >= 2
    end), b.output())
    local before = #received(b.output())
    assert.is_truthy(wait_for(function() return #received(b.output()) >= before + 5 end))
  end

  it("survive kill -9 of either side and link again", function()
    survive_kill9()
  end)

  it("do the same with the links on a worker's loop (link.worker)", function()
    survive_kill9("LINK_WORKER=0 ")
  end)
end)
