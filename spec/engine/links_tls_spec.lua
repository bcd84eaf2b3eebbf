-- spec/engine/links_tls_spec.lua -- `mycelium run` processes linked over
-- TLS (tls+tcp://), with certificates made for the run by
-- spec/support/certs.sh: examples/links with mutual TLS (subscriptions,
-- messages in order with their trace ids), examples/request_reply
-- (requests, replies and a "failed" answer cross as over plain TCP), and
-- a peer whose certificate another CA signed, refused on both sides with
-- the reason.
local cli = require "support.cli"
local proc = require "support.proc"
local certs = require "support.certs"
local free_port = require("support.redis_server").free_port

local bin = cli.bin
local root = proc.root

local wait_for = proc.wait_for

local function run_a(example, url, tls, config)
  return proc.spawn(string.format(
    "cd %s/examples/%s && LINK_URL='%s' LINK_TLS='%s' CONTROL='unix://%s/a.ctl' "
      .. "INTERVAL_MS=20 exec timeout 60 %s run %s", root, example, url, tls,
    tls, bin, config or "a.lua"), "link listening on (%S+)", 10)
end

describe("links over TLS", function()
  local pki
  setup(function() pki = certs.make() end)
  teardown(function() certs.remove(pki) end)

  it("carry subscriptions and messages with their traces (mutual TLS)", function()
    local url = "tls+tcp://127.0.0.1:" .. free_port()
    local a, b
    finally(function()
      if b then b.stop() end
      if a then a.stop() end
    end)
    a = run_a("links", url, pki)
    b = proc.spawn(string.format(
      "cd %s/examples/links && LINK_URL='%s' LINK_TLS='%s' exec timeout 60 %s run b.lua",
      root, url, pki, bin), "link up", 10)
    local got = wait_for(function()
      local g = {}
      for n, trace in b.output():gmatch("%[consumer%] got [^\n]-n=(%d+)[^\n]-trace_id=(%x+)") do
        g[#g + 1] = { n = tonumber(n), trace = trace }
      end
      return #g >= 10 and g
    end)
    assert.is_truthy(got, b.output())
    local sent = {}
    for n, trace in a.output():gmatch("%[producer%] sent n=(%d+) trace_id=(%x+)") do
      sent[tonumber(n)] = trace
    end
    for i, m in ipairs(got) do
      if i > 1 then assert.equal(got[i - 1].n + 1, m.n) end
      assert.equal(sent[m.n], m.trace)
    end
    assert.matches("link up: b %(" .. url:gsub("%p", "%%%0") .. ", accepted, wire v2, TLSv1%.3%)",
                   a.output())
  end)

  it("carry requests and replies, and a crash's 'failed'", function()
    local url = "tls+tcp://127.0.0.1:" .. free_port()
    local dir = cli.tmpdir()
    local a
    finally(function()
      if a then a.stop() end
      dir:remove()
    end)
    a = run_a("request_reply", url, pki)
    local rc, out, err = dir:sh(string.format(
      "cd %s/examples/request_reply && ROUNDS=3 LINK_URL='%s' LINK_TLS='%s' timeout 60 %s run b.lua",
      root, url, pki, bin))
    assert.equal(0, rc, err)
    local n = { AAPL = 0, MSFT = 0, BOOM = 0 }
    for sym in out:gmatch("%[client%] (%u+) x 10 = [%d.]+ from pricer") do
      n[sym] = n[sym] + 1
    end
    for _ in out:gmatch("%[client%] BOOM: failed") do n.BOOM = n.BOOM + 1 end
    assert.same({ AAPL = 3, MSFT = 3, BOOM = 3 }, n, out)
  end)

  -- Another run of certs.sh: another CA of the same name, another key.
  it("refuse a peer whose certificates another CA signed, on both sides", function()
    local other = certs.make()
    local url = "tls+tcp://127.0.0.1:" .. free_port()
    local a, b
    finally(function()
      if b then b.stop() end
      if a then a.stop() end
      certs.remove(other)
    end)
    a = run_a("links", url, pki)
    b = proc.spawn(string.format(
      "cd %s/examples/links && LINK_URL='%s' LINK_TLS='%s' exec timeout 60 %s run b.lua",
      root, url, other, bin), "TLS handshake refused", 10)
    local esc = url:gsub("%p", "%%%0")
    assert.matches("link " .. esc .. " %(" .. esc .. "%): TLS handshake refused: "
                   .. "certificate verification failed: self%-signed certificate in "
                   .. "certificate chain %(the peer's certificate chains to a CA that "
                   .. "is not in link.tls.ca", b.output())
    assert.is_truthy(wait_for(function()
      return a.output():match("link 127%.0%.0%.1 %(" .. esc .. "%): TLS handshake refused: "
                              .. "tlsv1 alert unknown ca %(the peer does not trust this "
                              .. "node's certificate")
    end), a.output())
    -- Both keep running, and nothing got through.
    assert.is_true(a.alive() and b.alive())
    assert.is_nil(b.output():find("[consumer] got", 1, true))
  end)
end)
