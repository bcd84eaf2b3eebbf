-- spec/support/rpc_service.lua -- a service for the specs: a
-- mycelium.net.jsonrpc connection to opts.url that subscribes (opts.subscribe)
-- and reports on topics.
--   out: rpc.open {reconnected}, rpc.note {result or text, sub},
--        rpc.other {method}, rpc.invalid {why}, rpc.close {info},
--        rpc.reply {tag, result, err}, rpc.subscribed {id}
--   in:  rpc.cmd {op = "call"|"co_call"|"http_call"|"http_co_call"|
--        "unsubscribe"|"close"|"receive", tag, method, params, text,
--        alias}; rpc.count {invalid} after a receive; http calls go to
--        opts.http_url (jsonrpc.http with opts.http)
local jsonrpc = require "mycelium.net.jsonrpc"

local M = { subscribe = { "rpc.cmd" } }
local rpc, sub, http_rpc

function M.init(ctx, opts)
  local o = opts.rpc or {}
  o.on_open = function(_, reconnected)
    ctx:emit("rpc.open", { reconnected = reconnected })
  end
  o.on_close = function(_, info) ctx:emit("rpc.close", info) end
  o.on_notification = function(_, method) ctx:emit("rpc.other", { method = method }) end
  o.on_invalid = function(_, _, why) ctx:emit("rpc.invalid", { why = why }) end
  if opts.http_url then
    http_rpc = jsonrpc.http(ctx, opts.http_url, opts.http)
  end
  if not opts.url then return end
  rpc = jsonrpc.connect(ctx, opts.url, o)
  if opts.subscribe then
    sub = rpc:subscribe(opts.subscribe, function(result, s)
      ctx:emit("rpc.note", { result = result, sub = s.id })
    end, { raw = opts.raw, on_subscribed = function(_, id)
      ctx:emit("rpc.subscribed", { id = id })
    end })
  end
end

local function report(ctx, tag)
  return function(result, err)
    ctx:emit("rpc.reply", { tag = tag, result = result, err = err })
  end
end

function M.on_message(ctx, msg)
  local c = msg.data
  if c.op == "call" then
    local id, err = rpc:call(c.method, c.params, report(ctx, c.tag))
    if not id then ctx:emit("rpc.reply", { tag = c.tag, err = err, sync = true }) end
  elseif c.op == "co_call" then
    coroutine.wrap(function()
      report(ctx, c.tag)(rpc:call(c.method, c.params))
    end)()
  elseif c.op == "http_call" then
    http_rpc:call(c.method, c.params, report(ctx, c.tag))
  elseif c.op == "http_co_call" then
    coroutine.wrap(function()
      report(ctx, c.tag)(http_rpc:call(c.method, c.params))
    end)()
  elseif c.op == "unsubscribe" then
    sub:unsubscribe(report(ctx, c.tag))
  elseif c.op == "close" then
    rpc:close()
  elseif c.op == "receive" then
    rpc:receive(c.text, c.alias and sub, c.alias)
    ctx:emit("rpc.count", { invalid = rpc.invalid })
  end
end

return M
