-- bench/compare.lua DIR ROUNDS -- the table of bench/compare.sh.
local dir, rounds = arg[1], tonumber(arg[2])
local function load(which)
  local t = {}
  for r = 1, rounds do
    for line in io.lines(("%s/%s_%d.jsonl"):format(dir, which, r)) do
      local bench, metric, value = line:match('"bench":"([^"]*)","metric":"([^"]*)","value":([-%d.e]+)')
      local k = bench .. "/" .. metric
      t[k] = t[k] or {}
      table.insert(t[k], tonumber(value))
    end
  end
  return t
end
local old, new = load("old"), load("new")
local keys = {}
for k in pairs(old) do if new[k] then keys[#keys + 1] = k end end
table.sort(keys)
local function mmm(v)
  table.sort(v)
  return v[1], v[math.ceil(#v / 2)], v[#v]
end
local function f(x)
  if math.abs(x) >= 1e6 then return ("%.2fM"):format(x / 1e6) end
  if math.abs(x) >= 1e4 then return ("%.0fk"):format(x / 1e3) end
  return ("%.2f"):format(x)
end
print(("| %-44s | %-26s | %-26s | %5s |"):format("metric", "old: min / median / max",
                                                 "new: min / median / max", "ratio"))
print("|" .. ("-"):rep(46) .. "|" .. ("-"):rep(28) .. "|" .. ("-"):rep(28) .. "|-------|")
for _, k in ipairs(keys) do
  local a1, a2, a3 = mmm(old[k])
  local b1, b2, b3 = mmm(new[k])
  print(("| %-44s | %8s %8s %8s | %8s %8s %8s | %5.2f |"):format(
    k, f(a1), f(a2), f(a3), f(b1), f(b2), f(b3), a2 ~= 0 and b2 / a2 or 0))
end
