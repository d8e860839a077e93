// Jobs under Open MPI's mpirun, the ranks joining through PMIx with no MPI library loaded: 2 and 4
// ranks running test/jobs/agent.ts (barriers, allgathers of different lengths, exchangeNames for
// libfabric tcp and shm and UCX, rings of verified writes, names and regions as strings), Job via
// "mpi" with MpiEndpoint, a rank in C joining Bun ranks the way docs/jobs.md says, ranks that
// throw, exit or stall, and examples/job-ring.ts on 4 ranks.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fabric, mpi, REQUIRE_LIBFABRIC, REQUIRE_UCX, ucx } from "../helpers.ts";
import { describeMpirun, pmixCompileFlags, REQUIRE_PMIX } from "./gates.ts";
import { failedChecks, launch, mpirunArgv, summary } from "./launch.ts";

const AGENT = ["bun", "test/jobs/agent.ts"];
const mpirun = mpi.available ? mpi.mpirun : "mpirun";
const libfabricHere = fabric.available || REQUIRE_LIBFABRIC;
const ucxHere = ucx.available || REQUIRE_UCX;

/** The agent's transport scenarios this machine can run (the others are skipped with the reason printed). */
function transports(): string[] {
  if (!libfabricHere) console.warn(`[alloctools] skipped: job rings over libfabric (${fabric.available ? "" : fabric.reason})`);
  if (!ucxHere) console.warn(`[alloctools] skipped: job rings over UCX (${ucx.available ? "" : ucx.reason})`);
  return [...(libfabricHere ? ["tcp", "shm", "strings"] : []), ...(ucxHere ? ["ucx"] : [])];
}

describeMpirun("jobs under mpirun (PMIx, no MPI_Init)", () => {
  for (const ranks of [2, 4]) {
    test(`${ranks} ranks: rank and size, barriers, allgathers of different lengths, exchangeNames and a ring of verified writes over tcp, shm and UCX`, async () => {
      const scenarios = ["basics", ...transports()];
      const run = await launch(mpirunArgv(mpirun, ranks, [...AGENT, ...scenarios]), {}, 120_000);
      expect(failedChecks(run)).toEqual([]);
      expect(run.results.map((r) => r.rank), summary(run)).toEqual([...Array(ranks).keys()]);
      expect(run.exitCode, summary(run)).toBe(0);
      for (const r of run.results) {
        expect(r.facts).toMatchObject({ size: ranks, via: "pmix", mpiLoaded: false });
        expect(r.checks.length).toBeGreaterThanOrEqual(4 + 5 * (scenarios.length - 1));
        const left = (r.rank + ranks - 1) % ranks;
        if (libfabricHere) expect(String(r.facts["tcp received"])).toStartWith(`tcp from ${left} to ${r.rank}`);
        if (ucxHere) expect(String(r.facts["ucx received"])).toStartWith(`ucx from ${left} to ${r.rank}`);
      }
    }, 150_000);
  }

  test("Job via \"mpi\" on 2 ranks: MpiEndpoint's names exchanged and inserted, its nameString round trip", async () => {
    const run = await launch(mpirunArgv(mpirun, 2, [...AGENT, "mpi"]), {}, 90_000);
    expect(failedChecks(run)).toEqual([]);
    expect(run.results.map((r) => r.facts.via), summary(run)).toEqual(["mpi", "mpi"]);
    expect(run.results.every((r) => r.facts.mpiLoaded === true)).toBe(true);
    expect(run.exitCode, summary(run)).toBe(0);
  }, 120_000);

  test("a rank in C (test/jobs/c-rank.c, the calls docs/jobs.md lists) joins two Bun ranks: barriers and allgathers match, bytes arrive both ways", async () => {
    const cc = Bun.which("cc") ?? Bun.which("gcc");
    const flags = pmixCompileFlags();
    const missing = !cc ? "no C compiler (cc)" : flags === null ? "no PMIx headers (apt-get install libpmix-dev pkg-config)" : "";
    if (missing) {
      if (REQUIRE_PMIX) throw new Error(`the C rank is required (ALLOCTOOLS_REQUIRE_PMIX=1) but cannot be built: ${missing}`);
      console.warn(`[alloctools] skipped: a rank in C (${missing})`);
      return;
    }
    const directory = mkdtempSync(join(tmpdir(), "alloctools-c-rank-"));
    const binary = join(directory, "c-rank");
    const build = Bun.spawnSync([cc!, "-Wall", "-o", binary, `${import.meta.dir}/c-rank.c`, ...flags!.include, ...flags!.link], { stderr: "pipe" });
    expect(build.stderr.toString()).toBe("");
    expect(build.exitCode).toBe(0);
    const argv = mpirunArgv(mpirun, 1, [...AGENT, "basics"]);
    const run = await launch([...argv, ":", "-n", "1", binary, ":", "-n", "1", ...AGENT, "basics"], {}, 90_000);
    rmSync(directory, { recursive: true, force: true });
    expect(failedChecks(run)).toEqual([]);
    expect(run.results.map((r) => r.rank), summary(run)).toEqual([0, 2]);
    expect(run.stdout).toContain("c rank 1 of 3: ok");
    expect(run.exitCode, summary(run)).toBe(0);
  }, 120_000);

  test("a rank that throws ends the job at once, naming itself; the others were waiting in a barrier", async () => {
    const run = await launch(mpirunArgv(mpirun, 3, [...AGENT, "basics", "throw:1"]), { ALLOCTOOLS_TEST_JOB_TIMEOUT_MS: "60000" }, 60_000);
    expect(run.timedOut, summary(run)).toBe(false);
    expect(run.exitCode, summary(run)).not.toBe(0);
    expect(run.elapsedMs, summary(run)).toBeLessThan(30_000); // the abort ended it, not the 60 s collective timeout
    expect(run.stderr).toContain("rank 1 throws on purpose");
    expect(run.stderr).toMatch(/alloctools: rank 1 of 3 \(PMIx namespace \S+, mpirun\) exited with code 1 while its Job was open: ending the job \(PMIx_Abort\)/);
  }, 90_000);

  test("a rank that exits early (process.exit(7), then one exiting 0 without closing) ends the job, naming itself", async () => {
    for (const [who, code, how] of [[2, 7, "exited with code 7 while its Job was open"], [0, 0, "exited \\(code 0\\) before closing its Job"]] as const) {
      const run = await launch(mpirunArgv(mpirun, 3, [...AGENT, `exit:${who}:${code}`]), { ALLOCTOOLS_TEST_JOB_TIMEOUT_MS: "60000" }, 60_000);
      expect(run.timedOut, summary(run)).toBe(false);
      expect(run.exitCode, summary(run)).not.toBe(0);
      expect(run.elapsedMs, summary(run)).toBeLessThan(30_000);
      expect(run.stderr).toMatch(new RegExp(`alloctools: rank ${who} of 3 \\(PMIx namespace \\S+, mpirun\\) ${how}: ending the job`));
    }
  }, 120_000);

  test("a rank that never arrives (alive, stalled): the others' barrier fails with PMIX_ERR_TIMEOUT within the job's timeout, and the job ends", async () => {
    const run = await launch(mpirunArgv(mpirun, 3, [...AGENT, "stall:1"]), { ALLOCTOOLS_TEST_JOB_TIMEOUT_MS: "3000" }, 60_000);
    expect(run.timedOut, summary(run)).toBe(false);
    expect(run.exitCode, summary(run)).not.toBe(0);
    expect(run.elapsedMs, summary(run)).toBeLessThan(25_000);
    expect(run.stderr).toMatch(/PMIx_Fence failed: TIMEOUT \(PMIX_ERR_TIMEOUT, -24\): barrier 1 of rank [02] of 3/);
    expect(run.stderr).toMatch(/alloctools: rank [02] of 3 \(PMIx namespace \S+, mpirun\) exited with code 1 while its Job was open/);
  }, 90_000);

  test("examples/job-ring.ts under mpirun -n 4: every rank got its left neighbour's stamp over tcp and UCX", async () => {
    if (!libfabricHere || !ucxHere) {
      console.warn("[alloctools] skipped: job-ring under mpirun (it needs libfabric and UCX)");
      return;
    }
    const run = await launch(mpirunArgv(mpirun, 4, ["bun", "examples/job-ring.ts"]), {}, 120_000);
    expect(run.exitCode, summary(run)).toBe(0);
    const lines = run.stdout.trim().split("\n").filter((line) => line.startsWith("rank ")).sort();
    expect(lines).toEqual([0, 1, 2, 3].map((rank) => {
      const left = (rank + 3) % 4;
      return `rank ${rank}/4 via pmix: tcp got "tcp from rank ${left} to rank ${rank}", ucx got "ucx from rank ${left} to rank ${rank}"`;
    }));
  }, 150_000);
});
