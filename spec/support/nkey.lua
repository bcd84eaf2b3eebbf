-- spec/support/nkey.lua -- a NATS user NKey made at test time (no key is
-- committed, and the `nk` tool is not in Debian): an Ed25519 key from
-- the openssl command, encoded as NATS encodes keys (base32 without
-- padding of the prefix bytes, the 32 key bytes and their CRC-16/XMODEM,
-- little endian): the seed "SU..." (prefix 'S' then type 'U') and the
-- public key "U...".
--
--   local seed, public = require("support.nkey").user(dir)
local bit = require "bit"

local M = {}

local B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

local function crc16(bytes)
  local crc = 0
  for i = 1, #bytes do
    crc = bit.bxor(crc, bit.lshift(bytes[i], 8))
    for _ = 1, 8 do
      if bit.band(crc, 0x8000) ~= 0 then
        crc = bit.band(bit.bxor(bit.lshift(crc, 1), 0x1021), 0xffff)
      else
        crc = bit.band(bit.lshift(crc, 1), 0xffff)
      end
    end
  end
  return crc
end

local function base32(bytes)
  local out, acc, bits = {}, 0, 0
  for i = 1, #bytes do
    acc = bit.bor(bit.lshift(bit.band(acc, 0xffff), 8), bytes[i])
    bits = bits + 8
    while bits >= 5 do
      bits = bits - 5
      local v = bit.band(bit.rshift(acc, bits), 31)
      out[#out + 1] = B32:sub(v + 1, v + 1)
    end
  end
  if bits > 0 then
    local v = bit.band(bit.lshift(acc, 5 - bits), 31)
    out[#out + 1] = B32:sub(v + 1, v + 1)
  end
  return table.concat(out)
end

local function encode(prefix, key)
  local bytes = {}
  for _, b in ipairs(prefix) do bytes[#bytes + 1] = b end
  for i = 1, #key do bytes[#bytes + 1] = key:byte(i) end
  local crc = crc16(bytes)
  bytes[#bytes + 1] = bit.band(crc, 0xff)
  bytes[#bytes + 1] = bit.rshift(crc, 8)
  return base32(bytes)
end

local function last32(path)
  local f = assert(io.open(path, "rb"))
  local der = f:read("*a")
  f:close()
  return der:sub(-32)
end

-- Makes a user key in directory 'dir' (its DER files are removed):
-- returns the seed and the public key.
function M.user(dir)
  local key, pub = dir .. "/nkey.der", dir .. "/nkey.pub.der"
  assert(os.execute(string.format(
    "openssl genpkey -algorithm ed25519 -outform DER -out %s && "
    .. "openssl pkey -inform DER -in %s -pubout -outform DER -out %s", key, key, pub)) == 0,
    "openssl cannot make an Ed25519 key")
  local seed, public = last32(key), last32(pub)
  os.remove(key)
  os.remove(pub)
  local S, U = 18 * 8, 20 * 8
  return encode({ bit.bor(S, bit.rshift(U, 5)), bit.band(bit.lshift(U, 3), 0xff) }, seed),
         encode({ U }, public)
end

return M
