/* strtab.h -- room in a Lua state's string table ahead of a burst of new
 * strings (a reload's snapshot copy), made before the burst, on another
 * thread than the one that will wait for it.
 */
#ifndef MYC_STRTAB_H
#define MYC_STRTAB_H

#include <lua.h>
#include <stddef.h>

/* Grows the string table of 'L' so that about 'n' more strings can be
 * interned without it growing again, then collects garbage (a full
 * cycle).  Interns up to 2 * n + 8192 throw-away strings on the way
 * (about 48 bytes each, freed by the cycle).  Only an optimisation: out
 * of memory, it leaves the table as it is.  Returns 0 or the Lua error
 * code. */
int myc__strtab_reserve(lua_State *L, size_t n);

#endif
