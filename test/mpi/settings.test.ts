// Ranks that disagree on osc_rdma_max_attach: MpiProvider.open() refuses on every rank with
// AllocToolsError SETTING_MISMATCH naming the setting, the values and their ranks, and no rank
// creates the window; no signal, no hang. Before, the job crashed (SIGSEGV in the rank whose value
// is larger) or failed with MPI_ERR_RMA_RANGE. Jobs of Bun ranks started with different values,
// and jobs with a C rank (test/mpi/c/settings-rank.c, built with mpicc) that follows the note of
// docs/rma.md; with the same value everywhere, Bun and C ranks write into each other's memory.
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeMpi, REQUIRE_MPI } from "../helpers.ts";
import { brief, failures, mpirunApps, type AppContext, type MpiRun } from "./run.ts";

const AGENT = "test/mpi/agent.ts";
const SETTING = "OMPI_MCA_osc_rdma_max_attach";
/** Less than each test's own timeout: mpirun is ended before the test gives up on it. */
const JOB_TIMEOUT_MS = 45_000;
const bun = (value?: number): AppContext["command"] =>
  [...(value === undefined ? [] : ["env", `${SETTING}=${value}`]), "bun", AGENT, "c-peer"];

/** The C rank, built once per source version with mpicc; or why it cannot be. */
function buildCRank(): { path: string } | { missing: string } {
  const mpicc = Bun.which("mpicc");
  if (mpicc === null) return { missing: "no mpicc (apt-get install libopenmpi-dev)" };
  const source = join(import.meta.dir, "c", "settings-rank.c");
  const digest = createHash("sha256").update(readFileSync(source)).digest("hex").slice(0, 16);
  const directory = join(tmpdir(), `alloctools-mpi-c-${process.getuid?.() ?? 0}`);
  const binary = join(directory, `settings-rank-${digest}`);
  if (existsSync(binary)) return { path: binary };
  mkdirSync(directory, { recursive: true });
  const partial = `${binary}.${process.pid}`;
  const r = Bun.spawnSync([mpicc, "-O2", "-Wall", "-o", partial, source], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) return { missing: `mpicc failed: ${r.stderr.toString().trim().split("\n").slice(0, 3).join(" / ")}` };
  renameSync(partial, binary);
  return { path: binary };
}

interface CReport { rank: number; maxAttach: number; values: number[]; refused: boolean; received?: string[]; wrote?: number }

function cReports(run: MpiRun): CReport[] {
  return run.stdout.split("\n").filter((line) => line.startsWith("C-RANK ")).map((line) => JSON.parse(line.slice(7)) as CReport);
}

/** Every Bun rank refused with SETTING_MISMATCH naming each value with its ranks. */
function expectRefusedEverywhere(run: MpiRun, bunRanks: number[], valuesByRank: number[]): void {
  expect(run.timedOut, brief(run)).toBe(false);
  expect(run.exitCode, brief(run)).toBe(0);
  expect(run.stderr).not.toMatch(/signal|Segmentation/);
  expect(failures(run)).toEqual([]);
  expect(run.results.map((r) => r.rank), brief(run)).toEqual(bunRanks);
  for (const r of run.results) {
    const refusal = r.facts.settingsRefusal as { name: string; code: string; message: string } | null;
    expect(refusal, `rank ${r.rank}`).not.toBeNull();
    expect(refusal!.name).toBe("AllocToolsError");
    expect(refusal!.code).toBe("SETTING_MISMATCH");
    expect(refusal!.message).toStartWith("the ranks of this job disagree on osc_rdma_max_attach: ");
    for (const value of new Set(valuesByRank)) {
      const ranks = valuesByRank.flatMap((v, rank) => (v === value ? [rank] : []));
      expect(refusal!.message).toContain(`${value} on rank${ranks.length > 1 ? "s" : ""} ${ranks.join(", ")}`);
    }
    expect(refusal!.message).toContain(`this is rank ${r.rank}, with ${valuesByRank[r.rank]}`);
  }
}

describeMpi("ranks that disagree on osc_rdma_max_attach", () => {
  // 64 is Open MPI's default (what a rank gets that sets nothing), 4096 what alloctools sets.
  for (const [first, second] of [[64, 4096], [4096, 64]] as const) {
    test(`two Bun ranks, ${first} and ${second}: SETTING_MISMATCH on both, no window, no signal`, async () => {
      const run = await mpirunApps([{ ranks: 1, command: bun(first) }, { ranks: 1, command: bun(second) }], {}, JOB_TIMEOUT_MS);
      expectRefusedEverywhere(run, [0, 1], [first, second]);
    }, 60_000);
  }

  test("three Bun ranks with three values (4096, 64, 128): every rank names all three", async () => {
    const run = await mpirunApps([{ ranks: 1, command: bun() }, { ranks: 1, command: bun(64) }, { ranks: 1, command: bun(128) }], {}, JOB_TIMEOUT_MS);
    expectRefusedEverywhere(run, [0, 1, 2], [4096, 64, 128]);
  }, 60_000);

  const cRank = buildCRank();
  const missing = "missing" in cRank ? cRank.missing : "";
  if (missing && !REQUIRE_MPI) console.warn(`[alloctools] skipping the C-rank settings tests: ${missing}`);

  test.skipIf(missing !== "" && !REQUIRE_MPI)("a C rank 0 that sets nothing (64) and a Bun rank 1 (4096), five times: both refuse, the C rank as the note says", async () => {
    if ("missing" in cRank) throw new Error(`the C rank is required (ALLOCTOOLS_REQUIRE_MPI=1) but cannot be built: ${cRank.missing}`);
    for (let round = 0; round < 5; round++) {
      const run = await mpirunApps([{ ranks: 1, command: [cRank.path] }, { ranks: 1, command: bun() }], {}, JOB_TIMEOUT_MS);
      expectRefusedEverywhere(run, [1], [64, 4096]);
      expect(cReports(run)).toEqual([{ rank: 0, maxAttach: 64, values: [64, 4096], refused: true }]);
    }
  }, 5 * JOB_TIMEOUT_MS);

  test.skipIf(missing !== "" && !REQUIRE_MPI)("a C rank started with 4096 and two Bun ranks: one window, the C rank and the Bun ranks write into each other's memory", async () => {
    if ("missing" in cRank) throw new Error(`the C rank is required (ALLOCTOOLS_REQUIRE_MPI=1) but cannot be built: ${cRank.missing}`);
    const run = await mpirunApps([{ ranks: 1, command: ["env", `${SETTING}=4096`, cRank.path] }, { ranks: 2, command: bun() }], {}, JOB_TIMEOUT_MS);
    expect(run.exitCode, brief(run)).toBe(0);
    expect(failures(run)).toEqual([]);
    const [c] = cReports(run);
    expect(c, brief(run)).toMatchObject({ rank: 0, maxAttach: 4096, values: [4096, 4096, 4096], refused: false, wrote: 2 });
    expect(c!.received!.slice(1).map((text) => text.slice(0, 16))).toEqual(["from 1 to 0 roun", "from 2 to 0 roun"]);
    expect(run.results.map((r) => r.rank)).toEqual([1, 2]);
    for (const r of run.results) {
      expect(r.facts.settingsRefusal).toBeNull();
      expect((r.facts.received as string[])[0]).toBe(`from C rank 0 to rank ${r.rank}`);
      expect((r.facts.received as string[])[3 - r.rank]).toStartWith(`from ${3 - r.rank} to ${r.rank} round 6`);
    }
  }, 60_000);
});
