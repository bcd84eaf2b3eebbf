-- What the three nodes share: the NATS servers (NATS_URL, default
-- nats://127.0.0.1:4222), the contracts and the Bandit data.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local env = os.getenv
local M = {
  here = here,
  bandit = here .. "/../bandit",
  services = here .. "/../../services",
  data = here .. "/../bandit/data/",
}

function M.node(name, services)
  return {
    node = name,
    workers = 1,
    contracts = M.services .. "/contracts.yaml",
    connect = { env("NATS_URL") or "nats://127.0.0.1:4222" },
    nats = { prefix = "bandit-example" },
    -- Nothing may be lost inside a node: a full mailbox refuses.
    mailbox = { capacity = 65536, policy = "reject", threshold = 0.8 },
    control = env("CONTROL_DIR") and ("unix://" .. env("CONTROL_DIR") .. "/" .. name .. ".ctl"),
    log = { level = env("BANDIT_LOG") or "warn", format = "text" },
    services = services,
  }
end

return M
