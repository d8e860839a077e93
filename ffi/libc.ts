// libc through bun:ffi: the memory calls (mmap, mlock, madvise, ...) and errno.
// Every failure becomes a SystemError with the function name, errno and strerror text.
import { dlopen, FFIType, read, CString, type Pointer } from "bun:ffi";
import { SystemError } from "./errors.ts";

// Linux x86-64 / aarch64 constants (asm-generic values where they differ nowhere that we run).
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED = 0x01;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_HUGETLB = 0x40000;
export const MAP_FIXED = 0x10;
const O_RDWR = 0o2;
const O_CREAT = 0o100;
export const MADV_DONTNEED = 4;
export const MADV_DONTFORK = 10;
export const MADV_DOFORK = 11;
const RLIMIT_MEMLOCK = 8;
const SC_PAGESIZE = 30;
/** `RLIM_INFINITY` as a bigint (all ones). */
export const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

const lib = dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
  // Returned as i64 so that MAP_FAILED ((void*)-1) reads as -1.
  mmap: { args: [FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.i64_fast },
  // int munmap(void *addr, size_t length)
  munmap: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // int mlock(const void *addr, size_t len)
  mlock: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // int munlock(const void *addr, size_t len)
  munlock: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // int madvise(void *addr, size_t length, int advice)
  madvise: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  // long sysconf(int name)
  sysconf: { args: [FFIType.i32], returns: FFIType.i64_fast },
  // int getrlimit(int resource, struct rlimit *rlim)   struct rlimit { rlim_t cur, max; }
  getrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int *__errno_location(void)
  __errno_location: { args: [], returns: FFIType.ptr },
  // char *strerror(int errnum)
  strerror: { args: [FFIType.i32], returns: FFIType.ptr },
  // char *strdup(const char *s)
  strdup: { args: [FFIType.ptr], returns: FFIType.ptr },
  // void *calloc(size_t nmemb, size_t size)
  calloc: { args: [FFIType.u64, FFIType.u64], returns: FFIType.ptr },
  // void free(void *ptr)
  free: { args: [FFIType.ptr], returns: FFIType.void },
  // void *memcpy(void *dest, const void *src, size_t n)
  memcpy: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.ptr },
  // void *memset(void *s, int c, size_t n)
  memset: { args: [FFIType.ptr, FFIType.i32, FFIType.u64], returns: FFIType.ptr },
  // int getpid(void)
  getpid: { args: [], returns: FFIType.i32 },
  // int open(const char *pathname, int flags, mode_t mode)
  open: { args: [FFIType.ptr, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  // int ftruncate(int fd, off_t length)
  ftruncate: { args: [FFIType.i32, FFIType.i64], returns: FFIType.i32 },
  // int close(int fd)
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  // int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact)
  sigaction: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
});
const c = lib.symbols;

/** The calling thread's errno, read right after a failed call. */
export function errno(): number {
  const at = c.__errno_location();
  return at === null ? 0 : read.i32(at, 0);
}

/** `strerror(n)` as a JS string. */
export function strerror(n: number): string {
  const s = c.strerror(n);
  return s === null ? `errno ${n}` : new CString(s).toString();
}

function fail(fn: string, detail?: string): never {
  const e = errno();
  throw new SystemError(fn, e, strerror(e), detail);
}

/** The system page size in bytes. */
export const pageSize: number = c.sysconf(SC_PAGESIZE) as number;

/** Maps `length` bytes of anonymous, private, read-write memory. Returns the address. */
export function mmap(length: number, extraFlags = 0): number {
  const at = c.mmap(null, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extraFlags, -1, 0) as number;
  if (at === -1 || at === 0) fail("mmap", `${length} bytes`);
  return at;
}

/**
 * Maps the file at `path` (created 0600 if missing, and sized to `length` bytes), shared and
 * read-write: every thread (or process) mapping it sees the same memory. Returns the address.
 */
export function mapSharedFile(path: string, length: number): number {
  const fd = c.open(Buffer.from(`${path}\0`), O_RDWR | O_CREAT, 0o600);
  if (fd < 0) fail("open", path);
  try {
    if (c.ftruncate(fd, length) !== 0) fail("ftruncate", `${path} to ${length} bytes`);
    const at = c.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) as number;
    if (at === -1 || at === 0) fail("mmap", `${length} bytes of ${path}`);
    return at;
  } finally {
    c.close(fd);
  }
}

/**
 * Replaces the pages of [address, address + length) with fresh anonymous, private, read-write
 * zero pages (MAP_FIXED: atomic, no window in which another mapping could take the range).
 */
export function mmapFixed(address: number, length: number): void {
  const at = c.mmap(address as Pointer, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) as number;
  if (at !== address) fail("mmap", `MAP_FIXED ${length} bytes at 0x${address.toString(16)}`);
}

export function munmap(address: number, length: number): void {
  if (c.munmap(address as Pointer, length) !== 0) fail("munmap", `${length} bytes at 0x${address.toString(16)}`);
}

/** Pins the pages of [address, address+length). Fails with ENOMEM/EPERM at RLIMIT_MEMLOCK. */
export function mlock(address: number, length: number): void {
  if (c.mlock(address as Pointer, length) !== 0) {
    const e = errno();
    const { soft } = memlockLimit();
    const limit = soft === RLIM_INFINITY ? "unlimited" : `${soft} bytes`;
    throw new SystemError("mlock", e, strerror(e),
      `${length} bytes at 0x${address.toString(16)}; RLIMIT_MEMLOCK is ${limit}` +
      ` (raise it with 'ulimit -l' or limits.conf, or grant CAP_IPC_LOCK)`);
  }
}

export function munlock(address: number, length: number): void {
  if (c.munlock(address as Pointer, length) !== 0) fail("munlock", `${length} bytes at 0x${address.toString(16)}`);
}

export function madvise(address: number, length: number, advice: number): void {
  if (c.madvise(address as Pointer, length, advice) !== 0) fail("madvise", `advice ${advice}`);
}

/** RLIMIT_MEMLOCK, soft and hard, in bytes; `RLIM_INFINITY` when unlimited. */
export function memlockLimit(): { soft: bigint; hard: bigint } {
  const rl = new BigUint64Array(2);
  if (c.getrlimit(RLIMIT_MEMLOCK, rl) !== 0) fail("getrlimit", "RLIMIT_MEMLOCK");
  return { soft: rl[0]!, hard: rl[1]! };
}

/** A malloc'd copy of `s` (for C structures that C will free). */
export function strdup(s: string): number {
  const p = c.strdup(Buffer.from(s + "\0"));
  if (p === null) fail("strdup");
  return p as number;
}

/** Zeroed malloc'd memory of `size` bytes (for C structures). Free it with `free`. */
export function calloc(size: number): number {
  const p = c.calloc(1, size);
  if (p === null) fail("calloc", `${size} bytes`);
  return p as number;
}

export function free(address: number): void {
  c.free(address as Pointer);
}

/** Copies `length` bytes from `source` to `destination` (the ranges must not overlap). */
export function memset(destination: number, value: number, length: number): void {
  c.memset(destination as Pointer, value, length);
}

export function memcpy(destination: number, source: number, length: number): void {
  c.memcpy(destination as Pointer, source as Pointer, length);
}

export const SIGILL = 4;
export const SIGBUS = 7;
export const SIGSEGV = 11;
/** sizeof(struct sigaction) on glibc (x86-64 and aarch64); kept opaque: saved and restored whole. */
const SIGACTION_SIZE = 152;

/**
 * Saves the handlers of `signals` and returns a function that puts them back. libfabric pulls in
 * libinfinipath (PSM), whose constructor replaces the SIGSEGV/SIGBUS/SIGILL handlers that Bun's
 * engine relies on (stopping a busy Worker then crashes the process).
 */
export function preserveSignalHandlers(signals: readonly number[]): () => void {
  const saved = signals.map((sig) => {
    const old = new Uint8Array(SIGACTION_SIZE);
    if (c.sigaction(sig, null, old) !== 0) fail("sigaction", `signal ${sig}`);
    return [sig, old] as const;
  });
  return () => {
    for (const [sig, old] of saved) if (c.sigaction(sig, old, null) !== 0) fail("sigaction", `restoring signal ${sig}`);
  };
}

/** The handler address installed for `signal` (0 for SIG_DFL), for tests. */
export function signalHandler(signal: number): bigint {
  const now = new BigUint64Array(SIGACTION_SIZE / 8);
  if (c.sigaction(signal, null, now) !== 0) fail("sigaction", `signal ${signal}`);
  return now[0]!;
}

export function getpid(): number {
  return c.getpid();
}
