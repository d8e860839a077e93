// Jobs: the time from joining a job to every rank holding every other rank's endpoint name, for 4
// ranks under the same mpirun: Job.open() through PMIx (no MPI library loaded) against MpiJob.open()
// (MPI_Init), each side its own mpirun job, alternated, in this run. The target is PMIx at most 1x
// MpiJob. Beside it, the same PMIx figure under srun --mpi=pmix when a Slurm answers here (start one
// with `bun test/jobs/slurm.ts`); otherwise a row says why there is none.
//
// A figure is one job's slowest rank: the ranks start together (each, once loaded and holding its
// libfabric tcp endpoint, drops a file in a directory and waits for all of them: no bootstrap is
// needed for that), then time open + exchangeNames + inserting every name.
//
// Run directly under a launcher, this file is one rank:
//   mpirun -n 4 bun bench/suites/jobs.ts --rank pmix|mpi <start directory> <ranks>
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchContext, Suite } from "../context.ts";
import { median } from "../stats.ts";

const SUITE = "jobs";
const RANKS = 4;
/** The target of issue 24: PMIx at most 1x MpiJob. */
const TARGET_RATIO = 1;
/** What rank 0 prints: the slowest rank's time. */
interface Sample { ms: number }

/** Drops this process's file into `directory` and returns once `ranks` files are there. */
async function startTogether(directory: string, ranks: number): Promise<void> {
  writeFileSync(join(directory, String(process.pid)), "");
  while (readdirSync(directory).length < ranks) await Bun.sleep(1);
}

async function rankProgram(via: "pmix" | "mpi", directory: string, ranks: number): Promise<void> {
  const { Job, MpiJob, LibfabricProvider, Endpoint, libfabricStatus } = await import("../../lib/index.ts");
  const provider = libfabricStatus().available ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : null;
  // Without libfabric, a stand-in with a 32-byte name (the exchange is what is timed).
  const endpoint: { readonly name: Uint8Array; insert(name: Uint8Array): unknown; close?(): void } = provider !== null
    ? new Endpoint(provider)
    : { name: crypto.getRandomValues(new Uint8Array(32)), insert: (name: Uint8Array) => name.length };
  await startTogether(directory, ranks);
  const start = performance.now();
  let elapsed: number;
  let job: { readonly rank: number; allgather(bytes: Uint8Array): Uint8Array[]; close(): void };
  if (via === "pmix") {
    const pmixJob = await Job.open({ via: "pmix" });
    pmixJob.exchangeNames(endpoint);
    elapsed = performance.now() - start;
    job = pmixJob;
  } else {
    const mpiJob = MpiJob.open();
    for (const name of mpiJob.exchangeNames(endpoint)) endpoint.insert(name);
    elapsed = performance.now() - start;
    job = mpiJob;
  }
  const all = job.allgather(new Uint8Array(new Float64Array([elapsed]).buffer)).map((bytes) => new Float64Array(bytes.slice().buffer)[0]!);
  if (job.rank === 0) console.log(JSON.stringify({ ms: Math.max(...all) } satisfies Sample));
  endpoint.close?.();
  provider?.close();
  job.close();
}

/** One launch of the rank program; the JSON rank 0 prints, or why there is none. */
function runJob(launcher: string[], via: "pmix" | "mpi"): Sample | string {
  const directory = mkdtempSync(join(tmpdir(), "alloctools-bench-jobs-"));
  const r = Bun.spawnSync([...launcher, process.execPath, import.meta.path, "--rank", via, directory, String(RANKS)], {
    stdout: "pipe", stderr: "pipe", timeout: 120_000,
  });
  rmSync(directory, { recursive: true, force: true });
  const line = r.stdout.toString().split("\n").find((l) => l.startsWith("{"));
  if (r.exitCode !== 0 || line === undefined) return `exit ${r.exitCode}: ${r.stderr.toString().trim().split("\n").slice(0, 3).join(" / ")}`;
  return JSON.parse(line) as Sample;
}

/** Whether a Slurm answers here (sinfo shows an idle or mixed node); the reason when not. */
function slurmHere(): string | null {
  if (Bun.which("srun") === null) return "no srun on PATH (apt-get install slurm-client)";
  const r = Bun.spawnSync(["sinfo", "-h", "-o", "%T"], { stdout: "pipe", stderr: "pipe", timeout: 10_000 });
  if (r.exitCode !== 0) return `Slurm is not running here (sinfo: ${r.stderr.toString().trim().split("\n")[0] || `exit ${r.exitCode}`}); start one with 'bun test/jobs/slurm.ts' and export the SLURM_CONF it prints`;
  if (!/^(idle|mix)/m.test(r.stdout.toString())) return `no idle Slurm node (sinfo: ${r.stdout.toString().trim()})`;
  return null;
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    const { pmixStatus, mpiStatus } = await import("../../lib/index.ts");
    const mpirun = Bun.which("mpirun");
    const missing = (why: string) => {
      ctx.provider({ suite: SUITE, label: "jobs", description: `not measured: ${why}` });
      if (process.env.ALLOCTOOLS_REQUIRE_PMIX === "1") throw new Error(`jobs bench: ${why} (ALLOCTOOLS_REQUIRE_PMIX=1)`);
    };
    const pmix = pmixStatus();
    const mpi = mpiStatus();
    if (!pmix.available) return missing(`PMIx not available (${pmix.reason})`);
    if (!mpi.available) return missing(`Open MPI not available (${mpi.reason})`);
    if (mpirun === null) return missing("no mpirun on PATH (apt-get install openmpi-bin)");
    ctx.provider({ suite: SUITE, label: "jobs", description: `${RANKS} ranks, ${pmix.version} against ${mpi.version}, names of libfabric tcp endpoints` });

    const mpirunArgs = [mpirun, ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []), "--oversubscribe", "-n", String(RANKS)];
    const rounds = ctx.quick ? 1 : 5;
    const samples: Record<"pmix" | "mpi" | "slurm", Sample[]> = { pmix: [], mpi: [], slurm: [] };
    const failures: string[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const via of round % 2 === 0 ? (["pmix", "mpi"] as const) : (["mpi", "pmix"] as const)) {
        const sample = runJob(mpirunArgs, via);
        if (typeof sample === "string") failures.push(`${via}: ${sample}`);
        else samples[via].push(sample);
      }
    }
    const noSlurm = slurmHere();
    if (noSlurm === null) {
      for (let round = 0; round < rounds; round++) {
        const sample = runJob(["srun", "--mpi=pmix", "-n", String(RANKS)], "pmix");
        if (typeof sample === "string") failures.push(`srun: ${sample}`);
        else samples.slurm.push(sample);
      }
    }
    if (failures.length > 0 && process.env.ALLOCTOOLS_REQUIRE_PMIX === "1") throw new Error(`jobs bench: ${failures.join("; ")}`);

    const figure = (label: string, list: Sample[], how: string) => {
      const note = list.length === 0 ? `not measured: ${failures.find((f) => f.startsWith(label.split(" ")[0]!)) ?? "no run"}` :
        `${how}; median of ${list.length} jobs, slowest rank each (${list.map((s) => s.ms.toFixed(0)).join(", ")} ms)`;
      const value = list.length === 0 ? Number.NaN : median(list.map((s) => s.ms));
      ctx.record({ suite: SUITE, name: `${label}: open to names exchanged, ${RANKS} ranks`, value, unit: "ms", note });
      return value;
    };
    const pmixMs = figure("pmix Job.open (mpirun)", samples.pmix, "Job.open() through PMIx, no MPI_Init");
    const mpiMs = figure("mpi MpiJob.open (mpirun)", samples.mpi, "MpiJob.open() (MPI_Init_thread)");
    if (noSlurm === null) figure("srun Job.open (srun --mpi=pmix)", samples.slurm, "Job.open() through Slurm's PMIx server");
    else ctx.record({ suite: SUITE, name: `srun Job.open: open to names exchanged, ${RANKS} ranks`, value: Number.NaN, unit: "ms", note: `not measured: ${noSlurm}` });
    const ratio = pmixMs / mpiMs;
    ctx.record({
      suite: SUITE, name: `PMIx / MpiJob ratio, ${RANKS} ranks`, value: ratio, unit: "x",
      note: Number.isNaN(ratio) ? "not measured" : `target <= ${TARGET_RATIO}x: ${ratio <= TARGET_RATIO ? "met" : "NOT met"} (this run)`,
    });
  },
};
export default suite;

if (import.meta.main && process.argv[2] === "--rank") {
  await rankProgram(process.argv[3] === "mpi" ? "mpi" : "pmix", process.argv[4]!, Number(process.argv[5]));
}
