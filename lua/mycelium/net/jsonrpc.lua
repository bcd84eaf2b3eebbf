-- mycelium.net.jsonrpc -- JSON-RPC 2.0 over a mycelium.net.ws connection, the way
-- Ethereum nodes speak it (docs/WEBSOCKET.md):
--
--   local jsonrpc = require "mycelium.net.jsonrpc"
--   local rpc = jsonrpc.connect(ctx, url, { timeout_ms = 5000 })
--   rpc:call("eth_blockNumber", {}, function(result, err) ... end)
--   local sub = rpc:subscribe({ "logs", filter }, function(log, sub) ... end)
--
-- Requests get increasing ids; a reply finds its request by id; a request
-- without reply fails after timeout_ms (engine clock, ctx:after).
-- Notifications ("params": {"subscription": id, "result": ...}) go to the
-- callback of their subscription.  After a reconnect every subscription
-- is made again and its new server id replaces the old one; calls that
-- were in flight when the connection dropped fail ("connection lost"),
-- calls made while disconnected wait for the next connection.
local ws = require "mycelium.net.ws"
local http = require "mycelium.net.http"
local cjson = require "cjson"

local type, error, format = type, error, string.format
local pairs, ipairs, tostring = pairs, ipairs, tostring
local setmetatable, pcall, next = setmetatable, pcall, next
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume
local find, sub = string.find, string.sub

local json = cjson.new()
json.encode_sparse_array(true)
local null = json.null

local M = { null = null }

--- The `why` of on_invalid for text that is not JSON at all.
M.MALFORMED = "malformed JSON"

local Rpc = {}
Rpc.__index = Rpc
local Sub = {}
Sub.__index = Sub

local OWN = { timeout_ms = true, on_open = true, on_close = true,
              on_notification = true, on_invalid = true }

local function fail(self, level, fmt, ...)
  error(format("service '%s': jsonrpc %s: " .. fmt, self.ctx.name, self.url, ...),
        level + 1)
end

-- "[]" for an empty table: cjson cannot tell an empty array from an
-- empty object, and JSON-RPC params are positional here.
local function encode_params(params)
  if params == nil or (type(params) == "table" and next(params) == nil) then
    return "[]"
  end
  return json.encode(params)
end

function Rpc:_send_now(text)
  return self.conn:send(text)
end

-- Ends request 'p' with (result, err): its callback, or the coroutine
-- that waits for it.
local function settle(p, result, err)
  if p.timer then p.timer.cancel() end
  if p.cb then
    p.cb(result, err)
  else
    local ok, e = co_resume(p.co, result, err)
    if not ok then error(e, 0) end
  end
end

-- Sends request 'method' with 'params'.  With a callback, returns the
-- request id and later calls cb(result, err) exactly once (err: a table
-- {code, message, data} from the server, or {message} for a timeout or a
-- lost connection).  Without one, it must run in a coroutine, which waits
-- and gets (result, err).
function Rpc:call(method, params, cb)
  if type(method) ~= "string" then
    fail(self, 2, "call: method must be a string, got %s", type(method))
  end
  if params ~= nil and type(params) ~= "table" then
    fail(self, 2, "call %s: params must be a table", method)
  end
  local co
  if cb == nil then
    co = co_running()
    if co == nil then
      fail(self, 2, "call %s: pass a callback, or call from a coroutine", method)
    end
  elseif type(cb) ~= "function" then
    fail(self, 2, "call %s: callback must be a function", method)
  end
  if self.closed then
    local err = { message = format("%s: connection closed", self.url) }
    if cb then return nil, err.message end
    return nil, err
  end
  self.next_id = self.next_id + 1
  local id = self.next_id
  local text = format('{"jsonrpc":"2.0","id":%d,"method":%s,"params":%s}',
                      id, json.encode(method), encode_params(params))
  local p = { id = id, method = method, cb = cb, co = co, text = text }
  self.pending[id] = p
  p.timer = self.ctx:after(self.timeout_ms, function()
    if self.pending[id] ~= p then return end
    self.pending[id] = nil
    p.timer = nil
    settle(p, nil, { message = format("%s: no reply to %s within %d ms",
                                      self.url, method, self.timeout_ms) })
  end)
  if self.open then
    p.sent = true
    local ok, why = self:_send_now(text)
    if not ok then
      self.pending[id] = nil
      p.timer.cancel()
      local msg = format("%s: cannot send %s: %s", self.url, method, why)
      if cb then return nil, msg end
      return nil, { message = msg }
    end
  end
  if cb then return id end
  return co_yield()
end

-- Sends a notification (no id, no reply).
function Rpc:notify(method, params)
  return self:_send_now(format('{"jsonrpc":"2.0","method":%s,"params":%s}',
                               json.encode(method), encode_params(params)))
end

function Sub:_request()
  local rpc = self.rpc
  rpc:call(self.method, self.params, function(id, err)
    if self.cancelled then return end
    if err then
      self.error = err
      if self.on_error then self.on_error(self, err) end
      return
    end
    self.id = tostring(id)
    rpc.by_id[self.id] = self
    if self.on_subscribed then self.on_subscribed(self, self.id) end
  end)
end

-- Stops the subscription (eth_unsubscribe when it is live).
function Sub:unsubscribe(cb)
  local rpc = self.rpc
  self.cancelled = true
  for i, s in ipairs(rpc.subs) do
    if s == self then table.remove(rpc.subs, i) break end
  end
  if self.id then
    rpc.by_id[self.id] = nil
    if rpc.open then
      rpc:call(self.unsubscribe_method, { self.id }, cb or function() end)
    end
  end
end

-- Subscribes with 'params' (e.g. {"logs", filter} or {"newHeads"});
-- on_notification(result, sub) gets each notification's result, or with
-- opts.raw the whole message text, undecoded (the caller parses it; used
-- by hot paths that scan the JSON themselves).  opts: method
-- ("eth_subscribe"), unsubscribe ("eth_unsubscribe"), on_subscribed(sub,
-- id), on_error(sub, err).  Returns the subscription; sub.id is the
-- server's current id (nil until confirmed, and again while reconnecting).
function Rpc:subscribe(params, on_notification, opts)
  if type(params) ~= "table" then
    fail(self, 2, "subscribe: params must be a table")
  end
  if type(on_notification) ~= "function" then
    fail(self, 2, "subscribe: on_notification must be a function")
  end
  opts = opts or {}
  local s = setmetatable({
    rpc = self, params = params, fn = on_notification, raw = opts.raw,
    method = opts.method or "eth_subscribe",
    unsubscribe_method = opts.unsubscribe or "eth_unsubscribe",
    on_subscribed = opts.on_subscribed, on_error = opts.on_error,
  }, Sub)
  self.subs[#self.subs + 1] = s
  if s.raw then self.raw_subs = self.raw_subs + 1 end
  if self.open then s:_request() end
  return s
end

-- The subscription id of a notification, found without decoding it: lets
-- raw subscribers skip the JSON decoder.  The id is the first
-- "subscription" member, as every node writes it before "result".
local function raw_subscription(text)
  local _, e = find(text, '"subscription":"', 1, true)
  if not e then return nil end
  local q = find(text, '"', e + 1, true)
  return q and sub(text, e + 1, q - 1)
end

function Rpc:_invalid(text, why)
  self.invalid = self.invalid + 1
  if self.on_invalid then
    self.on_invalid(self, text, why)
  else
    self.ctx.log:warn(format("jsonrpc %s: ignored a message: %s", self.url, why))
  end
end

function Rpc:_message(text)
  if self.raw_subs > 0 then
    local id = raw_subscription(text)
    local s = id and self.by_id[id]
    if s and s.raw then
      s.fn(text, s)
      return
    end
  end
  local ok, msg = pcall(json.decode, text)
  if not ok or type(msg) ~= "table" then
    return self:_invalid(text, ok and "not a JSON object" or M.MALFORMED)
  end
  local id = msg.id
  if id ~= nil and id ~= null and (msg.result ~= nil or msg.error ~= nil) then
    local p = self.pending[id]
    if p == nil then
      return self:_invalid(text, "reply to an unknown request id " .. tostring(id))
    end
    self.pending[id] = nil
    if msg.error ~= nil and msg.error ~= null then
      local e = msg.error
      if type(e) ~= "table" then e = { message = tostring(e) } end
      return settle(p, nil, e)
    end
    local r = msg.result
    return settle(p, r ~= null and r or nil, nil)
  end
  local params = msg.params
  if type(msg.method) == "string" and type(params) == "table" then
    local s = params.subscription ~= nil and self.by_id[tostring(params.subscription)]
    if s then
      if s.raw then return s.fn(text, s) end
      return s.fn(params.result, s)
    end
    if self.on_notification then
      return self.on_notification(self, msg.method, params)
    end
    return self:_invalid(text, "notification for no subscription of ours")
  end
  return self:_invalid(text, "neither a reply nor a notification")
end

--- Handles `text` as a message from the server (a reply, a
--- notification, or what goes to on_invalid), sending nothing; with
--- `sub`, that subscription also takes the notifications of id `id`
--- meanwhile. For warm-ups, whose synthetic notifications must take the
--- routing real ones take, and tests. Counts nothing: `rpc.invalid` is
--- left as it was.
function Rpc:receive(text, sub, id)
  if type(text) ~= "string" then
    fail(self, 2, "receive: text must be a string, got %s", type(text))
  end
  local alias = sub ~= nil and id ~= nil
  local invalid, had = self.invalid, alias and self.by_id[id]
  if alias then self.by_id[id] = sub end
  local ok, err = pcall(self._message, self, text)
  if alias then self.by_id[id] = had or nil end
  self.invalid = invalid
  if not ok then error(err, 0) end
end

function Rpc:_opened()
  self.open = true
  self.connects = self.connects + 1
  for _, s in ipairs(self.subs) do s:_request() end
  -- Calls made while disconnected, in order.
  local waiting = {}
  for _, p in pairs(self.pending) do
    if not p.sent then waiting[#waiting + 1] = p end
  end
  table.sort(waiting, function(a, b) return a.id < b.id end)
  for _, p in ipairs(waiting) do
    p.sent = true
    self:_send_now(p.text)
  end
  if self.on_open then self.on_open(self, self.connects > 1) end
end

function Rpc:_closed(info)
  self.open = false
  self.by_id = {}
  for _, s in ipairs(self.subs) do s.id = nil end
  local final = info.reconnect_ms == nil
  if final then self.closed = true end
  local why = info.error or format("closed with %d %s", info.code, info.reason)
  local lost = {}
  for id, p in pairs(self.pending) do
    if p.sent or final then lost[#lost + 1] = p self.pending[id] = nil end
  end
  table.sort(lost, function(a, b) return a.id < b.id end)
  for _, p in ipairs(lost) do
    settle(p, nil, { message = format("%s: connection lost before the reply "
                                      .. "to %s (%s)", self.url, p.method, why) })
  end
  if self.on_close then
    self.on_close(self, info)
  elseif info.error then
    self.ctx.log:warn("jsonrpc: " .. info.error, { attempt = info.attempt,
                                                   reconnect_ms = info.reconnect_ms })
  end
end

-- ---- over HTTP ---------------------------------------------------------

local Http = {}
Http.__index = Http

-- Calls 'method' with one POST (an eth_call to a node's HTTP endpoint);
-- cb(result, err) as for Rpc:call, or without cb from a coroutine.
function Http:call(method, params, cb)
  if type(method) ~= "string" then
    error(format("service '%s': jsonrpc %s: call: method must be a string",
                 self.ctx.name, self.url), 2)
  end
  local co = cb == nil and co_running() or nil
  if cb == nil and co == nil then
    error(format("service '%s': jsonrpc %s: call %s: pass a callback, or "
                 .. "call from a coroutine", self.ctx.name, self.url, method), 2)
  end
  self.next_id = self.next_id + 1
  local id = self.next_id
  local body = format('{"jsonrpc":"2.0","id":%d,"method":%s,"params":%s}',
                      id, json.encode(method), encode_params(params))
  local req = { url = self.url, body = body }
  for k, v in pairs(self.http) do req[k] = v end
  local url = self.url
  local function done(res, err)
    local result
    if err == nil then
      local ok, msg = pcall(json.decode, res.body)
      if res.status ~= 200 and not (ok and type(msg) == "table") then
        err = { message = format("%s: HTTP %d", url, res.status) }
      elseif not ok or type(msg) ~= "table" then
        err = { message = format("%s: the reply is not JSON", url) }
      elseif msg.error ~= nil and msg.error ~= null then
        err = type(msg.error) == "table" and msg.error
              or { message = tostring(msg.error) }
      elseif msg.id ~= id then
        err = { message = format("%s: reply to id %s, expected %d", url,
                                 tostring(msg.id), id) }
      elseif msg.result ~= null then
        result = msg.result
      end
    end
    local p = { cb = cb, co = co }
    settle(p, result, err)
  end
  http.request(self.ctx, req, done)
  if co then return co_yield() end
  return id
end

-- A JSON-RPC client over HTTP(S): one POST per call.  opts: timeout_ms,
-- ca_file, insecure, headers, max_body (mycelium.net.http options).
function M.http(ctx, url, opts)
  local h = {}
  for k, v in pairs(opts or {}) do h[k] = v end
  return setmetatable({ ctx = ctx, url = url, next_id = 0, http = h }, Http)
end

-- Opens a JSON-RPC connection.  opts: timeout_ms (per call, default
-- 10000), on_open(rpc, reconnected), on_close(rpc, info),
-- on_notification(rpc, method, params) for notifications of no
-- subscription, on_invalid(rpc, text, why) for messages that are neither
-- (default: a warning), and every mycelium.net.ws option.
function M.connect(ctx, url, opts)
  opts = opts or {}
  local self = setmetatable({
    ctx = ctx, url = url, next_id = 0, pending = {}, subs = {}, by_id = {},
    raw_subs = 0, invalid = 0, connects = 0, open = false,
    timeout_ms = opts.timeout_ms or 10000,
    on_open = opts.on_open, on_close = opts.on_close,
    on_notification = opts.on_notification, on_invalid = opts.on_invalid,
  }, Rpc)
  local wsopts = {}
  for k, v in pairs(opts) do
    if not OWN[k] then wsopts[k] = v end
  end
  wsopts.on_open = function() self:_opened() end
  wsopts.on_message = function(_, text) self:_message(text) end
  wsopts.on_close = function(_, info) self:_closed(info) end
  self.conn = ws.connect(ctx, url, wsopts)
  return self
end

-- Closes the connection for good; pending calls fail.
function Rpc:close()
  return self.conn:close()
end

function Rpc:pause() self.conn:pause() end
function Rpc:resume() self.conn:resume() end

return M
