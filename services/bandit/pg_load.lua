-- services/bandit/pg_load.lua -- turns the token and pool lists (the
-- bundled examples/bandit/data/*.json, or others) into SQL for the tables
-- of services/bandit/pg_schema.sql, on stdout, for psql:
--
--   luajit services/bandit/pg_load.lua [--chain 137] [--tokens FILE]
--          [--pools FILE] | psql -v ON_ERROR_STOP=1 postgresql://...
--
-- Rows are upserted (a newer list replaces what was loaded), in one
-- transaction, after the schema itself (idempotent).
local cjson = require "cjson"

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
local DATA = here .. "/../../examples/bandit/data/"

local function die(msg)
  io.stderr:write("pg_load: ", msg, "\n")
  os.exit(2)
end

local opts = { chain = 137, tokens = DATA .. "tokens.json", pools = DATA .. "pools.json",
               schema = here .. "/pg_schema.sql" }
local i = 1
while arg[i] do
  local k, v = arg[i]:match("^%-%-(%w+)$"), arg[i + 1]
  if not k or opts[k] == nil or v == nil then
    die("usage: pg_load.lua [--chain N] [--tokens FILE] [--pools FILE] [--schema FILE]")
  end
  opts[k] = k == "chain" and tonumber(v) or v
  if opts[k] == nil then die("--chain must be a number, got " .. v) end
  i = i + 2
end

local function read_json(path)
  local f, err = io.open(path)
  if not f then die("cannot read " .. tostring(err)) end
  local ok, v = pcall(cjson.decode, f:read("*a"))
  f:close()
  if not ok or type(v) ~= "table" then die(path .. ": not a JSON array: " .. tostring(v)) end
  return v
end

local function lit(v)
  if v == nil or v == cjson.null then return "NULL" end
  if type(v) == "number" then return string.format("%d", v) end
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

local function address(path, n, v)
  if type(v) ~= "string" or not v:match("^0x%x+$") or #v ~= 42 then
    die(string.format("%s: entry %d: address must be 0x and 40 hex digits, got %s",
                      path, n, tostring(v)))
  end
  return v:lower()
end

local out = {}
local f = io.open(opts.schema) or die("cannot read the schema " .. opts.schema)
out[#out + 1] = f:read("*a")
f:close()
out[#out + 1] = "BEGIN;"
for n, t in ipairs(read_json(opts.tokens)) do
  if type(t.symbol) ~= "string" or type(t.decimals) ~= "number" then
    die(string.format("%s: entry %d: needs symbol (string) and decimals (number)",
                      opts.tokens, n))
  end
  out[#out + 1] = string.format(
    "INSERT INTO bandit_tokens VALUES (%d, %s, %s, %d, %s) ON CONFLICT (chain_id, address) "
      .. "DO UPDATE SET symbol = EXCLUDED.symbol, decimals = EXCLUDED.decimals, "
      .. "name = EXCLUDED.name;",
    opts.chain, lit(address(opts.tokens, n, t.address)), lit(t.symbol), t.decimals, lit(t.name))
end
for n, p in ipairs(read_json(opts.pools)) do
  out[#out + 1] = string.format(
    "INSERT INTO bandit_pools VALUES (%d, %s, %s, %s, %s, %s, %d, %s) ON CONFLICT "
      .. "(chain_id, address) DO UPDATE SET dex = EXCLUDED.dex, kind = EXCLUDED.kind, "
      .. "token0 = EXCLUDED.token0, token1 = EXCLUDED.token1, fee_ppm = EXCLUDED.fee_ppm, "
      .. "label = EXCLUDED.label;",
    opts.chain, lit(address(opts.pools, n, p.address)), lit(p.dex), lit(p.kind),
    lit(address(opts.pools, n, p.token0)), lit(address(opts.pools, n, p.token1)),
    tonumber(p.fee_ppm) or die(opts.pools .. ": entry " .. n .. ": fee_ppm must be a number"),
    lit(p.label))
end
out[#out + 1] = "COMMIT;"
io.write(table.concat(out, "\n"), "\n")
