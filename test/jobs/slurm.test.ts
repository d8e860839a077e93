// Jobs under Slurm for real: a single-node Slurm started for this file (test/jobs/slurm.ts) and
// `srun --mpi=pmix -n 2` and `-n 4` running test/jobs/agent.ts (the same scenarios as under
// mpirun), ranks that throw or exit early, and examples/job-ring.ts on 4 ranks. Stopped afterwards.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { fabric, REQUIRE_LIBFABRIC, REQUIRE_UCX, ucx } from "../helpers.ts";
import { describeSlurm } from "./gates.ts";
import { failedChecks, launch, summary } from "./launch.ts";
import { startSlurm, type SlurmCluster } from "./slurm.ts";

const libfabricHere = fabric.available || REQUIRE_LIBFABRIC;
const ucxHere = ucx.available || REQUIRE_UCX;

describeSlurm("jobs under srun --mpi=pmix (a single-node Slurm started for the tests)", () => {
  let cluster: SlurmCluster | undefined;
  beforeAll(async () => {
    cluster = await startSlurm();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  /** `srun --mpi=pmix -n <ranks> <command>` on the test cluster. */
  const srun = (ranks: number, command: string[], env: Record<string, string> = {}, timeoutMs = 120_000) =>
    launch(["srun", "--mpi=pmix", "-n", String(ranks), ...command], { SLURM_CONF: cluster!.conf, ...env }, timeoutMs);

  for (const ranks of [2, 4]) {
    test(`srun -n ${ranks}: rank and size, barriers, allgathers of different lengths, exchangeNames and a ring of verified writes over tcp, shm and UCX`, async () => {
      const scenarios = ["basics", ...(libfabricHere ? ["tcp", "shm", "strings"] : []), ...(ucxHere ? ["ucx"] : [])];
      const run = await srun(ranks, ["bun", "test/jobs/agent.ts", ...scenarios]);
      expect(failedChecks(run)).toEqual([]);
      expect(run.results.map((r) => r.rank), summary(run)).toEqual([...Array(ranks).keys()]);
      expect(run.exitCode, summary(run)).toBe(0);
      for (const r of run.results) {
        expect(r.facts).toMatchObject({ size: ranks, via: "pmix", mpiLoaded: false });
        const left = (r.rank + ranks - 1) % ranks;
        if (libfabricHere) expect(String(r.facts["tcp received"])).toStartWith(`tcp from ${left} to ${r.rank}`);
        if (ucxHere) expect(String(r.facts["ucx received"])).toStartWith(`ucx from ${left} to ${r.rank}`);
      }
    }, 150_000);
  }

  test("a rank that throws, and one that exits early, end the step at once, naming themselves", async () => {
    for (const [scenario, message] of [
      ["throw:1", /alloctools: rank 1 of 3 \(PMIx namespace slurm\.pmix\.\S+, srun --mpi=pmix\) exited with code 1 while its Job was open: ending the job/],
      ["exit:2:5", /alloctools: rank 2 of 3 \(PMIx namespace slurm\.pmix\.\S+, srun --mpi=pmix\) exited with code 5 while its Job was open: ending the job/],
    ] as const) {
      const run = await srun(3, ["bun", "test/jobs/agent.ts", "basics", scenario], { ALLOCTOOLS_TEST_JOB_TIMEOUT_MS: "60000" }, 60_000);
      expect(run.timedOut, summary(run)).toBe(false);
      expect(run.exitCode, summary(run)).not.toBe(0);
      expect(run.elapsedMs, summary(run)).toBeLessThan(30_000); // the abort ended it, not the 60 s collective timeout
      expect(run.stderr, summary(run)).toMatch(message);
    }
  }, 120_000);

  test("a rank that never arrives (alive, stalled): the others' barrier fails with PMIX_ERR_TIMEOUT within the job's timeout, and the step ends", async () => {
    const run = await srun(3, ["bun", "test/jobs/agent.ts", "stall:1"], { ALLOCTOOLS_TEST_JOB_TIMEOUT_MS: "3000" }, 60_000);
    expect(run.timedOut, summary(run)).toBe(false);
    expect(run.exitCode, summary(run)).not.toBe(0);
    expect(run.elapsedMs, summary(run)).toBeLessThan(25_000);
    expect(run.stderr).toMatch(/PMIx_Fence failed: TIMEOUT \(PMIX_ERR_TIMEOUT, -24\): barrier 1 of rank [02] of 3/);
    expect(run.stderr).toMatch(/alloctools: rank [02] of 3 \(PMIx namespace slurm\.pmix\.\S+, srun --mpi=pmix\) exited with code 1 while its Job was open/);
  }, 90_000);

  test("examples/job-ring.ts under srun -n 4: every rank got its left neighbour's stamp over tcp and UCX", async () => {
    if (!libfabricHere || !ucxHere) {
      console.warn("[alloctools] skipped: job-ring under srun (it needs libfabric and UCX)");
      return;
    }
    const run = await srun(4, ["bun", "examples/job-ring.ts"]);
    expect(run.exitCode, summary(run)).toBe(0);
    const lines = run.stdout.trim().split("\n").filter((line) => line.startsWith("rank ")).sort();
    expect(lines).toEqual([0, 1, 2, 3].map((rank) => {
      const left = (rank + 3) % 4;
      return `rank ${rank}/4 via pmix: tcp got "tcp from rank ${left} to rank ${rank}", ucx got "ucx from rank ${left} to rank ${rank}"`;
    }));
  }, 150_000);
});
