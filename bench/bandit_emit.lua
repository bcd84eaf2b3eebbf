-- bandit_emit.lua N -- the cost of one typed emit of a Bandit SwapEvent:
-- a service makes (ctx:new), fills (six fields, the bounded ones among
-- them) and emits N of them, validation on, in one mycelium.testing
-- engine. For instruction counts: the difference of two runs under
-- callgrind, N = 0 and N (docs/PERFORMANCE.md, "Bandit flood: bounds
-- checked in Lua"):
--   MYCELIUM_SOURCE_DIR=$PWD MYCELIUM_PATH=$PWD/lua \
--   MYCELIUM_LIB=build/libmycelium.so valgrind --tool=callgrind \
--     --smc-check=all-non-file luajit bench/bandit_emit.lua 20000
local root = os.getenv("MYCELIUM_SOURCE_DIR")
package.path = table.concat({ root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  package.path }, ";")
local testing = require "mycelium.testing"

local N = tonumber(arg[1] or 0)
local eng = testing.engine {
  contracts = root .. "/services/contracts.yaml", start = false,
  log = { level = "error" },
  services = { { name = "emitter", module = testing.module(string.format([[
    return { handlers = { go = function(ctx)
      for i = 1, %d do
        local m = ctx:new("SwapEvent")
        m.kind, m.tick, m.block, m.fee_ppm = 3, -200, i, 500
        m.decimals0, m.decimals1 = 18, 6
        ctx:emit("swaps", m)
      end
    end } }]], N)) } } }
eng:start()
local t0 = os.clock()
eng:publish("go", "")
eng:run()
io.write(string.format("%d emits, %.1f ns CPU each\n", N,
  N > 0 and (os.clock() - t0) * 1e9 / N or 0))
