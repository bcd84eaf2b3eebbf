-- bench producer: emits opts.total 64-byte raw payloads on opts.topic in
-- chunks, driving itself with "bench.go" messages.  It pauses while its
-- consumers are over opts.pause_at full (default 0.5), except in "flood"
-- mode.  Reports the time spent inside the emit calls (so the cost per
-- emit is measured where it is paid) and how many emits were refused.
local M = { subscribe = { "bench.go" } }

local payload = string.rep("x", 64)
local total, chunk, sent, refused, emit_secs = 0, 4096, 0, 0, 0
local topic, mode, pub, pause_at

function M.init(ctx, opts)
  total, mode, topic = opts.total, opts.mode, opts.topic
  pause_at = (opts.pause_at or 0) > 0 and opts.pause_at or 0.5
  pub = ctx:publisher(topic)
  ctx:emit("bench.go", "")
end

function M.on_message(ctx)
  if mode ~= "flood" and ctx:pressure(topic) > pause_at then
    return ctx:emit("bench.go", "")
  end
  local n = math.min(chunk, total - sent)
  local t0 = ctx:now()
  if mode == "emit" then
    for _ = 1, n do ctx:emit(topic, payload) end
  else
    for _ = 1, n do
      if not pub(payload) then refused = refused + 1 end
    end
  end
  emit_secs = emit_secs + (ctx:now() - t0)
  sent = sent + n
  if sent < total then
    ctx:emit("bench.go", "")
  else
    ctx:emit("bench.result.producer",
             string.format("%d %.9f %d", sent, emit_secs, refused))
  end
end

return M
