-- bench producer: emits opts.total 64-byte raw payloads on opts.topic in
-- chunks, driving itself with "bench.go" messages, pausing while the
-- consumers are over half full.  Reports the time spent inside the emit
-- calls (so that the cost per emit is measured where it is paid).
local M = { subscribe = { "bench.go" } }

local payload = string.rep("x", 64)
local total, chunk, sent, emit_secs = 0, 4096, 0, 0
local topic, mode, pub

function M.init(ctx, opts)
  total, chunk, mode, topic = opts.total, opts.chunk or 4096, opts.mode, opts.topic
  pub = ctx:publisher(topic)
  ctx:emit("bench.go", "")
end

function M.on_message(ctx)
  if ctx:pressure(topic) > 0.5 then
    return ctx:emit("bench.go", "")
  end
  local n = math.min(chunk, total - sent)
  local t0 = ctx:now()
  if mode == "publisher" then
    for _ = 1, n do pub(payload) end
  else
    for _ = 1, n do ctx:emit(topic, payload) end
  end
  emit_secs = emit_secs + (ctx:now() - t0)
  sent = sent + n
  if sent < total then
    ctx:emit("bench.go", "")
  else
    ctx:emit("bench.result.producer", string.format("%d %.9f", sent, emit_secs))
  end
end

return M
