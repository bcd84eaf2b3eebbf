/* mcode.c -- LuaJIT's machine code left writable and executable, on
 * request (myc_jit_set_mcode_protect, the config's jit.mcode_protect).
 *
 * LuaJIT as distributions build it switches its machine-code area to
 * read+write before it writes a trace (or links a side trace to its
 * parent) and back to read+execute after: two mprotect() calls per trace.
 * Each is a TLB shootdown on every CPU that runs a thread of the process,
 * which on a VM is an interprocessor interrupt through the hypervisor.
 * Bandit compiles about 1 000 traces in its first second: a third of its
 * workers' time in the first 0.75 s went to mprotect (perf, a shared
 * 2-vCPU VM; docs/PERFORMANCE.md).  LuaJIT's own remedy is a build option
 * (LUAJIT_UNPROTECT_MCODE: areas stay writable and executable); the
 * engine cannot rebuild the system's LuaJIT, so it defines mprotect()
 * itself, ahead of libc in the process's symbol lookup, and changes only
 * LuaJIT's calls: a read+write or read+execute request on a code area
 * becomes read+write+execute.  The kernel returns at once for a request
 * that changes nothing, so after the first call per area no TLB is
 * flushed.  Every other caller's request goes to libc as it is.
 *
 * Telling LuaJIT's calls apart: the return address lies in the text of
 * the object that defines lua_gettop (libluajit, or the executable when
 * LuaJIT is linked statically), found once.  Areas LuaJIT frees and maps
 * again start read+write as LuaJIT maps them; their first request makes
 * them read+write+execute again, so nothing is remembered per area.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lua/mcode.h"

#include "base/visibility.h"

#include <dlfcn.h>
#include <link.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int (*mprotect_fn)(void *, size_t, int);

/* LuaJIT's executable segment, set once by myc_jit_set_mcode_protect
 * while other threads may already call mprotect: 'hi' is stored last
 * (release), so a reader that sees it sees 'lo'. */
static _Atomic uintptr_t luajit_lo, luajit_hi;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_int unprotected;
static atomic_uint_fast64_t luajit_calls, made_rwx;

static int find_luajit(struct dl_phdr_info *info, size_t size, void *data) {
  uintptr_t probe = (uintptr_t)data;
  int i, hit = 0;
  (void)size;
  for (i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && probe >= lo &&
        probe < lo + ph->p_memsz) {
      atomic_store_explicit(&luajit_lo, lo, memory_order_relaxed);
      atomic_store_explicit(&luajit_hi, lo + ph->p_memsz,
                            memory_order_release);
      hit = 1;
    }
  }
  return hit;
}

static void find_once(void) {
  dl_iterate_phdr(find_luajit, (void *)(uintptr_t)&lua_gettop);
}

/* libc's mprotect is a bare system call: making it here needs no dlsym
 * (which may allocate), so this mprotect is safe for any caller at any
 * time, an allocator's own initialisation included. */
static int sys_mprotect(void *addr, size_t len, int prot) {
  return (int)syscall(SYS_mprotect, addr, len, prot);
}

MYC_EXTERN int mprotect(void *addr, size_t len, int prot);

int mprotect(void *addr, size_t len, int prot) {
  uintptr_t from = (uintptr_t)__builtin_return_address(0);
  uintptr_t hi = atomic_load_explicit(&luajit_hi, memory_order_acquire);
  if (from < hi &&
      from >= atomic_load_explicit(&luajit_lo, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&luajit_calls, 1, memory_order_relaxed);
    if ((prot == (PROT_READ | PROT_WRITE) ||
         prot == (PROT_READ | PROT_EXEC)) &&
        atomic_load_explicit(&unprotected, memory_order_relaxed) &&
        sys_mprotect(addr, len, PROT_READ | PROT_WRITE | PROT_EXEC) == 0) {
      atomic_fetch_add_explicit(&made_rwx, 1, memory_order_relaxed);
      return 0;
    }
  }
  /* Everyone else's, and LuaJIT's when the kernel refuses writable code:
   * as asked. */
  return sys_mprotect(addr, len, prot);
}

int myc_jit_set_mcode_protect(int protect) {
  void *sym;
  mprotect_fn first;
  pthread_once(&once, find_once);
  /* LuaJIT's calls reach this mprotect only if it comes first in the
   * process's lookup: not when libmycelium was loaded RTLD_LOCAL, or
   * behind a sanitizer's own mprotect.  (ISO C has no cast from an
   * object pointer to a function pointer: memcpy.) */
  sym = dlsym(RTLD_DEFAULT, "mprotect");
  memcpy(&first, &sym, sizeof first);
  if (atomic_load(&luajit_hi) == 0 || first != mprotect)
    return protect ? 0 : MYC_ESTATE;
  atomic_store(&unprotected, !protect);
  return 0;
}

void myc__mcode_stats_get(myc__mcode_stats *out) {
  out->luajit_calls = atomic_load(&luajit_calls);
  out->made_rwx = atomic_load(&made_rwx);
}
