-- bench trivial service: one subscription and a counter; acknowledges
-- each tick so the benchmark knows every service runs.
local n = 0

return {
  handlers = {
    ["bench.tick"] = function(ctx)
      n = n + 1
      ctx:emit("bench.ack", "ok")
    end,
  },
}
