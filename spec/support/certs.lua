-- spec/support/certs.lua -- a throwaway PKI for TLS specs, made at test
-- time by spec/support/certs.sh with the openssl command (no private key
-- is committed): a CA, certificates it signs for 127.0.0.1/localhost
-- (srv, client), one for a name nobody connects to (other), another CA
-- and a certificate of it (wrongca, wrong), an expired certificate and a
-- self-signed one (expired, self).  The files are DIR/NAME.crt and .key.
local M = {}

local script = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "certs.sh"

-- Returns the directory holding them.
function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  require("support.peers").run("sh " .. script .. " " .. dir .. " >/dev/null")
  return dir
end

function M.remove(dir)
  if dir then os.execute("rm -rf " .. dir) end
end

return M
