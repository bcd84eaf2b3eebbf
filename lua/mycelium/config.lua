-- mycelium.config -- reads and validates what `mycelium run/check` is
-- given (one config file, or service files) and returns the normalised
-- table engine/src/api/config.c turns into an engine.  Every error names the
-- file and the key; unknown keys suggest the nearest valid one.
local core = require "mycelium.core"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local format, concat, sort = string.format, table.concat, table.sort
local huge = math.huge

local M = {}

local POLICIES = { drop_oldest = 0, drop_newest = 1, reject = 2 }
local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }
local FORMATS = { text = 0, json = 1 }

-- Schema: kind, bounds, and 'later' for keys that are accepted but not
-- acted on yet (reported, never silently ignored).
local MAILBOX = {
  capacity = { kind = "integer", min = 1, max = 2 ^ 30 },
  policy = { kind = "enum", values = POLICIES },
  threshold = { kind = "number", min = 0, min_open = true, max = 1 },
  -- Payload bytes (docs/API.md): the engine defaults to 1 GiB and 64 MiB.
  max_bytes = { kind = "integer", min = 1, max = 1e12 },
  max_message_bytes = { kind = "integer", min = 1, max = 1e9 },
}
-- Every number has an upper bound: the engine turns times into int64
-- nanoseconds, and an infinite reset_s or a memory limit of 1e300 MB would
-- overflow the conversion.  The bounds are the engine's (MYC_MAX_MS and
-- MYC_MAX_S in engine/src/base/clock.h, about 31 years).
local MAX_MS, MAX_S = 1e12, 1e9

-- Supervision (docs/SUPERVISION.md): defaults for every service, and for
-- each group under 'supervisors' (which adds its strategy).
local SUPERVISOR = {
  backoff_initial_ms = { kind = "number", min = 0, max = MAX_MS },
  backoff_max_ms = { kind = "number", min = 0, max = MAX_MS },
  multiplier = { kind = "number", min = 1, max = 1000 },
  jitter = { kind = "number", min = 0, max = 1 },
  max_restarts = { kind = "integer", min = 0, max = 100000 },
  window_s = { kind = "number", min = 0, min_open = true, max = MAX_S },
  reset_s = { kind = "number", min = 0, max = MAX_S },
  reload_probation_s = { kind = "number", min = 0, max = MAX_S },
}
-- Links between engines (docs/LINKS.md).
local LINK = {
  max_frame = { kind = "integer", min = 1024, max = 2 ^ 32 - 1 },
  queue_frames = { kind = "integer", min = 1, max = 2 ^ 32 - 1 },
  queue_bytes = { kind = "integer", min = 1, max = 1e15 },
  max_subscriptions = { kind = "integer", min = 1, max = 2 ^ 32 - 1 },
  handshake_timeout_ms = { kind = "number", min = 0, min_open = true, max = MAX_MS },
  frame_timeout_ms = { kind = "number", min = 0, min_open = true, max = MAX_MS },
  reconnect_initial_ms = { kind = "number", min = 0, max = MAX_MS },
  reconnect_max_ms = { kind = "number", min = 0, max = MAX_MS },
  wire = { kind = "integer", min = 1, max = 2 },
  unknown_type = { kind = "enum", values = { skip = 0, fail = 1 } },
  allow_uids = { kind = "list" },
  worker = { kind = "integer", min = 0, max = 255 },
  psk_file = { kind = "string" },
  tls = { kind = "table", fields = {
    cert = { kind = "string" },
    key = { kind = "string" },
    ca = { kind = "string" },
    verify_client = { kind = "boolean" },
  } },
}
-- The NATS transport (docs/NATS.md).
local NATS = {
  prefix = { kind = "text" },
  publish = { kind = "list" },
  name = { kind = "string" },
  user = { kind = "string" },
  password = { kind = "text" },
  token = { kind = "string" },
  creds = { kind = "string" },
  nkey = { kind = "string" },
  tls = { kind = "table", fields = {
    ca = { kind = "string" },
    cert = { kind = "string" },
    key = { kind = "string" },
    verify = { kind = "boolean" },
  } },
  randomize = { kind = "boolean" },
  schema_mismatch = { kind = "enum", values = { drop = 0, fail = 1 } },
  queue_msgs = { kind = "integer", min = 1, max = 2 ^ 32 - 1 },
  queue_bytes = { kind = "integer", min = 1, max = 1e15 },
  pending_msgs = { kind = "integer", min = 1, max = 2 ^ 31 - 1 },
  pending_bytes = { kind = "integer", min = 1, max = 2 ^ 31 - 1 },
  reconnect_wait_ms = { kind = "number", min = 0, max = MAX_MS },
  max_reconnect = { kind = "integer", min = -1, max = 2 ^ 31 - 1 },
  reconnect_buffer_bytes = { kind = "integer", min = 0, max = 2 ^ 31 - 1 },
  connect_timeout_ms = { kind = "number", min = 0, min_open = true, max = MAX_MS },
  subscription_poll_ms = { kind = "number", min = 1, max = MAX_MS },
  worker = { kind = "integer", min = 0, max = 255 },
}
local STRATEGIES = { one_for_one = 0, one_for_all = 1, rest_for_one = 2 }
local GROUP = { strategy = { kind = "enum", values = STRATEGIES } }
for k, v in pairs(SUPERVISOR) do GROUP[k] = v end

local SERVICE = {
  name = { kind = "string" },
  module = { kind = "string" },
  opts = { kind = "table" },
  worker = { kind = "integer", min = 0, max = 255 },
  mailbox = { kind = "table", fields = MAILBOX },
  restart = { kind = "enum", values = { permanent = 0, transient = 1, temporary = 2 } },
  group = { kind = "string" },
  memory_limit_mb = { kind = "number", zero_ok = true, min = 1, max = 1048576 },
  handler_timeout_ms = { kind = "number", min = 0, max = MAX_MS },
  load_timeout_ms = { kind = "number", min = 0, min_open = true, max = MAX_MS },
  reload_probation_s = { kind = "number", min = 0, max = MAX_S },
  -- This service's log rate limit over the engine's ('log' at the top).
  log = { kind = "table", fields = {
    rate = { kind = "number", min = 0, max = 1e9 },
    burst = { kind = "number", min = 1, max = 1e9 },
  } },
}
local TOP = {
  node = { kind = "string" },
  workers = { kind = "integer", min = 1, max = 128 },
  max_services = { kind = "integer", min = 1, max = 2 ^ 32 - 1 },
  max_topics_per_service = { kind = "integer", min = 1, max = 2 ^ 32 - 1 },
  max_subscriptions_per_service = { kind = "integer", min = 1, max = 2 ^ 32 - 1 },
  contracts = { kind = "string" },
  validate = { kind = "boolean" },
  mailbox = { kind = "table", fields = MAILBOX },
  supervisor = { kind = "table", fields = SUPERVISOR },
  supervisors = { kind = "table" },
  listen = { kind = "list" },
  connect = { kind = "list" },
  link = { kind = "table", fields = LINK },
  nats = { kind = "table", fields = NATS },
  control = { kind = "string" },
  metrics = { kind = "table", fields = {
    listen = { kind = "address" },
  } },
  tracing = { kind = "table", fields = {
    export = { kind = "enum", values = { zipkin = "zipkin", otlp = "otlp" } },
    endpoint = { kind = "http_url" },
    sample = { kind = "number", min = 0, max = 1 },
    queue = { kind = "integer", min = 1, max = 2 ^ 24 },
  } },
  log = { kind = "table", fields = {
    level = { kind = "enum", values = LEVELS },
    format = { kind = "enum", values = FORMATS },
    rate = { kind = "number", min = 0, max = 1e9 },
    burst = { kind = "number", min = 1, max = 1e9 },
  } },
  reload = { kind = "enum", values = { signal = 0, watch = 1, off = 2 } },
  jit = { kind = "table", fields = {
    mcode_protect = { kind = "boolean" },
  } },
  services = { kind = "list" },
}

local nearest = require("mycelium.suggest").nearest

local function keys_of(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  sort(ks)
  return ks
end

local function describe(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v
end

-- A bound as messages show it: 1048576, not 1.04858e+06; 1e+12, and
-- 1073741824 rather than 1.07374e+09, which is not the bound.
local function bound(x)
  local g = format("%g", x)
  if x % 1 == 0 and ((x > -1e7 and x < 1e7) or tonumber(g) ~= x) then
    return format("%d", x)
  end
  return g
end

-- Checks value 'v' of key path 'path' against 'spec'; returns the value
-- to use.  Raises "file: 'path' must be ...".
local function check_value(file, path, v, spec)
  local k = spec.kind
  local function bad(expect)
    error(format("%s: '%s' must be %s, got %s %s", file, path, expect,
                 type(v), describe(v)), 0)
  end
  if k == "string" then
    if type(v) ~= "string" or v == "" then bad("a non-empty string") end
  elseif k == "text" then
    if type(v) ~= "string" then bad("a string") end
  elseif k == "boolean" then
    if type(v) ~= "boolean" then bad("true or false") end
  elseif k == "table" then
    if type(v) ~= "table" then bad("a table") end
  elseif k == "list" then
    if type(v) == "string" then return { v } end
    if not is_list(v) then bad("a list") end
  elseif k == "address" then
    -- What the listener binds: a numeric address, no name to resolve.
    local host, port
    if type(v) == "string" then host, port = v:match("^(.+):(%d+)$") end
    local v6 = host and host:match("^%[([%x:.]+)%]$")
    local v4 = host and host:match("^%d+%.%d+%.%d+%.%d+$")
    if not (host and (v4 or v6) and tonumber(port) <= 65535) then
      bad('"host:port" with a numeric address (127.0.0.1:9464, [::1]:9464; '
          .. "port 0 picks a free one)")
    end
  elseif k == "http_url" then
    -- What the exporter posts to (plain http: a collector or an agent).
    local host, port
    -- No space, control character, quote or backslash: the path goes
    -- into the request line and the URL into `status --json`.
    if type(v) == "string" and not v:find('[%c "\\]') then
      local hp = v:match("^http://([^/?#]+)[^?#]*$")
      host = hp and (hp:match("^%[[%x:.]+%]") or hp:match("^[^:]+"))
      port = hp and hp:sub(#(host or "") + 1)
    end
    if not host or not (port == "" or (port:match("^:%d+$")
        and tonumber(port:sub(2)) >= 1 and tonumber(port:sub(2)) <= 65535)) then
      bad('an http://host:port/path URL (http://127.0.0.1:9411/api/v2/spans '
          .. "for Zipkin, http://127.0.0.1:4318/v1/traces for OTLP)")
    end
  elseif k == "enum" then
    if spec.values[v] == nil then bad("one of " .. concat(keys_of(spec.values), ", ")) end
    return spec.values[v]
  elseif k == "integer" or k == "number" then
    local lo, hi = spec.min or -huge, spec.max or huge
    local ok = type(v) == "number" and v == v and (k == "number" or v % 1 == 0)
        and ((v > lo or (v == lo and not spec.min_open)) and v <= hi
             or (spec.zero_ok and v == 0))
    if not ok then
      local what = (spec.zero_ok and "0 or " or "")
          .. (k == "integer" and "an integer" or "a number")
      local range = spec.min_open and format(" in (%s, %s]", bound(lo), bound(hi))
          or (spec.max and format(" from %s to %s", bound(lo), bound(hi)))
          or (spec.min and format(" >= %s", bound(lo))) or ""
      bad(what .. range)
    end
  end
  return v
end

-- Validates table 't' against 'schema'; returns the normalised copy.
-- Keys marked 'later' are checked and reported in 'warnings'.
local function check_table(file, prefix, t, schema, warnings)
  local out = {}
  for _, key in ipairs(keys_of(t)) do
    local path = prefix .. tostring(key)
    local spec = type(key) == "string" and schema[key] or nil
    if spec == nil then
      local near = type(key) == "string" and nearest(key, schema)
      error(format("%s: unknown key '%s'%s", file, path,
                   near and format(" (did you mean '%s%s'?)", prefix, near) or ""), 0)
    end
    local v = check_value(file, path, t[key], spec)
    if spec.fields then
      v = check_table(file, path .. ".", v, spec.fields, warnings)
    end
    if spec.later then
      warnings[#warnings + 1] = format("%s: '%s' is not supported yet; ignored",
                                       file, path)
    else
      out[key] = v
    end
  end
  return out
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function basename_noext(path)
  return (path:match("([^/]*)$"):gsub("%.lua$", ""))
end

local function readable(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function resolve_path(dir, p)
  if p:sub(1, 1) == "/" then return p end
  if dir == "." then return p end
  return dir .. "/" .. p
end

-- A name as a message shows it (as myc__log_quote does): control characters
-- escaped, cut after 64 bytes.
local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function shown(s)
  local t = s:sub(1, 64):gsub("[%c\127]", function(c)
    return ESCAPES[c] or format("\\x%02x", c:byte())
  end)
  return t .. (#s > 64 and "..." or "")
end

-- The rule of myc__service_name_check (engine/src/runtime/service.c):
-- names travel in frames, log lines and control replies unquoted.
-- Group names follow the same rule: status replies and logs show them.
local function name_problem(name, what)
  what = what or "service"
  if #name < 1 or #name > 255 then
    return format("a %s name is 1 to 255 bytes", what)
  end
  if not name:match("^[%w_][%w_%-%.:]*$") then
    return format("a %s name is letters, digits and _ - . :, starting with "
                  .. "a letter, a digit or _", what)
  end
end
M.name_problem = name_problem

-- The keys of service 'i' (its table 's') as read from 'file', its files
-- untouched; returns the normalised copy and its key path.  Shared with
-- mycelium.testing, which takes the same tables.
function M.service(file, i, s, warnings)
  local where = format("services[%d]", i)
  -- A service given as its file alone, as on the command line.
  if type(s) == "string" then s = { module = s } end
  if type(s) ~= "table" then
    error(format("%s: '%s' must be a table with a module (or the module's "
                 .. "path), got %s", file, where, type(s)), 0)
  end
  local out = check_table(file, where .. ".", s, SERVICE, warnings or {})
  if out.module == nil then
    error(format("%s: '%s.module' is missing (the service's Lua file)", file,
                 where), 0)
  end
  -- As the engine takes them (myc_service_config): nil or 0 the engine's
  -- rate, a negative one no limit (a rate of 0 here means none).
  local log = out.log or {}
  out.log_rate = log.rate and (log.rate == 0 and -1 or log.rate)
  out.log_burst = log.burst
  return out, where
end

-- Raises unless 'name' may name a service; 'named': given as a key, not
-- taken from the module's file name.
function M.service_name(file, where, name, named)
  local why = name_problem(name)
  if why then
    error(format('%s: \'%s.name\': service name "%s" is invalid: %s%s', file,
                 where, shown(name), why,
                 named and "" or " (it comes from the module's file name: "
                 .. "give the service a 'name')"), 0)
  end
end

-- Raises unless 'name' may name a supervisor group.
function M.group_name(file, name)
  local why = name_problem(name, "group")
  if why then
    error(format('%s: \'supervisors\': group name "%s" is invalid: %s', file,
                 shown(name), why), 0)
  end
end

-- Checks table 't' at key path 'prefix' (ending in ".") against the keys
-- of a section, "mailbox", "supervisor" or "group" (a group of
-- 'supervisors'); returns the normalised copy.  For mycelium.testing.
function M.section(file, prefix, t, section)
  local schema = ({ mailbox = MAILBOX, supervisor = SUPERVISOR,
                    group = GROUP })[section]
  check_value(file, prefix:sub(1, -2), t, { kind = "table" })
  return check_table(file, prefix, t, schema, {})
end

local function check_service(file, dir, i, s, warnings, names)
  local out, where = M.service(file, i, s, warnings)
  out.module = resolve_path(dir, out.module)
  -- Before io.open, which would wait on a FIFO for a writer.
  local regular, why = core.regular(out.module)
  if not regular then
    error(format("%s: '%s.module': %s", file, where, why), 0)
  end
  if not readable(out.module) then
    error(format("%s: '%s.module': cannot read '%s'", file, where, out.module), 0)
  end
  M.service_name(file, where, out.name or basename_noext(out.module),
                 out.name ~= nil)
  out.name = out.name or basename_noext(out.module)
  if names[out.name] then
    error(format("%s: '%s.name': service name '%s' is used twice", file, where,
                 out.name), 0)
  end
  names[out.name] = true
  if out.opts ~= nil then
    local ok, packed = pcall(core.pack, out.opts)
    if not ok then
      error(format("%s: '%s.opts': %s", file, where, packed), 0)
    end
    out.opts = packed
  end
  return out
end

-- supervisors = { name = { strategy = ..., <supervisor keys> } }: a list
-- of groups, each with its name, in name order.
local function check_groups(file, t, warnings)
  local list = {}
  for _, name in ipairs(keys_of(t)) do
    if type(name) ~= "string" or name == "" then
      error(format("%s: 'supervisors' must map group names to tables, got "
                   .. "key %s", file, describe(name)), 0)
    end
    M.group_name(file, name)
    local path = "supervisors." .. name
    check_value(file, path, t[name], { kind = "table" })
    local g = check_table(file, path .. ".", t[name], GROUP, warnings)
    g.name = name
    list[#list + 1] = g
  end
  return list
end

-- control = "unix:///path": relative paths are taken from the config's
-- directory like every other path.
local function check_control(file, dir, url)
  local path = url:match("^unix://(.+)$")
  if path == nil then
    error(format("%s: 'control' must be \"unix:///path\", got %q", file, url), 0)
  end
  if path:sub(1, 1) ~= "/" and dir ~= "." then path = dir .. "/" .. path end
  return "unix://" .. path
end

-- listen/connect = { "unix:///abs.sock", "tcp://127.0.0.1:7400" }: a
-- relative Unix path is taken from the config's directory.
local function check_links(file, dir, key, list)
  local out = {}
  for i, url in ipairs(list or {}) do
    local where = format("%s[%d]", key, i)
    if type(url) ~= "string" then
      error(format("%s: '%s' must be a URL string, got %s", file, where,
                   type(url)), 0)
    end
    local path = url:match("^unix://(.+)$")
    if key == "connect" and (url:match("^nats://.+:%d+$") or url:match("^tls://.+:%d+$")) then
      -- a NATS server (docs/NATS.md); libnats reads the rest
    elseif path then
      if path:sub(1, 1) ~= "/" and dir ~= "." then path = dir .. "/" .. path end
      url = "unix://" .. path
    elseif not url:match("^tcp://.+:%d+$") and not url:match("^tcp://%[.+%]:%d+$")
       and not url:match("^tls%+tcp://.+:%d+$") then
      error(format("%s: '%s' must be \"unix:///path.sock\", "
                   .. "\"tcp://host:port\" or \"tls+tcp://host:port\"%s, got %q", file, where,
                   key == "connect" and " (or a NATS server, \"nats://host:port\")" or "",
                   url), 0)
    end
    for j = 1, i - 1 do
      if out[j] == url then
        error(format("%s: '%s': %q is listed twice", file, where, url), 0)
      end
    end
    out[i] = url
  end
  return out
end

-- The collector's usual address for each export format.
local TRACE_ENDPOINTS = {
  zipkin = "http://127.0.0.1:9411/api/v2/spans",
  otlp = "http://127.0.0.1:4318/v1/traces",
}

local function check_tracing(file, t)
  if t == nil then return nil end
  if t.export == nil then
    error(format("%s: 'tracing.export' is missing: \"zipkin\" or \"otlp\"",
                 file), 0)
  end
  return { export = t.export, endpoint = t.endpoint or TRACE_ENDPOINTS[t.export],
           sample = t.sample or 1, queue = t.queue }
end

-- link.psk_file is taken from the config file's directory; link.allow_uids:
-- at most 64 uids, integers from 0 to 2^32 - 2.
local function check_link(file, dir, link)
  if link.psk_file ~= nil then link.psk_file = resolve_path(dir, link.psk_file) end
  if link.tls ~= nil then
    for _, k in ipairs { "cert", "key", "ca" } do
      if link.tls[k] ~= nil then link.tls[k] = resolve_path(dir, link.tls[k]) end
    end
  end
  local uids = link.allow_uids
  if uids ~= nil then
    if #uids > 64 then
      error(format("%s: 'link.allow_uids' lists %d uids, at most 64", file, #uids), 0)
    end
    for i, uid in ipairs(uids) do
      if type(uid) ~= "number" or uid % 1 ~= 0 or uid < 0 or uid >= 2 ^ 32 - 1 then
        error(format("%s: 'link.allow_uids[%d]' must be a uid (an integer >= 0), "
                     .. "got %s", file, i, describe(uid)), 0)
      end
    end
  end
  return link
end

-- nats.publish: subscription patterns, as ctx:subscribe takes them;
-- the credential and certificate files are taken from the config file's
-- directory.
local function check_nats(file, dir, nats)
  if nats == nil then return nil end
  for _, k in ipairs { "creds", "nkey" } do
    if nats[k] ~= nil then nats[k] = resolve_path(dir, nats[k]) end
  end
  if nats.tls ~= nil then
    for _, k in ipairs { "ca", "cert", "key" } do
      if nats.tls[k] ~= nil then nats.tls[k] = resolve_path(dir, nats.tls[k]) end
    end
  end
  if nats.creds ~= nil and nats.nkey ~= nil then
    error(format("%s: 'nats.creds' and 'nats.nkey' are exclusive: a .creds file "
                 .. "carries its own NKey seed", file), 0)
  end
  for i, p in ipairs(nats.publish or {}) do
    if type(p) ~= "string" or not (p == "*" or p:match("^[%w_:/%-]+[%w_:/%.%-]*$")
                                    or p:match("^[%w_:/%-][%w_:/%.%-]*%.%*$")) then
      error(format("%s: 'nats.publish[%d]' must be a topic or pattern "
                   .. "(\"swaps.v2\", \"swaps.*\", \"*\"), got %s", file, i,
                   describe(p)), 0)
    end
  end
  if nats.prefix and not (nats.prefix == "" or nats.prefix:match("^[%w_:/%-]+[%w_:/%.%-]*$")
                           and not nats.prefix:match("%.%.") and not nats.prefix:match("%.$")) then
    error(format("%s: 'nats.prefix' must be empty or tokens of letters, digits, "
                 .. "'_', '-', ':', '/' separated by dots (no wildcards), got %q",
                 file, nats.prefix), 0)
  end
  return nats
end

-- Normalises a config table read from 'file'; relative module paths are
-- taken from 'dir' (the config file's directory by default).  'extra'
-- (mycelium.testing's) adds keys to the top level ('keys', a schema) and
-- may allow an empty 'services' ('empty_ok').
function M.normalise(file, t, dir, extra)
  local warnings = {}
  local top = TOP
  if extra and extra.keys then
    top = {}
    for k, v in pairs(TOP) do top[k] = v end
    for k, v in pairs(extra.keys) do top[k] = v end
  end
  local out = check_table(file, "", t, top, warnings)
  local log = out.log or {}
  dir = dir or dirname(file)
  local res = {
    node = out.node or "mycelium",
    workers = out.workers, -- nil: one per core (the engine decides)
    max_services = out.max_services, -- nil: the engine's default
    max_topics_per_service = out.max_topics_per_service, -- nil: the default
    max_subscriptions_per_service = out.max_subscriptions_per_service,
    mailbox = out.mailbox or {},
    log_level = log.level or LEVELS.info,
    log_format = log.format or FORMATS.text,
    -- nil: the engine's default; 0 (no limit) is a negative rate for it
    log_rate = log.rate and (log.rate == 0 and -1 or log.rate),
    log_burst = log.burst,
    validate = out.validate ~= false,
    supervisor = out.supervisor or {},
    supervisors = check_groups(file, out.supervisors or {}, warnings),
    control = out.control and check_control(file, dir, out.control),
    reload = out.reload,
    listen = check_links(file, dir, "listen", out.listen),
    connect = check_links(file, dir, "connect", out.connect),
    link = check_link(file, dir, out.link or {}),
    nats = check_nats(file, dir, out.nats),
    metrics = out.metrics,
    tracing = check_tracing(file, out.tracing),
    jit = out.jit,
    warnings = warnings,
    services = {},
  }
  local names = {}
  if out.contracts ~= nil then
    res.contracts = resolve_path(dir, out.contracts)
  end
  for i, s in ipairs(out.services or {}) do
    res.services[i] = check_service(file, dir, i, s, warnings, names)
  end
  if #res.services == 0 and not (extra and extra.empty_ok) then
    error(format("%s: 'services' is empty: nothing to run", file), 0)
  end
  local groups = {}
  for _, g in ipairs(res.supervisors) do groups[g.name] = true end
  for i, s in ipairs(res.services) do
    if s.group ~= nil and not groups[s.group] then
      error(format("%s: 'services[%d].group': no supervisor group '%s' "
                   .. "(declare it under 'supervisors')", file, i, s.group), 0)
    end
    if s.worker ~= nil and res.workers ~= nil and s.worker >= res.workers then
      error(format("%s: 'services[%d].worker' is %d but there are only %d "
                   .. "workers (numbered from 0)", file, i, s.worker,
                   res.workers), 0)
    end
  end
  for key, w in pairs { ["nats.worker"] = res.nats and res.nats.worker,
                        ["link.worker"] = res.link.worker } do
    if w ~= nil and res.workers ~= nil and w >= res.workers then
      error(format("%s: '%s' is %d but there are only %d workers "
                   .. "(numbered from 0)", file, key, w, res.workers), 0)
    end
  end
  return res
end

local function read_config(file)
  if not readable(file) then
    error(format("cannot read '%s': no such file or not readable", file), 0)
  end
  local chunk, err = loadfile(file)
  if chunk == nil then
    error(err, 0)
  end
  return chunk
end

-- Loads what `mycelium run` was given.  One file whose table has a
-- 'services' list is a config; otherwise every file is a service.
function M.load(files)
  if #files == 0 then
    error("no config or service file given", 0)
  end
  if #files == 1 then
    local chunk = read_config(files[1])
    local ok, t = pcall(chunk)
    if ok and type(t) == "table" and t.services ~= nil then
      return M.normalise(files[1], t)
    end
    if not ok and files[1]:match("mycelium%.lua$") then
      error(format("%s: %s", files[1], tostring(t)), 0)
    end
  end
  local services = {}
  for i, f in ipairs(files) do
    if f:match("%.ya?ml$") then
      error(format("%s: a YAML file is not a service (a config names its "
                   .. "contracts file: contracts = \"%s\"; `mycelium check "
                   .. "%s` alone checks it)", f, f, f), 0)
    end
    read_config(f)
    services[i] = { module = f }
  end
  return M.normalise("command line", { services = services }, ".")
end

return M
