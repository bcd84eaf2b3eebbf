-- monitor: once a second, a table of each service's mailbox depth,
-- messages handled per second and losses; stops the engine after
-- opts.seconds.
local M = {}

local function row(name, s, rate)
  return string.format("%-9s %8d/%-8d %10.0f %10d %10d", name, s.queue_depth,
                       s.queue_capacity, rate, s["in"], s.dropped)
end

function M.init(ctx, opts)
  local last, t0 = {}, ctx:now()
  print(string.format("%-9s %17s %10s %10s %10s", "service", "depth/capacity",
                      "handled/s", "handled", "dropped"))
  ctx:every(1000, function(c)
    print(string.format("-- t = %.0f s (%s)", c:now() - t0,
                        c:now() - t0 > opts.seconds / 2 and "producer watches pressure"
                          or "producer floods"))
    for _, name in ipairs(opts.watch) do
      local s = c:service_stats(name)
      print(row(name, s, s["in"] - (last[name] or 0)))
      last[name] = s["in"]
    end
    if c:now() - t0 >= opts.seconds then c:shutdown(0) end
  end)
end

return M
