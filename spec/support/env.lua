-- spec/support/env.lua -- this process's environment, changed for what
-- the engine reads from it while a spec runs (MYC_JIT_LOG, ...).
local ffi = require "ffi"

ffi.cdef [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]]

local M = {}

function M.set(name, value) ffi.C.setenv(name, value, 1) end

function M.unset(name) ffi.C.unsetenv(name) end

return M
