// What pinning needs, as the doctor reports it: RLIMIT_MEMLOCK against what a pool with the
// default options pins (computed from those defaults), a real default pool on the host provider
// (the one provider every machine has: it is what "the library works here" means), and
// transparent huge pages, which pools ask for by default.
import { readFileSync } from "node:fs";
import { memlockLimit, RLIM_INFINITY } from "../../ffi/libc.ts";
import { HostProvider } from "../host/host-provider.ts";
import { bytes } from "../inspect.ts";
import { MemoryPool } from "../pool/pool.ts";
import { initialPinnedBytes } from "../pool/pool-core.ts";
import { checkOptions } from "../pool/pool-options.ts";
import { error, ok, warning, type Finding } from "./finding.ts";

/** RLIMIT_MEMLOCK in `info --json`. */
export interface MemlockReport {
  /** The soft limit in bytes; null when unlimited. */
  readonly softBytes: number | null;
  /** The hard limit in bytes (how far `ulimit -l` may raise the soft one); null when unlimited. */
  readonly hardBytes: number | null;
  /** What `new MemoryPool(provider)` pins at once with the default options. */
  readonly defaultPoolBytes: number;
  /** Whether this process has CAP_IPC_LOCK, which lifts the limit for mlock. */
  readonly capIpcLock: boolean;
  /** Whether a default pool fits: unlimited, CAP_IPC_LOCK, or a soft limit at least defaultPoolBytes. */
  readonly enough: boolean;
}

/** The host provider with a default pool, made for real. */
export interface HostReport {
  /** Whether a default MemoryPool on a HostProvider was made (and closed) here. */
  readonly ok: boolean;
  /** What that pool pinned (its stats().pinnedBytes); 0 when it failed. */
  readonly pinnedBytes: number;
  /** Why it failed (the error's message); null when it worked. */
  readonly error: string | null;
}

/** Transparent huge pages in `info --json`. */
export interface HugePagesReport {
  /** The mode chosen in /sys/kernel/mm/transparent_hugepage/enabled ("always", "madvise", "never"); null when the file is missing. */
  readonly mode: string | null;
  /** Whether pools' blocks (advised MADV_HUGEPAGE) can get huge pages: mode "always" or "madvise". */
  readonly usable: boolean;
}

/** CAP_IPC_LOCK's bit in the capability sets of /proc/self/status. */
const CAP_IPC_LOCK = 14n;
const THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled";
const RAISE_MEMLOCK =
  "raise RLIMIT_MEMLOCK: 'ulimit -l unlimited' in the shell (up to the hard limit), '* - memlock unlimited' in " +
  "/etc/security/limits.conf, LimitMEMLOCK=infinity for a systemd unit, '--ulimit memlock=-1' for docker run; " +
  "or make pools with smaller initialCount options";

/** RLIMIT_MEMLOCK against the default pool's pinned bytes. */
export function checkMemlock(): { memlock: MemlockReport; finding: Finding } {
  const limit = memlockLimit();
  const softBytes = limit.soft === RLIM_INFINITY ? null : Number(limit.soft);
  const hardBytes = limit.hard === RLIM_INFINITY ? null : Number(limit.hard);
  const defaultPoolBytes = initialPinnedBytes(checkOptions({}));
  const capIpcLock = hasCapability(CAP_IPC_LOCK);
  const enough = softBytes === null || capIpcLock || softBytes >= defaultPoolBytes;
  const memlock = { softBytes, hardBytes, defaultPoolBytes, capIpcLock, enough };
  const pool = `a default pool pins ${bytes(defaultPoolBytes)}`;
  if (softBytes === null) return { memlock, finding: ok("memlock", `RLIMIT_MEMLOCK is unlimited; ${pool}`) };
  if (capIpcLock) {
    return { memlock, finding: ok("memlock", `RLIMIT_MEMLOCK is ${bytes(softBytes)}, but this process has CAP_IPC_LOCK, so mlock is not bounded; ${pool}`) };
  }
  if (!enough) {
    return { memlock, finding: error("memlock", `RLIMIT_MEMLOCK is ${bytes(softBytes)}, less than the ${bytes(defaultPoolBytes)} a default pool pins: new MemoryPool() fails with mlock ENOMEM`, RAISE_MEMLOCK) };
  }
  return { memlock, finding: ok("memlock", `RLIMIT_MEMLOCK is ${bytes(softBytes)}; ${pool}, leaving ${bytes(softBytes - defaultPoolBytes)} for growth and other pools`) };
}

/** Makes a default MemoryPool on a HostProvider, reads what it pinned, and closes both. */
export function checkHostProvider(memlock: MemlockReport): { host: HostReport; finding: Finding } {
  try {
    using provider = new HostProvider();
    using pool = new MemoryPool(provider);
    const pinnedBytes = pool.stats().pinnedBytes;
    return { host: { ok: true, pinnedBytes, error: null }, finding: ok("host", `a default MemoryPool on the host provider pinned ${bytes(pinnedBytes)} and closed`) };
  } catch (failure) {
    const message = failure instanceof Error ? failure.message : String(failure);
    const fix = memlock.enough ? "the host provider needs mmap and mlock: the error names the call that failed and why" : RAISE_MEMLOCK;
    return { host: { ok: false, pinnedBytes: 0, error: message }, finding: error("host", `a default MemoryPool on the host provider failed: ${message}`, fix) };
  }
}

/** The transparent huge page mode: pools advise their blocks MADV_HUGEPAGE by default. */
export function checkHugePages(): { hugePages: HugePagesReport; finding: Finding } {
  let text: string;
  try {
    text = readFileSync(THP_ENABLED, "utf8");
  } catch {
    return {
      hugePages: { mode: null, usable: false },
      finding: warning("hugePages", `${THP_ENABLED} is missing: this kernel has no transparent huge pages, so pools use 4 KiB pages`,
        "nothing is needed to work; a kernel with CONFIG_TRANSPARENT_HUGEPAGE gives large transfers fewer pages to walk"),
    };
  }
  const mode = /\[(\w+)\]/.exec(text)?.[1] ?? null;
  const usable = mode === "always" || mode === "madvise";
  const hugePages = { mode, usable };
  if (usable) return { hugePages, finding: ok("hugePages", `transparent huge pages: ${mode}, so pools' blocks (advised MADV_HUGEPAGE) get huge pages where the kernel has them`) };
  return {
    hugePages,
    finding: warning("hugePages", `transparent huge pages: ${mode ?? text.trim()}, so pools use 4 KiB pages (on shm, 1 MiB copies ran about 1.9× faster with huge pages)`,
      `as root: echo madvise > ${THP_ENABLED}`),
  };
}

/** Whether the process's effective capabilities include `bit`. */
function hasCapability(bit: bigint): boolean {
  try {
    const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    return effective !== undefined && ((BigInt(`0x${effective}`) >> bit) & 1n) === 1n;
  } catch {
    return false;
  }
}
