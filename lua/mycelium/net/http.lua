-- mycelium.net.http -- HTTP(S) requests for services (docs/WEBSOCKET.md).
--
--   local http = require "mycelium.net.http"
--   http.request(ctx, { url = "https://node.example/", body = json },
--                function(res, err) ... end)  -- res: {status, body}
--
-- The request runs on the service's worker loop (engine/src/net/http.c); the
-- callback runs once, as a new activation.  Without a callback the call
-- must run in a coroutine, which waits for (res, err).
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.need("net")
local events = require "mycelium.events"

local C = cdefs.library()
local type, error, format, pairs, tostring = type, error, string.format, pairs, tostring
local ffi_string, ffi_cast = ffi.string, ffi.cast
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume

local M = {}

-- Requests in flight, by event source: keeps each handle (and so the C
-- request) alive until its event, whatever the caller keeps.
local inflight = {}

local KNOWN = { url = true, method = true, body = true, headers = true,
                ca_file = true, insecure = true, timeout_ms = true,
                max_body = true }

local function fail(ctx, fmt, ...)
  error(format("service '%s': http.request: " .. fmt, ctx.name, ...), 3)
end

local function header_lines(ctx, h)
  local out = {}
  for k, v in pairs(h) do
    if type(k) ~= "string" or type(v) ~= "string" or k:find("[\r\n:]")
        or v:find("[\r\n]") then
      fail(ctx, "header %s must be a string name and value without CR, LF",
           tostring(k))
    end
    out[#out + 1] = k .. ": " .. v .. "\r\n"
  end
  return table.concat(out)
end

-- Sends req = {url, method ("POST"), body (""), headers, ca_file,
-- insecure, timeout_ms (10000), max_body}.  cb(res, err) runs once: res
-- = {status, body} for any HTTP response (check res.status), or nil and
-- err = {message (naming the URL), code} when none came.  Raises on a bad
-- URL or option.
function M.request(ctx, req, cb)
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error(format("service '%s': http.request: needs { url = ... }",
                 type(ctx) == "table" and ctx.name or "?"), 2)
  end
  for k in pairs(req) do
    if not KNOWN[k] then fail(ctx, "unknown option '%s'", tostring(k)) end
  end
  local co
  if cb == nil then
    co = co_running()
    if co == nil then fail(ctx, "pass a callback, or call from a coroutine") end
  end
  local o = ffi.new("myc_http_options")
  C.myc_ffi_http_options_init(o)
  if req.timeout_ms then o.timeout_ms = req.timeout_ms end
  if req.max_body then o.max_body = req.max_body end
  if req.insecure then o.insecure = 1 end
  if req.ca_file then o.ca_file = req.ca_file end
  local body = req.body or ""
  local headers = req.headers and header_lines(ctx, req.headers) or nil
  local source
  source = events.register(function(_, addr)
    events.unregister(source)
    inflight[source] = nil -- over: the collector may release it
    local r = ffi_cast("const myc_http_response *", addr)
    local res, err
    if r.err == 0 then
      res = { status = r.status, body = ffi_string(r.body, r.body_len) }
    else
      err = { message = ffi_string(r.error),
              code = cdefs.err_name(r.err) }
    end
    if cb then
      cb(res, err)
    else
      local ok, e = co_resume(co, res, err)
      if not ok then error(e, 0) end
    end
  end)
  local errbuf = ffi.new("char[600]")
  local h = C.myc_ffi_http_request(events.service(), source, req.method or "POST",
                               req.url, headers, body, #body, o, errbuf, 600)
  if h == nil then
    events.unregister(source)
    fail(ctx, "%s", ffi_string(errbuf))
  end
  inflight[source] = ffi.gc(h, C.myc_ffi_http_release)
  if co then return co_yield() end
  return true
end

-- Requests of this service still waiting for their response.
function M.pending()
  local n = 0
  for _ in pairs(inflight) do n = n + 1 end
  return n
end

return M
