// Shared test helpers: the libfabric gate (skip with a reason, or fail when it is required),
// the providers every core test runs against, and a reader of the process's locked memory.
import { describe, test } from "bun:test";
import { readFileSync } from "node:fs";
import { libfabricStatus } from "../ffi/libfabric.ts";
import { mpiStatus } from "../ffi/mpi.ts";
import { ucxStatus } from "../ffi/ucx.ts";
import { HostProvider, LibfabricProvider, MpiJob, MpiProvider, UcxProvider, type RegionProvider } from "../lib/index.ts";

export const fabric = libfabricStatus();
/** CI sets ALLOCTOOLS_REQUIRE_LIBFABRIC=1: libfabric tests must run, not skip. */
export const REQUIRE_LIBFABRIC = parseRequire(process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC);

export const ucx = ucxStatus();
/** CI sets ALLOCTOOLS_REQUIRE_UCX=1: UCX tests must run, not skip. */
export const REQUIRE_UCX = parseRequire(process.env.ALLOCTOOLS_REQUIRE_UCX, "ALLOCTOOLS_REQUIRE_UCX");

function parseRequire(v: string | undefined, name = "ALLOCTOOLS_REQUIRE_LIBFABRIC"): boolean {
  if (v === undefined || v === "" || v === "0") return false;
  if (v === "1") return true;
  throw new Error(`${name} must be 1 or 0, got ${JSON.stringify(v)}`);
}

const warned = new Set<string>();

/**
 * describe() for tests that need libfabric: runs them when it loads, skips them with the reason
 * printed when it does not, and fails instead of skipping under ALLOCTOOLS_REQUIRE_LIBFABRIC=1.
 */
export function describeFabric(name: string, body: () => void): void {
  if (fabric.available) {
    describe(name, body);
  } else if (REQUIRE_LIBFABRIC) {
    describe(name, () => {
      test("libfabric is required (ALLOCTOOLS_REQUIRE_LIBFABRIC=1)", () => {
        throw new Error(`libfabric is required but not available: ${fabric.reason}`);
      });
    });
  } else {
    if (!warned.has(fabric.reason)) {
      warned.add(fabric.reason);
      console.warn(`[alloctools] skipping libfabric tests: ${fabric.reason}`);
    }
    console.warn(`[alloctools] skipped: ${name}`);
    describe.skip(name, body);
  }
}

/**
 * describe() for tests that need UCX: runs them when libucp loads, skips them with the reason
 * printed when it does not, and fails instead of skipping under ALLOCTOOLS_REQUIRE_UCX=1.
 */
export function describeUcx(name: string, body: () => void): void {
  if (ucx.available) {
    describe(name, body);
  } else if (REQUIRE_UCX) {
    describe(name, () => {
      test("UCX is required (ALLOCTOOLS_REQUIRE_UCX=1)", () => {
        throw new Error(`UCX is required but not available: ${ucx.reason}`);
      });
    });
  } else {
    if (!warned.has(ucx.reason)) {
      warned.add(ucx.reason);
      console.warn(`[alloctools] skipping UCX tests: ${ucx.reason}`);
    }
    console.warn(`[alloctools] skipped: ${name}`);
    describe.skip(name, body);
  }
}

/** Open MPI (libmpi.so.40) and mpirun, or why not. */
export const mpi: { available: true; version: string; mpirun: string } | { available: false; reason: string } = (() => {
  const status = mpiStatus();
  if (!status.available) return status;
  const mpirun = Bun.which("mpirun");
  if (mpirun === null) return { available: false, reason: "libmpi loads but mpirun is not on PATH (apt-get install openmpi-bin)" };
  return { available: true, version: status.version, mpirun };
})();
/** CI sets ALLOCTOOLS_REQUIRE_MPI=1: MPI tests must run, not skip. */
export const REQUIRE_MPI = parseRequire(process.env.ALLOCTOOLS_REQUIRE_MPI, "ALLOCTOOLS_REQUIRE_MPI");

/**
 * describe() for tests that need Open MPI and mpirun: runs them when both are there, skips them
 * with the reason printed when not, and fails instead of skipping under ALLOCTOOLS_REQUIRE_MPI=1.
 */
export function describeMpi(name: string, body: () => void): void {
  if (mpi.available) {
    describe(name, body);
  } else if (REQUIRE_MPI) {
    const reason = mpi.reason;
    describe(name, () => {
      test("MPI is required (ALLOCTOOLS_REQUIRE_MPI=1)", () => {
        throw new Error(`Open MPI is required but not available: ${reason}`);
      });
    });
  } else {
    if (!warned.has(mpi.reason)) {
      warned.add(mpi.reason);
      console.warn(`[alloctools] skipping MPI tests: ${mpi.reason}`);
    }
    console.warn(`[alloctools] skipped: ${name}`);
    describe.skip(name, body);
  }
}

/** Kilobytes of locked memory of this process (VmLck in /proc/self/status). */
export function vmLckKiB(): number {
  const m = /VmLck:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  if (!m?.[1]) throw new Error("no VmLck in /proc/self/status");
  return Number(m[1]);
}

/** The providers core tests run against: the host provider always, libfabric tcp and shm, UCX tcp and shm. */
export interface ProviderCase {
  readonly label: string;
  readonly needsFabric: boolean;
  /** Gated on UCX instead of libfabric. */
  readonly needsUcx?: boolean;
  open(options?: { firstKey?: bigint }): RegionProvider;
}

export const PROVIDER_CASES: readonly ProviderCase[] = [
  { label: "host", needsFabric: false, open: (o) => new HostProvider(o) },
  { label: "tcp", needsFabric: true, open: (o) => LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1", ...o }) },
  { label: "shm", needsFabric: true, open: (o) => LibfabricProvider.open({ provider: "shm", ...o }) },
  { label: "ucx tcp", needsFabric: false, needsUcx: true, open: () => UcxProvider.open({ transports: "tcp" }) },
  { label: "ucx shm", needsFabric: false, needsUcx: true, open: () => UcxProvider.open({ transports: "posix,cma" }) },
  // Only inside mpirun (test/mpi/mpi.test.ts runs the pool suite that way): opening is collective.
  ...(process.env.ALLOCTOOLS_TEST_MPI_PROVIDER === "1" ? [{ label: "mpi", needsFabric: false, open: openMpiCase }] : []),
];

let testJob: MpiJob | undefined;
/** The mpi case: a job held open for the whole run keeps MPI initialized while providers come and go. */
function openMpiCase(): RegionProvider {
  testJob ??= MpiJob.open();
  return MpiProvider.open();
}

/** Closes the mpi case's job (MPI_Finalize): test/mpi/finalize.preload.ts calls it after every file. */
export function closeMpiTestJob(): void {
  testJob?.close();
  testJob = undefined;
}

/** describe() per provider case, gated on libfabric where the case needs it. */
export function describeEachProvider(name: string, body: (c: ProviderCase) => void): void {
  for (const c of PROVIDER_CASES) {
    const title = `${name} [${c.label}]`;
    if (c.needsUcx) describeUcx(title, () => body(c));
    else if (c.needsFabric) describeFabric(title, () => body(c));
    else describe(title, () => body(c));
  }
}

/** Runs a TypeScript snippet in a fresh Bun process; returns its exit code and output. */
export function runBun(code: string, env: Record<string, string | undefined> = {}, args: string[] = []) {
  const r = Bun.spawnSync([process.execPath, "-e", code, ...args], {
    env: { ...process.env, ...env } as Record<string, string>,
    cwd: `${import.meta.dir}/..`,
    stdout: "pipe",
    stderr: "pipe",
  });
  return { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
