-- capture.lua -- the lines of a capture file, byte for byte as the node
-- sent them: a line ends at "\n" (a "\r" before it stays, JSON whitespace
-- to the decoder), a last line without one counts, and a NUL byte is an
-- ordinary byte.  LuaJIT's file:lines() is not used: it drops the bytes
-- of a line after a NUL and joins it with the next, which shifts the
-- line number of every later record.
local open, find, sub = io.open, string.find, string.sub

local M = {}

--- The lines of 'text' (a whole capture), as an array.
function M.split(text)
  local lines, i, n = {}, 1, #text
  while i <= n do
    local j = find(text, "\n", i, true)
    if not j then
      lines[#lines + 1] = sub(text, i)
      break
    end
    lines[#lines + 1] = sub(text, i, j - 1)
    i = j + 1
  end
  return lines
end

--- The lines of the file at 'path', or nil, message.
function M.read(path)
  local f, err = open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  if not text then return nil, path .. ": cannot read" end
  return M.split(text)
end

return M
