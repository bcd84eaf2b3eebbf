-- sink: prints every greeting, then a summary, and stops the engine after
-- 'expect' messages.
local M = {}
local seen, first_ts = 0, nil

M.handlers = {
  ["hello.greetings"] = function(ctx, msg)
    seen = seen + 1
    first_ts = first_ts or msg.ts
    print(string.format("%-24s trace=%s span=%s seq=%d", msg.data,
                        msg.trace_id, msg.span_id, msg.seq))
    if seen == ctx.opts.expect then
      print(string.format("summary: %d greetings in %.3f s", seen,
                          msg.ts - first_ts))
      ctx:shutdown(0)
    end
  end,
}

return M
