-- spec/mycelium/typed_spec.lua -- typed messages through a real engine:
-- ctx:new, zero-copy emit, msg.data views, validation on emit, the contract
-- set in Lua and in mycelium.testing, with table and raw payloads beside
-- them.
local ffi = require "ffi"
local testing = require "mycelium.testing"
local contract = require "mycelium.contract"
local MessagePack = require "MessagePack"

local YAML = [[
schema: {id: 7, version: 1}
messages:
  All:
    tlv_type: 1000
    fields:
      a_u8: {type: u8}
      a_u16: {type: u16}
      a_u32: {type: u32}
      a_u64: {type: u64}
      a_i8: {type: i8}
      a_i16: {type: i16}
      a_i32: {type: i32}
      a_i64: {type: i64}
      a_f32: {type: f32}
      a_f64: {type: f64}
      a_bool: {type: bool}
      addr: {type: "[u8; 20]"}
      hash: {type: "[u8; 32]"}
      amount: {type: U256}
      delta: {type: I256}
      name:
        type: String
        validation: [{max_length: 10}]
      nums:
        type: Vec<u32>
        validation: [{max_length: 3}]
      path:
        type: Vec<[u8; 20]>
        validation: [{max_length: 2}]
      bigs:
        type: Vec<U256>
        validation: [{max_length: 2}]
  Probe:
    tlv_type: 1001
    fields:
      self_addr: {type: u64}
      n: {type: u32}
  Rules:
    tlv_type: 1002
    fields:
      n:
        type: u32
        validation: [{min: 1}, {max: 10}]
      delta: {type: i64, validation: [{min: -5}]}
      ratio: {type: f64, validation: [{min: -1.0}, {max: 1.0}]}
      name:
        type: String
        validation: [{max_length: 8}, {min_length: 2}]
      tags:
        type: Vec<u8>
        validation: [{max_length: 3}, {not_empty: true}]
      owner: {type: "[u8; 20]", validation: [{not_zero: true}]}
      amount: {type: U256, validation: [{not_zero: true}]}
      flag: {type: bool}
]]

local U256_MAX = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
local I256_MIN = "-57896044618658097711785492504343953926634992332820282019728792003956564819968"
local WMATIC = "0x0d500b1d8e8ef31e21c99d1db9a6444d3adf1270"
local USDC = "0x2791bca1f2de4661ed88a30c99a7a9449aa84174"

local FULL = {
  a_u8 = 255, a_u16 = 65535, a_u32 = 4294967295, a_u64 = "18446744073709551615",
  a_i8 = -128, a_i16 = -32768, a_i32 = -2147483648, a_i64 = "-9223372036854775808",
  a_f32 = 1.5, a_f64 = math.pi, a_bool = true,
  addr = WMATIC, hash = "0x" .. ("ab"):rep(32),
  amount = U256_MAX, delta = I256_MIN, name = "USDC.e",
  nums = { 1, 2, 4294967295 }, path = { WMATIC, USDC }, bigs = { "0", U256_MAX },
}

local function seq_1_to(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local yaml_path
local function write_yaml(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function service(name, src, extra)
  local s = { name = name, module = testing.module(src) }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function engine(services, extra)
  -- A handler that raises restarts the service: at once, here.
  local spec = { contracts = yaml_path, services = services,
                 supervisor = { backoff_initial_ms = 0, max_restarts = 100 } }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return testing.engine(spec)
end

local EXPECTED = {
  a_u8 = 255, a_u16 = 65535, a_u32 = 4294967295, a_u64 = "18446744073709551615",
  a_i8 = -128, a_i16 = -32768, a_i32 = -2147483648, a_i64 = "-9223372036854775808",
  a_f32 = 1.5, a_f64 = math.pi, a_bool = true,
  addr = WMATIC, hash = "0x" .. ("ab"):rep(32),
  amount = U256_MAX, delta = I256_MIN, name = "USDC.e",
  nums = { 1, 2, 4294967295 }, path = { WMATIC, USDC }, bigs = { "0", U256_MAX },
}

-- Publishes "go" to 'e' and runs it: the messages on "probe", and the
-- data of the first on "seen".
local function go_probe_seen(e)
  local probe, seen = e:collect("probe"), e:collect("seen")
  e:publish("go", "")
  e:run()
  return probe:messages(), seen:messages()[1].data
end

describe("typed messages", function()
  local eng
  setup(function() yaml_path = write_yaml(YAML) end)
  teardown(function() os.remove(yaml_path) end)
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  describe("round trip between two services", function()
    it("preserves every field type (U256 max, negative i64, [u8; 20], strings, Vec)", function()
      local prod = service("prod", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          ctx:emit("all", ctx:new("All", ctx.opts.full))
        end }]], { opts = { full = FULL } })
      local cons = service("cons", [[
        local ffi = require "ffi"
        local contract = require "mycelium.contract"
        local M = { subscribe = { "all" } }
        function M.on_message(ctx, msg)
          local v, T = msg.data, ctx.contracts:type("All")
          ctx:emit("seen", {
            type = msg.type, fields = T:totable(v),
            i64 = v.a_i64 == -9223372036854775808LL,
            u64 = v.a_u64 == 18446744073709551615ULL,
            u256 = tostring(v.amount), u256_hex = v.amount:hex(),
            i256 = tostring(v.delta),
            addr = contract.hex(v.addr, 20), name = tostring(v.name),
            name_len = #v.name, nums_len = #v.nums, third = tonumber(v.nums.data[2]),
          })
        end
        return M]])
      eng = engine { prod, cons }
      local all, seen = eng:collect("all"), eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local got = seen:messages()
      assert.are.equal(1, #got)
      local r = got[1].data
      assert.are.equal("All", r.type)
      assert.are.same(EXPECTED, r.fields) -- addresses: lowercase, the default
      assert.is_true(r.i64)
      assert.is_true(r.u64)
      assert.are.equal(U256_MAX, r.u256)
      assert.are.equal("0x" .. ("f"):rep(64), r.u256_hex)
      assert.are.equal(I256_MIN, r.i256)
      assert.are.equal(WMATIC, r.addr)
      assert.are.equal("USDC.e", r.name)
      assert.are.equal(6, r.name_len)
      assert.are.equal(3, r.nums_len)
      assert.are.equal(4294967295, r.third)
      -- mycelium.testing copies typed payloads into plain tables
      local m = all:messages()[1]
      assert.are.equal("All", m.type)
      assert.are.same(EXPECTED, m.data)
      assert.are.equal(eng.contracts:type("All").size, #m.raw)
    end)

    it("writes fields in place on a zeroed struct", function()
      local prod = service("prod", [[
        local ffi = require "ffi"
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local m = ctx:new("All")
          assert(m.a_u32 == 0 and m.a_bool == false and #m.name == 0)
          m.a_i64 = -42
          m.a_u64 = 2^60
          m.amount:set("0x" .. ("ff"):rep(32))
          m.name:set("abc")
          m.nums:push(7):push(8)
          ffi.copy(m.addr, ("\1"):rep(20), 20)
          m.a_bool = true
          ctx:emit("all", m)
        end }]])
      eng = engine { prod }
      local all = eng:collect("all")
      eng:publish("go", "")
      eng:run()
      local d = all:messages()[1].data
      assert.are.equal(-42, d.a_i64)
      assert.are.equal("1152921504606846976", d.a_u64) -- above 2^53: a string
      assert.are.equal(U256_MAX, d.amount)
      assert.are.equal("abc", d.name)
      assert.are.same({ 7, 8 }, d.nums)
      assert.are.equal("0x" .. ("01"):rep(20), d.addr:lower())
      assert.is_true(d.a_bool)
      assert.are.equal(0, d.a_u8)
    end)
  end)

  describe("zero copy", function()
    it("subscribers read the very buffer the producer filled", function()
      local prod = service("prod", [[
        local ffi = require "ffi"
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local pub = ctx:publisher("probe")
          for i = 1, 3 do
            local m = ctx:new("Probe")
            m.self_addr = ffi.cast("uintptr_t", m)
            m.n = i
            assert(pub(m))
          end
        end }]])
      local cons_src = [[
        local ffi = require "ffi"
        return { subscribe = { "probe" }, on_message = function(ctx, msg)
          local p, n = msg:bytes()
          local at = ffi.cast("uint64_t", ffi.cast("uintptr_t", p))
          ctx:emit("seen", { by = ctx.name, n = msg.data.n, len = n,
            same = at == msg.data.self_addr,
            view = ffi.cast("uintptr_t", msg.data) == ffi.cast("uintptr_t", p) })
        end }]]
      eng = engine { prod, service("a", cons_src), service("b", cons_src) }
      local seen = eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local got = seen:messages()
      assert.are.equal(6, #got)
      for _, m in ipairs(got) do
        assert.is_true(m.data.same, m.data.by)
        assert.is_true(m.data.view)
        assert.are.equal(12, m.data.len)
      end
    end)

    it("moves a message to a larger buffer for a long topic", function()
      local long = "t." .. ("x"):rep(200)
      local prod = service("prod", [[
        local ffi = require "ffi"
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local m = ctx:new("Probe", { n = 42 })
          m.self_addr = ffi.cast("uintptr_t", m)
          assert(ctx:emit(msg.data, m))
        end }]])
      local cons = service("cons", [[
        local ffi = require "ffi"
        return { subscribe = { "t.*" }, on_message = function(ctx, msg)
          local at = ffi.cast("uint64_t", ffi.cast("uintptr_t", (msg:bytes())))
          ctx:emit("seen", { n = msg.data.n, topic = msg.topic, moved = at ~= msg.data.self_addr })
        end }]])
      eng = engine { prod, cons }
      local seen = eng:collect("seen")
      eng:publish("go", long)
      eng:publish("go", "t.short")
      eng:run()
      local got = seen:messages()
      assert.are.same({ n = 42, topic = long, moved = true }, got[1].data)
      assert.are.same({ n = 42, topic = "t.short", moved = false }, got[2].data)
    end)

    it("copies a forwarded view or a Lua-owned struct", function()
      local prod = service("prod", [[
        local ffi = require "ffi"
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local m = ctx:new("Probe", { n = 5 })
          m.self_addr = ffi.cast("uintptr_t", m)
          ctx:emit("probe", m)
          ctx:emit("fwd", ctx.contracts:type("Probe"):new { n = 6 })
        end }]])
      local fwd = service("fwd", [[
        return { subscribe = { "probe" }, on_message = function(ctx, msg)
          assert(ctx:emit("fwd", msg.data))
        end }]])
      local check = service("check", [[
        local ffi = require "ffi"
        return { subscribe = { "fwd" }, on_message = function(ctx, msg)
          local at = ffi.cast("uint64_t", ffi.cast("uintptr_t", (msg:bytes())))
          ctx:emit("seen", { n = msg.data.n, type = msg.type,
                             copied = at ~= msg.data.self_addr })
        end }]])
      eng = engine { prod, fwd, check }
      local seen = eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local got = seen:messages()
      table.sort(got, function(x, y) return x.data.n < y.data.n end)
      assert.are.same({ n = 5, type = "Probe", copied = true }, got[1].data)
      assert.are.same({ n = 6, type = "Probe", copied = true }, got[2].data)
    end)
  end)

  describe("ownership", function()
    it("refuses a second emit of the same message", function()
      eng = engine { service("prod", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local m = ctx:new("Probe", { n = 1 })
          local pub = ctx:publisher("probe")
          assert(pub(m))
          pub(m)
        end }]]) }
      local probe, dead = eng:collect("probe"), eng:collect("$dead")
      eng:publish("go", "")
      eng:run()
      assert.are.equal(1, #probe:messages())
      local err = dead:messages()[1].data.error
      assert.matches("%.lua:5: service 'prod': emit to 'probe': this Probe was "
        .. "emitted already, or the handler that made it returned %(a message from "
        .. "ctx:new is handed over to the engine once, in the handler that made it; "
        .. "make a new one%)$", err)
    end)

    it("hands over a batch in any order, each message once", function()
      eng = engine { service("prod", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local batch = {}
          for i = 1, 300 do batch[i] = ctx:new("Probe", { n = i }) end
          for i = 1, 100 do assert(ctx:emit("probe", batch[i])) end      -- oldest first
          for i = 300, 201, -1 do assert(ctx:emit("probe", batch[i])) end -- newest first
          for i = 101, 200, 2 do assert(ctx:emit("probe", batch[i])) end  -- from the middle
          for i = 102, 200, 2 do assert(ctx:emit("probe", batch[i])) end
          local twice = 0
          for i = 1, 300 do
            if not pcall(ctx.emit, ctx, "probe", batch[i]) then twice = twice + 1 end
          end
          ctx:emit("seen", { refused = twice })
        end }]]) }
      local probe, seen = eng:collect("probe"), eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local got = {}
      for _, m in ipairs(probe:messages()) do got[#got + 1] = m.data.n end
      table.sort(got)
      assert.are.same(seq_1_to(300), got)
      assert.are.equal(300, seen:messages()[1].data.refused)
    end)

    -- A handle from ctx:new is checked on every use: once its message is
    -- emitted, or its handler has returned, the buffer is the engine's
    -- again (a subscriber's, or recycled for the next ctx:new) and the
    -- handle raises instead of reading or writing it.
    it("raises on a message used after its emit, without touching the buffer", function()
      eng = engine { service("prod", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local m = ctx:new("Probe", { n = 1 })
          assert(ctx:emit("probe", m))
          local errs = {}
          errs.write = select(2, pcall(function() m.n = 99 end))
          errs.read = select(2, pcall(function() return m.n end))
          errs.nested = select(2, pcall(function() return m.self_addr end))
          -- The next message takes the slot and the buffer just freed: the
          -- old handle must not reach it.
          local m2 = ctx:new("Probe", { n = 2 })
          errs.alias = select(2, pcall(function() m.n = 77 end))
          errs.n2 = m2.n
          assert(ctx:emit("probe", m2))
          ctx:emit("seen", errs)
        end }]]) }
      local got, e = go_probe_seen(eng)
      assert.are.same({ 1, 2 }, { got[1].data.n, got[2].data.n })
      for _, k in ipairs { "write", "read", "nested", "alias" } do
        assert.matches("service 'prod': this Probe %(made with ctx:new%) was emitted, "
          .. "or the handler that made it returned: it cannot be used any more", e[k])
      end
      assert.matches("field 'n'", e.write, 1, true)
      assert.matches("field 'self_addr'", e.nested, 1, true)
      assert.matches('ctx.contracts:type("Probe"):new(m)', e.write, 1, true)
      assert.are.equal(2, e.n2)
    end)

    -- The same from compiled code: the loop runs long enough for LuaJIT
    -- to compile it, its field writes' checks folded into one look-up
    -- (a live entry is a pointer, which no field store can change);
    -- the message emitted an iteration earlier must still raise, on a
    -- write and on a read, and the live ones keep their own values.
    it("raises on a message used after its emit in a compiled loop", function()
      eng = engine { service("prod", [[
        local function set(h) h.n = 7 end
        local function get(h) return h.n end
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local pub, prev, errs = ctx:publisher("probe"), nil, {}
          for i = 1, 400 do
            local m = ctx:new("Probe")
            m.self_addr = i
            m.n = i
            if i % 100 == 0 then
              errs[#errs + 1] = select(2, pcall(set, prev))
              errs[#errs + 1] = select(2, pcall(get, prev))
            end
            assert(pub(m))
            prev = m
          end
          ctx:emit("seen", errs)
        end }]]) }
      local got, errs = go_probe_seen(eng)
      assert.are.equal(400, #got)
      for i, m in ipairs(got) do
        assert.are.same({ i, i }, { tonumber(m.data.self_addr), m.data.n })
      end
      assert.are.equal(8, #errs)
      for _, e in ipairs(errs) do
        assert.matches("this Probe (made with ctx:new) was emitted, or the handler "
          .. "that made it returned", e, 1, true)
      end
    end)

    it("raises on a message kept past the handler that made it; a copy keeps", function()
      eng = engine { service("prod", [[
        local M = { subscribe = { "go" } }
        local Probe
        function M.init(ctx)
          Probe = ctx.contracts:type("Probe")
          M.kept = ctx:new("Probe", { n = 1 })
          M.copy = Probe:new(ctx:new("Probe", { n = 2 }))
          ctx:new("Probe", { n = 3 }) -- dropped: its buffer goes back when init returns
        end
        function M.on_message(ctx, msg)
          local r = {}
          r.write = select(2, pcall(function() M.kept.n = 3 end))
          r.emit = select(2, pcall(ctx.emit, ctx, "probe", M.kept))
          r.copy = select(2, pcall(Probe.new, Probe, M.kept))
          M.copy.n = 4
          assert(ctx:emit("probe", M.copy))
          ctx:emit("seen", r)
        end
        return M]]) }
      local probe, seen = eng:collect("probe"), eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local got = probe:messages()
      assert.are.equal(1, #got)
      assert.are.equal(4, got[1].data.n)
      local r = seen:messages()[1].data
      assert.matches("this Probe (made with ctx:new) was emitted, or the handler "
        .. "that made it returned", r.write, 1, true)
      assert.matches("this Probe was emitted already, or the handler that made it "
        .. "returned", r.emit, 1, true)
      assert.matches("cannot be used any more", r.copy, 1, true)
    end)

    -- 1500 live messages: more than the 1024 entries of the table
    -- indexed by address bits, so some sit in the overflow table.
    it("tracks more live messages than its direct table holds", function()
      eng = engine { service("prod", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local batch = {}
          for i = 1, 1500 do batch[i] = ctx:new("Probe", { n = i }) end
          for i = 1, 1500 do batch[i].self_addr = i end
          for i = 1, 1500, 2 do assert(ctx:emit("probe", batch[i])) end
          local alive = 0
          for i = 2, 1500, 2 do
            if batch[i].n == i then alive = alive + 1 end
          end
          for i = 2, 1500, 2 do assert(ctx:emit("probe", batch[i])) end
          local refused = 0
          for i = 1, 1500 do
            if not pcall(function() return batch[i].n end) then refused = refused + 1 end
          end
          ctx:emit("seen", { alive = alive, refused = refused })
        end }]]) }
      local probe, seen = eng:collect("probe"), eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local got = {}
      for _, m in ipairs(probe:messages()) do
        assert.are.equal(m.data.n, m.data.self_addr)
        got[#got + 1] = m.data.n
      end
      table.sort(got)
      assert.are.same(seq_1_to(1500), got)
      assert.are.same({ alive = 750, refused = 1500 }, seen:messages()[1].data)
    end)

    it("gives the buffer of a message its handler dropped back to the engine", function()
      eng = engine { service("prod", [[
        local ffi = require "ffi"
        local M = { subscribe = { "go" } }
        local function addr(m) return tonumber(ffi.cast("uintptr_t", m)) end
        function M.init(ctx) M.dropped = addr(ctx:new("Probe")) end
        function M.on_message(ctx, msg)
          -- The pool hands out the buffer freed last: the dropped one.
          ctx:emit("seen", { reused = addr(ctx:new("Probe")) == M.dropped })
        end
        return M]]) }
      local seen = eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      assert.is_true(seen:messages()[1].data.reused)
    end)

    it("refuses cdata that is not a message of the engine's contracts", function()
      eng = engine { service("prod", [[
        local ffi = require "ffi"
        local contract = require "mycelium.contract"
        local other = assert(contract.load_string(
          "schema: {id: 9, version: 1}\nmessages:\n  Z:\n    tlv_type: 1001\n"
          .. "    fields: {x: {type: u8}}\n", "other.yaml"))
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          if msg.data == "int" then ctx:emit("x", ffi.new("int[1]")) end
          if msg.data == "other" then ctx:emit("x", other:type("Z"):new()) end
        end }]]) }
      local dead = eng:collect("$dead")
      eng:publish("go", "int")
      eng:publish("go", "other")
      eng:advance(0) -- each error restarts the service
      local d = dead:messages()
      assert.matches("service 'prod': emit to 'x': this ctype<int [1]> is not a "
        .. "message (make one with ctx:new)", d[1].data.error, 1, true)
      assert.matches("service 'prod': emit to 'x': Z is not a type of this engine's "
        .. "contracts", d[2].data.error, 1, true)
    end)
  end)

  -- ctx:new takes a recycled buffer of the worker's pool in Lua when one
  -- fits (lua/mycelium/contract.lua, take): these fail if that path
  -- hands out a dirty or shared buffer, or loses one.
  describe("ctx:new's inline buffer path", function()
    it("hands out recycled buffers zeroed, padding included, across many messages and activations", function()
      eng = engine { service("prod", [[
        local ffi = require "ffi"
        local u8p = ffi.typeof("uint8_t *")
        local M = { subscribe = { "go" } }
        local n, dirty, addrs, naddrs = 0, 0, {}, 0
        function M.on_message(ctx, msg)
          for i = 1, 150 do
            local m = ctx:new("Probe")
            local p = ffi.cast(u8p, m)
            -- 12 bytes of payload, 4 of padding before the topic.
            for j = 0, 15 do if p[j] ~= 0 then dirty = dirty + 1 end end
            local a = tonumber(ffi.cast("uintptr_t", m))
            if not addrs[a] then addrs[a], naddrs = true, naddrs + 1 end
            for j = 12, 15 do p[j] = 0xEE end
            if i % 2 == 0 then
              n = n + 1
              m.n, m.self_addr = n, a
              assert(ctx:emit("probe", m))
            else
              m.n, m.self_addr = 0xFFFFFFFF, 0xFFFFFFFF -- dropped dirty
            end
          end
          if msg.data == "last" then
            ctx:emit("seen", { dirty = dirty, buffers = naddrs })
          end
        end
        return M]]) }
      local probe, seen = eng:collect("probe"), eng:collect("seen")
      for i = 1, 6 do
        eng:publish("go", i == 6 and "last" or "")
        eng:run() -- one activation each: the dropped go back at the next
      end
      local got = {}
      for _, m in ipairs(probe:messages()) do
        assert.are.equal("Probe", m.type)
        got[#got + 1] = m.data.n
      end
      table.sort(got)
      assert.are.same(seq_1_to(450), got)
      local r = seen:messages()[1].data
      assert.are.equal(0, r.dirty)
      -- The 75 dropped in a round come back at the start of the next and
      -- are taken again (the collector keeps the emitted ones): 150 + 5 * 75.
      assert.is_true(r.buffers <= 525, "buffers used: " .. r.buffers)
    end)

    it("makes each type with its own size when types alternate in one compiled loop", function()
      -- ctx:new of each type is a closure whose size and ctypes are
      -- constants to the JIT: a Probe (12 bytes) and a Rules (88) made
      -- turn by turn, from buffers the other type dirtied, must each be
      -- zeroed over their own padded size and framed with their own
      -- length (a Rules framed as 12 bytes would arrive as a string).
      eng = engine({ service("prod", [[
        local ffi = require "ffi"
        local u8p = ffi.typeof("uint8_t *")
        local M = { subscribe = { "go" } }
        local dirty = 0
        function M.on_message(ctx, msg)
          for i = 1, 300 do
            local name, padded = "Probe", 16
            if i % 2 == 0 then name, padded = "Rules", 88 end
            local m = ctx:new(name)
            local p = ffi.cast(u8p, m)
            for j = 0, padded - 1 do if p[j] ~= 0 then dirty = dirty + 1 end end
            for j = 0, padded - 1 do p[j] = 0xEE end
            m.n = i
            assert(ctx:emit("out", m))
          end
          if msg.data == "last" then ctx:emit("seen", { dirty = dirty }) end
        end
        return M]]) }, { validate = false })
      local out, seen = eng:collect("out"), eng:collect("seen")
      for i = 1, 3 do
        eng:publish("go", i == 3 and "last" or "")
        eng:run()
      end
      local msgs = out:messages()
      assert.are.equal(900, #msgs)
      for k, m in ipairs(msgs) do
        local i = (k - 1) % 300 + 1
        assert.are.equal(i % 2 == 0 and "Rules" or "Probe", m.type)
        assert.are.equal("table", type(m.data), "message " .. k .. " was not read as a " .. m.type)
        assert.are.equal(i, m.data.n)
      end
      assert.are.equal(0, seen:messages()[1].data.dirty)
    end)

    it("keeps each message's own bytes while many are live at once", function()
      eng = engine { service("prod", [[
        local ffi = require "ffi"
        return { subscribe = { "go" }, on_message = function(ctx)
          local batch = {}
          for i = 1, 400 do
            local m = ctx:new("Probe")
            m.n, m.self_addr = i, tonumber(ffi.cast("uintptr_t", m))
            batch[i] = m
          end
          for i = 400, 1, -1 do
            local m = batch[i]
            assert(m.n == i, "message " .. i .. " reads " .. tostring(m.n))
            if i % 3 ~= 0 then assert(ctx:emit("probe", m)) end
          end
        end }]]) }
      local probe = eng:collect("probe")
      for _ = 1, 3 do eng:publish("go", "") end
      eng:run()
      local got, at = {}, {}
      for _, m in ipairs(probe:messages()) do
        got[#got + 1] = m.data.n
        assert.is_nil(at[m.data.self_addr .. ":" .. m.data.n])
        at[m.data.self_addr .. ":" .. m.data.n] = true
      end
      assert.are.equal(3 * 267, #got)
    end)

    it("stores a U256 or I256 value whole into a field, and refuses other structs as before", function()
      eng = engine { service("prod", [[
        local contract = require "mycelium.contract"
        return { subscribe = { "go" }, on_message = function(ctx)
          local big = contract.u256("0x" .. ("fe"):rep(32))
          local neg = contract.i256("-7")
          local errs = {}
          for i = 1, 100 do
            local m = ctx:new("All")
            m.amount = big
            m.delta = neg
            if i == 100 then
              errs[1] = select(2, pcall(function() m.amount = neg end))
              errs[2] = select(2, pcall(function() m.delta = big end))
              assert(ctx:emit("all", m))
            end
          end
          ctx:emit("seen", { errs = { tostring(errs[1]), tostring(errs[2]) } })
        end }]]) }
      local all, seen = eng:collect("all"), eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local d = all:messages()[1].data
      assert.are.equal("115338002612856131912106000753751876842080690608128248102047946423568372268798", d.amount)
      assert.are.equal("-7", d.delta)
      local errs = seen:messages()[1].data.errs
      assert.matches("cannot convert", errs[1])
      assert.matches("cannot convert", errs[2])
    end)
  end)

  describe("no Lua object per message", function()
    -- Once LuaJIT has compiled them, the usual loops allocate nothing per
    -- message: ctx:new returns a pointer the JIT keeps in a register, and
    -- the consumer's msg table and msg.data view are sunk.  With the
    -- collector stopped, collectgarbage("count") grows by what was
    -- allocated: a table or a cdata per message is 16 bytes or more.
    it("ctx:new, fill and emit, and a consumer reading a field", function()
      local ROUNDS, N, HALF = 40, 1000, 20000
      eng = engine {
        service("prod", [[
          local M = { subscribe = { "go" } }
          local rounds = 0
          function M.on_message(ctx)
            rounds = rounds + 1
            collectgarbage("stop")
            local before = collectgarbage("count")
            for i = 1, ]] .. N .. [[ do
              local m = ctx:new("Probe")
              m.n = i
              m.self_addr = rounds
              ctx:emit("probe", m)
            end
            local kb = collectgarbage("count") - before
            collectgarbage("restart")
            if rounds == ]] .. ROUNDS .. [[ then ctx:emit("made", { kb = kb }) end
          end
          return M]]),
        service("cons", [[
          local M = { subscribe = { "probe" } }
          local n, sum, before = 0, 0, nil
          function M.on_message(ctx, msg)
            n = n + 1
            sum = sum + msg.data.n
            -- Measured over the second half, after the warm-up.
            if n == ]] .. HALF .. [[ then
              collectgarbage("stop")
              before = collectgarbage("count")
            elseif n == ]] .. (ROUNDS * N) .. [[ then
              local kb = collectgarbage("count") - before
              collectgarbage("restart")
              ctx:emit("read", { kb = kb, sum = sum })
            end
          end
          return M]]),
      }
      local made, read = eng:collect("made"), eng:collect("read")
      for _ = 1, ROUNDS do
        eng:publish("go", "")
        eng:run()
      end
      local per_made = made:messages()[1].data.kb * 1024 / N
      local r = read:messages()[1].data
      local per_read = r.kb * 1024 / HALF
      assert.are.equal(ROUNDS * N * (N + 1) / 2, r.sum)
      assert.is_true(per_made < 4, ("producer: %.1f bytes per message"):format(per_made))
      assert.is_true(per_read < 4, ("consumer: %.1f bytes per message"):format(per_read))
    end)
  end)

  describe("ctx:new errors", function()
    local function errors_of(cases, spec_extra)
      eng = engine({ service("svc", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          local c = msg.data
          ctx:new(c.name, c.init)
        end }]]) }, spec_extra)
      local dead = eng:collect("$dead")
      for _, c in ipairs(cases) do eng:publish("go", c) end
      eng:advance(0) -- each error restarts the service
      local out = {}
      for i, d in ipairs(dead:messages()) do out[i] = d.data.error end
      return out
    end

    it("names the service and suggests the nearest type or field", function()
      local errs = errors_of {
        { name = "Prob" }, { name = "rules" }, { name = "Nothing_like_it" }, { name = 42 },
        { name = "Probe", init = { nn = 1 } },
        { name = "Probe", init = { n = 4294967296 } },
        { name = "Probe", init = "n=1" },
      }
      assert.are.equal(7, #errs)
      assert.matches("%.lua:3: service 'svc': ctx:new: unknown message type 'Prob' "
        .. "%(did you mean 'Probe'%?%)$", errs[1])
      assert.matches("unknown message type 'rules' (did you mean 'Rules'?)", errs[2], 1, true)
      assert.matches("unknown message type 'Nothing_like_it'$", errs[3])
      assert.matches("service 'svc': ctx:new: the type name must be a string, got number",
        errs[4], 1, true)
      assert.matches("service 'svc': ctx:new: Probe has no field 'nn' (did you mean 'n'?)",
        errs[5], 1, true)
      assert.matches("service 'svc': ctx:new: Probe.n (u32): 4294967296 is out of range "
        .. "0..4294967295", errs[6], 1, true)
      assert.matches("service 'svc': ctx:new: Probe: the initial values must be a table, "
        .. "or a Probe message to copy; got string", errs[7], 1, true)
    end)

    it("says so when the engine has no contracts", function()
      eng = testing.engine { services = { service("svc", [[
        return { subscribe = { "go" }, on_message = function(ctx, msg)
          ctx:new("Probe")
        end }]]) } }
      local dead = eng:collect("$dead")
      eng:publish("go", "")
      eng:run()
      assert.matches("service 'svc': ctx:new('Probe'): no contracts are loaded",
        dead:messages()[1].data.error, 1, true)
    end)
  end)

  describe("validation on emit", function()
    local RULES_SRC = [[
      local ffi = require "ffi"
      local BASE = { n = 5, delta = 0, ratio = 0.5, name = "ok", tags = { 1 },
                     owner = "0x0d500b1d8e8ef31e21c99d1db9a6444d3adf1270", amount = 1 }
      local tweak = {
        ok = function() end,
        n_min = function(m) m.n = 0 end,
        n_max = function(m) m.n = 11 end,
        delta = function(m) m.delta = -6 end,
        ratio = function(m) m.ratio = 1.5 end,
        nan = function(m) m.ratio = 0 / 0 end,
        short = function(m) m.name:set("x") end,
        empty = function(m) m.tags:set {} end,
        owner = function(m) ffi.fill(m.owner, 20) end,
        amount = function(m) m.amount:set(0) end,
        flag = function(m, T) ffi.cast("uint8_t *", m)[T.field.flag.offset] = 2 end,
        len = function(m) m.name.len = 200 end,
      }
      return { subscribe = { "go" }, on_message = function(ctx, msg)
        local m = ctx:new("Rules", BASE)
        tweak[msg.data](m, ctx.contracts:type("Rules"))
        ctx:emit("rules", m)
      end }]]
    local CASES = {
      { "ok" },
      { "n_min", "Rules.n: violates min 1 (value 0)" },
      { "n_max", "Rules.n: violates max 10 (value 11)" },
      { "delta", "Rules.delta: violates min -5 (value -6)" },
      { "ratio", "Rules.ratio: violates max 1 (value 1.5)" },
      { "nan", "Rules.ratio: violates min -1 (value " },
      { "short", "Rules.name: violates min_length 2 (length 1)" },
      { "empty", "Rules.tags: violates not_empty" },
      { "owner", "Rules.owner: violates not_zero" },
      { "amount", "Rules.amount: violates not_zero" },
      { "flag", "Rules.flag: bool byte is 2, not 0 or 1" },
      { "len", "Rules.name: length 200 exceeds capacity 8" },
    }

    it("refuses a message that breaks a rule, naming type, field and rule", function()
      eng = engine { service("prod", RULES_SRC) }
      local rules, dead = eng:collect("rules"), eng:collect("$dead")
      for _, c in ipairs(CASES) do eng:publish("go", c[1]) end
      eng:advance(0) -- each error restarts the service
      assert.are.equal(1, #rules:messages())
      local d = dead:messages()
      assert.are.equal(#CASES - 1, #d)
      for i = 2, #CASES do
        local err = d[i - 1].data.error
        assert.matches("service 'prod': emit to 'rules': " .. CASES[i][2], err, 1, true)
      end
      assert.matches("%.lua:21: service 'prod'", d[1].data.error)
    end)

    it("emits them all with validate = false", function()
      eng = engine({ service("prod", RULES_SRC) }, { validate = false })
      local rules, dead = eng:collect("rules"), eng:collect("$dead")
      for _, c in ipairs(CASES) do eng:publish("go", c[1]) end
      eng:run()
      assert.are.equal(#CASES, #rules:messages())
      assert.are.equal(0, #dead:messages())
    end)

    it("checks what a host publishes (myc_publish) too", function()
      eng = engine { service("cons", [[
        return { subscribe = { "probe" }, on_message = function(ctx, msg)
          ctx:emit("seen", { type = msg.type, n = msg.data.n })
        end }]]) }
      local seen = eng:collect("seen")
      assert.is_true(eng:publish("probe", eng:new("Probe", { n = 9 })))
      local ok, why, code = eng:publish("rules", eng:new("Rules", { n = 0 }))
      assert.is_nil(ok)
      assert.are.equal("Rules.n: violates min 1 (value 0)", why)
      assert.are.equal("ECONTRACT", code)
      eng:run()
      assert.are.same({ type = "Probe", n = 9 }, seen:messages()[1].data)
      assert.has_error(function() eng:new("Prob") end,
        "mycelium.testing: new: unknown message type 'Prob' (did you mean 'Probe'?)")
      eng:close()
      eng = engine({}, { validate = false })
      assert.is_true(eng:publish("rules", eng:new("Rules", { n = 0 })))
    end)
  end)

  describe("received messages", function()
    it("are read-only views: writes raise, naming type and field", function()
      eng = engine {
        service("prod", [[
          return { subscribe = { "go" }, on_message = function(ctx, msg)
            ctx:emit("all", ctx:new("All", { a_u8 = 1, name = "x" }))
          end }]]),
        service("cons", [[
          local M = { subscribe = { "all" } }
          function M.on_message(ctx, msg)
            local v, errs = msg.data, {}
            local function try(f) local ok, e = pcall(f); errs[#errs + 1] = ok and "" or e end
            try(function() v.a_u8 = 2 end)
            try(function() v.addr[0] = 1 end)
            try(function() v.amount.b[0] = 1 end)
            try(function() v.name.len = 0 end)
            try(function() v.nums:push(1) end)
            try(function() v.nope = 1 end)
            try(function() return v.nope end)
            ctx:emit("seen", { errs = errs, u8 = v.a_u8, name = tostring(v.name) })
          end
          return M]]),
      }
      local seen = eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local r = seen:messages()[1].data
      assert.are.equal(1, r.u8)
      assert.are.equal("x", r.name)
      assert.matches("All.a_u8 is read-only: a received message cannot be changed",
        r.errs[1], 1, true)
      for i = 2, 5 do assert.are_not.equal("", r.errs[i], i) end
      assert.matches("All has no field 'nope'", r.errs[6], 1, true)
      assert.matches("All has no field 'nope'", r.errs[7], 1, true)
    end)

    it("become writable through a copy: T:new(msg.data) or ctx:new(name, msg.data)", function()
      eng = engine {
        service("prod", [[
          return { subscribe = { "go" }, on_message = function(ctx, msg)
            ctx:emit("all", ctx:new("All", { a_u8 = 1, name = "x", amount = "123456789012345678901234567890" }))
          end }]]),
        service("cons", [[
          local M = { subscribe = { "all" } }
          function M.on_message(ctx, msg)
            local ok, err = pcall(function() msg.data.a_u8 = 2 end)
            local copy = ctx.contracts:type("All"):new(msg.data)
            copy.a_u8 = 2
            local out = ctx:new("All", msg.data)
            out.a_u8 = 3
            ctx:emit("seen", { err = err, copy = copy.a_u8, view = msg.data.a_u8,
                               amount = tostring(copy.amount), name = tostring(copy.name) })
            ctx:emit("fwd", out)
          end
          return M]]),
      }
      local seen, fwd = eng:collect("seen"), eng:collect("fwd")
      eng:publish("go", "")
      eng:run()
      local r = seen:messages()[1].data
      assert.matches('(make a writable copy: ctx:new("All", msg.data) to emit, or '
        .. 'ctx.contracts:type("All"):new(msg.data))', r.err, 1, true)
      assert.are.same({ copy = 2, view = 1, amount = "123456789012345678901234567890",
                        name = "x" }, { copy = r.copy, view = r.view, amount = r.amount,
                                        name = r.name })
      local f = fwd:messages()[1].data
      assert.are.equal(3, f.a_u8)
      assert.are.equal("123456789012345678901234567890", f.amount)
    end)

    it("tell typed, table and raw payloads apart (msg.type)", function()
      local TABLE = { k = "v", n = 1.5, big = 12345678901, list = { 1, 2, 3 },
                      nested = { a = true } }
      eng = engine {
        service("prod", [[
          return { subscribe = { "go" }, on_message = function(ctx, msg)
            ctx:emit("mix", "raw bytes")
            ctx:emit("mix", ctx.opts.table)
            ctx:emit("mix", ctx:new("Probe", { n = 4 }))
          end }]], { opts = { table = TABLE } }),
        service("cons", [[
          return { subscribe = { "mix" }, on_message = function(ctx, msg)
            local d = msg.data
            local v = msg.type == "raw" and d or msg.type == "table" and d.k or d.n
            ctx:emit("seen", { type = msg.type, v = v })
          end }]]),
      }
      local mix, seen = eng:collect("mix"), eng:collect("seen")
      eng:publish("go", "")
      eng:run()
      local r = {}
      for i, m in ipairs(seen:messages()) do r[i] = m.data end
      assert.are.same({ { type = "raw", v = "raw bytes" }, { type = "table", v = "v" },
                        { type = "Probe", v = 4 } }, r)
      local m = mix:messages()
      assert.are.equal("raw bytes", m[1].raw)
      -- the table payload is standard MessagePack: an independent decoder agrees
      assert.are.same(TABLE, MessagePack.unpack(m[2].raw))
      assert.are.same(TABLE, m[2].data)
      assert.are.same({ self_addr = 0, n = 4 }, m[3].data)
    end)

    it("keep their data after the handler with msg:copy()", function()
      eng = engine { service("cons", [[
        local M = { subscribe = { "probe", "check" } }
        function M.on_message(ctx, msg)
          if msg.topic == "probe" then M.kept = msg:copy() return end
          collectgarbage()
          ctx:emit("seen", { type = M.kept.type, n = M.kept.data.n })
        end
        return M]]) }
      local seen = eng:collect("seen")
      eng:publish("probe", eng:new("Probe", { n = 77 }))
      eng:run()
      eng:publish("check", "")
      eng:run()
      assert.are.same({ type = "Probe", n = 77 }, seen:messages()[1].data)
    end)

    -- msg.data is checked against the message being handled: kept past
    -- its handler it raises, even while a copy keeps the buffer (the
    -- copy's own data is the way to keep it).
    it("raise when msg.data is used after its handler, naming type and field", function()
      eng = engine { service("cons", [[
        local M = { subscribe = { "probe", "check" } }
        function M.on_message(ctx, msg)
          if msg.topic == "probe" then
            M.view, M.copy = msg.data, msg:copy()
            assert(M.view.n == 77)
            return
          end
          local r = {}
          r.read = select(2, pcall(function() return M.view.n end))
          r.emit = select(2, pcall(ctx.emit, ctx, "fwd", M.view))
          r.new = select(2, pcall(ctx.new, ctx, "Probe", M.view))
          r.kept = M.copy.data.n
          ctx:emit("seen", r)
        end
        return M]]) }
      local seen, fwd = eng:collect("seen"), eng:collect("fwd")
      eng:publish("probe", eng:new("Probe", { n = 77 }))
      eng:run()
      eng:publish("check", "")
      eng:run()
      local r = seen:messages()[1].data
      assert.are.equal(0, #fwd:messages())
      assert.matches("service 'cons': msg.data (a Probe) was used after its handler "
        .. "returned (field 'n'): a received message is valid only during its handler",
        r.read, 1, true)
      assert.matches("msg.data (a Probe) was used after its handler returned", r.emit, 1, true)
      assert.matches("msg.data (a Probe) was used after its handler returned", r.new, 1, true)
      assert.are.equal(77, r.kept)
    end)
  end)

  describe("the contract set in Lua", function()
    it("is ctx.contracts, with the digest `mycelium check` prints", function()
      eng = engine { service("svc", [[
        return { init = function(ctx)
          ctx.log:info("digest", { digest = ctx.contracts.digest,
                                   probe = ctx.contracts:type("Probe").digest })
        end }]]) }
      local l = eng:logs(true)[1]
      local set = assert(contract.load(yaml_path))
      assert.are.equal(set.digest, l.digest)
      assert.are.equal(set:type("Probe").digest, l.probe)
      assert.are.equal(set.digest, eng.contracts.digest)
    end)

    it("has a digest that ignores form and catches any change of a field", function()
      local base = assert(contract.load_string(YAML, "a.yaml"))
      -- same schema: other key order, flow style, comments, descriptions
      local same = assert(contract.load_string([[
# the same contracts, written differently
messages:
  Probe:
    description: "a probe"
    fields: {self_addr: {type: u64, description: "its own address"}, n: {type: u32}}
    tlv_type: 1001
]] .. YAML:match("\n  All:.-\n  Probe:"):gsub("\n  Probe:$", "")
   .. YAML:match("\n  Rules:.*$") .. "schema: {version: 1, id: 7}\n", "b.yaml"))
      assert.are.equal(base.digest, same.digest)
      for _, change in ipairs {
        { "n: {type: u32}", "n: {type: u16}" },
        { "n: {type: u32}", "m: {type: u32}" },
        { "tlv_type: 1001", "tlv_type: 1003" },
        { "{max_length: 10}", "{max_length: 11}" },
        { "{min: -5}", "{min: -4}" },
      } do
        local text = YAML:gsub(change[1]:gsub("%p", "%%%0"), change[2], 1)
        local other = assert(contract.load_string(text, "c.yaml"))
        assert.are_not.equal(base.digest, other.digest, change[2])
      end
      local other = assert(contract.load_string(YAML:gsub("n: {type: u32}", "n: {type: u16}", 1),
                                                "d.yaml"))
      assert.are.equal(base:type("All").digest, other:type("All").digest)
      assert.are_not.equal(base:type("Probe").digest, other:type("Probe").digest)
    end)
  end)
end)
