-- bench seq_producer: emits 1, 2, 3, ... on "bench.data" in chunks of
-- 1024, as fast as its consumer's mailbox stays under half full, or one
-- chunk every opts.every_ms, until "bench.stop"; then sends the count on
-- "bench.end".
local M = { subscribe = { "bench.go", "bench.stop" } }

local sent, stopping, pub, every = 0, false, nil, 0

local function go(ctx) ctx:emit("bench.go", "") end

function M.init(ctx, opts)
  every = opts.every_ms or 0
  pub = ctx:publisher("bench.data")
  go(ctx)
end

function M.on_message(ctx, msg)
  if msg.topic == "bench.stop" then
    stopping = true
    ctx:emit("bench.end", tostring(sent))
    return
  end
  if stopping then return end
  if ctx:pressure("bench.data") > 0.5 then
    ctx:after(0.2, go)
    return
  end
  for _ = 1, 1024 do
    sent = sent + 1
    pub(tostring(sent))
  end
  if every > 0 then
    ctx:after(every, go)
  else
    go(ctx)
  end
end

return M
