-- bandit/pg_source.lua -- token metadata from PostgreSQL for
-- MetadataService (opts.postgres): the table bandit_tokens of
-- services/bandit/pg_schema.sql, read through mycelium.net.postgres on
-- the service's worker loop (one prepared statement, never blocking).
local postgres = require "mycelium.net.postgres"

local format, type, tostring = string.format, type, tostring

local M = {}

local QUERY = "SELECT symbol, decimals FROM bandit_tokens WHERE chain_id = $1 AND address = $2"

-- Connects for the service of 'ctx'; returns a source (src:load(key,
-- done), src:close()) or raises naming opts.postgres.  'opts':
-- query_timeout_ms and connect_timeout_ms of the client.
function M.open(ctx, url, chain_id, opts)
  if type(url) ~= "string" then
    error(format("service '%s': opts.postgres must be a URL string "
                 .. "(postgresql://user@host:port/db), got %s", ctx.name, type(url)), 0)
  end
  local db, err = postgres.connect(ctx, url, opts)
  if not db then
    error(format("service '%s': opts.postgres: %s", ctx.name, tostring(err)), 0)
  end
  local src = { db = db, hits = 0, misses = 0, errors = 0 }
  -- done(meta) with { symbol, decimals } when the table has the token;
  -- done(nil, why) when it has not, or the server cannot say.
  function src.load(key, done)
    local ok, e = db:query(QUERY, { chain_id, key }, function(rows, qerr)
      if rows == nil then
        src.errors = src.errors + 1
        return done(nil, qerr)
      end
      local row = rows[1]
      if row == nil then
        src.misses = src.misses + 1
        return done(nil, "not in postgres table bandit_tokens")
      end
      src.hits = src.hits + 1
      done { symbol = row.symbol ~= postgres.null and row.symbol or nil,
             decimals = row.decimals }
    end)
    if not ok then
      src.errors = src.errors + 1
      return done(nil, e)
    end
  end
  function src.close() db:close() end
  return src
end

return M
