/* visibility.h -- what libmycelium exports.  The library builds with
 * -fvisibility=hidden; two sets are exported: the embedding API of
 * mycelium.h (MYC_EXTERN) and the FFI set the Lua runtime binds through
 * ffi.C (MYC_FFI: ffi/ffi.h and luaopen_mycelium_core).  Everything else,
 * the myc__ internals included, stays inside the library.
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
