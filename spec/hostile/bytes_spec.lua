-- spec/hostile/bytes_spec.lua -- bytes are bounded (issue 11, item 4):
-- mailboxes bounded message counts, never bytes, so 20 messages of 100 MB
-- into a 64-slot mailbox took RSS to 1.7 GB and blocked the producer's
-- worker for seconds copying them.  A mailbox now takes no message over
-- max_message_bytes (64 MiB by default) and holds at most max_bytes (1 GiB)
-- of payload, with its policy; a message every subscriber would refuse is
-- refused before it is copied, with a clear error at emit.
local testing = require "mycelium.testing"
local cli = require "support.cli"

local SINK = [[
return { subscribe = { "big" }, on_message = function(ctx, msg)
  ctx:emit("seen", tostring(#msg.data))
end }]]

describe("a flood of huge messages", function()
  after_each(function() testing.cleanup() end)

  it("is refused at emit, before any copy, and counted", function()
    local eng = testing.engine { services = {
      -- init's budget: making 100 MB on a loaded machine may take seconds
      { name = "producer", load_timeout_ms = 60000, module = testing.module [[
        return { init = function(ctx)
          local big = string.rep("x", 100 * 1024 * 1024)
          local t0 = os.clock()
          local results = {}
          for i = 1, 20 do results[i] = { ctx:emit("big", big) } end
          ctx:emit("report", { results = results, cpu = os.clock() - t0,
                               stats = ctx:service_stats("sink") })
        end }]] },
      { name = "sink", module = testing.module(SINK), mailbox = { capacity = 64 } },
    }, collect = { "report" } }
    eng:run()
    local report = eng.collect_before_start.report:messages()[1].data
    for i = 1, 20 do
      assert.are.same({ nil, "message too large (104857600 bytes): over the "
                        .. "max_message_bytes of every subscriber", "ETOOBIG" },
                      report.results[i])
    end
    -- Nothing was copied: 20 copies of 100 MB take seconds of CPU.
    assert.is_true(report.cpu < 0.5, "emits took " .. report.cpu .. " s of CPU")
    assert.are.equal(20, report.stats.too_large)
    assert.are.equal(20, report.stats.dropped)
    local st = eng:stats("sink")
    assert.are.equal(20, st.too_large)
    assert.are.equal(0, st["in"])
    assert.are.equal(20, eng:drops("sink").big.too_large)
    eng:close()
  end)

  it("from the host is refused the same way", function()
    local eng = testing.engine { services = {
      { name = "sink", module = testing.module(SINK),
        mailbox = { max_message_bytes = 1000 } } } }
    local ok, why, code = eng:publish("big", string.rep("x", 70000))
    assert.is_nil(ok)
    assert.are.equal("message too large", why)
    assert.are.equal("ETOOBIG", code)
    ok, why, code = eng:publish("big", string.rep("x", 1001)) -- copied, then refused
    assert.are.equal("ETOOBIG", code)
    assert.is_true(eng:publish("big", string.rep("x", 1000)))
    eng:run()
    assert.are.equal(2, eng:stats("sink").too_large)
    assert.are.equal(1, eng:stats("sink")["in"])
    eng:close()
  end)

  it("reaches the subscribers that take it and is counted at the others", function()
    local eng = testing.engine { collect = { "seen" }, services = {
      { name = "small", module = testing.module(SINK), mailbox = { max_message_bytes = 100 } },
      { name = "large", module = testing.module(SINK) } } }
    assert.is_true(eng:publish("big", string.rep("x", 100000)))
    eng:run()
    assert.are.equal(1, eng:stats("small").too_large)
    assert.are.equal(1, eng:stats("large")["in"])
    assert.are.equal("100000", eng.collect_before_start.seen:messages()[1].data)
    eng:close()
  end)
end)

describe("the byte bound of a mailbox", function()
  after_each(function() testing.cleanup() end)

  local function flood(policy)
    local eng = testing.engine { collect = { "seen" }, services = { {
      name = "sink", module = testing.module [[
        return { subscribe = { "in" }, on_message = function(ctx, msg)
          ctx:emit("seen", msg.data:sub(1, 3))
        end }]],
      mailbox = { capacity = 64, policy = policy, max_bytes = 1000 } } } }
    local refused = {}
    for i = 1, 10 do
      local ok, why, code = eng:publish("in", string.format("%03d", i) .. string.rep("x", 297))
      if not ok then refused[#refused + 1] = why .. "/" .. code end
    end
    local depth, bytes = eng:stats("sink").queue_depth, eng:stats("sink").queue_bytes
    eng:run()
    local seen = {}
    for _, m in ipairs(eng.collect_before_start.seen:messages()) do
      seen[#seen + 1] = tonumber(m.data)
    end
    return eng, seen, refused, depth, bytes
  end

  it("drop_oldest keeps the newest that fit", function()
    local eng, seen, refused, depth, bytes = flood("drop_oldest")
    assert.are.same({ 8, 9, 10 }, seen)
    assert.are.same({}, refused)
    assert.are.equal(3, depth)
    assert.are.equal(900, bytes)
    assert.are.equal(7, eng:stats("sink").dropped_oldest)
    assert.are.equal(1000, eng:stats("sink").queue_max_bytes)
    eng:close()
  end)

  it("drop_newest keeps the oldest", function()
    local eng, seen, refused = flood("drop_newest")
    assert.are.same({ 1, 2, 3 }, seen)
    assert.are.equal(7, #refused)
    assert.are.equal("full/EFULL", refused[1])
    assert.are.equal(7, eng:stats("sink").dropped_newest)
    eng:close()
  end)

  it("reject refuses at the emitter", function()
    local eng, seen, refused = flood("reject")
    assert.are.same({ 1, 2, 3 }, seen)
    assert.are.equal(7, #refused)
    assert.are.equal(7, eng:stats("sink").rejected)
    assert.are.equal(10, eng:stats("sink")["in"] + eng:stats("sink").dropped)
    eng:close()
  end)

  it("is set for every service by the engine's mailbox, and per service", function()
    local eng = testing.engine { mailbox = { max_bytes = 5000, max_message_bytes = 2000 },
      services = { { name = "a", module = testing.module(SINK) },
                   { name = "b", module = testing.module(SINK),
                     mailbox = { max_bytes = 100 } } } }
    assert.are.equal(5000, eng:stats("a").queue_max_bytes)
    assert.are.equal(100, eng:stats("b").queue_max_bytes)
    assert.is_true(eng:publish("big", string.rep("x", 1500)))
    eng:run()
    assert.are.equal(1, eng:stats("a")["in"])
    assert.are.equal(1, eng:stats("b").too_large) -- cut to its max_bytes
    eng:close()
  end)
end)

describe("byte settings", function()
  local dir
  before_each(function()
    dir = cli.tmpdir()
    dir:write("q.lua", "return { init = function() end }")
  end)
  after_each(function()
    dir:remove()
    testing.cleanup()
  end)

  it("are checked by mycelium check and mycelium.testing alike", function()
    local CASES = {
      { "max_bytes = 0", "mailbox.max_bytes", "an integer from 1 to 1e+12, got number 0" },
      { "max_bytes = 1e13", "mailbox.max_bytes", "an integer from 1 to 1e+12" },
      { "max_bytes = 1.5", "mailbox.max_bytes", "an integer from 1 to 1e+12" },
      { "max_message_bytes = math.huge", "mailbox.max_message_bytes",
        "an integer from 1 to 1e+09, got number inf" },
      { "max_message_bytes = '1k'", "mailbox.max_message_bytes", "an integer" },
    }
    for _, c in ipairs(CASES) do
      dir:write("mycelium.lua", "return { mailbox = { " .. c[1] .. " }, services = { 'q.lua' } }")
      local rc, _, err = dir:mycelium("check " .. dir.path .. "/mycelium.lua")
      assert.are.equal(1, rc, c[1])
      assert.matches("'" .. c[2] .. "' must be " .. c[3], err, 1, true)
      local ok, terr = pcall(testing.engine, { mailbox = assert(load(
        "return { " .. c[1] .. " }"))(), services = { dir.path .. "/q.lua" } })
      assert.is_false(ok)
      assert.matches("mycelium.testing: '" .. c[2] .. "' must be " .. c[3], terr, 1, true)
    end
    dir:write("mycelium.lua", [[return { mailbox = { max_bytes = 1048576 }, services = {
      { module = 'q.lua', mailbox = { max_message_bytes = 4096 } } } }]])
    local rc, _, err = dir:mycelium("check " .. dir.path .. "/mycelium.lua")
    assert.are.equal(0, rc, err)
  end)

  it("losses as too large show in mycelium status", function()
    dir:write("flood.lua", [[return { init = function(ctx)
      local big = string.rep("x", 2000)
      ctx:every(10, function() ctx:emit("burst", big) end) end }]])
    dir:write("slow.lua", [[return { subscribe = { "burst" }, on_message = function() end }]])
    dir:write("mycelium.lua", [[return { control = "unix://ctl.sock", workers = 1, services = {
      { name = "flood", module = "flood.lua" },
      { name = "slow", module = "slow.lua", mailbox = { max_message_bytes = 1000 } } } }]])
    local sock = dir.path .. "/ctl.sock"
    local rc, out = dir:sh(string.format(
      "cd %s && (%s run mycelium.lua >/dev/null 2>&1 & pid=$!; "
      .. "for i in $(seq 200); do [ -S %s ] && break; sleep 0.05; done; "
      -- until a burst was refused (every 10 ms once the flood runs; up
      -- to 10 s on a loaded machine), not a fixed wait
      .. "for i in $(seq 200); do %s status --json --socket %s | "
      .. "grep -q '\"too_large\":[1-9]' && break; sleep 0.05; done; "
      .. "%s status --socket %s; %s status --json --socket %s; kill $pid; wait $pid)",
      dir.path, cli.bin, sock, cli.bin, sock, cli.bin, sock, cli.bin, sock))
    assert.are.equal(0, rc)
    assert.matches("slow%s+dropped on burst: oldest 0, newest 0, rejected 0, at shutdown 0, "
                   .. "too large %d+", out)
    assert.matches('"too_large":[1-9]%d*,"queue_depth":0,"queue_capacity":65536,'
                   .. '"queue_bytes":0,"queue_max_bytes":1073741824', out)
  end)
end)
