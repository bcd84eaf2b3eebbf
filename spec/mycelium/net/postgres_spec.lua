-- spec/mycelium/net/postgres_spec.lua -- mycelium.net.postgres in a service,
-- against a real PostgreSQL server (spec/support/pg_server.lua), through
-- mycelium.testing (manual engine, real time for the I/O).
local testing = require "mycelium.testing"
local pg_server = require "support.pg_server"

-- Runs what the spec sends on "q" ({tag, sql, params}) and emits the
-- outcome on "reply" ({tag, rows, err, code}); state changes on "state".
local SERVICE = [[
local postgres = require "mycelium.net.postgres"
local M = { subscribe = { "q" } }
local db

local function plain(rows)
  if rows == nil then return nil end
  local out = { columns = rows.columns, affected = rows.affected }
  for i, r in ipairs(rows) do
    local t = {}
    for k, v in pairs(r) do t[k] = v == postgres.null and "NULL" or v end
    out[i] = t
  end
  return out
end

function M.init(ctx, opts)
  local o = opts.pg or {}
  o.on_state = function(state, err) ctx:emit("state", { state = state, err = err }) end
  local err, code
  db, err, code = postgres.connect(ctx, opts.url, o)
  if not db then ctx:emit("reply", { tag = "connect", err = err, code = code }) end
end

function M.on_message(ctx, msg)
  local req = msg.data
  if req.co then
    coroutine.wrap(function()
      local rows, err, code = db:query(req.sql, req.params)
      ctx:emit("reply", { tag = req.tag, rows = plain(rows), err = err, code = code })
    end)()
    return
  end
  local params = req.params
  if req.null_at then params[req.null_at] = postgres.null end
  local ok, err, code = db:query(req.sql, params, function(rows, err2, code2)
    ctx:emit("reply", { tag = req.tag, rows = plain(rows), err = err2, code = code2,
                        pending = db:pending() })
  end)
  if not ok then ctx:emit("reply", { tag = req.tag, now = true, err = err, code = code }) end
end
return M]]

local function engine(opts)
  return testing.engine {
    services = { { name = "svc", module = testing.module(SERVICE), opts = opts } },
    collect = { "reply", "state" },
  }
end

local function wait(eng, c, n, secs)
  eng:run_for(secs or 5, function()
    c:messages()
    return #c.all >= n
  end)
  return c.all
end

local function by_tag(list)
  local t = {}
  for _, m in ipairs(list) do t[m.data.tag] = m.data end
  return t
end

describe("mycelium.net.postgres", function()
  local server, eng

  setup(function()
    server = pg_server.start()
    server:psql([[CREATE TABLE kv (k text PRIMARY KEY, v text, n int8, f float8, b bool)]])
  end)
  teardown(function() server:stop() end)
  after_each(function()
    if eng then eng:close() end
    eng = nil
    testing.cleanup()
  end)

  it("runs prepared queries with parameters, NULLs and typed columns", function()
    eng = engine { url = server.url }
    local replies = eng:collect("reply")
    local ins = "INSERT INTO kv VALUES ($1, $2, $3, $4, $5)"
    eng:publish("q", { tag = "i1", sql = ins, params = { "a", "x'y", 42, 1.5, true } })
    eng:publish("q", { tag = "i2", sql = ins, params = { "b", "", "9007199254740993", 0, false },
                       null_at = 2 })
    eng:publish("q", { tag = "sel", sql = "SELECT k, v, n, f, b FROM kv ORDER BY k", params = {} })
    eng:publish("q", { tag = "one", sql = "SELECT v FROM kv WHERE k = $1", params = { "a" } })
    eng:publish("q", { tag = "none", sql = "SELECT v FROM kv WHERE k = $1", params = { "zz" } })
    eng:publish("q", { tag = "upd", sql = "UPDATE kv SET f = f + 1", params = {} })
    local got = by_tag(wait(eng, replies, 6))
    assert.are.equal(1, got.i1.rows.affected)
    assert.are.same({ "k", "v", "n", "f", "b" }, got.sel.rows.columns)
    assert.are.same({ k = "a", v = "x'y", n = 42, f = 1.5, b = true }, got.sel.rows[1])
    -- beyond 2^53 an int8 stays exact, as text
    assert.are.same({ k = "b", v = "NULL", n = "9007199254740993", f = 0, b = false },
                    got.sel.rows[2])
    assert.are.same({ v = "x'y" }, got.one.rows[1])
    assert.are.equal(0, #got.none.rows)
    assert.are.equal(2, got.upd.rows.affected)
  end)

  it("reports server errors with their SQLSTATE and goes on", function()
    eng = engine { url = server.url }
    local replies = eng:collect("reply")
    eng:publish("q", { tag = "bad", sql = "SELECT * FROM no_such_table", params = {} })
    eng:publish("q", { tag = "dup", sql = "INSERT INTO kv (k) VALUES ($1)", params = { "a" } })
    eng:publish("q", { tag = "after", co = true, sql = "SELECT 1 AS one" })
    local got = by_tag(wait(eng, replies, 3))
    assert.is_nil(got.bad.rows)
    assert.are.equal("42P01", got.bad.code)
    assert.matches("^postgres 127%.0%.0%.1:%d+: ERROR: +relation \"no_such_table\" does not exist",
                   got.bad.err)
    assert.are.equal("23505", got.dup.code)
    assert.are.same({ one = 1 }, got.after.rows[1])
  end)

  it("drops a connection whose query outlives query_timeout_ms, then reconnects", function()
    eng = engine { url = server.url, pg = { query_timeout_ms = 300, reconnect_min_ms = 50 } }
    local replies, states = eng:collect("reply"), eng:collect("state")
    wait(eng, states, 1)
    local t0 = os.time()
    eng:publish("q", { tag = "slow", sql = "SELECT pg_sleep(5)", params = {} })
    wait(eng, replies, 1)
    local got = by_tag(replies.all)
    assert.are.equal("ETIMEDOUT", got.slow.code)
    assert.matches("no result within 300 ms", got.slow.err)
    assert.is_true(os.time() - t0 <= 2)
    wait(eng, states, 3) -- up, down, up
    local s = {}
    for i, m in ipairs(states.all) do s[i] = m.data.state end
    assert.are.same({ "up", "down", "up" }, s)
    eng:publish("q", { tag = "again", co = true, sql = "SELECT 2 AS two" })
    got = by_tag(wait(eng, replies, 2))
    assert.are.same({ two = 2 }, got.again.rows[1])
  end)

  it("survives the server killed and started again", function()
    eng = engine { url = server.url, pg = { reconnect_min_ms = 50, reconnect_max_ms = 200 } }
    local replies, states = eng:collect("reply"), eng:collect("state")
    wait(eng, states, 1)
    server:kill()
    wait(eng, states, 2)
    assert.are.equal("down", states.all[2].data.state)
    eng:publish("q", { tag = "away", sql = "SELECT 1", params = {} })
    wait(eng, replies, 1)
    assert.is_true(replies.all[1].data.now)
    assert.are.equal("ENOTCONN", replies.all[1].data.code)
    server:restart()
    eng:run_for(5, function()
      states:messages()
      return states.all[#states.all].data.state == "up"
    end)
    assert.are.equal("up", states.all[#states.all].data.state)
    eng:publish("q", { tag = "back", co = true, sql = "SELECT count(*) AS n FROM kv" })
    local got = by_tag(wait(eng, replies, 2))
    assert.is_nil(got.back.err)
    assert.are.equal(2, got.back.rows[1].n)
  end)

  it("refuses a bad URL, naming it", function()
    eng = engine { url = "postgresql://127.0.0.1:5432/db?nosuchkey=1" }
    local replies = eng:collect("reply")
    local got = by_tag(wait(eng, replies, 1))
    assert.are.equal("EINVAL", got.connect.code)
    assert.matches("bad URL 'postgresql://127.0.0.1:5432/db%?nosuchkey=1'.*nosuchkey",
                   got.connect.err)
  end)

  it("fails attempts against a port nothing listens on, and says so", function()
    local port, release = require("support.redis_server").refusing_port()
    finally(release)
    eng = engine { url = "postgresql://u@127.0.0.1:" .. port .. "/db",
                   pg = { reconnect_min_ms = 1000 } }
    local states = eng:collect("state")
    wait(eng, states, 1)
    assert.are.equal("down", states.all[1].data.state)
    assert.matches("postgres 127%.0%.0%.1:" .. port .. ": cannot connect:.*refused",
                   states.all[1].data.err)
  end)
end)
