-- mycelium.testing -- run services in-process for tests (docs/TESTING.md).
--
--   local testing = require "mycelium.testing"
--   local eng = testing.engine { services = { { module = "svc.lua" } } }
--   local out = eng:collect("swaps.*")
--   eng:publish("swaps.raw", { pool = "0xabc" })
--   eng:run()                      -- deliver until every mailbox is empty
--   eng:advance(1.5)               -- virtual clock: timers fire in order
--   assert(#out:messages() == 1)
--   eng:close()
--
-- The engine is the real one (same C core, same service host), in manual
-- mode: no threads, and a virtual clock that moves only when the test
-- advances it.  Log lines are captured (eng:logs()).
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.need("engine")
local msgmod = require "mycelium.msg"

local type, error, format, ipairs, pairs = type, error, string.format, ipairs, pairs
local tostring, setmetatable = tostring, setmetatable

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/mycelium/testing%.lua$") or "lua"
M.lua_path = here

local lib = cdefs.library() -- loaded globally: service states resolve ffi.C
M.library = cdefs.path or "(the running engine)"
local core = package.loadlib(cdefs.path or "", "luaopen_mycelium_core")
core = core and core() or require "mycelium.core"
M.core = core
package.loaded["mycelium.core"] = package.loaded["mycelium.core"] or core
-- The sections a config shares with a spec (mailbox, supervisor, groups,
-- services) are checked by the config's own rules, so a spec is refused
-- with the message `mycelium check` gives.
local config = require "mycelium.config"
local WHERE = "mycelium.testing"
local E = cdefs.E

-- What a test engine takes besides a config's keys.
local TESTING_ONLY = { empty_ok = true, keys = {
  collect = { kind = "list" },
  start = { kind = "boolean" },
} }

local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }
local RELOADS = { signal = 0, watch = 1, off = 2 }

-- Field readers of collected frames.  Typed payloads are copied into
-- plain tables (T:totable: numbers, decimal strings for big integers,
-- 0x-hex for byte arrays), so nothing collected refers to engine memory.
local function readers_for(set)
  local by_tag = set and set.by_tag or {}
  return msgmod.readers {
    unpack = require("mycelium.msgpack").decode,
    type_name = function(tag)
      local T = by_tag[tag]
      return T and T.name or "type:" .. tag
    end,
    typed = function(b, p, n)
      local T = by_tag[b.hdr.type]
      if T ~= nil and n == T.size then return T:totable(T:view(p)) end
      return ffi.string(p, n)
    end,
  }
end

local strerror, err_name = cdefs.strerror, cdefs.err_name

-- Copies the keys of 'm', a mailbox table checked by mycelium.config,
-- into the myc_mailbox_config 'dst'.
local function mailbox_config(m, dst)
  for k, v in pairs(m) do dst[k] = v end
end

-- Copies the supervisor keys of 't' (at key path 'prefix', a "group" of
-- 'supervisors' or the "supervisor") into the myc_supervisor_config 'dst'.
local function supervisor_config(prefix, t, dst, section)
  local out = config.section(WHERE, prefix, t, section)
  for k, v in pairs(out) do
    if k ~= "strategy" then dst[k] = v end
  end
  return out
end

local function enum(map, v, what)
  local n = map[v]
  if n == nil then error(format("mycelium.testing: unknown %s %s", what, tostring(v)), 4) end
  return n
end

local Engine = {}
Engine.__index = Engine

local Collector = {}
Collector.__index = Collector

-- Returns the messages collected since the last call (plain tables with
-- topic, type, data, raw, trace_id, span_id, parent_span_id, ts, seq,
-- source; typed data as a plain table, see readers_for), appending them
-- to self.all as well.
function Collector:messages()
  local out = {}
  local bufs = ffi.new("myc_buf *[256]")
  while true do
    local n = lib.myc_ffi_test_collected(self.handle, bufs, 256)
    for i = 0, n - 1 do
      local m = msgmod.materialize(self.engine.readers, bufs[i])
      lib.myc_ffi_test_buf_release(self.engine.handle, bufs[i])
      out[#out + 1] = m
      self.all[#self.all + 1] = m
    end
    if n < 256 then break end
  end
  return out
end

-- Gives the engine 'self' the contracts file 'path' (before any service).
local function set_contracts(self, path, validate)
  local contract = require "mycelium.contract"
  local set, err = contract.load(path)
  if set == nil then
    self:close()
    error("mycelium.testing: " .. err, 3)
  end
  local rc = lib.myc_engine_set_contracts(self.handle, set.cs,
                                          validate == false and 0 or 1)
  if rc ~= 0 then
    self:close()
    error("mycelium.testing: contracts: " .. strerror(rc), 3)
  end
  ffi.gc(set.cs, nil) -- the engine owns it now
  self.contracts = set
  self.readers = readers_for(set)
end

-- The groups of spec.supervisors, checked, in name order: { name,
-- strategy, sc = myc_supervisor_config } each.
local function check_groups(spec, cfg)
  local names, out = {}, {}
  for name in pairs(spec.supervisors or {}) do
    if type(name) ~= "string" then
      error(format("%s: 'supervisors' must map group names to tables", WHERE), 3)
    end
    names[#names + 1] = name
  end
  table.sort(names)
  for i, name in ipairs(names) do
    config.group_name(WHERE, name)
    local sc = ffi.new("myc_supervisor_config", cfg.supervisor)
    local g = supervisor_config("supervisors." .. name .. ".",
                                spec.supervisors[name], sc, "group")
    out[i] = { name = name, strategy = g.strategy or 0, sc = sc }
  end
  return out
end

-- The services of 'spec', checked, as myc_service_config ('keep' holds
-- what they point to).
local function check_services(spec, cfg, keep)
  local out = {}
  for i, s in ipairs(spec.services or {}) do
    if type(s) == "string" then s = { module = s } end
    local c, where = config.service(WHERE, i, s)
    local name = c.name or c.module:match("([^/]+)%.lua$") or ("service" .. i)
    config.service_name(WHERE, where, name, c.name ~= nil)
    local sc = ffi.new("myc_service_config")
    keep[#keep + 1] = c
    keep[#keep + 1] = name
    sc.name, sc.module = name, c.module
    sc.worker = c.worker or -1
    sc.restart = c.restart or 0
    sc.group = c.group
    sc.memory_limit_mb = c.memory_limit_mb or 0
    sc.handler_timeout_ms = c.handler_timeout_ms or 0
    sc.load_timeout_ms = c.load_timeout_ms or 0
    sc.log_rate, sc.log_burst = c.log_rate or 0, c.log_burst or 0
    sc.reload_probation_s = c.reload_probation_s == 0 and -1
        or c.reload_probation_s or 0
    if c.opts then
      c.packed = core.pack(c.opts)
      sc.opts, sc.opts_len = c.packed, #c.packed
    end
    if c.mailbox then
      local mb = ffi.new("myc_mailbox_config", cfg.mailbox)
      mailbox_config(c.mailbox, mb)
      keep[#keep + 1] = mb
      sc.mailbox = mb
    end
    out[i] = sc
  end
  return out
end

-- Creates and starts an engine.  spec: { services = { {name, module, opts,
-- worker, mailbox, restart, group, memory_limit_mb, handler_timeout_ms,
-- load_timeout_ms, reload_probation_s, log = {rate, burst}}... }, workers, mailbox = {capacity,
-- policy, threshold, max_bytes, max_message_bytes}, log = {level, format}, node, contracts = "path.yaml",
-- validate = false, supervisor = {...}, supervisors = { name = {
-- strategy, ... } }, control = "unix:///path" }.  A service may be given
-- as just its module path.  Raises with the engine's message on failure.
function M.engine(spec)
  if type(spec) ~= "table" then
    error(format("%s: testing.engine takes a table (the keys of a config), "
                 .. "got %s", WHERE, type(spec)), 2)
  end
  -- The whole table first, as `mycelium check` reads a config: a
  -- misspelled key ('servics', 'wrkers') is an error, not a default.
  config.normalise(WHERE, spec, ".", TESTING_ONLY)
  local cfg = ffi.new("myc_engine_config")
  lib.myc_engine_config_init(cfg)
  local keep = {} -- strings referenced by cfg must outlive the calls
  keep.node = spec.node or "test"
  cfg.node = keep.node
  cfg.workers = spec.workers or 1
  cfg.max_services = spec.max_services or 0
  cfg.max_topics_per_service = spec.max_topics_per_service or 0
  cfg.max_subscriptions_per_service = spec.max_subscriptions_per_service or 0
  cfg.manual = 1
  cfg.lua_path = here
  if spec.mailbox ~= nil then
    mailbox_config(config.section(WHERE, "mailbox.", spec.mailbox, "mailbox"),
                   cfg.mailbox)
  end
  supervisor_config("supervisor.", spec.supervisor or {}, cfg.supervisor,
                    "supervisor")
  if spec.control then
    keep.control = spec.control
    cfg.control = keep.control
  end
  if spec.reload then cfg.reload = enum(RELOADS, spec.reload, "reload mode") end
  if spec.log then
    cfg.log_level = LEVELS[spec.log.level or "debug"]
    cfg.log_format = spec.log.format == "json" and 1 or 0
    if spec.log.rate then cfg.log_rate = spec.log.rate == 0 and -1 or spec.log.rate end
    cfg.log_burst = spec.log.burst or 0
  else
    cfg.log_level = LEVELS.debug
    cfg.log_format = 1
  end
  local groups, services = check_groups(spec, cfg), check_services(spec, cfg, keep)
  -- Log lines are captured, in a sink that outlives the engine.
  local logs = lib.myc_ffi_test_logs_new(nil, nil)
  if logs == nil then error("mycelium.testing: out of memory", 2) end
  cfg.log_fn = lib.myc_ffi_test_log_sink
  cfg.log_ud = logs
  local pe = ffi.new("myc_engine *[1]")
  local rc = lib.myc_engine_new(pe, cfg)
  if rc ~= 0 then
    lib.myc_ffi_test_logs_free(logs)
    error("mycelium.testing: cannot create engine: " .. strerror(rc), 2)
  end
  -- Readers cache topic names by id, and ids are per engine: each
  -- engine gets its own.
  local self = setmetatable({ handle = pe[0], log_capture = logs, collectors = {},
                              closed = false, readers = readers_for(nil) },
                            Engine)
  self.gc = ffi.gc(ffi.new("char[1]"), function() self:close() end)
  if spec.contracts ~= nil then
    set_contracts(self, spec.contracts, spec.validate)
  end
  local err = ffi.new("char[2048]")
  for _, g in ipairs(groups) do
    rc = lib.myc_engine_add_group(self.handle, g.name, g.strategy, g.sc)
    if rc ~= 0 then
      self:close()
      error(format("mycelium.testing: supervisors.%s: %s", g.name, strerror(rc)), 2)
    end
  end
  for _, sc in ipairs(services) do
    rc = lib.myc_engine_add_service(self.handle, sc, err, 2048)
    if rc ~= 0 then
      local msg = ffi.string(err)
      self:close()
      error(msg, 0)
    end
  end
  self.collect_before_start = {}
  if spec.collect then
    for _, p in ipairs(spec.collect) do
      self.collect_before_start[p] = self:collect(p)
    end
  end
  if spec.start ~= false then
    self:start()
  end
  return self
end

function Engine:start()
  local err = ffi.new("char[2048]")
  local rc = lib.myc_engine_start(self.handle, err, 2048)
  if rc ~= 0 then
    error(ffi.string(err), 0)
  end
  self.started = true
  return self
end

-- Subscribes a collector to 'pattern' (before start, or at any time for
-- topics emitted afterwards).  Returns it; collector:messages() drains it.
function Engine:collect(pattern)
  if self.collect_before_start and self.collect_before_start[pattern] then
    return self.collect_before_start[pattern]
  end
  local pc = ffi.new("myc_ffi_collector *[1]")
  local name = format("collector-%d", #self.collectors + 1)
  local rc = lib.myc_ffi_test_collector(self.handle, name, pattern, pc)
  if rc ~= 0 then
    error(format("mycelium.testing: collect '%s': %s", pattern, strerror(rc)), 2)
  end
  local c = setmetatable({ handle = pc[0], engine = self, all = {} }, Collector)
  self.collectors[#self.collectors + 1] = c
  return c
end

local function type_of(value)
  return value._myc_type
end

-- Publishes 'value' (string: raw, table: MessagePack, a message from
-- eng:new: typed, checked against the contracts by myc_publish) on
-- 'topic' as a new trace root.  Returns true, or nil, the reason ("full"
-- when every subscriber refused it) and the error name.
function Engine:publish(topic, value)
  local kind, data, tag, T = cdefs.KIND_RAW, value, 0, nil
  if type(value) == "table" then
    kind, data = cdefs.KIND_TABLE, core.pack(value)
  elseif type(value) == "cdata" then
    local ok
    ok, T = pcall(type_of, value)
    if not ok or type(T) ~= "table" or T.tag == nil then
      error("mycelium.testing: publish: this cdata is not a contract message", 2)
    end
    -- _myc_type is the first Type of this layout in the Lua state, maybe
    -- from an engine closed since: use this engine's.
    local mine = self.contracts and self.contracts.by_tag[T.tag]
    if mine ~= nil and mine.digest == T.digest then T = mine end
    kind, data, tag = cdefs.KIND_TYPED, T:bytes(value), T.tag
  elseif type(value) ~= "string" then
    error("mycelium.testing: publish a string, a table or a message from eng:new, got "
          .. type(value), 2)
  end
  local rc = lib.myc_publish(self.handle, topic, kind, tag, data, #data)
  if rc == 0 then return true end
  if rc == E.ECONTRACT and T ~= nil and T == (self.contracts and self.contracts.by_tag[tag]) then
    local _, why = T:validate(value)
    if why ~= nil then return nil, why, err_name(rc) end
  end
  return nil, strerror(rc), err_name(rc)
end

-- A message of contract type 'name' in Lua memory, filled from 'init':
-- what eng:publish sends as a typed message (as a C publisher would).
function Engine:new(name, init)
  local set = self.contracts
  if set == nil then
    error("mycelium.testing: new: no contracts (testing.engine { contracts = "
          .. "\"path.yaml\" })", 2)
  end
  local T = set:type(name)
  if T == nil then
    local near = require("mycelium.contract").nearest(tostring(name), set.by_name)
    error(format("mycelium.testing: new: unknown message type '%s'%s", tostring(name),
                 near and format(" (did you mean '%s'?)", near) or ""), 2)
  end
  return T:new(init)
end
Engine.inject = Engine.publish

-- Delivers queued messages until every mailbox is empty (or, with
-- 'batches', at most that many batches).  Returns how many were handled.
function Engine:run(batches)
  return tonumber(lib.myc_engine_run_once(self.handle, batches or 0))
end

ffi.cdef [[
int usleep(unsigned int usec);
struct myc_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct myc_timespec *ts);
]]
local timespec = ffi.new("struct myc_timespec")
local function monotonic()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end
M.monotonic = monotonic

-- Runs the engine against real time for up to 'seconds' (for services
-- doing real I/O: sockets, clients), polling every millisecond, until
-- 'done()' returns true.  Returns whether 'done' was met (true when no
-- 'done' was given and the time ran out).
function Engine:run_for(seconds, done)
  local deadline = monotonic() + seconds
  repeat
    lib.myc_engine_run_once(self.handle, 0)
    if done ~= nil and done() then return true end
    ffi.C.usleep(1000)
  until monotonic() > deadline
  return done == nil
end

-- Moves the virtual clock forward by 'seconds'.
function Engine:advance(seconds)
  if type(seconds) ~= "number" or not (seconds >= 0 and seconds <= 1e9) then
    error(format("mycelium.testing: advance: seconds must be a number from 0 "
                 .. "to 1e9, got %s", tostring(seconds)), 2)
  end
  local rc = lib.myc_engine_advance(self.handle, seconds * 1000)
  if rc ~= 0 then error("mycelium.testing: advance: " .. strerror(rc), 2) end
end

-- Captured log lines since the last call; JSON lines are decoded when
-- 'decode' is set (needs lua-cjson).
function Engine:logs(decode)
  local out, buf = {}, ffi.new("char[65536]")
  local cjson = decode and require "cjson"
  while true do
    local n = lib.myc_ffi_test_logs_next(self.log_capture, buf, 65536)
    if n < 0 then break end
    local line = ffi.string(buf, math.min(tonumber(n), 65535))
    out[#out + 1] = decode and cjson.decode(line) or line
  end
  return out
end

-- Counters of service 'name' (see myc_service_stats).
function Engine:stats(name)
  local st = ffi.new("myc_service_stats")
  for i = 0, lib.myc_engine_service_count(self.handle) - 1 do
    lib.myc_engine_service_stats(self.handle, i, st)
    if ffi.string(st.name) == name then
      local t = {}
      for _, k in ipairs { "in", "out", "unrouted", "errors", "dropped",
                           "dropped_oldest",
                           "dropped_newest", "rejected", "too_large",
                           "queue_bytes", "queue_max_bytes", "memory_bytes",
                           "restarts", "timeouts", "reloads", "reload_failures",
                           "rollbacks", "memory_limit", "memory_peak",
                           "running_ms", "last_pause_ms", "requests_dropped",
                           "replies_late", "logs_suppressed" } do
        t[k] = tonumber(st[k])
      end
      t.queue_depth, t.queue_capacity = st.queue_depth, st.queue_capacity
      t.worker, t.state = st.worker, ffi.string(st.state)
      t.restart, t.version = ffi.string(st.restart), st.version
      t.group = st.group ~= nil and ffi.string(st.group) or nil
      t.running = ffi.string(st.running)
      return t
    end
  end
  return nil
end

-- Hot-reloads service 'name' from 'module' (a path; nil: its current
-- file, read again), as `mycelium reload` does: returns true, or nil, the
-- engine's message and the error name when the reload was refused (the
-- old version then keeps running).
function Engine:reload(name, module)
  local err = ffi.new("char[2048]")
  local rc = lib.myc_engine_reload(self.handle, name, module, err, 2048)
  if rc == 0 then return true end
  return nil, ffi.string(err), err_name(rc)
end

-- Adds service 'name' running 'module' (a path) to the running engine,
-- as the host would (myc_engine_spawn): 'o' takes the keys of a
-- configured service (opts, worker, restart, memory_limit_mb,
-- handler_timeout_ms, load_timeout_ms).  Its init runs at the next
-- eng:run().  Returns the name, or nil, the engine's message and the
-- error name.
function Engine:spawn(name, module, o)
  o = o or {}
  local sc = ffi.new("myc_service_config")
  local keep = { name = name, module = module }
  sc.name, sc.module, sc.worker = keep.name, keep.module, o.worker or -1
  if o.opts ~= nil then
    keep.opts = core.pack(o.opts)
    sc.opts, sc.opts_len = keep.opts, #keep.opts
  end
  if o.restart ~= nil then
    sc.restart = enum({ permanent = 0, transient = 1, temporary = 2 },
                      o.restart, "restart type")
  end
  sc.memory_limit_mb = o.memory_limit_mb or 0
  sc.handler_timeout_ms = o.handler_timeout_ms or 0
  sc.load_timeout_ms = o.load_timeout_ms or 0
  local err = ffi.new("char[2048]")
  local rc = lib.myc_engine_spawn(self.handle, sc, err, 2048)
  if rc ~= 0 then return nil, ffi.string(err), err_name(rc) end
  return name
end

-- Removes service 'name' (myc_engine_kill): true, or nil, the engine's
-- message and the error name.  It ends at the next eng:run().
function Engine:kill(name)
  local err = ffi.new("char[2048]")
  local rc = lib.myc_engine_kill(self.handle, name, err, 2048)
  if rc ~= 0 then return nil, ffi.string(err), err_name(rc) end
  return true
end

-- Services added and removed at run time: { spawned, removed, dropped,
-- services, pending_free } (myc_lifecycle_stats).
function Engine:lifecycle()
  local st = ffi.new("myc_lifecycle_stats")
  lib.myc_engine_lifecycle_stats(self.handle, st)
  return { spawned = tonumber(st.spawned), removed = tonumber(st.removed),
           dropped = tonumber(st.dropped), services = st.services,
           pending_free = st.pending_free }
end

-- Fault injection: the next 'n' (default 1) batches of service 'name'
-- fail at their first message as if its handler had raised "injected
-- fault" (the message goes to $dead, the service restarts).
function Engine:fault(name, n)
  local rc = lib.myc_ffi_test_fault(self.handle, name, n or 1)
  if rc ~= 0 then
    error(format("mycelium.testing: fault: no Lua service named '%s'", name), 2)
  end
end

-- Losses of service 'name' by topic:
-- { [topic] = { dropped_oldest =, dropped_newest =, rejected =, shutdown =,
-- too_large = } }.
function Engine:drops(name)
  local st = ffi.new("myc_service_stats")
  local out = ffi.new("myc_drop_stats[65]")
  for i = 0, lib.myc_engine_service_count(self.handle) - 1 do
    lib.myc_engine_service_stats(self.handle, i, st)
    if ffi.string(st.name) == name then
      local n = lib.myc_engine_service_drops(self.handle, i, out, 65)
      local t = {}
      for j = 0, n - 1 do
        t[ffi.string(out[j].topic)] = {
          dropped_oldest = tonumber(out[j].dropped_oldest),
          dropped_newest = tonumber(out[j].dropped_newest),
          rejected = tonumber(out[j].rejected),
          shutdown = tonumber(out[j].shutdown),
          too_large = tonumber(out[j].too_large),
        }
      end
      return t
    end
  end
  return nil
end

-- The engine's metrics as the metrics listener serves them (the
-- Prometheus text format, docs/METRICS.md).
function Engine:metrics()
  local cap = 65536
  while true do
    local buf = ffi.new("char[?]", cap)
    local n = tonumber(lib.myc_engine_metrics(self.handle, buf, cap))
    assert(n >= 0, "metrics: " .. cdefs.strerror(n))
    if n < cap then return ffi.string(buf, n) end
    cap = n + 1
  end
end

-- Whether a stop was requested (ctx:shutdown), and its exit code.
function Engine:stopping()
  local code = ffi.new("int[1]")
  if lib.myc_engine_stopping(self.handle, code) ~= 0 then
    return true, code[0]
  end
  return false
end

-- Drains, calls every service's stop, and returns the exit code.
function Engine:shutdown()
  return lib.myc_engine_shutdown(self.handle)
end

function Engine:close()
  if self.closed then return end
  self.closed = true
  lib.myc_engine_free(self.handle)
  lib.myc_ffi_test_logs_free(self.log_capture)
  self.handle, self.log_capture = nil, nil
  self.contracts = nil -- its C set went with the engine
end

-- Writes 'source' to a temporary .lua file and returns its path (for
-- specs that define small services inline).
function M.module(source)
  local base = os.tmpname()
  local path = base .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  M._tmp = M._tmp or {}
  M._tmp[#M._tmp + 1] = path
  M._tmp[#M._tmp + 1] = base
  return path
end

function M.cleanup()
  for _, p in ipairs(M._tmp or {}) do os.remove(p) end
  M._tmp = {}
end

return M
