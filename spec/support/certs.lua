-- spec/support/certs.lua -- a throwaway PKI made with the openssl command
-- for TLS specs: a CA, a certificate it signs for 127.0.0.1/localhost
-- (srv) and one for a name nobody connects to (other).  EC keys: fast.
local M = {}

local function sh(cmd)
  require("support.peers").run(cmd .. " >/dev/null 2>&1")
end

-- Returns the directory holding ca.crt, srv.crt/key, other.crt/key.
function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(string.format("cd %s && openssl req -x509 %s -keyout ca.key -out ca.crt "
     .. "-days 1 -subj '/CN=mycelium test CA'", dir, key))
  for _, c in ipairs { { "srv", "IP:127.0.0.1,DNS:localhost" },
                       { "other", "DNS:other.example" } } do
    sh(string.format("cd %s && printf 'subjectAltName=%s' > %s.ext && "
       .. "openssl req %s -keyout %s.key -out %s.csr -subj '/CN=%s' && "
       .. "openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key "
       .. "-CAcreateserial -days 1 -out %s.crt -extfile %s.ext",
       dir, c[2], c[1], key, c[1], c[1], c[1], c[1], c[1], c[1]))
  end
  return dir
end

function M.remove(dir)
  if dir then os.execute("rm -rf " .. dir) end
end

return M
