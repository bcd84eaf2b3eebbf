-- spec/mycelium/cdefs_spec.lua -- the one declaration of what Lua shares
-- with C: checked against the engine when a state loads it, and refusing
-- an engine whose structs differ.
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"

-- A stand-in for the library whose layout facts are 'facts'.
local function fake_lib(facts)
  local keep = {}
  local arr = ffi.new("myc_ffi_layout[?]", #facts)
  for i, f in ipairs(facts) do
    keep[#keep + 1] = ffi.new("char[?]", #f[1] + 1, f[1])
    arr[i - 1].type = keep[#keep]
    if f[2] then
      keep[#keep + 1] = ffi.new("char[?]", #f[2] + 1, f[2])
      arr[i - 1].field = keep[#keep]
    end
    arr[i - 1].value = f[3]
  end
  return {
    keep = keep,
    myc_ffi_layouts = function(n) n[0] = #facts return arr end,
    myc_ffi_errno = function() return nil end,
  }
end

describe("mycelium.cdefs", function()
  it("loads the engine and checks every shared struct against it", function()
    local C = cdefs.library()
    local n = ffi.new("uint32_t[1]")
    local facts = C.myc_ffi_layouts(n)
    local types = {}
    for i = 0, n[0] - 1 do types[ffi.string(facts[i].type)] = true end
    for _, t in ipairs { "myc_frame", "myc_buf", "myc_svc_view",
                         "myc_service_stats", "myc_engine_config",
                         "myc_service_config", "myc_contract_field",
                         "myc_ws_options", "myc_redis_event" } do
      assert.is_true(types[t], t)
    end
    assert.is_true(n[0] > 100) -- sizes and every field offset
  end)

  it("reads the error codes from the engine, not from a copy", function()
    cdefs.library()
    assert.are.equal(-5003, cdefs.E.EFULL)
    assert.are.equal(-5001, cdefs.E.EINVAL)
    for name, code in pairs(cdefs.E) do
      assert.are.equal(name, cdefs.err_name(code))
    end
    assert.are.equal("full", cdefs.strerror(cdefs.E.EFULL))
    assert.are.equal("out of memory", cdefs.strerror(cdefs.E.ENOMEM))
  end)

  it("asks the engine for a code's strings once, and keeps only its codes", function()
    local real, calls = cdefs.library(), 0
    local function counted(f)
      return function(rc) calls = calls + 1 return f(rc) end
    end
    local saved = cdefs.lib
    cdefs.lib = setmetatable({
      myc_err_name = counted(function(rc) return real.myc_err_name(rc) end),
      myc_strerror = counted(function(rc) return real.myc_strerror(rc) end),
    }, { __index = real })
    local ok, err = pcall(function()
      -- -104 (a connection reset): a code no earlier test asked for.
      local name, text = cdefs.err_name(-104), cdefs.strerror(-104)
      assert.are.equal(2, calls)
      assert.are.equal(name, cdefs.err_name(-104))
      assert.are.equal(text, cdefs.strerror(-104))
      assert.are.equal(2, calls)
      assert.are.equal(ffi.string(real.myc_err_name(-104)), name)
      -- Not a code of the engine: asked again each time, never kept.
      cdefs.err_name(12345)
      cdefs.err_name(12345)
      cdefs.strerror(-0.5)
      cdefs.strerror(-0.5)
      assert.are.equal(6, calls)
    end)
    cdefs.lib = saved
    assert(ok, err)
  end)

  it("refuses an engine whose struct sizes or offsets differ", function()
    assert.has_error(function()
      cdefs.check(fake_lib { { "myc_frame", nil, ffi.sizeof("myc_frame") + 8 } })
    end)
    local ok, err = pcall(cdefs.check,
      fake_lib { { "myc_buf", "hdr", ffi.offsetof("myc_buf", "hdr") + 4 } })
    assert.is_false(ok)
    assert.matches("myc_buf.hdr is " .. ffi.offsetof("myc_buf", "hdr")
                   .. " here, " .. ffi.offsetof("myc_buf", "hdr") + 4
                   .. " in the engine", err, 1, true)
    ok, err = pcall(cdefs.check, fake_lib { { "myc_no_such_struct", nil, 8 } })
    assert.is_false(ok)
    assert.matches("the engine shares struct myc_no_such_struct, which "
                   .. "lua/mycelium/cdefs.lua does not declare", err, 1, true)
    -- and accepts one that matches
    cdefs.check(fake_lib { { "myc_svc_view", "faults",
                             ffi.offsetof("myc_svc_view", "faults") } })
  end)

  it("binds ffi.h's functions through the engine's table, not the library's symbols", function()
    local C = cdefs.library()
    local tbl = ffi.cast("const struct myc_ffi_table *", package.loaded["mycelium.ffi"])
    local core = ffi.cast("const struct myc_ffi_core *", tbl.core)
    assert.are.equal(core.myc_ffi_emit, C.myc_ffi_emit)
    assert.are.equal(rawget(C, "myc_ffi_emit"), C.myc_ffi_emit) -- kept
    -- mycelium.h's come from the library
    assert.are.equal("EFULL", ffi.string(C.myc_err_name(cdefs.E.EFULL)))
    -- the library exports none of them
    local lib = ffi.load(cdefs.path or os.getenv("MYCELIUM_LIB"))
    ffi.cdef "int myc_ffi_node(void);"
    assert.is_false((pcall(function() return lib.myc_ffi_node end)))
  end)

  it("refuses an engine whose table has a function elsewhere or one more", function()
    local off = ffi.offsetof("struct myc_ffi_core", "myc_ffi_emit")
    local ok, err = pcall(cdefs.check,
      fake_lib { { "struct myc_ffi_core", "myc_ffi_emit", off + 8 } })
    assert.is_false(ok)
    assert.matches("struct myc_ffi_core.myc_ffi_emit is " .. off .. " here, "
                   .. off + 8 .. " in the engine", err, 1, true)
    local size = ffi.sizeof("struct myc_ffi_core")
    ok, err = pcall(cdefs.check,
      fake_lib { { "struct myc_ffi_core", nil, size + 8 } })
    assert.is_false(ok)
    assert.matches("struct myc_ffi_core size is " .. size, err, 1, true)
  end)

  it("says which function a build without a section's code lacks", function()
    cdefs.library()
    cdefs.need("net")
    local tbl = ffi.new("struct myc_ffi_table") -- every section NULL
    local C = cdefs.bind(ffi.C, tbl)
    assert.has_error(function() return C.myc_ffi_ws_open end,
      "mycelium: myc_ffi_ws_open is not in this build of libmycelium "
      .. "(built without MYC_WITH_NET?)")
  end)

  -- A finaliser (ffi.gc; lua_close runs every one) may be the first to
  -- look a name up.  LuaJIT records no trace in a finaliser, and the
  -- LuaJIT 2.1 of 2022 leaves a compiled pairs() loop only by one: a
  -- lookup loop of that kind, compiled by lookups that found their name,
  -- spun for ever on its first run to the end there.  Run in a process
  -- of its own, under a timeout.
  it("looks a name up from a finaliser after the lookup loop was compiled", function()
    local root = os.getenv("MYCELIUM_SOURCE_DIR") or "."
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
package.path = ... .. "/lua/?.lua;" .. package.path
local ffi = require "ffi"
local cdefs = require "mycelium.cdefs"
cdefs.need("engine") -- four sections to walk
local C = cdefs.library()
local index = getmetatable(C).__index
for _ = 1, 100 do -- compiles the walk; none runs to its end
  for _, k in ipairs { "myc_ffi_emit", "myc_ffi_request", "myc_ffi_test_logs_new",
                       "myc_ffi_contract_check" } do
    index(C, k)
  end
end
local sentinel = ffi.gc(ffi.new("char[1]"), function()
  io.write("finaliser: ", tostring(C.myc_engine_free ~= nil), "\n") -- mycelium.h's
end)
sentinel = nil
collectgarbage()
io.write("collected\n")
]])
    f:close()
    local p = io.popen(string.format("timeout 20 %s %s %s 2>&1; echo rc=$?",
                                     os.getenv("LUAJIT") or "luajit", path, root))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.are.equal("finaliser: true\ncollected\nrc=0\n", out)
  end)

  it("declares a section when a module needs it, checked on the spot", function()
    cdefs.library()
    cdefs.need("net")
    cdefs.need("net") -- once per state
    assert.is_true((pcall(ffi.typeof, "myc_redis_options")))
    assert.has_error(function() cdefs.need("nosuch") end,
                     "mycelium.cdefs: no section nosuch")
  end)
end)
