-- mycelium.topic -- topic pattern matching, the same rule as the engine's
-- routing table: an exact name, "prefix.*" (anything below prefix, any
-- depth) or "*" (every topic not starting with '$').
local sub, byte = string.sub, string.byte

local M = {}

function M.is_pattern(p)
  return p == "*" or sub(p, -2) == ".*"
end

function M.match(pattern, name)
  if pattern == "*" then
    return byte(name, 1) ~= 36 -- '$'
  end
  if sub(pattern, -2) == ".*" then
    local prefix = sub(pattern, 1, -2)
    return #name > #prefix and sub(name, 1, #prefix) == prefix
  end
  return pattern == name
end

return M
