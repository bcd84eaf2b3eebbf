-- spec/mycelium/config_spec.lua -- mycelium.config, what `mycelium run` and
-- `check` read: defaults, names mapped to the engine's numbers, paths taken
-- from the config's directory, and every refusal naming the file and the
-- key (an unknown key suggesting the nearest one).
local testing = require "mycelium.testing"
local cli = require "support.cli"
package.loaded["mycelium.core"] = package.loaded["mycelium.core"] or testing.core
local config = require "mycelium.config"

describe("mycelium.config", function()
  local dir, svc
  before_each(function()
    dir = cli.tmpdir()
    svc = dir:write("svc.lua", "return {}")
  end)
  after_each(function() dir:remove() end)

  -- normalise() with the services given, from dir/mycelium.lua.
  local function norm(t)
    t.services = t.services or { { module = "svc.lua" } }
    return config.normalise(dir.path .. "/mycelium.lua", t)
  end

  local function refused(t, text)
    local ok, err = pcall(norm, t)
    assert.is_false(ok, "accepted")
    assert.matches(text, err, 1, true)
    return err
  end

  it("fills the defaults and takes modules from the config's directory", function()
    local c = norm {}
    assert.equal("mycelium", c.node)
    assert.is_nil(c.workers)
    assert.equal(1, c.log_level) -- info
    assert.equal(0, c.log_format) -- text
    assert.is_true(c.validate)
    assert.same({}, c.mailbox)
    assert.same({}, c.supervisors)
    assert.same({}, c.warnings)
    assert.equal(1, #c.services)
    assert.equal(svc, c.services[1].module)
    assert.equal("svc", c.services[1].name) -- from the file name
  end)

  it("maps names to the engine's numbers", function()
    local c = norm {
      node = "n1", workers = 3, validate = false, reload = "watch",
      log = { level = "error", format = "json" },
      mailbox = { capacity = 8, policy = "reject", threshold = 1 },
      supervisors = { g = { strategy = "rest_for_one", max_restarts = 0 } },
      services = { { module = "svc.lua", name = "a", worker = 2, group = "g",
                     restart = "temporary", mailbox = { policy = "drop_newest" } } },
    }
    assert.equal("n1", c.node)
    assert.equal(3, c.workers)
    assert.is_false(c.validate)
    assert.equal(1, c.reload)
    assert.equal(3, c.log_level)
    assert.equal(1, c.log_format)
    assert.same({ capacity = 8, policy = 2, threshold = 1 }, c.mailbox)
    assert.same({ { name = "g", strategy = 2, max_restarts = 0 } }, c.supervisors)
    local s = c.services[1]
    assert.equal(2, s.restart)
    assert.equal(1, s.mailbox.policy)
    assert.equal(2, s.worker)
  end)

  it("packs opts, and refuses what cannot be packed", function()
    local c = norm { services = { { module = "svc.lua", opts = { a = 1, b = { "x" } } } } }
    assert.equal("string", type(c.services[1].opts))
    assert.same({ a = 1, b = { "x" } }, testing.core.unpack(c.services[1].opts))
    refused({ services = { { module = "svc.lua", opts = { f = print } } } },
            "mycelium.lua: 'services[1].opts': ")
  end)

  it("names the file and the key of a value of the wrong type or range", function()
    refused({ workers = 0 }, "mycelium.lua: 'workers' must be an integer from 1 to 128, "
            .. "got number 0")
    refused({ workers = 1.5 }, "'workers' must be an integer from 1 to 128, got number 1.5")
    refused({ node = "" }, "'node' must be a non-empty string, got string \"\"")
    refused({ validate = "yes" }, "'validate' must be true or false, got string \"yes\"")
    refused({ mailbox = { threshold = 0 } },
            "'mailbox.threshold' must be a number in (0, 1], got number 0")
    refused({ mailbox = { policy = "drop" } },
            "'mailbox.policy' must be one of drop_newest, drop_oldest, reject, "
            .. "got string \"drop\"")
    refused({ log = { level = "verbose" } }, "'log.level' must be one of debug, error, info, warn")
    refused({ supervisor = { jitter = 0 / 0 } }, "'supervisor.jitter' must be a number from 0 to 1")
    refused({ services = { { module = "svc.lua", memory_limit_mb = 0.5 } } },
            "'services[1].memory_limit_mb' must be 0 or a number from 1 to 1048576")
    refused({ services = { { module = "svc.lua", handler_timeout_ms = math.huge } } },
            "'services[1].handler_timeout_ms' must be a number from 0 to 1e+12, got number inf")
  end)

  it("takes NATS servers in connect and checks the nats table", function()
    local c = norm { connect = { "nats://127.0.0.1:4222", "tls://10.0.0.1:4443",
                                 "tcp://127.0.0.1:7400" },
                     nats = { prefix = "", publish = { "swaps.*", "*", "a.b" },
                              schema_mismatch = "fail", pending_msgs = 10,
                              tls = { ca = "ca.pem" } } }
    assert.same({ "nats://127.0.0.1:4222", "tls://10.0.0.1:4443", "tcp://127.0.0.1:7400" },
                c.connect)
    assert.equal(1, c.nats.schema_mismatch)
    assert.equal("", c.nats.prefix)
    refused({ listen = { "nats://127.0.0.1:4222" } }, "'listen[1]' must be")
    refused({ connect = { "nats://nowhere" } }, "(or a NATS server, \"nats://host:port\")")
    refused({ nats = { prefix = "a..b" } }, "'nats.prefix' must be empty or tokens")
    refused({ nats = { prefix = "a.>" } }, "'nats.prefix' must be empty or tokens")
    refused({ nats = { publish = { "swaps.*.x" } } }, "'nats.publish[1]' must be a topic or pattern")
    refused({ nats = { schema_mismatch = "ignore" } }, "'nats.schema_mismatch' must be one of drop, fail")
    refused({ nats = { pending_msgs = 0 } }, "'nats.pending_msgs' must be an integer")
    refused({ nats = { tls = { verfy = true } } }, "did you mean 'nats.tls.verify'?")
    assert.equal(1, norm({ workers = 2, nats = { worker = 1 } }).nats.worker)
    refused({ workers = 2, nats = { worker = 2 } },
            "'nats.worker' is 2 but there are only 2 workers (numbered from 0)")
    refused({ nats = { worker = -1 } }, "'nats.worker' must be an integer")
    assert.equal(0, norm({ workers = 2, link = { worker = 0 } }).link.worker)
    refused({ workers = 1, link = { worker = 1 } },
            "'link.worker' is 1 but there are only 1 workers (numbered from 0)")
  end)

  it("suggests the nearest key for an unknown one", function()
    refused({ wokers = 2 }, "mycelium.lua: unknown key 'wokers' (did you mean 'workers'?)")
    refused({ mailbox = { capacty = 2 } },
            "unknown key 'mailbox.capacty' (did you mean 'mailbox.capacity'?)")
    refused({ services = { { module = "svc.lua", handler_timeout = 5 } } },
            "unknown key 'services[1].handler_timeout' (did you mean "
            .. "'services[1].handler_timeout_ms'?)")
    local err = refused({ zzzzzzzz = 1 }, "unknown key 'zzzzzzzz'")
    assert.is_nil(err:find("did you mean", 1, true))
  end)

  it("reads tracing, with each export's usual endpoint and every trace kept by default", function()
    local c = norm { tracing = { export = "zipkin" } }
    assert.same({}, c.warnings)
    assert.same({ export = "zipkin", endpoint = "http://127.0.0.1:9411/api/v2/spans",
                  sample = 1 }, c.tracing)
    c = norm { tracing = { export = "otlp", sample = 0.25, queue = 64,
                           endpoint = "http://[::1]:4318/v1/traces" } }
    assert.same({ export = "otlp", endpoint = "http://[::1]:4318/v1/traces",
                  sample = 0.25, queue = 64 }, c.tracing)
    assert.is_nil(norm({}).tracing)
  end)

  it("refuses a tracing table it cannot act on, naming the key", function()
    refused({ tracing = {} }, "'tracing.export' is missing: \"zipkin\" or \"otlp\"")
    refused({ tracing = { export = "jaeger" } },
            "'tracing.export' must be one of otlp, zipkin")
    refused({ tracing = { export = "otlp", sample = 1.5 } },
            "'tracing.sample' must be a number from 0 to 1")
    for _, url in ipairs { "https://x:4318/v1/traces", "127.0.0.1:4318", "http://:80/",
                           "http://h:0/", "http://h:99999/x", 'http://h:1/a"b',
                           "http://h:1/a b", "http://h:1/a\r\nX: y", "http://h:1/a\\b" } do
      refused({ tracing = { export = "otlp", endpoint = url } },
              "'tracing.endpoint' must be an http://host:port/path URL")
    end
    refused({ tracing = { export = "otlp", smaple = 1 } },
            "unknown key 'tracing.smaple' (did you mean 'tracing.sample'?)")
  end)

  it("reads jit.mcode_protect, a boolean, and passes it on", function()
    assert.same({ mcode_protect = false }, norm({ jit = { mcode_protect = false } }).jit)
    assert.is_nil(norm({}).jit)
    refused({ jit = { mcode_protect = "no" } }, "'jit.mcode_protect' must be")
    refused({ jit = { mcode_protec = false } },
            "unknown key 'jit.mcode_protec' (did you mean 'jit.mcode_protect'?)")
  end)

  it("refuses services it cannot run, naming the one", function()
    refused({ services = {} }, "'services' is empty: nothing to run")
    refused({ services = { 42 } },
            "'services[1]' must be a table with a module (or the module's path), got number")
    refused({ services = { { name = "a" } } },
            "'services[1].module' is missing (the service's Lua file)")
    refused({ services = { { module = "none.lua" } } },
            "'services[1].module': cannot read '" .. dir.path .. "/none.lua'")
    refused({ services = { { module = "svc.lua" }, { module = svc } } },
            "'services[2].name': service name 'svc' is used twice")
    refused({ services = { { module = "svc.lua", group = "g" } } },
            "'services[1].group': no supervisor group 'g' (declare it under 'supervisors')")
    refused({ workers = 2, services = { { module = "svc.lua", worker = 2 } } },
            "'services[1].worker' is 2 but there are only 2 workers (numbered from 0)")
    dir:write("bad name.lua", "return {}")
    refused({ services = { { module = "bad name.lua" } } },
            "it comes from the module's file name: give the service a 'name'")
    refused({ supervisors = { ["a b"] = {} } }, "'supervisors': group name \"a b\" is invalid")
  end)

  it("takes a relative control socket from the config's directory", function()
    assert.equal("unix://" .. dir.path .. "/ctl.sock",
                 norm({ control = "unix://ctl.sock" }).control)
    assert.equal("unix:///run/x.sock", norm({ control = "unix:///run/x.sock" }).control)
    refused({ control = "tcp://127.0.0.1:1" },
            "'control' must be \"unix:///path\", got \"tcp://127.0.0.1:1\"")
  end)

  it("takes link.psk_file from the config's directory and checks its kind", function()
    assert.equal(dir.path .. "/link.key", norm({ link = { psk_file = "link.key" } }).link.psk_file)
    assert.equal("/etc/k", norm({ link = { psk_file = "/etc/k" } }).link.psk_file)
    refused({ link = { psk_file = 32 } }, "'link.psk_file' must be")
  end)

  it("takes link.tls's files from the config's directory and checks its keys", function()
    local t = norm({ link = { tls = { cert = "n.crt", key = "/k/n.key", ca = "ca.crt",
                                      verify_client = true } } }).link.tls
    assert.same({ cert = dir.path .. "/n.crt", key = "/k/n.key", ca = dir.path .. "/ca.crt",
                  verify_client = true }, t)
    refused({ link = { tls = { verify_client = "yes" } } }, "'link.tls.verify_client' must be")
    refused({ link = { tls = { certificate = "x" } } }, "link.tls.certificate")
    refused({ connect = { "tls+tcp://127.0.0.1" } }, "\"tls+tcp://host:port\"")
    assert.same({ "tls+tcp://127.0.0.1:7400" },
                norm({ listen = { "tls+tcp://127.0.0.1:7400" } }).listen)
  end)

  it("resolves the contracts file like the modules", function()
    assert.equal(dir.path .. "/c.yaml", norm({ contracts = "c.yaml" }).contracts)
    assert.equal("/abs/c.yaml", norm({ contracts = "/abs/c.yaml" }).contracts)
  end)

  describe("load", function()
    it("reads one config file, or service files", function()
      local cfg = dir:write("mycelium.lua", 'return { node = "x", services = { { module = "svc.lua" } } }')
      local c = config.load { cfg }
      assert.equal("x", c.node)
      assert.equal(svc, c.services[1].module)
      local other = dir:write("other.lua", "return {}")
      c = config.load { svc, other }
      assert.equal("mycelium", c.node)
      assert.same({ "svc", "other" }, { c.services[1].name, c.services[2].name })
      -- a single file without a services list is a service
      c = config.load { svc }
      assert.equal("svc", c.services[1].name)
    end)

    it("says why a file cannot be used", function()
      assert.has_error(function() config.load {} end, "no config or service file given")
      assert.has_error(function() config.load { dir.path .. "/none.lua" } end,
                       "cannot read '" .. dir.path .. "/none.lua': no such file or not readable")
      local bad = dir:write("mycelium.lua", "return {\n  services = \n")
      local ok, err = pcall(config.load, { bad })
      assert.is_false(ok)
      assert.matches(bad .. ":3:", err, 1, true)
      dir:write("mycelium.lua", "error('no config today')")
      ok, err = pcall(config.load, { bad })
      assert.is_false(ok)
      assert.matches(bad .. ": ", err, 1, true)
      assert.matches("no config today", err, 1, true)
    end)
  end)

  it("checks a section for mycelium.testing", function()
    assert.same({ capacity = 4, policy = 0 },
                config.section("spec", "mailbox.", { capacity = 4, policy = "drop_oldest" },
                               "mailbox"))
    assert.has_error(function() config.section("spec", "mailbox.", 5, "mailbox") end,
                     "spec: 'mailbox' must be a table, got number 5")
    assert.has_error(function()
      config.section("spec", "g.", { strategy = "all" }, "group")
    end, "spec: 'g.strategy' must be one of one_for_all, one_for_one, rest_for_one, "
         .. "got string \"all\"")
  end)
end)
