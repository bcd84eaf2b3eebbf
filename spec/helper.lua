-- spec/helper.lua -- run by busted before every spec: puts the project's
-- Lua runtime and the services on the path, from the source tree.
local root = os.getenv("MYCELIUM_SOURCE_DIR") or "."
package.path = table.concat({
  root .. "/lua/?.lua", root .. "/lua/?/init.lua",
  root .. "/services/?.lua", root .. "/spec/?.lua", package.path }, ";")
