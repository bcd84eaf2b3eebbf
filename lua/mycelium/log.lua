-- mycelium.log -- ctx.log: structured log records through the engine's
-- sink, which adds ts, level, node, service, trace_id and span_id.  Extra
-- fields are encoded here in the sink's format (JSON members or text
-- key=value pairs).
local ffi = require "ffi"

local cdefs = require "mycelium.cdefs"
cdefs.need("service")
local C = cdefs.library()
local type, tostring, pairs, concat, sort = type, tostring, pairs, table.concat, table.sort
local format, gsub, byte = string.format, string.gsub, string.byte

local M = {}

local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }
local RESERVED = { ts = true, level = true, node = true, service = true,
                   msg = true, trace_id = true, span_id = true }

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
              ["\t"] = "\\t" }
local function json_string(s)
  return '"' .. gsub(s, '[%c"\\]', function(c)
    return ESC[c] or format("\\u%04x", byte(c))
  end) .. '"'
end
M.json_string = json_string

local function json_value(v, depth)
  local tv = type(v)
  if tv == "string" then
    return json_string(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return json_string(tostring(v))
    end
    return format("%.17g", v)
  elseif tv == "boolean" then
    return tostring(v)
  elseif tv == "table" and depth < 8 then
    local parts, n = {}, #v
    if n > 0 then
      for i = 1, n do parts[i] = json_value(v[i], depth + 1) end
      return "[" .. concat(parts, ",") .. "]"
    end
    for k, x in pairs(v) do
      parts[#parts + 1] = json_string(tostring(k)) .. ":" .. json_value(x, depth + 1)
    end
    sort(parts)
    return "{" .. concat(parts, ",") .. "}"
  end
  return json_string(tostring(v))
end
M.json_value = json_value

-- Field names of the record itself cannot be overridden: a user field
-- with such a name is written with a leading underscore.
local function field_name(k)
  k = tostring(k)
  return RESERVED[k] and "_" .. k or k
end

local function encode_fields(fields, json)
  local parts = {}
  for k, v in pairs(fields) do
    if json then
      parts[#parts + 1] = json_string(field_name(k)) .. ":" .. json_value(v, 0)
    else
      local s = type(v) == "table" and json_value(v, 0) or tostring(v)
      parts[#parts + 1] = field_name(k) .. "=" .. s
    end
  end
  sort(parts) -- stable output, whatever the table order
  return concat(parts, json and "," or " ")
end

-- Returns the ctx.log object of service 'svc' named 'name'.
function M.new(svc, name)
  local min = C.myc_ffi_log_level(svc)
  local json = C.myc_ffi_log_format(svc) == 1
  local log = {}
  for level, n in pairs(LEVELS) do
    log[level] = function(_, msg, fields)
      if n < min then return end
      msg = type(msg) == "string" and msg or tostring(msg)
      local extra = ""
      if type(fields) == "table" then
        extra = encode_fields(fields, json)
      elseif fields ~= nil then
        error(format("service '%s': log:%s: fields must be a table, got %s",
                     name, level, type(fields)), 2)
      end
      C.myc_ffi_log(svc, n, msg, #msg, extra, #extra)
    end
  end
  return log
end

return M
