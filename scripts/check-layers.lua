-- scripts/check-layers.lua -- fails when engine/src breaks its layering
-- (docs/ARCHITECTURE.md): a folder including a folder it may not call,
-- a runtime file below the engine including one above it, Lua headers on
-- the hot path, or a network library outside net/.
--
--   luajit scripts/check-layers.lua [engine/src]   -- check the tree
--   luajit scripts/check-layers.lua --self-test    -- prove it can fail
--
-- The rules are plain data below; a new layer adds one line.

-- What each folder may include besides itself and mycelium.h.
local MAY_INCLUDE = {
  base = {},
  core = { "base" },
  contract = { "base" },
  lua = { "base" },
  runtime = { "base", "core", "contract", "lua" },
  supervise = { "base", "core", "contract", "lua", "runtime" },
  net = { "base", "core", "runtime" },
  link = { "base", "core", "runtime", "net" },
  nats = { "base", "core", "runtime", "link" },
  observe = { "base", "core", "runtime" },
  ffi = { "base", "core", "contract", "lua", "runtime", "net", "observe" },
  api = { "base", "core", "contract", "lua", "runtime", "supervise", "link",
          "observe", "nats", "ffi" },
  cli = {},
}

-- Inside runtime/, the files below the engine include only what is below
-- them: the worker knows tasks, not services; emit knows a service's
-- routes, not the engine.
local RUNTIME_BELOW = {
  ["runtime/inbox"] = { "runtime/inbox.h" },
  ["runtime/worker"] = { "runtime/inbox.h", "runtime/worker.h" },
  ["runtime/emit"] = { "runtime/inbox.h", "runtime/worker.h",
                       "runtime/service.h", "runtime/emit.h" },
  ["runtime/service.h"] = { "runtime/inbox.h", "runtime/worker.h" },
}

-- System headers that belong to one layer.
local SYSTEM = {
  { pattern = "^lua%.h$", where = { "lua", "runtime/activation.c",
    "runtime/instance.c", "runtime/service.c", "supervise", "api", "ffi" } },
  { pattern = "^lauxlib%.h$", where = { "lua", "runtime/activation.c",
    "runtime/instance.c", "runtime/service.c", "supervise", "api", "ffi" } },
  { pattern = "^lualib%.h$", where = { "lua", "runtime/instance.c", "api" } },
  { pattern = "^wslay/", where = { "net" } },
  { pattern = "^hiredis/", where = { "net" } },
  { pattern = "^http_parser%.h$", where = { "net" } },
  { pattern = "^openssl/ssl%.h$", where = { "net" } },
  { pattern = "^openssl/x509", where = { "net" } },
  { pattern = "^openssl/err%.h$", where = { "net" } },
  { pattern = "^nats[/.]", where = { "nats" } },
}

local function in_list(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

-- 'where' entries are a folder or a file path.
local function allowed_at(where, folder, path)
  for _, w in ipairs(where) do
    if w == folder or w == path then return true end
  end
  return false
end

-- Checks one file ('path' relative to engine/src, 'text' its content).
-- Appends "path:line: reason" to 'errors'.
local function check_file(path, text, errors)
  local folder = path:match("^([^/]+)/")
  local stem = path:gsub("%.[ch]$", "")
  local rules = MAY_INCLUDE[folder]
  if rules == nil then
    errors[#errors + 1] = path .. ": folder '" .. tostring(folder)
      .. "' is no layer of docs/ARCHITECTURE.md (add it to MAY_INCLUDE)"
    return
  end
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local quoted = line:match('^%s*#%s*include%s+"([^"]+)"')
    local system = line:match("^%s*#%s*include%s+<([^>]+)>")
    local function fail(why)
      errors[#errors + 1] = string.format("%s:%d: %s", path, n, why)
    end
    if quoted and quoted ~= "mycelium.h" then
      local to = quoted:match("^([^/]+)/")
      if to == nil then
        fail(string.format('#include "%s": name the folder ("layer/%s")',
                           quoted, quoted))
      elseif to ~= folder and not in_list(rules, to) then
        fail(string.format('%s/ may not include %s/ ("%s"): a lower layer '
                           .. "never calls up; register a hook instead",
                           folder, to, quoted))
      end
      local below = RUNTIME_BELOW[stem] or RUNTIME_BELOW[path]
      if below and to == "runtime" and quoted ~= stem .. ".h"
          and not in_list(below, quoted) then
        fail(string.format('%s may not include "%s": it sits below it in '
                           .. "the runtime", path, quoted))
      end
    elseif system then
      for _, rule in ipairs(SYSTEM) do
        if system:match(rule.pattern) and not allowed_at(rule.where, folder, path) then
          fail(string.format("<%s> belongs to %s, not %s", system,
                             table.concat(rule.where, ", "), path))
        end
      end
    end
  end
end

local function check_tree(root)
  local errors, files = {}, {}
  local p = io.popen("cd '" .. root .. "' && find . -name '*.[ch]' | sort")
  for f in p:lines() do files[#files + 1] = f:gsub("^%./", "") end
  p:close()
  if #files == 0 then
    errors[1] = root .. ": no C files found"
  end
  for _, f in ipairs(files) do
    local h = assert(io.open(root .. "/" .. f, "rb"))
    check_file(f, h:read("*a"), errors)
    h:close()
  end
  return errors, #files
end

-- Each case must be caught (and a clean one must pass): a check that
-- cannot fail is no check.
local function self_test()
  local cases = {
    { "core/buf.c", '#include "runtime/engine.h"\n', "core/ may not include runtime/" },
    { "base/log.c", '#include "core/topic.h"\n', "base/ may not include core/" },
    { "runtime/engine.c", '#include "supervise/supervisor.h"\n', "runtime/ may not include supervise/" },
    { "runtime/worker.c", '#include "runtime/service.h"\n', "below it in the runtime" },
    { "runtime/emit.h", '#include "runtime/engine.h"\n', "below it in the runtime" },
    { "runtime/emit.c", "#include <lua.h>\n", "<lua.h> belongs to" },
    { "runtime/service.h", "#include <lua.h>\n", "<lua.h> belongs to" },
    { "core/topic.c", '#include "topic.h"\n', "name the folder" },
    { "contract/contract.c", "#include <wslay/wslay.h>\n", "belongs to net" },
    { "misc/x.c", "", "is no layer" },
  }
  for _, c in ipairs(cases) do
    local errors = {}
    check_file(c[1], c[2], errors)
    if #errors ~= 1 or not errors[1]:find(c[3], 1, true) then
      io.stderr:write("self-test: ", c[1], " with ", c[2]:gsub("\n", ""),
                      " gave: ", table.concat(errors, "; "), "\n")
      os.exit(1)
    end
  end
  local clean = {}
  check_file("runtime/service.c", '#include "runtime/engine.h"\n#include <lauxlib.h>\n', clean)
  check_file("ffi/net.c", '#include "net/ws.h"\n', clean)
  if #clean ~= 0 then
    io.stderr:write("self-test: clean files refused: ", table.concat(clean, "; "), "\n")
    os.exit(1)
  end
  print(string.format("check-layers: self-test: %d violations caught", #cases))
end

if arg[1] == "--self-test" then
  self_test()
  os.exit(0)
end
local root = arg[1] or "engine/src"
local errors, n = check_tree(root)
if #errors > 0 then
  io.stderr:write(table.concat(errors, "\n"), "\n")
  io.stderr:write(string.format("check-layers: %d violation%s in %s "
    .. "(rules: docs/ARCHITECTURE.md)\n", #errors, #errors == 1 and "" or "s", root))
  os.exit(1)
end
print(string.format("check-layers: %d files of %s follow the layering", n, root))
