-- luarocks make rockspec/mycelium-scm-1.rockspec
-- Builds the engine with CMake and installs libmycelium, the `mycelium`
-- binary and the Lua runtime (lua/mycelium/*) so that services can
-- `require "mycelium.testing"` from any LuaJIT.
rockspec_format = "3.0"
package = "mycelium"
version = "scm-1"
source = { url = "git+https://example.invalid/mycelium.git" }
description = {
  summary = "Event-processing engine: a C core running LuaJIT services",
  detailed = [[
Topics, bounded mailboxes, worker threads on libuv and a zero-copy emit
path in C; services written in Lua, reading messages in place through the
FFI.  Includes mycelium.testing to run services in-process under busted.
]],
  license = "MIT",
}
dependencies = { "lua == 5.1" } -- LuaJIT
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "$(BINDIR)",
    CMAKE_INSTALL_LIBDIR = "$(LIBDIR)",
    MYC_INSTALL_LUADIR = "$(LUADIR)",
    MYC_BUILD_TESTS = "OFF",
    MYC_BUILD_BENCH = "OFF",
    MYC_LUAROCKS = "ON",
  },
}
