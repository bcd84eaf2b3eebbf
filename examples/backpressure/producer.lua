-- producer: a fast source.  Every 10 ms it emits a burst on "events".
-- For the first half of the run it ignores its consumers (a flood); for
-- the second half it checks ctx:pressure("events") and holds back while
-- the fullest subscriber is over opts.pause_at: the pattern an ingress
-- service (a socket reader, a file tail) should follow.
local M = {}

function M.init(ctx, opts)
  local burst, pause_at = opts.burst or 20000, opts.pause_at or 0.5
  local started = ctx:now()
  local seq = 0
  local pub = ctx:publisher("events")
  ctx:every(10, function(c)
    local polite = c:now() - started > (opts.seconds or 6) / 2
    for _ = 1, burst do
      if polite and c:pressure("events") > pause_at then break end
      seq = seq + 1
      pub(string.format("event %d", seq))
    end
  end)
end

return M
