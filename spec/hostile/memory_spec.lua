-- spec/hostile/memory_spec.lua -- a service that allocates past its
-- memory_limit_mb crashes alone, as a memory crash (logged, its message
-- to $dead, restarted by its policy), whatever it allocates, with or
-- without pcall, interpreted or JIT-compiled; so does a reload or an
-- init that does.  The engine and its other services go on.  Before the
-- budget stopped making LuaJIT raise its out-of-memory error inside
-- compiled code, these crashed the whole process (SIGSEGV in LuaJIT's
-- unwinder, docs/SUPERVISION.md "Memory").
local testing = require "mycelium.testing"

-- Ways to go over the limit, one per message ("init" in opts: in init).
-- Every one runs JIT-compiled (the handlers run with the JIT on).
local HOG = [[
local ffi = require "ffi"
local new_tab = require "table.new"
local keep = {}
local ways = {
  -- the report: strings, the error caught three times
  pcall3 = function()
    for _ = 1, 3 do
      pcall(function()
        for i = 1, 1e9 do keep[#keep + 1] = string.rep("y", 100) .. i end
      end)
    end
  end,
  strings = function()
    for i = 1, 1e9 do keep[#keep + 1] = string.rep("y", 100) .. i end
  end,
  tables = function()
    for i = 1, 1e9 do keep[i] = { i, i + 1 } end
  end,
  cdata = function()
    for i = 1, 1e9 do keep[i] = ffi.new("char[?]", 64) end
  end,
  growth = function() -- one table's array part, doubling
    local t = {}
    keep[1] = t
    for i = 1, 1e9 do t[i] = i end
  end,
  catch = function() -- catches the error and keeps allocating
    while true do
      pcall(function() for i = 1, 1e9 do keep[#keep + 1] = { i } end end)
    end
  end,
  -- the collector stopped and the table preallocated: the compiled loop
  -- never leaves its trace, so only the ceiling can stop it
  gc_stopped_strings = function()
    collectgarbage("stop")
    local t = new_tab(1e6, 0)
    keep[1] = t
    for i = 1, 1e9 do t[i % 1e6 + 1] = "y" .. i end
  end,
  gc_stopped_cdata = function()
    collectgarbage("stop")
    local t = new_tab(1e6, 0)
    keep[1] = t
    for i = 1, 1e9 do t[i % 1e6 + 1] = ffi.new("int[4]") end
  end,
}
return {
  subscribe = { "in" },
  init = function(ctx, opts)
    if opts.init then ways[opts.init]() end
    -- while the file 'mark' exists, every init goes over the limit
    local f = opts.mark and io.open(opts.mark)
    if f then f:close() ways.tables() end
  end,
  on_message = function(ctx, msg)
    if msg.data == "crash" then error("crash requested") end
    if ways[msg.data] then ways[msg.data]() end
    ctx:emit("out", "handled " .. msg.data)
  end,
}]]

local ECHO = [[
return { subscribe = { "ping" },
         on_message = function(ctx, msg) ctx:emit("pong", msg.data) end }]]

local function datas(c)
  local t = {}
  for _, m in ipairs(c:messages()) do t[#t + 1] = m.data end
  return t
end

describe("over its memory limit", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  local function start(limit, opts)
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = {
        { name = "hog", memory_limit_mb = limit, opts = opts,
          module = testing.module(HOG) },
        { name = "echo", module = testing.module(ECHO) },
      },
    }
    return eng:collect("out"), eng:collect("$dead"), eng:collect("pong")
  end

  -- 'way' ends the hog as a memory crash; then it restarts and works,
  -- and the echo service answered throughout.
  local function crashes_alone(way, limit)
    local out, dead, pong = start(limit)
    eng:publish("in", way)
    eng:publish("ping", "during")
    eng:run()
    local d = dead:messages()
    assert.are.equal(1, #d, way)
    assert.are.equal(way, d[1].data.payload)
    assert.matches(string.format("memory limit of %.1f MB exceeded", limit),
                   d[1].data.error, 1, true)
    assert.are.same({}, datas(out)) -- nothing after the crash ran
    assert.are.equal("restarting", eng:stats("hog").state)
    local logged = false
    for _, l in ipairs(eng:logs(true)) do
      if l.service == "hog" and l.msg:find("memory limit of", 1, true) then logged = true end
    end
    assert.is_true(logged, "the crash is logged")
    eng:advance(0.05)
    eng:publish("in", "small")
    eng:publish("ping", "after")
    eng:run()
    assert.are.same({ "handled small" }, datas(out))
    assert.are.same({ "during", "after" }, datas(pong))
    local st = eng:stats("hog")
    assert.are.equal("running", st.state)
    assert.are.equal(1, st.restarts)
    assert.is_true(st.memory_bytes < limit * 1048576)
  end

  it("the report's loop: strings, the error caught with pcall (16 and 64 MB)", function()
    crashes_alone("pcall3", 16)
    eng:close()
    eng = nil
    crashes_alone("pcall3", 64)
  end)

  for _, way in ipairs { "strings", "tables", "cdata", "growth", "catch",
                         "gc_stopped_strings", "gc_stopped_cdata" } do
    it("allocating " .. way:gsub("_", " ") .. " in compiled code", function()
      crashes_alone(way, 16)
    end)
  end

  it("an init over the limit fails the start, naming the service", function()
    local ok, err = pcall(testing.engine, { services = {
      { name = "hog", memory_limit_mb = 16, opts = { init = "gc_stopped_cdata" },
        module = testing.module(HOG) } } })
    assert.is_false(ok)
    assert.matches("service 'hog': memory limit of 16.0 MB exceeded", err, 1, true)
  end)

  it("an init over the limit at a restart is another memory crash", function()
    local mark = os.tmpname()
    os.remove(mark)
    local out = start(16, { mark = mark })
    io.open(mark, "w"):close()
    eng:publish("in", "crash")
    eng:run()
    eng:advance(0.015) -- the restart: its init goes over the limit
    assert.are.equal("restarting", eng:stats("hog").state)
    os.remove(mark)
    eng:advance(0.1)
    eng:publish("in", "small")
    eng:run()
    assert.are.same({ "handled small" }, datas(out))
    local st = eng:stats("hog")
    assert.are.equal("running", st.state)
    assert.are.equal(1, st.restarts) -- the one that failed is not counted
    local said = false
    for _, l in ipairs(eng:logs(true)) do
      if l.msg:find("init failed: memory limit of 16.0 MB exceeded", 1, true) then said = true end
    end
    assert.is_true(said)
  end)

  it("a snapshot over the limit refuses the reload and is a memory crash; "
     .. "no message is lost", function()
    eng = testing.engine {
      supervisor = { backoff_initial_ms = 10 },
      services = { { name = "hog", memory_limit_mb = 16, module = testing.module [[
        local ffi = require "ffi"
        local keep = {}
        return { subscribe = { "in" },
          on_message = function(ctx, msg) ctx:emit("out", msg.data) end,
          snapshot = function()
            collectgarbage("stop")
            local t = require("table.new")(1e6, 0)
            keep[1] = t
            for i = 1, 1e9 do t[i % 1e6 + 1] = ffi.new("int[4]") end
          end }]] } },
    }
    local out, dead = eng:collect("out"), eng:collect("$dead")
    local ok, err = eng:reload("hog", testing.module(ECHO))
    assert.is_nil(ok)
    assert.matches("snapshot failed: memory limit of 16.0 MB exceeded", err, 1, true)
    assert.are.equal("restarting", eng:stats("hog").state)
    eng:publish("in", "kept")
    eng:run()
    eng:advance(0.05)
    assert.are.same({ "kept" }, datas(out))
    assert.are.equal(0, #dead:messages())
    assert.are.equal(1, eng:stats("hog").version)
  end)

  it("a reload whose top level goes over the limit is refused; the old version goes on", function()
    local out = start(16)
    local ok, err = eng:reload("hog", testing.module([[
      local keep = {}
      for i = 1, 1e9 do keep[i] = { i } end]]))
    assert.is_nil(ok)
    assert.matches("service 'hog': memory limit of 16777216 bytes exceeded while loading",
                   err, 1, true)
    eng:publish("in", "small")
    eng:run()
    assert.are.same({ "handled small" }, datas(out))
    assert.are.equal(1, eng:stats("hog").version)
  end)

  it("a reload whose init goes over the limit is refused; the old version goes on", function()
    local out = start(16)
    local ok, err = eng:reload("hog", testing.module([[
      local ffi = require "ffi"
      local keep = {}
      return { subscribe = { "in" }, on_message = function() end,
               init = function() for i = 1, 1e9 do keep[i] = ffi.new("char[?]", 64) end end }]]))
    assert.is_nil(ok)
    assert.matches("memory limit of 16.0 MB exceeded", err, 1, true)
    eng:publish("in", "small")
    eng:run()
    assert.are.same({ "handled small" }, datas(out))
    assert.are.equal("running", eng:stats("hog").state)
    assert.are.equal(1, eng:stats("hog").reload_failures)
  end)
end)

describe("mycelium run", function()
  local bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

  it("keeps running when a service goes over its limit in compiled code", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    finally(function() os.execute("rm -rf " .. dir) end)
    local function write(name, text)
      local f = assert(io.open(dir .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
    -- every instance goes over its limit 10 ms after its init, the
    -- report's loop; the ticker logs that the engine goes on
    write("hog.lua", [[
      local keep = {}
      return { init = function(ctx)
        ctx:after(10, function()
          for _ = 1, 3 do
            pcall(function()
              for i = 1, 1e9 do keep[#keep + 1] = string.rep("y", 100) .. i end
            end)
          end
        end)
      end }]])
    write("ticker.lua", [[
      local n = 0
      return { init = function(ctx) ctx:every(50, function()
                 n = n + 1
                 if n == 11 then ctx.log:info("ticked past 10") end
               end) end,
               stop = function(ctx) ctx.log:info("ticks", { n = n }) end }]])
    write("mycelium.lua", [[return {
      supervisor = { backoff_initial_ms = 10, max_restarts = 100 },
      services = { { name = "hog", module = "hog.lua", memory_limit_mb = 16 },
                   { name = "ticker", module = "ticker.lua" } } }]])
    -- Stopped once the hog has restarted and the ticker ticked past 10
    -- (polled, for up to 60 s on a loaded machine).
    local p = io.popen(string.format("cd %s && (%s run mycelium.lua >log 2>&1 & pid=$!; "
      .. "for i in $(seq 3000); do grep -qF '[hog] restarting' log && "
      .. "grep -q 'ticked past 10' log && break; sleep 0.02; done; "
      .. "kill $pid; wait $pid; echo rc=$?; cat log) 2>&1", dir, bin))
    local out = p:read("*a")
    p:close()
    assert.matches("rc=0", out, 1, true)
    assert.matches("[hog] timer failed: memory limit of 16.0 MB exceeded", out, 1, true)
    assert.matches("[hog] restarting", out, 1, true)
    local ticks = tonumber(out:match("%[ticker%] ticks n=(%d+)"))
    assert.is_true(ticks ~= nil and ticks > 10, out)
  end)
end)
