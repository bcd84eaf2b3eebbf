-- mycelium.tools.trace -- `mycelium trace TRACE_ID [--from FILE | --zipkin URL]`:
-- one trace's spans as a tree (service, node, worker, topic, queue wait,
-- handler time, error), read from exported spans (Zipkin v2 JSON, OTLP
-- JSON, one document or one per line), from JSON log lines (shown under
-- their span), or fetched from a Zipkin-compatible server's
-- GET /api/v2/trace/ID.
local cjson = require "cjson"

local format, concat, sort = string.format, table.concat, table.sort
local tonumber, tostring, type, ipairs, pairs = tonumber, tostring, type, ipairs, pairs

local M = {}

local USAGE = "usage: mycelium trace TRACE_ID [--from FILE | --zipkin URL]\n"
  .. "       mycelium trace --longest --from FILE\n"
  .. "  --from FILE   exported spans (Zipkin v2 or OTLP JSON) or JSON logs; - is stdin\n"
  .. "  --zipkin URL  a Zipkin-compatible server (http://host:9411): GET /api/v2/trace/ID\n"
  .. "  --longest     the trace of FILE with the most spans\n"

local json = cjson.new()
local null = json.null

local function str(v) return v ~= nil and v ~= null and tostring(v) or nil end

-- Zipkin v2: times in microseconds, extra facts in tags.
local function from_zipkin(s, out)
  local tags = type(s.tags) == "table" and s.tags or {}
  local ep = type(s.localEndpoint) == "table" and s.localEndpoint or {}
  local dur = tonumber(s.duration)
  out[#out + 1] = {
    trace = str(s.traceId), id = str(s.id), parent = str(s.parentId),
    name = str(s.name) or "", service = str(ep.serviceName) or "?",
    node = str(tags["mycelium.node"]), worker = str(tags["mycelium.worker"]),
    start_us = tonumber(s.timestamp) or 0,
    handler_us = tonumber(tags["mycelium.handler_us"]) or dur,
    wait_us = tonumber(tags["mycelium.queue_wait_us"]),
    error = str(tags.error),
    raw = str(tags["mycelium.span_id"]) or str(s.id),
  }
end

local function attrs(list)
  local m = {}
  for _, a in ipairs(type(list) == "table" and list or {}) do
    local v = type(a.value) == "table" and a.value or {}
    m[a.key] = str(v.stringValue) or str(v.intValue) or str(v.boolValue)
      or str(v.doubleValue)
  end
  return m
end

-- OTLP JSON: times in nanoseconds (as strings), the service a resource
-- attribute.
local function from_otlp(req, out)
  for _, rs in ipairs(req.resourceSpans or {}) do
    local res = attrs(rs.resource and rs.resource.attributes)
    for _, ss in ipairs(rs.scopeSpans or rs.instrumentationLibrarySpans or {}) do
      for _, s in ipairs(ss.spans or {}) do
        local a = attrs(s.attributes)
        local t0, t1 = tonumber(s.startTimeUnixNano), tonumber(s.endTimeUnixNano)
        local status = type(s.status) == "table" and s.status or {}
        out[#out + 1] = {
          trace = str(s.traceId), id = str(s.spanId),
          parent = s.parentSpanId ~= "" and str(s.parentSpanId) or nil,
          name = str(s.name) or "", service = res["service.name"] or "?",
          node = res["service.instance.id"], worker = a["mycelium.worker"],
          start_us = t0 and t0 / 1e3 or 0,
          handler_us = t0 and t1 and (t1 - t0) / 1e3,
          wait_us = tonumber(a["mycelium.queue_wait_ns"])
            and tonumber(a["mycelium.queue_wait_ns"]) / 1e3,
          error = tonumber(status.code) == 2 and (str(status.message) or "error") or nil,
          raw = a["mycelium.span_id"] or str(s.spanId),
        }
      end
    end
  end
end

-- One decoded JSON value: a Zipkin span or list of them (or of traces), an
-- OTLP request, or a log line.
local function take(v, spans, logs)
  if type(v) ~= "table" then return end
  if v.resourceSpans then return from_otlp(v, spans) end
  if v.traceId and v.id then return from_zipkin(v, spans) end
  if v.trace_id and v.msg then logs[#logs + 1] = v return end
  for _, x in ipairs(v) do take(x, spans, logs) end
end

local function parse(text, spans, logs, where)
  local ok, v = pcall(json.decode, text)
  if ok then return take(v, spans, logs) end
  -- One document per line (a collector's file exporter, JSON logs).
  local n = 0
  for line in text:gmatch("[^\r\n]+") do
    n = n + 1
    if line:match("^%s*[%[{]") then
      local lok, lv = pcall(json.decode, line)
      if not lok then
        error(format("%s:%d: not JSON (%s)", where, n, tostring(lv)), 0)
      end
      take(lv, spans, logs)
    end
  end
end

local function us(x)
  if x == nil then return "?" end
  if x >= 1e6 then return format("%.3f s", x / 1e6) end
  if x >= 1e3 then return format("%.3f ms", x / 1e3) end
  return format("%d us", math.floor(x + 0.5))
end

local function line_of(s)
  local parts = { s.name ~= "" and s.name or "(unnamed)", " ", s.service }
  if s.node then parts[#parts + 1] = "@" .. s.node end
  if s.worker then parts[#parts + 1] = " worker " .. s.worker end
  if s.wait_us then parts[#parts + 1] = "  wait " .. us(s.wait_us) end
  parts[#parts + 1] = "  handler " .. us(s.handler_us)
  parts[#parts + 1] = "  span " .. (s.id or "?")
  if s.error then parts[#parts + 1] = "  ERROR: " .. s.error end
  return concat(parts)
end

local function print_tree(trace, spans, logs, write)
  local by_id, kids, roots, services = {}, {}, {}, {}
  for _, s in ipairs(spans) do by_id[s.id] = s end
  for _, s in ipairs(spans) do
    services[s.service] = true
    if s.parent and by_id[s.parent] and s.parent ~= s.id then
      kids[s.parent] = kids[s.parent] or {}
      table.insert(kids[s.parent], s)
    else
      roots[#roots + 1] = s
    end
  end
  -- A log line names the message's span id and its service; the span of
  -- that handling carries both (mycelium.span_id).
  local handling, logs_of, loose = {}, {}, {}
  for _, s in ipairs(spans) do handling[(s.raw or "") .. "/" .. s.service] = s end
  for _, l in ipairs(logs) do
    local s = handling[(str(l.span_id) or "") .. "/" .. (str(l.service) or "")]
    if s then
      logs_of[s] = logs_of[s] or {}
      table.insert(logs_of[s], l)
    else
      loose[#loose + 1] = l
    end
  end
  local function by_start(a, b)
    if a.start_us ~= b.start_us then return a.start_us < b.start_us end
    return (a.id or "") < (b.id or "")
  end
  local nservices, t0, t1 = 0, math.huge, -math.huge
  for _ in pairs(services) do nservices = nservices + 1 end
  for _, s in ipairs(spans) do
    t0 = math.min(t0, s.start_us)
    t1 = math.max(t1, s.start_us + (s.handler_us or 0))
  end
  write(format("trace %s: %d span%s, %d service%s%s\n", trace, #spans,
               #spans == 1 and "" or "s", nservices, nservices == 1 and "" or "s",
               #spans > 0 and ", " .. us(t1 - t0) or ""))
  local function log_lines(list, prefix)
    for _, l in ipairs(list or {}) do
      write(format("%s  . %s %s: %s\n", prefix, str(l.level) or "log",
                   str(l.service) or "?", str(l.msg) or ""))
    end
  end
  local function walk(s, prefix, last, top)
    local branch = top and "" or (last and "`- " or "|- ")
    write(prefix .. branch .. line_of(s))
    if s.parent and not by_id[s.parent] then
      write(format("  (parent %s not in the trace)", s.parent))
    end
    write("\n")
    local inner = top and "" or prefix .. (last and "   " or "|  ")
    log_lines(logs_of[s], inner)
    local list = kids[s.id] or {}
    sort(list, by_start)
    for i, k in ipairs(list) do walk(k, inner, i == #list, false) end
  end
  sort(roots, by_start)
  for _, r in ipairs(roots) do walk(r, "", true, true) end
  if #loose > 0 then
    write("logs of the trace without a span here:\n")
    log_lines(loose, "")
  end
end

local function read_file(path)
  if path == "-" then return io.read("*a") end
  local f, err = io.open(path, "rb")
  if not f then error(format("cannot read %s", err), 0) end
  local text = f:read("*a")
  f:close()
  return text
end

-- 'args': the command line after "trace"; 'host': what C offers
-- (http_get).  Returns the exit status.
function M.main(args, host, write, ewrite)
  write = write or function(s) io.stdout:write(s) end
  ewrite = ewrite or function(s) io.stderr:write(s) end
  local id, from, zipkin, longest
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--from" and args[i + 1] then from, i = args[i + 1], i + 1
    elseif a == "--zipkin" and args[i + 1] then zipkin, i = args[i + 1], i + 1
    elseif a == "--longest" then longest = true
    elseif a == "--help" or a == "-h" then write(USAGE) return 0
    elseif a:sub(1, 1) ~= "-" and not id then id = a
    else ewrite("mycelium trace: unexpected argument '" .. a .. "'\n" .. USAGE) return 2 end
    i = i + 1
  end
  if longest then
    if id or not from then
      ewrite("mycelium trace: --longest takes --from FILE and no trace id\n" .. USAGE)
      return 2
    end
  elseif not id or (from and zipkin) or not (from or zipkin) then
    ewrite("mycelium trace: give a trace id and one of --from or --zipkin\n" .. USAGE)
    return 2
  end
  id = id and id:lower()
  if id and not (id:match("^%x+$") and (#id == 32 or #id == 16)) then
    ewrite(format("mycelium trace: '%s' is no trace id (32 hex digits, as "
                  .. "ctx:trace_id() and the logs' trace_id give it)\n", args[1]))
    return 2
  end
  local spans, logs = {}, {}
  local ok, err = pcall(function()
    if from then
      parse(read_file(from), spans, logs, from)
    else
      local url = zipkin:gsub("/+$", "") .. "/api/v2/trace/" .. id
      local status, body = host.http_get(url)
      if not status then error(format("GET %s: %s", url, body), 0) end
      if status == 404 then return end
      if status ~= 200 then
        error(format("GET %s: HTTP %d: %s", url, status, body:sub(1, 200)), 0)
      end
      parse(body, spans, logs, url)
    end
  end)
  if not ok then
    ewrite("mycelium trace: " .. tostring(err) .. "\n")
    return 1
  end
  if longest then
    local count, best = {}, nil
    for _, s in ipairs(spans) do
      if s.trace then
        count[s.trace] = (count[s.trace] or 0) + 1
        if not best or count[s.trace] > count[best] then best = s.trace end
      end
    end
    if not best then
      ewrite("mycelium trace: no span in " .. from .. "\n")
      return 1
    end
    id = best:lower()
  end
  local mine, mylogs = {}, {}
  for _, s in ipairs(spans) do
    if s.trace and s.trace:lower() == id then mine[#mine + 1] = s end
  end
  for _, l in ipairs(logs) do
    if str(l.trace_id) and str(l.trace_id):lower() == id then mylogs[#mylogs + 1] = l end
  end
  if #mine == 0 and #mylogs == 0 then
    ewrite(format("mycelium trace: no span or log line of trace %s in %s\n", id,
                  from or zipkin))
    return 1
  end
  print_tree(id, mine, mylogs, write)
  return 0
end

return M
