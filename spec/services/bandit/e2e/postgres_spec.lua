local root = debug.getinfo(1, "S").source:match("^@(.-)spec/services/.+$")
root = (root == nil or root == "") and "./" or root
package.path = table.concat({ root .. "lua/?.lua", root .. "lua/?/init.lua",
  root .. "services/?.lua", root .. "spec/?.lua", root .. "?.lua", package.path }, ";")

-- Bandit with its token metadata in PostgreSQL: the bundled lists loaded
-- into a real server by services/bandit/pg_load.lua, and a MetadataService
-- whose own list lacks WETH must find it there (no RPC at all) and write
-- the sample's expected files byte for byte.
local H = require "spec.services.bandit.helper"
local testing = require "mycelium.testing"
local pg_server = require "support.pg_server"
local cjson = require "cjson"

local FILES = { "events.jsonl", "skipped.jsonl", "signals.jsonl", "summary.json" }
local LUAJIT = os.getenv("LUAJIT") or "luajit"

describe("Bandit with Postgres", function()
  local server, dir
  setup(function()
    server = pg_server.start()
    dir = H.tmpdir()
    local p = io.popen(LUAJIT .. " " .. H.ROOT .. "services/bandit/pg_load.lua 2>&1")
    local sql = p:read("*a")
    p:close()
    server:psql(sql)
    server:psql(sql) -- loading again changes nothing
  end)
  teardown(function()
    server:stop()
    H.rmdir(dir)
    testing.cleanup()
  end)

  it("loads the bundled lists into bandit_tokens and bandit_pools", function()
    local toks = cjson.decode(H.read(H.DATA .. "tokens.json"))
    local pools = cjson.decode(H.read(H.DATA .. "pools.json"))
    assert.equal(#toks .. "|" .. #pools,
      server:psql("SELECT (SELECT count(*) FROM bandit_tokens) || '|' || "
                  .. "(SELECT count(*) FROM bandit_pools)"):gsub("%s+$", ""))
    assert.equal("WETH|18", server:psql("SELECT symbol || '|' || decimals FROM bandit_tokens "
      .. "WHERE address = '0x7ceb23fd6bc0add59e62ac25578270cff1b9f619'"):gsub("%s+$", ""))
  end)

  it("finds a token missing from MetadataService's list and writes the expected files",
     function()
    local toks = cjson.decode(H.read(H.DATA .. "tokens.json"))
    for i = #toks, 1, -1 do
      if toks[i].symbol == "WETH" then table.remove(toks, i) end
    end
    local f = assert(io.open(dir .. "/tokens.json", "wb"))
    f:write(cjson.encode(toks))
    f:close()
    local out = dir .. "/out"
    os.execute("mkdir -p " .. out)
    local eng = H.engine {
      out = out, start = true,
      -- A loaded CI machine can answer later than the 2 s default; a
      -- lookup that timed out would skip the token's logs.
      metadata = { tokens = dir .. "/tokens.json", postgres = server.url,
                   postgres_timeout_ms = 15000,
                   lookup_order = { "list", "postgres" } },
    }
    local ends = eng:collect("bandit.end.metadata")
    H.feed(eng, H.lines(H.DATA .. "sample_capture.jsonl"))
    assert.is_true(eng:run_for(30, function()
      local s = io.open(out .. "/summary.json")
      if s then s:close() end
      return s ~= nil
    end), "the recorder did not finish")
    -- MetadataService's own account first: a failed lookup explains
    -- every missing line below.
    local m = ends:messages()[1].data
    local account = cjson.encode(m)
    assert.equal(1, m.lookups, account)
    assert.equal(0, m.lookup_failures, account)
    assert.equal(0, m.eth_calls, account)
    assert.equal(0, eng:stats("metadata").errors, account)
    for _, name in ipairs(FILES) do
      H.same_lines(H.read(H.DATA .. "sample_expected_" .. name), H.read(out .. "/" .. name), name)
    end
    eng:close()
  end)
end)
