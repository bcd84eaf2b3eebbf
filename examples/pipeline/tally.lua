-- tally.lua -- the rows of the pipeline's summary that the recorder (in
-- process arb) cannot see: the services of the other processes and every
-- link, from their `mycelium status --json` replies. Run by ./run:
--
--   luajit tally.lua [--fault] [--lost=N] NODE=STATUS.json ...
--
-- Prints the service rows in the recorder's columns, then one row per
-- link (what each upstream process sent, queued and dropped, and why).
-- Exits 1 when a service or a link dropped anything, 2 on bad input.
local ok, cjson = pcall(require, "cjson")
if not ok then
  io.stderr:write("tally.lua: needs lua-cjson (scripts/deps.sh)\n")
  os.exit(2)
end
local format = string.format

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  local okj, v = pcall(cjson.decode, text)
  if not okj or type(v) ~= "table" or not v.ok then
    return nil, path .. ": not a status reply: " .. text:sub(1, 200)
  end
  return v
end

local nodes, faults, lost = {}, false, 0
for _, a in ipairs(arg) do
  if a == "--fault" then faults = true goto next end
  if a:match("^%-%-lost=%d+$") then lost = tonumber(a:sub(8)) goto next end
  local node, path = a:match("^([^=]+)=(.+)$")
  if not node then
    io.stderr:write("usage: luajit tally.lua [--fault] NODE=STATUS.json ...\n")
    os.exit(2)
  end
  local st, err = read(path)
  if not st then
    io.stderr:write("tally.lua: ", node, ": ", tostring(err), "\n")
    os.exit(2)
  end
  nodes[#nodes + 1] = st
  ::next::
end

local REASONS = { "queue_full", "disconnect", "shutdown", "v1_untyped" }
local dropped = 0
local out, unrouted, by_links = {}, {}, 0
for _, st in ipairs(nodes) do
  for _, s in ipairs(st.services) do
    if s.name ~= "_links" then
      dropped = dropped + s.dropped
      out[#out + 1] = format("%-12s %6d %10d %10d %7d %8d %6d", s.name,
        s.worker, s["in"], s.out, s.errors, s.dropped, s.queue_depth)
      -- Emitted while no process subscribed: InstrumentMeta always (no
      -- stage takes it), and whatever a restarted stage emitted before
      -- its own link downstream was up. Shown after a fault only.
      if faults and s.unrouted > 0 then
        unrouted[#unrouted + 1] = format("unrouted         %s emitted %d "
          .. "messages no process subscribed to at the time (InstrumentMeta, "
          .. "and what it emitted before its link downstream was up)",
          s.name, s.unrouted)
      end
    end
  end
end
for _, st in ipairs(nodes) do
  -- Messages flow downstream, from the side that connects.
  for _, l in ipairs(st.links or {}) do if l.dir == "connect" then
    local gone, why = 0, {}
    for _, r in ipairs(REASONS) do
      local n = l.dropped[r] or 0
      if n > 0 then
        gone = gone + n
        why[#why + 1] = format("%s %d", r, n)
      end
    end
    dropped = dropped + gone
    by_links = by_links + gone
    out[#out + 1] = format("link %-20s %7d frames out, %d queued, "
      .. "%d dropped%s, %d reconnects", st.node .. " -> " .. l.peer,
      l.frames_out, l.queued, gone,
      #why > 0 and " (" .. table.concat(why, ", ") .. ")" or "", l.reconnects)
  end end
end
for _, u in ipairs(unrouted) do out[#out + 1] = u end
-- The recorder's count of gone lines against what the links counted:
-- the rest was inside a stage that died (its mailbox, or read from its
-- socket), which no sender can know of (docs/LINKS.md: at most once).
if lost > 0 then
  out[#out + 1] = format("why              %d lost = %d dropped by the links "
    .. "above + %d inside a process that died (its mailbox or its socket)",
    lost, by_links, lost - by_links)
end
io.stdout:write(table.concat(out, "\n"), "\n")
os.exit(dropped > 0 and 1 or 0)
