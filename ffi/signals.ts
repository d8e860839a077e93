// Signal dispositions that libraries change behind the process's back, and SIGHUP's cleanup.
//
// - libfabric's shm provider keeps one /dev/shm file per endpoint and unlinks it when the endpoint
//   closes; for a process killed first, it installs a handler on SIGINT and SIGTERM (and SIGBUS,
//   SIGSEGV) at its first endpoint that unlinks every endpoint's file, puts back the handler it
//   replaced and raises the signal again. SIGHUP (a terminal or an ssh session gone) has none, so
//   the files stayed. `hangUpLikeInterrupt` gives SIGHUP that same handler: for a signal it never
//   replaced, the handler puts back the default action, so the process still ends by SIGHUP.
// - Only where SIGHUP still has its default action: a handler of the user's (process.on("SIGHUP"))
//   or an ignored SIGHUP (nohup) stays as it is.
// The struct sigaction is kept opaque (its handler is the first field on Linux), copied whole.
import { dlopen, FFIType, CString, type Pointer } from "bun:ffi";

export const SIGHUP = 1;
export const SIGINT = 2;
export const SIGABRT = 6;
export const SIGTERM = 15;
/** sizeof(struct sigaction) on glibc (x86-64 and aarch64). */
const SIGACTION_SIZE = 152;
/** sizeof(Dl_info): dli_fname, dli_fbase, dli_sname, dli_saddr. */
const DL_INFO_SIZE = 32;

const libc = dlopen("libc.so.6", {
  // int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact)
  sigaction: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
}).symbols;

// int dladdr(const void *addr, Dl_info *info): in libc since glibc 2.34, in libdl before.
type Dladdr = (address: Pointer, info: Uint8Array) => number;
let dladdr: Dladdr | null | undefined;

function loadDladdr(): Dladdr | null {
  for (const name of ["libc.so.6", "libdl.so.2"]) {
    try {
      return dlopen(name, { dladdr: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } }).symbols.dladdr as Dladdr;
    } catch { /* try the next */ }
  }
  return null;
}

/** The signal's struct sigaction, opaque; null when sigaction fails. */
function disposition(signal: number): Uint8Array | null {
  const action = new Uint8Array(SIGACTION_SIZE);
  return libc.sigaction(signal, null, action) === 0 ? action : null;
}

/** The handler's address (0: SIG_DFL, 1: SIG_IGN). */
function handlerOf(action: Uint8Array): bigint {
  return new DataView(action.buffer).getBigUint64(0, true);
}

/** The file of the loaded object that holds `address` (dladdr), or null. */
function objectFileOf(address: bigint): string | null {
  dladdr ??= loadDladdr();
  if (dladdr === null || address <= 1n) return null;
  const info = new Uint8Array(DL_INFO_SIZE);
  if (dladdr(Number(address) as Pointer, info) === 0) return null;
  const name = Number(new DataView(info.buffer).getBigUint64(0, true));
  return name === 0 ? null : new CString(name as Pointer).toString();
}

/**
 * Gives SIGHUP the handler that SIGINT or SIGTERM has, when that handler belongs to a loaded
 * object whose file matches `owner` (libfabric: /libfabric\.so/) and SIGHUP still has its default
 * action. Returns whether SIGHUP has such a handler now (already, or from this call).
 */
export function hangUpLikeInterrupt(owner: RegExp): boolean {
  const hangup = disposition(SIGHUP);
  if (hangup === null) return false;
  const current = handlerOf(hangup);
  if (current !== 0n) return owner.test(objectFileOf(current) ?? "");
  for (const signal of [SIGINT, SIGTERM]) {
    const action = disposition(signal);
    if (action === null || !owner.test(objectFileOf(handlerOf(action)) ?? "")) continue;
    return libc.sigaction(SIGHUP, action, null) === 0;
  }
  return false;
}
