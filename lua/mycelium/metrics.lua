-- mycelium.metrics -- ctx.metrics: counters, gauges and histograms a
-- service declares, exposed with the engine's metrics (docs/METRICS.md).
--
-- The values live in C cells (engine/src/observe/custom.c) the metrics
-- listener reads without waiting for the worker; this module finds the
-- cell of a combination of label values once per instance and then
-- writes it directly.  Metrics survive reloads and restarts: a new
-- instance declaring the same metric gets the same cells.
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"

local C = cdefs.library()
local type, tostring, error, pairs, ipairs = type, tostring, error, pairs, ipairs
local setmetatable, next = setmetatable, next
local format, concat, byte, find = string.format, table.concat, string.byte, string.find
local huge = math.huge

local M = {}

-- Every metric this state declared (one service per state), for warm().
M.declared = {}

-- During a warm-up (docs/API.md) the service's metrics update scratch
-- cells: what its handlers count against scratch state is not served.
function M.warm(on)
  for _, m in ipairs(M.declared) do
    if on then
      m.real_cells = m.cells
      m.cells = setmetatable({}, { __index = function(t, k)
        local c = ffi.new("double[?]", m.nbuckets + 2)
        t[k] = c
        return c
      end })
    elseif m.real_cells then
      m.cells, m.real_cells = m.real_cells, nil
    end
  end
end

local KINDS = { counter = 1, gauge = 2, histogram = 3 }
local MAX_LABELS, MAX_BUCKETS, MAX_SERIES = 8, 32, 10000
-- Series of one metric (all services) unless opts.max_series says.
M.DEFAULT_SERIES = 100
M.DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
-- The value of every label of the overflow series.
local OVERFLOW = "__overflow__"

-- Longest label value, in bytes: the bound on series bounds memory only
-- if each series is bounded too.
local MAX_VALUE = 1024

-- Whether 's' is valid UTF-8 (the text format's encoding: Prometheus
-- refuses a whole scrape over one bad label), as Go's utf8.ValidString:
-- no overlong forms, no surrogates, nothing past U+10FFFF.
local function utf8_ok(s)
  if not find(s, "[\128-\255]") then return true end
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len = (c >= 0xC2 and c <= 0xDF and 2) or (c >= 0xE0 and c <= 0xEF and 3)
                  or (c >= 0xF0 and c <= 0xF4 and 4)
      if not len then return false end
      local c2 = byte(s, i + 1) or 0
      if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
          or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
        return false
      end
      for k = i + 1, i + len - 1 do
        local cc = byte(s, k)
        if not cc or cc < 0x80 or cc > 0xBF then return false end
      end
      i = i + len
    end
  end
  return true
end

local function finite(v)
  return type(v) == "number" and v == v and v > -huge and v < huge
end

-- Creates ctx.metrics for service 'name' ('svc': its myc_service*).
function M.new(svc, name)
  local function fail(level, fmt, ...)
    error(format("service '%s': metrics: " .. fmt, name, ...), level + 1)
  end
  local errbuf = ffi.new("char[512]")
  local overflow = ffi.new("int[1]")

  -- The key of the label values of 'labels' for metric 'm', NUL-ended.
  local function key_of(m, labels, what, level)
    local n = m.nlabels
    if n == 0 then
      if labels ~= nil and (type(labels) ~= "table" or next(labels) ~= nil) then
        fail(level + 1, "%s %s: '%s' has no labels", m.name, what, m.name)
      end
      return ""
    end
    if type(labels) ~= "table" then
      fail(level + 1, "%s %s: labels must be a table { %s = ... }, got %s",
           m.name, what, m.labels[1], type(labels))
    end
    local parts = {}
    for i = 1, n do
      local v = labels[m.labels[i]]
      local tv = type(v)
      if tv == "number" or tv == "boolean" then v = tostring(v)
      elseif tv ~= "string" then
        fail(level + 1, "%s %s: label '%s' must be a string, got %s", m.name,
             what, m.labels[i], tv)
      end
      if v == OVERFLOW or find(v, "\0", 1, true) or #v > MAX_VALUE then
        fail(level + 1, "%s %s: label '%s' may not be %q (nor hold NUL or "
             .. "more than %d bytes)", m.name, what, m.labels[i], v:sub(1, 64),
             MAX_VALUE)
      end
      parts[i] = v
    end
    for k in pairs(labels) do
      if not m.label_set[k] then
        fail(level + 1, "%s %s: unknown label '%s' (labels: %s)", m.name, what,
             tostring(k), concat(m.labels, ", "))
      end
    end
    return concat(parts, "\0") .. "\0"
  end

  local function cell(m, labels, what)
    local key = key_of(m, labels, what, 3)
    local c = m.cells[key]
    if c then return c end
    if not utf8_ok(key) then
      fail(3, "%s %s: label values must be UTF-8", m.name, what)
    end
    c = C.myc_ffi_metric_cell(svc, m.id, key, #key, overflow)
    if c == nil then fail(3, "%s %s: out of memory", m.name, what) end
    -- Overflow keys are not cached: they are what is unbounded.
    if overflow[0] == 0 then m.cells[key] = c end
    return c
  end

  local Metric = {}
  Metric.__index = Metric

  function Metric:inc(n, labels)
    if type(n) == "table" then n, labels = 1, n end
    n = n == nil and 1 or n
    if not finite(n) or (self.kind == "counter" and n < 0) then
      fail(2, "%s inc: %s must be a finite number%s, got %s", self.name,
           self.kind, self.kind == "counter" and " >= 0" or "", tostring(n))
    end
    if self.kind == "histogram" then
      fail(2, "%s inc: a histogram is updated with observe", self.name)
    end
    local c = cell(self, labels, "inc")
    c[0] = c[0] + n
  end

  function Metric:dec(n, labels)
    if type(n) == "table" then n, labels = 1, n end
    if self.kind ~= "gauge" then
      fail(2, "%s dec: only a gauge goes down", self.name)
    end
    n = n == nil and 1 or n
    if not finite(n) then
      fail(2, "%s dec: must be a finite number, got %s", self.name, tostring(n))
    end
    local c = cell(self, labels, "dec")
    c[0] = c[0] - n
  end

  function Metric:set(v, labels)
    if self.kind ~= "gauge" then
      fail(2, "%s set: only a gauge is set (a %s is not)", self.name, self.kind)
    end
    if type(v) ~= "number" then
      fail(2, "%s set: value must be a number, got %s", self.name, type(v))
    end
    local c = cell(self, labels, "set")
    c[0] = v
  end

  function Metric:observe(v, labels)
    if self.kind ~= "histogram" then
      fail(2, "%s observe: only a histogram observes (a %s is not)", self.name,
           self.kind)
    end
    if not finite(v) then
      fail(2, "%s observe: value must be a finite number, got %s", self.name,
           tostring(v))
    end
    local c = cell(self, labels, "observe")
    local b, nb = self.buckets, self.nbuckets
    local i = 1
    while i <= nb and v > b[i] do i = i + 1 end
    c[i - 1] = c[i - 1] + 1
    c[nb + 1] = c[nb + 1] + v
  end

  local function declare(kind, mname, help, labels, opts)
    local what = kind .. " '" .. tostring(mname) .. "'"
    if type(mname) ~= "string" or not mname:match("^[%a_:][%w_:]*$") then
      fail(3, "%s: a name is letters, digits, '_' and ':', not starting with a digit", what)
    end
    if mname:match("^mycelium_") or mname:match("^process_") then
      fail(3, "%s: names starting with 'mycelium_' or 'process_' are the engine's", what)
    end
    if kind == "counter" and not mname:match("_total$") then
      fail(3, "%s: a counter's name ends with '_total'", what)
    end
    if kind == "histogram" and (mname:match("_bucket$") or mname:match("_sum$")
                                or mname:match("_count$")) then
      fail(3, "%s: a histogram's name may not end with _bucket, _sum or _count", what)
    end
    if type(help) ~= "string" or help == "" or not utf8_ok(help) then
      fail(3, "%s: help must be a non-empty UTF-8 string, got %s", what, type(help))
    end
    labels = labels or {}
    if type(labels) ~= "table" or #labels > MAX_LABELS then
      fail(3, "%s: labels must be a list of at most %d names", what, MAX_LABELS)
    end
    local set = {}
    for i, l in ipairs(labels) do
      if type(l) ~= "string" or not l:match("^[%a_][%w_]*$") or l:match("^__") then
        fail(3, "%s: label %d (%s) must be letters, digits and '_', not "
             .. "starting with a digit or '__'", what, i, tostring(l))
      end
      if l == "service" or (kind == "histogram" and l == "le") then
        fail(3, "%s: label '%s' is the engine's", what, l)
      end
      if set[l] then fail(3, "%s: label '%s' twice", what, l) end
      set[l] = true
    end
    if opts ~= nil and type(opts) ~= "table" then
      fail(3, "%s: options must be a table, got %s", what, type(opts))
    end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "max_series" and not (k == "buckets" and kind == "histogram") then
        fail(3, "%s: unknown option '%s'", what, tostring(k))
      end
    end
    local max_series = opts.max_series or M.DEFAULT_SERIES
    if type(max_series) ~= "number" or max_series % 1 ~= 0 or max_series < 1
        or max_series > MAX_SERIES then
      fail(3, "%s: max_series must be an integer from 1 to %d, got %s", what,
           MAX_SERIES, tostring(max_series))
    end
    local buckets = kind == "histogram" and (opts.buckets or M.DEFAULT_BUCKETS) or {}
    if type(buckets) ~= "table" or #buckets > MAX_BUCKETS
        or (kind == "histogram" and #buckets == 0) then
      fail(3, "%s: buckets must be a list of 1 to %d bounds", what, MAX_BUCKETS)
    end
    for i, b in ipairs(buckets) do
      if not finite(b) or (i > 1 and b <= buckets[i - 1]) then
        fail(3, "%s: buckets must be finite and ascending (bucket %d is %s)",
             what, i, tostring(b))
      end
    end
    local joined = #labels > 0 and concat(labels, "\0") .. "\0" or ""
    local cb = ffi.new("double[?]", #buckets + 1, buckets)
    local id = C.myc_ffi_metric(svc, KINDS[kind], mname, help, joined, #joined,
                                #labels, cb, #buckets, max_series, errbuf, 512)
    if id < 0 then fail(3, "%s", ffi.string(errbuf)) end
    local m = setmetatable({ name = mname, kind = kind, id = id,
      labels = labels, label_set = set, nlabels = #labels,
      buckets = buckets, nbuckets = #buckets, cells = {} }, Metric)
    M.declared[#M.declared + 1] = m
    return m
  end

  local metrics = {}
  function metrics.counter(_, ...) return declare("counter", ...) end
  function metrics.gauge(_, ...) return declare("gauge", ...) end
  function metrics.histogram(_, ...) return declare("histogram", ...) end
  return metrics
end

return M
