-- spec/mycelium/metrics_spec.lua -- ctx.metrics: counters, gauges and
-- histograms a service declares, read back from the engine's exposition;
-- the bound on series; the errors of bad names and labels.
local testing = require "mycelium.testing"

local function engine(src, name)
  return testing.engine({ services = {
    { name = name or "svc", module = testing.module(src) } } })
end

-- The value of the sample line 'series' (name{labels}) in 'text'.
local function sample(text, series)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then
      return tonumber(line:sub(#series + 2))
    end
  end
end

-- The error a service's init raised, from the engine's log.
local function init_error(src)
  local ok, err = pcall(engine, src)
  assert.is_false(ok)
  return tostring(err)
end

describe("ctx.metrics", function()
  local eng
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("exposes counters, gauges and histograms with the service's labels", function()
    eng = engine [[
      local orders, depth, sizes
      return {
        subscribe = { "order" },
        init = function(ctx)
          orders = ctx.metrics:counter("orders_total", "Orders seen.", { "side" })
          depth = ctx.metrics:gauge("book_depth", "Levels in the book.")
          sizes = ctx.metrics:histogram("order_size", "Order sizes.", { "side" },
                                        { buckets = { 1, 10, 100 } })
        end,
        on_message = function(ctx, msg)
          local side, size = msg.data:match("(%S+) (%d+)")
          orders:inc({ side = side })
          sizes:observe(tonumber(size), { side = side })
          if side ~= "caf\195\169" then depth:set(#msg.data) depth:dec() end
        end,
      }]]
    for _, m in ipairs({ "buy 5", "buy 50", "sell 500", "buy 1", "caf\195\169 2" }) do
      eng:publish("order", m)
    end
    eng:run()
    local text = eng:metrics()
    assert.are.equal(3, sample(text, 'orders_total{service="svc",side="buy"}'))
    assert.are.equal(1, sample(text, 'orders_total{service="svc",side="caf\195\169"}'))
    assert.are.equal(1, sample(text, 'orders_total{service="svc",side="sell"}'))
    assert.are.equal(4, sample(text, 'book_depth{service="svc"}'))
    assert.are.equal(1, sample(text, 'order_size_bucket{service="svc",side="buy",le="1"}'))
    assert.are.equal(2, sample(text, 'order_size_bucket{service="svc",side="buy",le="10"}'))
    assert.are.equal(3, sample(text, 'order_size_bucket{service="svc",side="buy",le="+Inf"}'))
    assert.are.equal(56, sample(text, 'order_size_sum{service="svc",side="buy"}'))
    assert.are.equal(1, sample(text, 'order_size_bucket{service="svc",side="sell",le="+Inf"}'))
    assert.are.equal(0, sample(text, 'order_size_bucket{service="svc",side="sell",le="100"}'))
    assert.matches("# TYPE orders_total counter\n", text, 1, true)
    assert.matches("# TYPE order_size histogram\n", text, 1, true)
    assert.matches("# HELP book_depth Levels in the book.\n", text, 1, true)
  end)

  it("keeps a metric's values across a reload", function()
    local src = [[
      local hits
      return { subscribe = { "hit" },
        init = function(ctx) hits = ctx.metrics:counter("hits_total", "Hits.") end,
        on_message = function() hits:inc(2) end }]]
    eng = engine(src)
    eng:publish("hit", "x")
    eng:run()
    assert(eng:reload("svc", testing.module(src)))
    eng:publish("hit", "x")
    eng:run()
    assert.are.equal(4, sample(eng:metrics(), 'hits_total{service="svc"}'))
  end)

  it("sends label values past the bound to one counted overflow series", function()
    eng = engine [[
      local users
      return { subscribe = { "u" },
        init = function(ctx)
          users = ctx.metrics:counter("logins_total", "Logins.", { "user" },
                                      { max_series = 3 })
        end,
        on_message = function(ctx, msg) users:inc({ user = msg.data }) end }]]
    for i = 1, 10 do eng:publish("u", "user" .. i) end
    eng:publish("u", "user1")
    eng:run()
    local text = eng:metrics()
    assert.are.equal(2, sample(text, 'logins_total{service="svc",user="user1"}'))
    assert.are.equal(1, sample(text, 'logins_total{service="svc",user="user3"}'))
    assert.is_nil(sample(text, 'logins_total{service="svc",user="user4"}'))
    assert.are.equal(7, sample(text, 'logins_total{service="svc",user="__overflow__"}'))
    assert.are.equal(7, sample(text,
      'mycelium_metric_overflow_total{service="svc",metric="logins_total"}'))
    local series = 0
    for _ in text:gmatch("\nlogins_total{") do series = series + 1 end
    assert.are.equal(4, series)
  end)

  it("refuses bad names, labels and options, naming the service", function()
    local cases = {
      { [[ctx.metrics:counter("bad-name_total", "h")]], "counter 'bad-name_total': a name is letters" },
      { [[ctx.metrics:counter("hits", "h")]], "a counter's name ends with '_total'" },
      { [[ctx.metrics:gauge("mycelium_x", "h")]], "are the engine's" },
      { [[ctx.metrics:gauge("g", "")]], "help must be a non-empty UTF-8 string" },
      { [[ctx.metrics:gauge("g", "h", { "ok", "9bad" })]], "label 2 (9bad) must be letters" },
      { [[ctx.metrics:gauge("g", "h", { "service" })]], "label 'service' is the engine's" },
      { [[ctx.metrics:gauge("g", "h", { "a", "a" })]], "label 'a' twice" },
      { [[ctx.metrics:histogram("h", "h", {}, { buckets = { 2, 1 } })]], "buckets must be finite and ascending" },
      { [[ctx.metrics:gauge("g", "h", {}, { max_series = 0 })]], "max_series must be an integer from 1 to 10000" },
      { [[ctx.metrics:gauge("g", "h", {}, { colour = 1 })]], "unknown option 'colour'" },
      { [[ctx.metrics:gauge("g", "h"); ctx.metrics:counter("g_total", "h"); ctx.metrics:gauge("g", "other")]],
        "metric 'g' is already declared as a gauge" },
      { [[ctx.metrics:counter("c_total", "h", { "k" }):inc({ j = "x" })]], "label 'k' must be a string, got nil" },
      { [[ctx.metrics:counter("c_total", "h", { "k" }):inc({ k = "x", j = "y" })]], "unknown label 'j' (labels: k)" },
      { [[ctx.metrics:counter("c_total", "h"):inc(-1)]], "counter must be a finite number >= 0" },
      { [[ctx.metrics:gauge("g", "h"):observe(1)]], "only a histogram observes" },
      { [[ctx.metrics:counter("c_total", "h", { "k" }):inc({ k = "__overflow__" })]], "may not be" },
      { [[ctx.metrics:counter("c_total", "h", { "k" }):inc({ k = ("x"):rep(1025) })]], "more than 1024 bytes" },
      { [[ctx.metrics:counter("c_total", "h", { "k" }):inc({ k = "caf\xe9" })]], "label values must be UTF-8" },
      { [[ctx.metrics:counter("c_total", "h", { "k" }):inc({ k = "\xed\xa0\x80" })]], "label values must be UTF-8" },
      { [[ctx.metrics:gauge("g", "\xff")]], "help must be a non-empty UTF-8 string" },
    }
    for _, c in ipairs(cases) do
      local err = init_error("return { init = function(ctx) " .. c[1] .. " end }")
      assert.matches("service 'svc': metrics: ", err, 1, true)
      assert.matches(c[2], err, 1, true)
    end
  end)
end)
