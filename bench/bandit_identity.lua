-- bandit_identity.lua A|B N [r] -- the cost of a Bandit log's identity
-- alone, under callgrind (docs/PERFORMANCE.md, "the detector's log identity
-- kept as bytes"): A makes the two hash strings and indexes by the tx
-- hash's, B copies the 64 bytes into a buffer and indexes by a number.
local ffi, bit = require "ffi", require "bit"
local mode, N = arg[1], tonumber(arg[2])
local msg = ffi.new("uint8_t[64]")
local u32, u64p = ffi.typeof("const uint32_t *"), ffi.typeof("uint64_t *")
local buf = ffi.new("uint8_t[132]")
local fstring, copy, band = ffi.string, ffi.copy, bit.band
local idx, ring, W = {}, {}, 10000
local w = ffi.cast(u64p, msg)
for i = 1, N do
  local h = arg[3] and i % 50 or i -- arg[3]: 50 hashes, interned after the first
  w[0], w[4] = h, h
  local k
  if mode == "A" then
    local bh, th = fstring(msg, 32), fstring(msg + 32, 32)
    k = th
  else
    copy(buf + 68, msg, 64)
    local p = ffi.cast(u32, msg + 32)
    k = p[0] + band(p[1], 0x1FFFFF) * 4294967296
  end
  local pos = i % W + 1
  local old = ring[pos]
  if old ~= nil then idx[old] = nil end
  idx[k], ring[pos] = i, k
end
