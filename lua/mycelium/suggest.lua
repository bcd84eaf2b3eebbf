-- mycelium.suggest -- "did you mean ...?": the nearest known name to a
-- mistyped one, by edit distance (case counts little), if it is close.
local min, max, floor, pairs = math.min, math.max, math.floor, pairs

local M = {}

-- Levenshtein distance between strings 'a' and 'b'.
function M.distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

-- The key of table 'names' nearest to 'name', or nil when none is within
-- max(2, #name / 3) edits.  Ties go to the alphabetically first key.
function M.nearest(name, names)
  local best, bestd
  local lname = name:lower()
  for k in pairs(names) do
    if type(k) == "string" then
      local d = M.distance(lname, k:lower())
      if bestd == nil or d < bestd or (d == bestd and k < best) then
        best, bestd = k, d
      end
    end
  end
  if best and bestd <= max(2, floor(#name / 3)) then
    return best
  end
end

return M
