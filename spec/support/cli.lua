-- spec/support/cli.lua -- the `mycelium` binary for specs: a temporary
-- directory to write configs and services into, and commands run with a
-- time limit, their exit code and output returned.
local M = {}

M.bin = os.getenv("MYCELIUM_BIN") or "build/mycelium"

local slurp = require("support.proc").slurp

-- A fresh directory; dir:write(name, text) returns the file's path,
-- dir:sh(cmd) and dir:mycelium(args) return exit code, stdout and stderr,
-- dir:promtool_check(body) checks a /metrics scrape, dir:remove() deletes
-- it all.
function M.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p " .. path) == 0)
  local d = { path = path }
  function d:write(name, text)
    local p = path .. "/" .. name
    local f = assert(io.open(p, "wb"))
    f:write(text)
    f:close()
    return p
  end
  function d:sh(cmd)
    local out, err = path .. "/.stdout", path .. "/.stderr"
    local p = io.popen(string.format("(%s) >%s 2>%s; echo $?", cmd, out, err))
    local rc = tonumber(p:read("*a"))
    p:close()
    return rc, slurp(out), slurp(err)
  end
  function d:mycelium(args, seconds)
    return self:sh(string.format("timeout %d %s %s", seconds or 20, M.bin, args))
  end
  -- Passes 'body' (a /metrics scrape) through `promtool check metrics`
  -- when promtool is installed: returns its exit code (0 without it) and
  -- output.
  function d:promtool_check(body)
    if self:sh("command -v promtool >/dev/null") ~= 0 then return 0, "" end
    self:write("scrape.txt", body)
    return self:sh("promtool check metrics < " .. path .. "/scrape.txt")
  end
  function d:remove()
    os.execute("rm -rf '" .. path .. "'")
  end
  return d
end

return M
