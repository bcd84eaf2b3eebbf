-- spec/services/bandit/helper.lua -- builders for synthetic Polygon websocket
-- messages (geth/bor compact JSON, fields in geth's order), synthetic
-- registries, and file helpers shared by the Bandit specs.
--
-- Each spec sets package.path itself (see the first lines of any
-- spec/services/**/*_spec.lua) and then requires this module.
local bigint = require "bandit.bigint"
local keccak = require "bandit.keccak"
local eip55 = require "bandit.eip55"
local contract = require "mycelium.contract"
local registry = require "bandit.registry"
local abi = require "bandit.abi"

local format, rep, lower, sub = string.format, string.rep, string.lower,
  string.sub
local concat = table.concat

local H = {}

-- Bandit's services register EIP-55 as the address codec in their own
-- Lua states (bandit.wire); the messages a spec collects are turned into
-- tables in this one, so it registers the same codec here.
contract.set_address_codec(eip55)

H.ROOT = (debug.getinfo(1, "S").source:match("^@(.-)spec/services/bandit/[^/]+$"))
if H.ROOT == nil or H.ROOT == "" then H.ROOT = "./" end
H.DATA = H.ROOT .. "examples/bandit/data/"
H.XCHECK = H.ROOT .. "spec/services/bandit/xcheck.py" -- the Python reference

H.TOPIC_SYNC, H.TOPIC_V2_SWAP, H.TOPIC_V3_SWAP =
  abi.TOPIC_SYNC, abi.TOPIC_V2_SWAP, abi.TOPIC_V3_SWAP
H.TOPIC_TRANSFER = "0x" .. keccak.hex("Transfer(address,address,uint256)")

--- Addresses and hashes ------------------------------------------------------

--- A deterministic synthetic address (lowercase, 0x) from a label, made
--- like the fixture's: the last 20 bytes of keccak256(label).
function H.addr(label)
  return "0x" .. sub(keccak.hex(label), 25)
end

function H.hash(label) return "0x" .. keccak.hex(label) end

function H.checksum(a) return (assert(eip55.checksum(a))) end

--- ABI words -------------------------------------------------------------------

local TWO256 = bigint.new(1):mul_2exp(bigint.new(1), 256)

--- 64 hex digits of an integer given as a decimal string or number;
--- negative values in 256-bit two's complement.
function H.word(v)
  local z = bigint.new(type(v) == "number" and format("%.0f", v) or v)
  if z:sign() < 0 then z:add(z, TWO256) end
  local h = z:tohex()
  assert(#h <= 64, "value does not fit 256 bits")
  return rep("0", 64 - #h) .. h
end

--- A topic holding an address (left-padded to 32 bytes).
function H.topic_addr(a)
  return "0x" .. rep("0", 24) .. lower(sub(a, 3))
end

function H.data(...)
  local words = { ... }
  for i, w in ipairs(words) do words[i] = H.word(w) end
  return "0x" .. concat(words)
end

--- Messages -----------------------------------------------------------------------

function H.reply(sub_id, id)
  return format('{"jsonrpc":"2.0","id":%d,"result":"%s"}', id or 1, sub_id)
end

local function q(v) return format("0x%x", v) end

--- A log notification in geth's exact compact layout. l: sub, address,
--- topics, data, block, tx (hash), txi, bh (block hash), li, removed.
function H.log(l)
  local topics = {}
  for i, t in ipairs(l.topics) do topics[i] = '"' .. t .. '"' end
  return format('{"jsonrpc":"2.0","method":"eth_subscription","params":' ..
    '{"subscription":"%s","result":{"address":"%s","topics":[%s],' ..
    '"data":"%s","blockNumber":"%s","transactionHash":"%s",' ..
    '"transactionIndex":"%s","blockHash":"%s","logIndex":"%s",' ..
    '"removed":%s}}}',
    l.sub, l.address, concat(topics, ","), l.data, q(l.block or 1),
    l.tx or H.hash("tx"), q(l.txi or 0), l.bh or H.hash("block"),
    q(l.li or 0), l.removed and "true" or "false")
end

local function with(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

--- Sync(reserve0, reserve1) of pool at position pos (sub, block, tx, ...).
function H.sync(pos, pool, r0, r1)
  return H.log(with(pos, { address = pool, topics = { H.TOPIC_SYNC },
                           data = H.data(r0, r1) }))
end

function H.v2swap(pos, pool, a0in, a1in, a0out, a1out, sender, to)
  return H.log(with(pos, {
    address = pool,
    topics = { H.TOPIC_V2_SWAP, H.topic_addr(sender or H.addr("router")),
               H.topic_addr(to or H.addr("eoa")) },
    data = H.data(a0in, a1in, a0out, a1out) }))
end

function H.v3swap(pos, pool, a0, a1, sqrtp, liq, tick, sender, recipient)
  return H.log(with(pos, {
    address = pool,
    topics = { H.TOPIC_V3_SWAP, H.topic_addr(sender or H.addr("router")),
               H.topic_addr(recipient or H.addr("eoa")) },
    data = H.data(a0, a1, sqrtp, liq, tick) }))
end

--- The same log as text, but removed (a reorg retraction).
function H.removed(text)
  return (text:gsub('"removed":false', '"removed":true'))
end

--- Registries ----------------------------------------------------------------

--- Synthetic tokens: name -> { address, decimals }.
function H.tokens(list)
  local out = {}
  for _, t in ipairs(list) do
    out[#out + 1] = { symbol = t[1], address = H.checksum(H.addr("token:" .. t[1])),
                      decimals = t[2], name = t[1] }
  end
  return out
end

--- A registry from { {label, dex, kind, sym0, sym1, fee}, ... } and token
--- decimals { {sym, dec}, ... }; pool addresses are H.addr(label).
function H.registry(pools, tokens)
  return assert(registry.new(H.registry_data(pools, tokens)))
end

--- The pools.json and tokens.json arrays of H.registry's arguments.
function H.registry_data(pools, tokens)
  local toks = H.tokens(tokens)
  local by_sym = {}
  for _, t in ipairs(toks) do by_sym[t.symbol] = t.address end
  local ps = {}
  for _, p in ipairs(pools) do
    ps[#ps + 1] = { address = H.checksum(H.addr(p[1])), dex = p[2],
                    kind = p[3], token0 = by_sym[p[4]] or p[4],
                    token1 = by_sym[p[5]] or p[5], fee_ppm = p[6],
                    label = p[1] }
  end
  return ps, toks
end

--- Writes H.registry_data's arrays as dir/pools.json and dir/tokens.json;
--- returns both paths. `edit(pools, tokens)` may change them first.
function H.write_registry(dir, pools, tokens, edit)
  local cjson = require "cjson"
  local ps, toks = H.registry_data(pools, tokens)
  if edit then edit(ps, toks) end
  local paths = { dir .. "/pools.json", dir .. "/tokens.json" }
  for i, v in ipairs { ps, toks } do
    local f = assert(io.open(paths[i], "wb"))
    f:write(#v == 0 and "[]" or cjson.encode(v))
    f:close()
  end
  return paths[1], paths[2]
end

--- Files ---------------------------------------------------------------------------

function H.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function H.lines(path)
  return assert(require("bandit.capture").read(path))
end

--- Engines -------------------------------------------------------------------------

--- The three services (adapter fed on bandit.raw) and the recorder in a
--- manual engine. o: pools, tokens (paths, default the sample's), out
--- (a directory for events/skipped/signals/summary files, or nil),
--- adapter / metadata / detector / recorder (extra opts), services
--- (replaces the list), mailbox.
function H.engine(o)
  o = o or {}
  local testing = require "mycelium.testing"
  local pools = o.pools or H.DATA .. "pools.json"
  local tokens = o.tokens or H.DATA .. "tokens.json"
  local function opts(base, extra)
    for k, v in pairs(extra or {}) do base[k] = v end
    return base
  end
  local out = o.out
  local services = o.services or {
    { name = "polygon", module = H.ROOT .. "services/polygon_adapter.lua",
      opts = opts({ source = "topic", pools = pools, tokens = tokens },
                  o.adapter) },
    { name = "metadata", module = H.ROOT .. "services/metadata_service.lua",
      opts = opts({ pools = pools, tokens = tokens }, o.metadata) },
    { name = "arb", module = H.ROOT .. "services/arbitrage_detector.lua",
      opts = opts({}, o.detector) },
    { name = "recorder", module = H.ROOT .. "examples/bandit/recorder.lua",
      opts = opts({ print = false, exit = false, pools = pools,
                    tokens = tokens,
                    events = out and out .. "/events.jsonl",
                    skipped = out and out .. "/skipped.jsonl",
                    signals = out and out .. "/signals.jsonl",
                    summary = out and out .. "/summary.json",
                    services = { "polygon", "metadata", "arb" } },
                  o.recorder) },
  }
  return testing.engine {
    contracts = H.ROOT .. "services/contracts.yaml",
    services = services, start = o.start,
    mailbox = o.mailbox or { capacity = 1000000, policy = "reject" },
    log = o.log or { level = "info", format = "json" },
  }
end

--- Publishes lines on bandit.raw (then the feeder's end marker unless
--- opts.no_end), delivering every `batch` lines (default: all at once).
function H.feed(eng, lines, batch, no_end)
  for i, l in ipairs(lines) do
    assert(eng:publish("bandit.raw", l))
    if batch and i % batch == 0 then eng:run() end
  end
  if not no_end then
    assert(eng:publish("bandit.end.feeder", { lines = #lines }))
  end
  eng:run()
end

--- The records of a JSON-lines text, decoded.
function H.records(text)
  local cjson = require "cjson"
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = cjson.decode(l) end
  return t
end

--- The expected records of a stream whose first connection delivered lines
--- 1..k before the node restarted and replayed the capture from its first
--- notification: capture line c > k arrives as line c + k - 1; lines 2..k
--- arrive again as k + 1..2k - 1, the logs among them (accepted or removed)
--- skipped as duplicates, the other lines skipped again for their reason.
function H.restarted(prefix, k)
  local function at(c) return c and (c > k and c + k - 1 or c) end
  local want = {}
  for _, name in ipairs { "events.jsonl", "skipped.jsonl", "signals.jsonl" } do
    want[name] = H.records(H.read(prefix .. name))
  end
  local reason = {}
  for _, e in ipairs(want["events.jsonl"]) do reason[e.line] = "duplicate" end
  for _, r in ipairs(want["skipped.jsonl"]) do
    local removal = r.reason == "retraction" or r.reason == "removed_unmatched"
    reason[r.line] = removal and "duplicate" or r.reason
  end
  for _, e in ipairs(want["events.jsonl"]) do
    e.line, e.retracted_by_line = at(e.line), at(e.retracted_by_line)
  end
  for _, r in ipairs(want["skipped.jsonl"]) do
    r.line, r.retracts_line = at(r.line), at(r.retracts_line)
  end
  for _, g in ipairs(want["signals.jsonl"]) do g.line = at(g.line) end
  want.duplicates = 0
  for c = 2, k do
    assert(reason[c], "line " .. c .. " in neither file")
    table.insert(want["skipped.jsonl"], { line = c + k - 1, reason = reason[c] })
    if reason[c] == "duplicate" then want.duplicates = want.duplicates + 1 end
  end
  table.sort(want["skipped.jsonl"], function(a, b) return a.line < b.line end)
  return want
end

--- A fresh temporary directory (removed by H.rmdir).
function H.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  require("spec.support.peers").run("mkdir -p '" .. dir .. "'")
  return dir
end

function H.rmdir(dir) os.execute("rm -rf '" .. dir .. "'") end

--- Asserts that two texts have the same lines, naming the first that
--- differs.
function H.same_lines(want, got, what)
  local w, g = {}, {}
  for l in want:gmatch("[^\n]*\n?") do if l ~= "" then w[#w + 1] = l end end
  for l in got:gmatch("[^\n]*\n?") do if l ~= "" then g[#g + 1] = l end end
  for i = 1, math.max(#w, #g) do
    if w[i] ~= g[i] then
      error(string.format("%s: line %d differs\nwant: %s\ngot:  %s", what, i,
                          tostring(w[i]), tostring(g[i])), 2)
    end
  end
  if want ~= got then error(what .. ": texts differ (line ends?)", 2) end
end

return H
