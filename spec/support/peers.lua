-- spec/support/peers.lua -- the programs the specs check against that are
-- not part of the project (python3 for the independent Bandit reference,
-- node, redis-server, luarocks), and shell commands whose success is
-- checked whichever Lua runs them.
--
-- A missing peer turns the specs that need it into `pending` on a
-- developer's machine, but fails them when the CI environment variable
-- is set: there scripts/deps.sh installed everything, so a missing peer
-- means a check silently gone.
local M = {}

-- True when shell command 'cmd' exits with status 0.  os.execute returns
-- the status number under LuaJIT and Lua 5.1 (always truthy, even for a
-- failure), true/nil under Lua 5.2+; both are handled.
function M.ok(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

-- Runs 'cmd' and raises, naming it, unless it exits with status 0.
function M.run(cmd)
  if not M.ok(cmd) then error("command failed: " .. cmd, 2) end
end

local PROBES = {
  python3 = "python3 -c 'import fractions' >/dev/null 2>&1",
  node = "node -v >/dev/null 2>&1",
  ["redis-server"] = "redis-server --version >/dev/null 2>&1",
  luarocks = "luarocks --version >/dev/null 2>&1",
}

-- True when 'name' (a key of PROBES) runs here.  When it does not: with
-- CI set, raises (a failure of the spec that asked); without, returns
-- false and the caller marks its specs pending.
function M.have(name)
  local probe = assert(PROBES[name], "unknown peer " .. tostring(name))
  if M.ok(probe) then return true end
  if os.getenv("CI") and os.getenv("CI") ~= "" then
    error(name .. " is not installed and CI is set: every independent "
          .. "check must run there (scripts/deps.sh installs " .. name .. ")", 2)
  end
  return false
end

return M
