-- spec/mycelium/msg_spec.lua -- the msg a handler receives (docs/API.md, msg).
local testing = require "mycelium.testing"

local function engine(src, extra)
  local s = { name = "svc", module = testing.module(src) }
  for k, v in pairs(extra or {}) do s[k] = v end
  return testing.engine { services = { s } }
end

describe("msg", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("exposes topic, type, data, trace, ts, seq and source", function()
    eng = engine [[
      return { subscribe = { "in.*" }, on_message = function(ctx, msg)
        local p, n = msg:bytes()
        ctx:emit("out", { topic = msg.topic, type = msg.type, data = msg.data,
                          trace_id = msg.trace_id, span_id = msg.span_id,
                          ts = msg.ts, seq = msg.seq, source = msg.source,
                          len = n, first = p[0], bytes_type = tostring(require("ffi").typeof(p)) })
      end }]]
    local out = eng:collect("out")
    local published_at = os.time()
    eng:publish("in.raw", "abc")
    eng:publish("in.table", { k = "v" })
    eng:run()
    local got = out:messages()
    local raw, tbl = got[1].data, got[2].data
    assert.are.equal("in.raw", raw.topic)
    assert.are.equal("raw", raw.type)
    assert.are.equal("abc", raw.data)
    assert.are.equal(3, raw.len)
    assert.are.equal(string.byte("a"), raw.first)
    assert.are.equal("ctype<const unsigned char *>", raw.bytes_type)
    assert.are.equal("host", raw.source)
    assert.are.equal(1, raw.seq)
    assert.are.equal(2, tbl.seq)
    assert.matches("^%x+$", raw.trace_id)
    assert.are.equal(32, #raw.trace_id)
    assert.are.equal(16, #raw.span_id)
    assert.is_true(math.abs(raw.ts - published_at) < 60)
    assert.are.equal("table", tbl.type)
    assert.are.same({ k = "v" }, tbl.data)
    assert.are_not.equal(raw.trace_id, tbl.trace_id)
  end)

  it("decodes a table once however often data is read", function()
    eng = engine [[
      return { subscribe = { "in" }, on_message = function(ctx, msg)
        local a, b = msg.data, msg.data
        ctx:emit("out", tostring(rawequal(a, b)) .. " " .. a.n)
      end }]]
    local out = eng:collect("out")
    for i = 1, 3 do eng:publish("in", { n = i }) end
    eng:run()
    local got = out:messages()
    assert.are.same({ "true 1", "true 2", "true 3" }, { got[1].data, got[2].data, got[3].data })
  end)

  it("copy() keeps a message beyond its handler", function()
    eng = engine [[
      local kept = {}
      return { subscribe = { "keep", "dump" }, on_message = function(ctx, msg)
        if msg.topic == "keep" then
          kept[#kept + 1] = msg:copy()
        else
          local parts = {}
          for _, k in ipairs(kept) do
            local p, n = k:bytes()
            parts[#parts + 1] = k.topic .. "=" .. k.data .. "/" .. n .. "/" .. k.source
          end
          kept = {}
          collectgarbage()
          ctx:emit("out", table.concat(parts, ","))
        end
      end }]]
    local out = eng:collect("out")
    eng:publish("keep", "one")
    eng:publish("keep", "two")
    eng:run()
    for i = 1, 600 do eng:publish("filler", string.rep("x", 100)) end -- recycle buffers
    eng:run()
    eng:publish("dump", "")
    eng:run()
    assert.are.equal("keep=one/3/host,keep=two/3/host", out:messages()[1].data)
  end)

  it("kept from a handler, raises in a later handler of the same batch", function()
    eng = engine [[
      local saved
      return { subscribe = { "a" }, on_message = function(ctx, msg)
        if saved == nil then saved = msg return end
        local ok, err = pcall(function() return saved.topic end)
        ctx:emit("out", tostring(ok) .. " " .. tostring(err))
        ok, err = pcall(function() return saved:bytes() end)
        ctx:emit("out", tostring(ok) .. " " .. tostring(err))
        ok, err = pcall(function() return saved:copy() end)
        ctx:emit("out", tostring(ok) .. " " .. tostring(err))
        ctx:emit("out", msg.data) -- its own message is still readable
      end }]]
    local out = eng:collect("out")
    eng:publish("a", "first")
    eng:publish("a", "second")
    eng:run()
    local got = out:messages()
    for i = 1, 3 do
      assert.matches("^false .*msg used outside its handler", got[i].data)
    end
    assert.are.equal("second", got[4].data)
  end)

  it("is read-only and refuses use outside its handler", function()
    eng = engine [[
      local saved
      return { subscribe = { "a", "b" }, on_message = function(ctx, msg)
        if msg.topic == "a" then
          local ok, err = pcall(function() msg.topic = "x" end)
          ctx:emit("out", err)
          saved = msg
        else
          local ok, err = pcall(function() return saved.data end)
          ctx:emit("out", tostring(ok) .. " " .. tostring(err))
          ctx:after(0, function()
            local ok2, err2 = pcall(function() return saved.topic end)
            ctx:emit("out", err2)
          end)
        end
      end }]]
    local out = eng:collect("out")
    eng:publish("a", "")
    eng:publish("b", "")
    eng:advance(0.01)
    local got = out:messages()
    assert.matches("msg is read-only (field 'topic')", got[1].data, 1, true)
    -- inside a later handler 'saved' is not that handler's message
    assert.matches("false .*msg used outside its handler", got[2].data)
    assert.matches("msg used outside its handler", got[3].data, 1, true)
  end)
end)
