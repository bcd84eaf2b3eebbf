/* snapshot.h -- carrying a service's snapshot() from one Lua state to
 * another (hot reload, rollback): a deep copy made directly between the
 * two states, with no encoding in between, so that the swap is short.
 */
#ifndef MYC_SNAPSHOT_H
#define MYC_SNAPSHOT_H

#include <lua.h>
#include <stddef.h>

/* Pushes onto 'to' a copy of the value at index 'idx' of 'from': nil,
 * booleans, numbers, strings and tables of them (keys: strings, numbers,
 * booleans), at most 64 levels deep; a table reached twice is copied
 * twice.  'from' is only read (its stack grows by a few slots per level).
 * Runs protected in 'to': returns 0, or a Lua error code with the reason,
 * naming the field ("field 'pools.x' is a function (...)"), in
 * 'err'; then nothing is pushed.  '*strings' (unless NULL) is set to how
 * many strings the copy interned or found in 'to' (keys and values, each
 * occurrence): what the next copy's string table needs room for
 * (strtab.h). */
int myc__snapshot_copy(lua_State *from, int idx, lua_State *to,
                       size_t *strings, char *err, size_t errlen);

/* Gives 'L' what a later copy out of it uses to count big tables fast
 * (a small function in its registry), so that the copy does not make
 * it during a reload's pause.  Off the hot path: a state being loaded.
 * 0, or -1 when it could not (out of memory, or 'pairs' or 'next'
 * replaced by the service's code): a copy out of 'L' then counts with
 * lua_next. */
int myc__snapshot_prepare(lua_State *L);

#endif
