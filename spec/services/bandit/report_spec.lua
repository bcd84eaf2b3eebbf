local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "?.lua", package.path }, ";")

local cjson = require "cjson"
local report = require "bandit.report"

local obj = report.object

describe("bandit.report", function()
  describe("encode", function()
    it("keeps insertion order and writes compact lines", function()
      local o = obj():put("z", 1):put("a", "x"):put("m", true):put("n", nil)
      assert.equal('{"z":1,"a":"x","m":true,"n":null}', report.encode(o))
    end)

    it("writes integers as integers, never in exponent form", function()
      assert.equal("9007199254740992", report.encode(2 ^ 53))
      assert.equal("-282900", report.encode(-282900))
      assert.equal("0", report.encode(0))
      assert.equal("0.5", report.encode(0.5))
      assert.has_error(function() report.encode(0 / 0) end,
        "report.encode: NaN and infinities are not JSON")
    end)

    it("escapes like Python's json.dumps (ASCII only)", function()
      assert.equal([["a\"b\\c\n\r\t\b\f\u0001\u007f"]],
        report.encode('a"b\\c\n\r\t\b\f\1\127'))
      assert.equal([["USD\u20ae0 \ud83d\ude00 \u00e9"]], report.encode("USD₮0 😀 é"))
      assert.equal([["\u00ff\u0000"]], report.encode("\255\0"))
      assert.equal(cjson.decode(report.encode("USD₮0 😀")), "USD₮0 😀")
    end)

    it("pretty-prints like json.dumps(indent=2)", function()
      local o = obj():put("lines", 3):put("map", report.sorted { b = 2, a = 1 })
        :put("empty", obj()):put("list", { 1, "x" }):put("none", {})
      assert.equal(table.concat({
        "{",
        '  "lines": 3,',
        '  "map": {',
        '    "a": 1,',
        '    "b": 2',
        "  },",
        '  "empty": {},',
        '  "list": [',
        "    1,",
        '    "x"',
        "  ],",
        '  "none": []',
        "}" }, "\n"), report.encode(o, 2))
    end)

    it("refuses values JSON cannot hold", function()
      assert.has_error(function() report.encode(print) end,
        "report.encode: cannot encode a function")
    end)
  end)

  describe("objects", function()
    it("get, set, keys and plain", function()
      local o = obj():put("a", 1):put("b", nil)
      assert.equal(1, o:get("a"))
      assert.is_nil(o:get("b"))
      assert.is_nil(o:get("c"))
      o:set("a", 2):set("c", obj():put("d", 4))
      assert.same({ "a", "b", "c" }, o:keys())
      assert.same({ a = 2, b = cjson.null, c = { d = 4 } }, report.plain(o))
    end)
  end)

  describe("records", function()
    it("builds skipped records with and without retracts_line", function()
      assert.equal('{"line":5,"reason":"bad_data"}',
        report.encode(report.skipped(5, "bad_data")))
      assert.equal('{"line":9,"reason":"retraction","retracts_line":3}',
        report.encode(report.skipped(9, "retraction", 3)))
    end)

    it("lists pool state fields by the kind of the current log", function()
      local pool = { label = "x" }
      assert.equal('{"label":"x","price":null}',
        report.encode(report.pool_state(pool, nil, nil)))
      local ev = { kind = "v3_swap", sqrtPriceX96 = "1", liquidity = "2", tick = -3 }
      assert.equal('{"label":"x","price":"1.0","sqrtPriceX96":"1","liquidity":"2","tick":-3}',
        report.encode(report.pool_state(pool, ev, "1.0")))
    end)

    it("says right after lines what a stream not known whole lacks", function()
      local function summary(incomplete)
        return report.encode(report.summary {
          lines = 19, incomplete = incomplete, subscription_id = "0x1",
          events_accepted = 0, events_by_kind = {}, events_retracted = 0,
          skipped = 0, skipped_by_reason = {}, evaluations = 0, signals = 0,
          signals_by_pair = {}, signals_by_trigger = {}, pool_states = {} })
      end
      assert.matches('^{"lines":19,"subscription_id":"0x1",', summary(nil))
      assert.matches('{"lines":19,"incomplete":{"lines_expected":60,"lines_missing":41,'
                     .. '"connections_lost":1},"subscription_id":"0x1",',
                     summary { expected = 60, missing = 41, gaps = 1 }, 1, true)
      assert.matches('"incomplete":{"lines_expected":null,"lines_missing":null,'
                     .. '"connections_lost":2}', summary { gaps = 2 }, 1, true)
    end)
  end)
end)
