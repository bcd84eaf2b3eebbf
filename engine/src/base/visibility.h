/* visibility.h -- what libmycelium exports.  The library builds with
 * -fvisibility=hidden; it exports the embedding API of mycelium.h
 * (MYC_EXTERN) and one Lua module opener (MYC_FFI:
 * luaopen_mycelium_core, ffi/table.h), which hands a LuaJIT outside the
 * engine the table of the functions the runtime binds through.
 * Everything else, those functions and the myc__ internals included,
 * stays inside the library.
 */
#ifndef MYC_VISIBILITY_H
#define MYC_VISIBILITY_H

#include "mycelium.h"

#if defined(MYC_BUILDING)
#define MYC_FFI __attribute__((visibility("default")))
#else
#define MYC_FFI
#endif

#endif
