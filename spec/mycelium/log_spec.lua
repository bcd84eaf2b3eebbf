-- spec/mycelium/log_spec.lua -- ctx.log (mycelium.log): fields of every
-- type encoded in the sink's format, record fields that a user field
-- cannot override, the level filter, and a field value that cannot forge
-- a second line.
local testing = require "mycelium.testing"
local log = require "mycelium.log"
local cjson = require "cjson"

local function engine(src, level, format)
  return testing.engine {
    log = { level = level or "debug", format = format or "json" },
    services = { { name = "svc", module = testing.module(src) } },
  }
end

describe("mycelium.log", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("encodes fields of every type as JSON members", function()
    eng = engine [[return { init = function(ctx)
      local deep = {}
      local t = deep
      for i = 1, 10 do t.next = {} t = t.next end
      ctx.log:info("fields", {
        s = "quote \" backslash \\ newline \n tab \t bell \7",
        int = 42, neg = -7, frac = 0.5, big = 2^53,
        nan = 0/0, inf = math.huge, ninf = -math.huge,
        yes = true, no = false,
        list = { 1, "two", { 3 } },
        map = { b = 2, a = { c = "d" } },
        deep = deep,
        fn = print,
      })
    end }]]
    local l = eng:logs(true)[1]
    assert.equal("fields", l.msg)
    assert.equal("quote \" backslash \\ newline \n tab \t bell \7", l.s)
    assert.equal(42, l.int)
    assert.equal(-7, l.neg)
    assert.equal(0.5, l.frac)
    assert.equal(2 ^ 53, l.big)
    -- not numbers in JSON: written as their text
    assert.equal("nan", tostring(l.nan):lower():gsub("^-", ""))
    assert.equal("inf", l.inf)
    assert.equal("-inf", l.ninf)
    assert.is_true(l.yes)
    assert.is_false(l.no)
    assert.same({ 1, "two", { 3 } }, l.list)
    assert.same({ b = 2, a = { c = "d" } }, l.map)
    -- nesting stops at 8 levels: the rest is the table's text
    local t, depth = l.deep, 0
    while type(t) == "table" do t, depth = t.next, depth + 1 end
    assert.equal(8, depth)
    assert.matches("^table: ", t)
    assert.matches("^function: ", l.fn)
  end)

  it("keeps the record's own fields; a user field of that name gets a _", function()
    eng = engine [[return { init = function(ctx)
      ctx.log:warn("real", { ts = 1, level = "x", node = "n", service = "s",
                             msg = "m", trace_id = "t", span_id = "p" })
    end }]]
    local l = eng:logs(true)[1]
    assert.equal("real", l.msg)
    assert.equal("warn", l.level)
    assert.equal("svc", l.service)
    assert.equal("test", l.node)
    assert.matches("^%d%d%d%d%-", l.ts)
    assert.matches("^%x+$", l.trace_id)
    assert.same({ 1, "x", "n", "s", "m", "t", "p" },
                { l._ts, l._level, l._node, l._service, l._msg, l._trace_id, l._span_id })
  end)

  it("drops records below the configured level", function()
    local src = [[return { init = function(ctx)
      ctx.log:debug("d") ctx.log:info("i") ctx.log:warn("w") ctx.log:error("e")
    end }]]
    for level, want in pairs { debug = "d i w e", info = "i w e", warn = "w e",
                               error = "e" } do
      eng = engine(src, level)
      local got = {}
      for _, l in ipairs(eng:logs(true)) do got[#got + 1] = l.msg end
      assert.equal(want, table.concat(got, " "), level)
      eng:close()
      eng = nil
    end
  end)

  it("writes a message that is not a string as its text", function()
    eng = engine [[return { init = function(ctx)
      ctx.log:info(12.5) ctx.log:info(nil) ctx.log:info(false)
    end }]]
    local got = {}
    for _, l in ipairs(eng:logs(true)) do got[#got + 1] = l.msg end
    assert.same({ "12.5", "nil", "false" }, got)
  end)

  it("refuses fields that are not a table, naming the service and the level", function()
    local ok, err = pcall(engine, [[return { init = function(ctx)
      ctx.log:error("x", "not a table")
    end }]])
    assert.is_false(ok)
    assert.matches("service 'svc': log:error: fields must be a table, got string",
                   tostring(err), 1, true)
  end)

  it("writes text lines with sorted key=value fields, tables as JSON, one line each",
     function()
    eng = engine([[return { init = function(ctx)
      ctx.log:info("text", { z = 1, a = { k = "v" }, m = "two\nlines" })
    end }]], "info", "text")
    local lines = eng:logs()
    assert.equal(1, #lines)
    assert.matches(' INFO  %[svc%] text a={"k":"v"} m=two\\nlines z=1 trace_id=', lines[1])
    assert.is_nil(lines[1]:find("\n", 1, true))
  end)

  it("encodes JSON strings and values on its own", function()
    assert.equal('"a\\"b\\\\c\\n\\u0001"', log.json_string('a"b\\c\n\1'))
    assert.equal('{"a":[1,2],"b":true}', log.json_value({ b = true, a = { 1, 2 } }, 0))
    assert.same({ a = { 1, 2 }, b = true },
                cjson.decode(log.json_value({ b = true, a = { 1, 2 } }, 0)))
    assert.equal("0.10000000000000001", log.json_value(0.1, 0))
    assert.equal('"inf"', log.json_value(math.huge, 0))
  end)
end)
