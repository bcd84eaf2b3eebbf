/* table.c -- the table of ffi.h's functions (see table.h), and the
 * exported module opener that hands it to a LuaJIT outside the engine. */
#include "ffi/table.h"

#include "lua/msgpack.h"

#define MYC_FFI_INIT(f) .f = f,

static const struct myc_ffi_core core = {MYC_FFI_CORE(MYC_FFI_INIT)};
static const struct myc_ffi_service service = {MYC_FFI_SERVICE(MYC_FFI_INIT)};
static const struct myc_ffi_contract contract = {
    MYC_FFI_CONTRACT(MYC_FFI_INIT)};
static const struct myc_ffi_engine engine = {MYC_FFI_ENGINE(MYC_FFI_INIT)};
#if defined(MYC_WITH_NET)
static const struct myc_ffi_net net = {MYC_FFI_NET(MYC_FFI_INIT)};
#endif

static const struct myc_ffi_table table = {
    .core = &core,
    .service = &service,
    .contract = &contract,
    .engine = &engine,
#if defined(MYC_WITH_NET)
    .net = &net,
#endif
};

const struct myc_ffi_table *myc__ffi_table(void) {
  return &table;
}

int luaopen_mycelium_core(lua_State *L) {
  myc__lua_core_open(L);
  lua_pushlightuserdata(L, (void *)&table);
  lua_setfield(L, -2, "ffi_table");
  return 1;
}
