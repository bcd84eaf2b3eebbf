-- spec/engine/nats_auth_spec.lua -- the NATS transport's TLS and
-- credential options against a real nats-server that requires them:
--   * TLS (a certificate from spec/support/certs.sh): two engines trust
--     its CA through nats.tls.ca and exchange messages; an engine that
--     trusts another CA is refused with the reason, naming the URL; a
--     nats:// URL goes over to TLS when the system's store (here
--     SSL_CERT_FILE) trusts the CA; a TLS connection is written by the
--     NATS thread alone, never by the producer's worker (with nats.worker,
--     by that worker's loop alone);
--   * client certificates (nats.tls.cert/key): with them two engines
--     exchange messages, without them the engine says what to give;
--   * user and password, then a token: the right ones link two engines,
--     wrong ones are refused with an error naming the URL and the keys to
--     fix.  Refused engines keep running and stop cleanly;
--   * an NKey user (keys made at test time, support/nkey.lua): its seed
--     file in nats.nkey, relative to the config's directory, links two
--     engines; another user's seed is refused with an error naming
--     nats.nkey, the file and its public key; a file without a seed stops
--     the engine from starting.
local cli = require "support.cli"
local proc = require "support.proc"
local certs = require "support.certs"
local nats_cluster = require "support.nats_cluster"
local nkey = require "support.nkey"

local bin = cli.bin

local PRODUCER = [[
local M = {}
function M.init(ctx)
  local n = 0
  ctx:every(20, function()
    n = n + 1
    ctx:emit("auth.t", { n = n })
  end)
end
return M
]]

local CONSUMER = [[
local M = { subscribe = { "auth.*" } }
function M.on_message(ctx, msg)
  ctx.log:info("got", { n = msg.data.n })
end
return M
]]

local wait_for = proc.wait_for

-- Writes node 'name' (a producer or a consumer) dialling 'url' with the
-- Lua text 'nats' as its nats table, and starts it ('env': a shell
-- prefix of variables; 'ctl': its control socket's name); returns the
-- process once its log matches 'ready'.
local function engine(dir, name, url, nats, ready, env, ctl)
  local module = name == "a" and "producer" or "consumer"
  local control = ctl and string.format('control = "unix://%s/%s",', dir.path, ctl) or ""
  local cfg = dir:write(name .. ".lua", string.format([[
return {
  node = %q, workers = 1, %s
  connect = { %q },
  nats = { reconnect_wait_ms = 100, connect_timeout_ms = 2000, %s },
  services = { { name = %q, module = %q } },
}]], name, control, url, nats, module, module .. ".lua"))
  return proc.spawn(string.format("%s exec timeout 30 %s run %s", env or "", bin, cfg),
                    ready, 15)
end

-- The messages the worker of engine 'ctl' published itself, and its
-- socket writes (status --json: nats.msgs_direct, nats.writes_direct).
local function direct(dir, ctl)
  local rc, out = dir:sh(string.format("timeout 10 %s status --socket %s/%s --json",
                                       bin, dir.path, ctl))
  assert.equal(0, rc, out)
  return tonumber(out:match('"msgs_direct":(%d+)')), tonumber(out:match('"writes_direct":(%d+)'))
end

-- Runs a (producer) and b (consumer) with 'nats' and checks that b gets
-- a's messages, in order; returns direct() of a.
local exchanges = 0
local function exchange(dir, url, nats, env)
  local a, b
  local ctl = "a" .. exchanges .. ".ctl"
  exchanges = exchanges + 1
  finally(function()
    if b then b.stop() end
    if a then a.stop() end
  end)
  b = engine(dir, "b", url, nats, "nats: connected to", env)
  a = engine(dir, "a", url, nats, "nats: connected to", env, ctl)
  local got = wait_for(function()
    local g = {}
    for n in b.output():gmatch("%[consumer%] got n=(%d+)") do g[#g + 1] = tonumber(n) end
    return #g >= 10 and g
  end)
  assert.is_truthy(got, b.output())
  for i = 2, #got do assert.equal(got[i - 1] + 1, got[i]) end
  return direct(dir, ctl)
end

-- Starts an engine that the server refuses; checks its log names the URL
-- and says 'why', that it keeps running, then that it stops cleanly.
local function refused(dir, url, nats, why)
  local e = engine(dir, "b", url, nats, "nats: [^\n]*" .. url:gsub("%p", "%%%0"))
  finally(function() e.stop() end)
  local out = wait_for(function()
    local o = e.output()
    return o:find(why, 1, true) and o
  end, 5)
  assert.is_truthy(out, e.output())
  proc.sleep(0.5)
  assert.is_true(e.alive(), e.output())
  assert.is_nil(e.output():find("[consumer] got", 1, true))
  return out
end

describe("NATS transport options", function()
  local dir, pki
  setup(function()
    dir = cli.tmpdir()
    dir:write("producer.lua", PRODUCER)
    dir:write("consumer.lua", CONSUMER)
    pki = certs.make()
  end)
  teardown(function()
    certs.remove(pki)
    dir:remove()
  end)

  describe("against a server that requires TLS", function()
    local server
    setup(function()
      server = nats_cluster.start(1, { scheme = "tls", conf = string.format([[
tls {
  cert_file: "%s/srv.crt"
  key_file: "%s/srv.key"
}]], pki, pki) })
    end)
    teardown(function() server:stop() end)

    it("exchanges messages when nats.tls.ca trusts its certificate", function()
      local msgs, writes = exchange(dir, server.urls[1],
                                    string.format("tls = { ca = %q }", pki .. "/ca.crt"))
      assert.equal(0, msgs)
      assert.equal(0, writes)
    end)

    -- The configuration says nothing of TLS: the server's first bytes
    -- after the handshake (a TLS record) keep the worker from writing.
    it("goes over to TLS on a nats:// URL when the system trusts its CA", function()
      local url = server.urls[1]:gsub("^tls:", "nats:")
      local msgs, writes = exchange(dir, url, "", "SSL_CERT_FILE=" .. pki .. "/ca.crt")
      assert.equal(0, msgs)
      assert.equal(0, writes)
    end)

    -- With nats.worker the worker's loop reads and writes the TLS
    -- connection, the only thread that does: still no direct write.
    it("exchanges messages read on a worker's loop (nats.worker)", function()
      local msgs, writes = exchange(dir, server.urls[1],
                                    string.format("tls = { ca = %q }, worker = 0",
                                                  pki .. "/ca.crt"))
      assert.equal(0, msgs)
      assert.equal(0, writes)
    end)

    it("goes over to TLS on a nats:// URL read on a worker's loop", function()
      local url = server.urls[1]:gsub("^tls:", "nats:")
      local msgs, writes = exchange(dir, url, "worker = 0",
                                    "SSL_CERT_FILE=" .. pki .. "/ca.crt")
      assert.equal(0, msgs)
      assert.equal(0, writes)
    end)

    it("is refused, saying why, when nats.tls.ca is another CA", function()
      local out = refused(dir, server.urls[1],
                          string.format("tls = { ca = %q }", pki .. "/wrongca.crt"),
                          "TLS failed")
      assert.matches("ERROR [^\n]*nats: " .. server.urls[1]:gsub("%p", "%%%0")
                     .. ": TLS failed [^\n]*: check nats%.tls%.ca", out)
    end)

    -- libnats goes over to TLS when the server asks; the system store
    -- does not hold the test CA.
    it("is refused, saying why, when it dials nats:// without the CA", function()
      local url = server.urls[1]:gsub("^tls:", "nats:")
      local out = refused(dir, url, "", "TLS failed")
      assert.matches("check nats%.tls%.ca", out)
    end)
  end)

  describe("against a server that requires client certificates", function()
    local server
    setup(function()
      server = nats_cluster.start(1, { scheme = "tls", conf = string.format([[
tls {
  cert_file: "%s/srv.crt"
  key_file: "%s/srv.key"
  ca_file: "%s/ca.crt"
  verify: true
}]], pki, pki, pki) })
    end)
    teardown(function() server:stop() end)

    it("exchanges messages with nats.tls.cert and nats.tls.key", function()
      exchange(dir, server.urls[1], string.format("tls = { ca = %q, cert = %q, key = %q }",
                                                  pki .. "/ca.crt", pki .. "/client.crt",
                                                  pki .. "/client.key"))
    end)

    it("is refused, saying what to give, without them", function()
      refused(dir, server.urls[1], string.format("tls = { ca = %q }", pki .. "/ca.crt"),
              "if it requires client certificates, give nats.tls.cert and nats.tls.key")
    end)
  end)

  describe("against a server that requires a user and password", function()
    local server
    setup(function()
      server = nats_cluster.start(1, { conf = [[
authorization {
  user: alice
  password: "s3cret-pw"
}]] })
    end)
    teardown(function() server:stop() end)

    it("exchanges messages with the right ones", function()
      -- In clear text the producer's worker publishes and writes itself.
      local msgs, writes = exchange(dir, server.urls[1], 'user = "alice", password = "s3cret-pw"')
      assert.is_true(msgs > 0 and writes > 0)
    end)

    it("is refused, naming the URL and the keys to fix, with wrong ones", function()
      local out = refused(dir, server.urls[1], 'user = "alice", password = "nope"',
                          "the server refused the credentials")
      assert.matches("ERROR [^\n]*nats: " .. server.urls[1]:gsub("%p", "%%%0")
                     .. ": the server refused the credentials %([^\n]*Violation[^\n]*%): "
                     .. "check nats%.user and nats%.password, nats%.token", out)
    end)
  end)

  describe("against a server that requires a token", function()
    local server
    setup(function()
      server = nats_cluster.start(1, { conf = [[
authorization {
  token: "t0ken-of-the-test"
}]] })
    end)
    teardown(function() server:stop() end)

    it("exchanges messages with the right one", function()
      exchange(dir, server.urls[1], 'token = "t0ken-of-the-test"')
    end)

    it("is refused with a wrong one, or none", function()
      refused(dir, server.urls[1], 'token = "wrong"', "nats.token")
      refused(dir, server.urls[1], "", "the server refused the credentials")
    end)
  end)

  describe("against a server that lists an NKey user", function()
    local server, public
    setup(function()
      local seed, other
      seed, public = nkey.user(dir.path)
      other = nkey.user(dir.path)
      dir:write("user.nk", seed .. "\n")
      dir:write("other.nk", other .. "\n")
      server = nats_cluster.start(1, { conf = string.format([[
authorization {
  users = [ { nkey: %q } ]
}]], public) })
    end)
    teardown(function() server:stop() end)

    it("exchanges messages with its seed in nats.nkey (relative to the config)", function()
      exchange(dir, server.urls[1], 'nkey = "user.nk"')
    end)

    it("is refused, naming nats.nkey, the file and its key, with another seed", function()
      local out = refused(dir, server.urls[1], 'nkey = "other.nk"',
                          "the server refused the credentials")
      assert.matches("ERROR [^\n]*nats: " .. server.urls[1]:gsub("%p", "%%%0")
                     .. ": the server refused the credentials %([^\n]*%): check nats%.nkey: "
                     .. "the seed in " .. (dir.path .. "/other.nk"):gsub("%p", "%%%0")
                     .. " is of user U[A-Z2-7]+, which the server does not list", out)
      assert.is_nil(out:find(public, 1, true))
    end)

    it("does not start with a file that holds no seed", function()
      dir:write("bad.nk", "not a seed\n")
      local cfg = dir:write("bad.lua", string.format([[
return { node = "x", connect = { %q }, nats = { nkey = "bad.nk" },
         services = { { name = "consumer", module = "consumer.lua" } } }]], server.urls[1]))
      local rc, out, err = dir:mycelium("run " .. cfg, 10)
      assert.are_not.equal(0, rc)
      assert.matches("nats%.nkey: " .. (dir.path .. "/bad.nk"):gsub("%p", "%%%0")
                     .. " holds no user NKey seed", out .. err)
      cfg = dir:write("both.lua", string.format([[
return { node = "x", connect = { %q }, nats = { nkey = "user.nk", creds = "user.creds" },
         services = { { name = "consumer", module = "consumer.lua" } } }]], server.urls[1]))
      rc, out, err = dir:mycelium("run " .. cfg, 10)
      assert.are_not.equal(0, rc)
      assert.matches("'nats%.creds' and 'nats%.nkey' are exclusive", out .. err)
    end)
  end)
end)
