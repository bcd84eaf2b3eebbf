-- fuzz/jsonrpc.lua -- the Lua half of the jsonrpc target (jsonrpc.c): the
-- real mycelium.net.jsonrpc over a stand-in WebSocket, fed one message
-- per input line.  Each input starts from a fresh client with three calls
-- in flight (ids 1-3) and two live subscriptions, one of them raw, and
-- ends with the connection lost, so that replies, notifications and the
-- settling of what is left are all reached.
local conn = {}
function conn:send() return true end
function conn:close() return true end
package.loaded["mycelium.net.ws"] = {
  connect = function(_, _, opts) conn.opts = opts return conn end,
}
package.loaded["mycelium.net.http"] = {}
local jsonrpc = require "mycelium.net.jsonrpc"

local timer = { cancel = function() end }
local ctx = {
  name = "fuzz",
  log = { warn = function() end },
  after = function() return timer end,
}

local function ignore() end

return function(input)
  local rpc = jsonrpc.connect(ctx, "ws://fuzz", { timeout_ms = 1000 })
  local on = conn.opts
  on.on_open()
  for _ = 1, 3 do rpc:call("eth_blockNumber", {}, ignore) end
  rpc:subscribe({ "newHeads" }, ignore)                -- id 4
  rpc:subscribe({ "logs", {} }, ignore, { raw = true }) -- id 5
  on.on_message(nil, '{"jsonrpc":"2.0","id":4,"result":"0x4"}')
  on.on_message(nil, '{"jsonrpc":"2.0","id":5,"result":"0x5"}')
  for line in input:gmatch("[^\n]+") do on.on_message(nil, line) end
  on.on_close(nil, { code = 1006, reason = "", error = "fuzz: lost",
                     reconnect_ms = 100 })
  return rpc.invalid
end
