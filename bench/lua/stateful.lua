-- bench stateful: a service whose state table has opts.entries entries
-- ("flat": address -> number; "pools": address -> {reserve0, reserve1,
-- block}), carried across reloads by snapshot and init.  It checks the
-- sequence numbers it receives and reports on "bench.end".
local M = { subscribe = { "bench.data", "bench.end" } }

local state

function M.init(_, opts, st)
  if st ~= nil then
    state = st
    return
  end
  state = { n = 0, expect = 1, dup = 0, gaps = 0, table = {} }
  local t, pools = state.table, opts.shape == "pools"
  for i = 1, opts.entries do
    local k = string.format("0x%040x", i)
    if pools then
      t[k] = { reserve0 = i * 1.5, reserve1 = i * 2.5, block = i }
    else
      t[k] = i * 1.5
    end
  end
end

function M.on_message(ctx, msg)
  if msg.topic == "bench.end" then
    ctx:emit("bench.result", string.format("%d %d %d %s", state.n, state.dup,
                                           state.gaps, msg.data))
    return
  end
  local v = tonumber(msg.data)
  state.n = state.n + 1
  if v < state.expect then
    state.dup = state.dup + 1
  else
    state.gaps = state.gaps + (v - state.expect)
    state.expect = v + 1
  end
end

function M.snapshot()
  return state
end

return M
