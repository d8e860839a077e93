// Gates for the job tests: they run when what they need is here, skip with the reason printed when
// not, and fail instead under the variable that requires them (CI sets all three).
//   ALLOCTOOLS_REQUIRE_PMIX=1   libpmix (and, for launches, mpirun) must be there
//   ALLOCTOOLS_REQUIRE_MPI=1    mpirun must be there (the mpirun launches)
//   ALLOCTOOLS_REQUIRE_SLURM=1  the test Slurm must start (test/jobs/slurm.ts)
import { describe, test } from "bun:test";
import { existsSync } from "node:fs";
import { pmixStatus } from "../../ffi/pmix.ts";
import { mpi, REQUIRE_MPI } from "../helpers.ts";
import { REQUIRE_SLURM, slurm } from "./slurm.ts";

export const pmix = pmixStatus();
/** CI sets ALLOCTOOLS_REQUIRE_PMIX=1: PMIx tests must run, not skip. */
export const REQUIRE_PMIX = (() => {
  const v = process.env.ALLOCTOOLS_REQUIRE_PMIX;
  if (v === undefined || v === "" || v === "0") return false;
  if (v === "1") return true;
  throw new Error(`ALLOCTOOLS_REQUIRE_PMIX must be 1 or 0, got ${JSON.stringify(v)}`);
})();

const warned = new Set<string>();

function gate(name: string, missing: string | null, required: string | null, body: () => void): void {
  if (missing === null) {
    describe(name, body);
  } else if (required !== null) {
    describe(name, () => {
      test(`${name} is required (${required})`, () => {
        throw new Error(`required (${required}) but cannot run: ${missing}`);
      });
    });
  } else {
    if (!warned.has(missing)) {
      warned.add(missing);
      console.warn(`[alloctools] skipping job tests: ${missing}`);
    }
    console.warn(`[alloctools] skipped: ${name}`);
    describe.skip(name, body);
  }
}

/** describe() for tests that need libpmix only. */
export function describePmix(name: string, body: () => void): void {
  gate(name, pmix.available ? null : pmix.reason, REQUIRE_PMIX ? "ALLOCTOOLS_REQUIRE_PMIX=1" : null, body);
}

/** describe() for launches under Open MPI's mpirun, the ranks joining through PMIx. */
export function describeMpirun(name: string, body: () => void): void {
  const missing = !mpi.available ? mpi.reason : !pmix.available ? pmix.reason : null;
  const required = REQUIRE_MPI ? "ALLOCTOOLS_REQUIRE_MPI=1" : REQUIRE_PMIX ? "ALLOCTOOLS_REQUIRE_PMIX=1" : null;
  gate(name, missing, required, body);
}

/** describe() for launches under the test Slurm's srun --mpi=pmix. */
export function describeSlurm(name: string, body: () => void): void {
  const missing = !slurm.available ? slurm.reason : !pmix.available ? pmix.reason : null;
  gate(name, missing, REQUIRE_SLURM ? "ALLOCTOOLS_REQUIRE_SLURM=1" : null, body);
}

/**
 * The C compiler flags of libpmix-dev: pkg-config's, else pmix.h in /usr/include, else Debian's
 * /usr/lib/<triplet>/pmix2/include; null without headers.
 */
export function pmixCompileFlags(): { include: string[]; link: string[] } | null {
  const pkgConfig = (what: string) => Bun.which("pkg-config") ? Bun.spawnSync(["pkg-config", what, "pmix"], { stdout: "pipe", stderr: "pipe" }) : null;
  const cflags = pkgConfig("--cflags");
  const libs = pkgConfig("--libs");
  if (cflags?.exitCode === 0 && libs?.exitCode === 0) {
    const words = (r: typeof cflags) => r!.stdout.toString().trim().split(/\s+/).filter(Boolean);
    return { include: words(cflags).filter((flag) => flag.startsWith("-I")), link: words(libs) };
  }
  if (existsSync("/usr/include/pmix.h")) return { include: [], link: ["-lpmix"] };
  const debian = [...new Bun.Glob("usr/lib/*/pmix2/include/pmix.h").scanSync({ cwd: "/", absolute: true })][0];
  return debian === undefined ? null : { include: [`-I${debian.replace(/\/pmix\.h$/, "")}`], link: ["-lpmix"] };
}
