/* mcode.h -- whether LuaJIT's machine code is switched between writable
 * and executable around every trace it compiles (see mcode.c and
 * myc_jit_set_mcode_protect in mycelium.h). */
#ifndef MYC_LUA_MCODE_H
#define MYC_LUA_MCODE_H

#include <stdint.h>

/* What the engine's mprotect() has seen of LuaJIT since the first
 * myc_jit_set_mcode_protect() (which finds LuaJIT's code): calls from
 * LuaJIT, and those of them turned into "writable and executable"
 * because protection was off. */
typedef struct {
  uint64_t luajit_calls;
  uint64_t made_rwx;
} myc__mcode_stats;

void myc__mcode_stats_get(myc__mcode_stats *out);

#endif
