-- spec/support/ws_service.lua -- a service for the specs: opens one
-- mycelium.net.ws connection with opts.url and opts.ws, reports every event
-- on topics, and obeys commands.
--   out: ws.open {n}, ws.msg {data (up to 64 KiB), len, head, tail,
--        binary, batches (socket reads delivered so far), arrival_ns},
--        ws.pong {data}, ws.close {info}; opts.raise_on / opts.close_on:
--        raise / close the connection on the message with that text
--   in:  ws.cmd {op = "send"|"send_binary"|"ping"|"close"|"pause"|
--        "resume", data, size, code, reason}
local ws = require "mycelium.net.ws"

local M = { subscribe = { "ws.cmd" } }
local conn

local function summary(data, binary)
  return { len = #data, head = data:sub(1, 16), tail = data:sub(-16),
           binary = binary, data = #data <= 65536 and data or nil }
end

function M.init(ctx, opts)
  local o = opts.ws or {}
  local n = 0
  o.on_open = function(c)
    n = n + 1
    ctx:emit("ws.open", { n = n, state = c:state() })
  end
  o.on_message = function(c, data, binary)
    local m = summary(data, binary)
    m.batches, m.arrival_ns = c.batches, c.arrival_ns
    ctx:emit("ws.msg", m)
    if data == opts.raise_on then error("raised on " .. data) end
    if data == opts.close_on then c:close() end
  end
  o.on_pong = function(_, data) ctx:emit("ws.pong", { data = data }) end
  o.on_close = function(c, info)
    info.state = c:state()
    ctx:emit("ws.close", info)
  end
  conn = ws.connect(ctx, opts.url, o)
end

function M.on_message(ctx, msg)
  local c = msg.data
  local r = {}
  if c.op == "send" or c.op == "send_binary" then
    local data = c.data or string.rep("y", c.size)
    r.ok, r.err, r.code = conn[c.op](conn, data)
  elseif c.op == "ping" then
    r.ok, r.err, r.code = conn:ping(c.data)
  elseif c.op == "close" then
    r.ok, r.err, r.code = conn:close(c.code, c.reason)
  else
    conn[c.op](conn)
    r.ok = true
  end
  r.state = conn and conn:state()
  ctx:emit("ws.result", r)
end

return M
